"""Units prepared once per job, then bound to a model and size as the residuals the denoiser adds to its UNet.

Semantics follow sd-webui-controlnet: each unit's residuals are scaled by its weight and applied only while
step / total steps lies in [guidance_start, guidance_end]; "My prompt is more important" uses the soft scales
weight * 0.825 ** (12 - i) over the outputs (also forced in the Hires. fix pass for canny and mlsd maps);
"ControlNet is more important" adds the residuals to the conditional rows only. Several units sum. Reference units
(reference.py) need no model: they change the UNet's self-attention and block statistics instead.
"""
from __future__ import annotations

import contextlib
import logging
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from diffusers import ControlNetUnionModel, T2IAdapter
from PIL import Image, ImageOps

from modules import processing_img2img
from modules.controlnet import clip_vision, ip_adapter, models, preprocessors, reference, t2i_adapter
from modules.controlnet.units import CONTROL_MODES, REFERENCE_MODULES, ControlNetUnit, decode_image

log = logging.getLogger(__name__)
_SOFT_IN_HIRES = ("canny", "mlsd")


@dataclass
class PreparedUnit:
    index: int  # the unit's place among the script's units ("ControlNet 0", ...)
    unit: ControlNetUnit
    info: models.ControlNetInfo | None  # None: a reference unit, which needs no model
    detected: Image.Image  # the preprocessed map (an IP-Adapter unit's: its image)
    encoder: Path | None = None  # an IP-Adapter unit's CLIP vision encoder file
    latents: dict = field(default_factory=dict)  # a reference unit's VAE latent per (size, VAE): encoded once per job


def pixel_perfect_resolution(image: Image.Image, width: int, height: int, resize_mode: str) -> int:
    """The preprocessor resolution that gives the map exactly the target's pixels (the extension's rule)."""
    k = (height / image.height, width / image.width)
    scale = min(k) if resize_mode == "Resize and Fill" else max(k)
    return int(round(scale * min(image.size)))


def prepare(units: list[ControlNetUnit], width: int, height: int, init_image: Image.Image | None,
            model_dirs: list[Path], annotator_dirs: list[Path],
            clip_dirs: list[Path] | None = None) -> list[PreparedUnit]:
    """The active units with their model file and detected map (IP-Adapter units: their CLIP vision encoder file,
    from `clip_dirs`, models/clip_vision by default); the img2img input stands in for a missing image."""
    prepared = []
    for index, unit in enumerate(units):
        if not unit.active:
            continue
        image, own_mask = decode_image(unit.image)
        mask = decode_image(unit.mask)[0] or own_mask
        if image is None:
            image = init_image
        if image is None:
            raise ValueError(f"ControlNet {index} is enabled but has no image")
        resolution = pixel_perfect_resolution(image, width, height, unit.resize_mode) if unit.pixel_perfect \
            else int(unit.processor_res) if unit.processor_res and unit.processor_res > 0 else 512
        detected = preprocessors.detect(unit.module, image, resolution, unit.threshold_a, unit.threshold_b,
                                        annotator_dirs, mask)
        encoder = preprocessors.IP_ADAPTER_ENCODERS.get(preprocessors.resolve(unit.module).name)
        encoder_file = None if encoder is None else \
            clip_vision.find(encoder, clip_vision.default_dirs() if clip_dirs is None else clip_dirs)
        info = None if unit.module in REFERENCE_MODULES else models.find_model(unit.model, model_dirs)
        prepared.append(PreparedUnit(index, unit, info, detected, encoder_file))
    return prepared


