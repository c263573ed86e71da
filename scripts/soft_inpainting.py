"""Soft Inpainting, A1111's built-in always-on script (same title, element ids, arguments and infotext keys): the
soft mask blends the original into every step, and the original pixels come back wherever the result barely
changed. The maths is in modules/soft_inpainting.py."""
from __future__ import annotations

import gradio as gr

from modules import images, scripts, soft_inpainting as si
from modules.ui_components import InputAccordion

# (minimum, maximum, step) of each setting's slider and what it does (A1111's ranges)
SLIDERS = {
    "mask_blend_power": (0, 8, 0.1, "When the original is kept most: below 1 late in sampling, above 1 early."),
    "mask_blend_scale": (0, 8, 0.05, "How strongly partly masked areas keep the original."),
    "inpaint_detail_preservation": (1, 32, 0.5, "Keeps the contrast that blending loses in partly masked areas."),
    "composite_mask_influence": (0, 1, 0.05, "How much the mask, rather than the change alone, decides what is kept."),
    "composite_difference_threshold": (0, 8, 0.25, "How much an area may change and still get the original pixels back."),
    "composite_difference_contrast": (0, 8, 0.25, "How sharp the edge between original and generated pixels is."),
}


def uses_mask(p) -> bool:
    return getattr(p, "image_mask", None) is not None


class Script(scripts.Script):
    section = "inpaint"

    def __init__(self):
        self.overlays = None

    def title(self):
        return "Soft Inpainting"

    def show(self, is_img2img):
        return scripts.AlwaysVisible if is_img2img else False

    def args_spec(self, is_img2img):
        if not is_img2img:
            return []
        default = si.Settings()
        return [scripts.ScriptArgSpec("enabled", "Soft inpainting", False),
                *(scripts.ScriptArgSpec(name, si.LABELS[name], getattr(default, name), minimum=low, maximum=high, step=step)
                  for name, (low, high, step, _) in SLIDERS.items())]

    def ui(self, is_img2img):
        if not is_img2img:
            return None
        switch, *specs = self.args_spec(is_img2img)
        with InputAccordion(switch.value, label=switch.label, elem_id="soft_inpainting_enabled") as enabled:
            with gr.Group():
                gr.Markdown("Blends the original into the inpainted area by the mask's softness; a high **Mask blur** "
                            "gives the smoothest transitions.")
                sliders = {}
                for spec in specs:
                    if spec.name == "composite_mask_influence":
                        gr.Markdown("### Pixel composite")
                    sliders[spec.name] = gr.Slider(spec.minimum, spec.maximum, step=spec.step, value=spec.value,
                                                   label=spec.label, info=SLIDERS[spec.name][3], elem_id=spec.name)
        self.infotext_fields = [(enabled, si.ENABLED_KEY),
                                *((slider, si.INFOTEXT_KEYS[name]) for name, slider in sliders.items())]
        self.paste_field_names = [key for _, key in self.infotext_fields]
        return [enabled, *sliders.values()]

    def process(self, p, enabled=False, *values):
        if not enabled or not uses_mask(p):
            return
        p.mask_round = False  # the soft mask is the point
        p.extra_generation_params.update(si.Settings(*values).infotext())

    def on_mask_blend(self, p, mba: scripts.MaskBlendArgs, enabled=False, *values):
        if not enabled or not uses_mask(p):
            return
        if mba.is_final_blend:  # the composite after decoding decides what is kept
            mba.blended_latent = mba.current_latent
            return
        settings = si.Settings(*values)
        sigma = float(mba.sigma.flatten()[0]) if hasattr(mba.sigma, "flatten") else float(mba.sigma)
        mba.blended_latent = si.latent_blend(settings, mba.init_latent, mba.current_latent,
                                             si.step_weight(settings, mba.nmask, sigma))

    def post_sample(self, p, ps: scripts.PostSampleArgs, enabled=False, *values):
        self.overlays = None
        nmask = getattr(p, "nmask", None)
        if not enabled or not uses_mask(p) or nmask is None:
            return
        prepared = p.prepared
        originals = [img.convert("RGB") for img in p.init_images]
        if prepared.paste_to is None and p.resize_mode != 3:
            originals = [images.resize_image(p.resize_mode, img, p.width, p.height) for img in originals]
        masks = si.composite_masks(si.Settings(*values), nmask, p.init_latent, ps.samples, p.width, p.height,
                                   originals[0].size, prepared.paste_to)
        self.overlays = si.overlays(masks, originals)

    def postprocess_maskoverlay(self, p, ppmo: scripts.PostprocessMaskOverlayArgs, enabled=False, *values):
        if enabled and self.overlays is not None:
            ppmo.overlay_image = self.overlays[ppmo.index % len(self.overlays)]