def fit(image: Image.Image, width: int, height: int, resize_mode: str) -> Image.Image:
    """The map at the generation size, by the unit's resize mode."""
    if resize_mode == "Just Resize":
        return image.resize((width, height), Image.Resampling.LANCZOS)
    if resize_mode == "Crop and Resize":
        return ImageOps.fit(image, (width, height), Image.Resampling.LANCZOS)
    inner = ImageOps.contain(image, (width, height), Image.Resampling.LANCZOS)
    canvas = Image.new(image.mode, (width, height))
    canvas.paste(inner, ((width - inner.width) // 2, (height - inner.height) // 2))
    return canvas


def hint_tensor(image: Image.Image, device, dtype) -> torch.Tensor:
    """[1, C, H, W] in 0..1; an RGBA inpaint map becomes the extension's protocol: masked pixels -1."""
    array = torch.from_numpy(np.asarray(image, dtype=np.float32) / 255.0).permute(2, 0, 1)[None]
    if array.shape[1] == 4:
        colour, mask = array[:, :3], (array[:, 3:] > 0.5).float()
        array = colour * (1 - mask) - mask
    return array.to(device=device, dtype=dtype)


def cached_load(path: Path, model, manager):
    """The control model at `path` built for `model`, kept by the job's model manager (one per device)."""
    key = ("controlnet", str(path), path.stat().st_mtime, str(model.device), next(model.unet.parameters()).dtype,
           model.unet.config.cross_attention_dim, model.unet.config.addition_time_embed_dim)
    return manager.auxiliary_model(key, lambda: models.load(path, model))


@dataclass
class _Bound:
    prepared: PreparedUnit
    controlnet: object  # ControlNetModel, ControlNetUnionModel or T2IAdapter
    hint: torch.Tensor
    features: list[torch.Tensor] | None = None  # a T2I-Adapter's, computed once from the map
    union_type: int | None = None  # a union ControlNet's control type
    image_tokens: ip_adapter.ImageTokens | None = None  # an IP-Adapter's, computed once from the image


@dataclass
class ControlStack:
    """The active units for one model at one size: residuals per UNet evaluation; `applied` records (step, unit)."""

    bound: list[_Bound]
    hires: bool = False
    applied: list[tuple[int, int]] = field(default_factory=list)
    ip_processors: dict | None = None  # the UNet's attention processors while IP-Adapter units run
    references: list[reference.Reference] = field(default_factory=list)
    layers: reference.Layers | None = None  # the UNet's layers reference units touch

    @contextlib.contextmanager
    def attention(self, unet, write, sigma, c_in, images: list[int], first_uncond: int, step: int, total_steps: int):
        """The block in which the UNet runs with this stack's IP-Adapter processors and, after their write passes
        (write(unet input) runs the UNet without residuals), the reference units active at this step."""
        progress = step / max(total_steps, 1)
        active = [r for r in self.references if r.unit.guidance_start <= progress <= r.unit.guidance_end]
        self.applied += [(step, r.index) for r in active]
        with contextlib.ExitStack() as stack:
            if self.ip_processors:
                stack.enter_context(ip_adapter.attention(unet, self.ip_processors))
            if active:
                stack.enter_context(reference.evaluation(unet, self.layers, active, write, sigma, c_in, images,
                                                         first_uncond))
            yield

    def residuals(self, x, t, context, added, first_uncond: int, step: int, total_steps: int) -> dict:
        """The UNet's extra arguments summed over the units active at this step: ControlNets' down/mid block
        residuals, T2I-Adapters' intra-block ones, IP-Adapters' image tokens (zeros outside their window: no
        effect); empty when no unit is active."""
        progress = step / max(total_steps, 1)
        control, adapter, tokens = None, None, []
        for b in self.bound:
            unit = b.prepared.unit
            active = unit.guidance_start <= progress <= unit.guidance_end
            if b.image_tokens is not None:
                tokens.append(self._image_tokens(b, x.shape[0], first_uncond, active))
            if not active:
                continue
            self.applied.append((step, b.prepared.index))
            if b.image_tokens is not None:
                continue
            dtype = b.hint.dtype
            if b.features is not None:
                outputs = [f.expand(x.shape[0], -1, -1, -1) * float(unit.weight) for f in b.features]
            else:
                outputs = self._controlnet(b, x.to(dtype), t.to(dtype), context.to(dtype),
                                           None if added is None else {k: v.to(dtype) for k, v in added.items()})
            if unit.control_mode == CONTROL_MODES[2] and first_uncond < x.shape[0]:
                rows = (torch.arange(x.shape[0], device=x.device) < first_uncond).to(dtype)[:, None, None, None]
                outputs = [out * rows for out in outputs]
            if b.features is not None:
                adapter = outputs if adapter is None else [a + o for a, o in zip(adapter, outputs)]
            else:
                control = outputs if control is None else [a + o for a, o in zip(control, outputs)]
        residuals = {}
        if control is not None:
            residuals.update(down_block_additional_residuals=tuple(control[:-1]), mid_block_additional_residual=control[-1])
        if adapter is not None:  # a list: the UNet consumes it
            residuals["down_intrablock_additional_residuals"] = list(adapter)
        if tokens:
            residuals["ip_adapter_image_tokens"] = tokens
        return residuals

    @staticmethod
    def _image_tokens(b: _Bound, rows: int, first_uncond: int, active: bool) -> torch.Tensor:
        cond, uncond = b.image_tokens.cond, b.image_tokens.uncond
        if not active:
            return torch.zeros(rows, *cond.shape[1:], device=cond.device, dtype=cond.dtype)
        return torch.cat([cond.expand(min(first_uncond, rows), -1, -1),
                          uncond.expand(rows - min(first_uncond, rows), -1, -1)])

    def _controlnet(self, b: _Bound, x, t, context, added) -> list[torch.Tensor]:
        hint = b.hint.expand(x.shape[0], -1, -1, -1)
        if b.union_type is None:
            down, mid = b.controlnet(x, t, encoder_hidden_states=context, controlnet_cond=hint,
                                     added_cond_kwargs=added, return_dict=False)
        else:
            types = torch.zeros(x.shape[0], b.controlnet.config.num_control_type, device=x.device, dtype=x.dtype)
            types[:, b.union_type] = 1
            down, mid = b.controlnet(x, t, encoder_hidden_states=context, controlnet_cond=[hint], control_type=types,
                                     control_type_idx=[b.union_type], added_cond_kwargs=added, return_dict=False)
        outputs = [*down, mid]
        return [out * scale for out, scale in zip(outputs, self._scales(b.prepared, len(outputs)))]

    def _scales(self, prepared: PreparedUnit, count: int) -> list[float]:
        weight = float(prepared.unit.weight)
        soft = prepared.unit.control_mode == CONTROL_MODES[1] or \
            (self.hires and any(name in prepared.unit.module for name in _SOFT_IN_HIRES))
        return [weight * 0.825 ** float(12 - i) for i in range(count)] if soft else [weight] * count


def union_type(prepared: PreparedUnit) -> int:
    """A union ControlNet's control type: the unit's `union_control_type` (the extension's field), else the one
    its preprocessor's name tells."""
    unit = prepared.unit
    for name in (str(unit.extra.get("union_control_type", "")), unit.module):
        for word, index in models.UNION_TYPES.items():
            if word in name.lower():
                return index
    raise ValueError(f"ControlNet {prepared.index}: the union model {prepared.info.name} needs a control type; "
                     f"set union_control_type or use a preprocessor of one of: {', '.join(models.UNION_TYPES)}")


def encoder_for(prepared: PreparedUnit, adapter, model, manager):
    """The CLIP vision encoder of an IP-Adapter unit, kept by the model manager like the adapters."""
    if prepared.encoder is None:
        raise ValueError(f"ControlNet {prepared.index}: the IP-Adapter {prepared.info.name} needs an ip-adapter_clip_* "
                         f"preprocessor (ip-adapter_clip_h or ip-adapter_clip_g), not {prepared.unit.module!r}")
    path, dtype = prepared.encoder, next(model.unet.parameters()).dtype
    key = ("clip_vision", str(path), path.stat().st_mtime, str(model.device), dtype)
    return manager.auxiliary_model(key, lambda: clip_vision.load(path, model.device, dtype))


def reference_for(p: PreparedUnit, model, width: int, height: int, seeds: list[int], hires: bool) -> reference.Reference:
    """A reference unit bound to `model`: its image fit to the size and VAE-encoded (once per job), noise per image."""
    key = (width, height, id(model.vae))
    if key not in p.latents:
        p.latents[key] = processing_img2img.encode(model, [fit(p.detected, width, height, p.unit.resize_mode)])
    latent = p.latents[key]
    sdxl = model.unet.config.addition_embed_type == "text_time"
    default = preprocessors.resolve(p.unit.module).sliders[0].value
    return reference.Reference(p.index, p.unit, latent, reference.noise(seeds, tuple(latent.shape[1:]), latent.device),
                               reference.style_fidelity(p.unit, default, sdxl, hires))


def stack_for(prepared: list[PreparedUnit], model, width: int, height: int, manager, *, refiner: bool = False,
              hires: bool = False, seeds: list[int] | None = None) -> ControlStack | None:
    """The units bound to `model` at width x height (reference units' noise from `seeds`, one per image); a
    wrong-family unit is an error, except for the refiner, which just runs without it (an SD1 ControlNet cannot guide
    an SDXL refiner)."""
    bound, references = [], []
    dtype = next(model.unet.parameters()).dtype
    for p in prepared:
        if p.info is None:
            references.append(reference_for(p, model, width, height, seeds or [0], hires))
            continue
        try:
            controlnet = cached_load(p.info.path, model, manager)
        except models.ControlNetFamilyError as e:
            if not refiner:
                raise
            log.info("ControlNet %d is not applied to the refiner: %s", p.index, e)
            continue
        if isinstance(controlnet, ip_adapter.IPAdapter):
            bound.append(_Bound(p, controlnet, None, image_tokens=ip_adapter.image_tokens(
                controlnet, encoder_for(p, controlnet, model, manager), p.detected)))
            continue
        hint = hint_tensor(fit(p.detected, width, height, p.unit.resize_mode), model.device, dtype)
        features = t2i_adapter.features(controlnet, hint) if isinstance(controlnet, T2IAdapter) else None
        union = union_type(p) if isinstance(controlnet, ControlNetUnionModel) else None
        bound.append(_Bound(p, controlnet, hint, features, union))
    adapters = [(b.controlnet, b.prepared.unit.weight) for b in bound if b.image_tokens is not None]
    if not bound and not references:
        return None
    return ControlStack(bound, hires=hires, ip_processors=ip_adapter.processors(model.unet, adapters) if adapters else None,
                        references=references,
                        layers=reference.Layers.of(model.unet, model.unet.config.addition_embed_type == "text_time")
                        if references else None)
