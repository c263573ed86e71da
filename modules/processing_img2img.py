"""img2img and inpainting preparation: init images and masks -> init latents, latent masks, inpainting conditioning."""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from PIL import Image

from modules import images, job_context, masking, model_families, sd_vae_taesd
from modules.scripts import MaskBlendArgs

FILL, ORIGINAL, LATENT_NOISE, LATENT_NOTHING = 0, 1, 2, 3
MASKED_CONTENT = {FILL: "fill", ORIGINAL: "original", LATENT_NOISE: "latent noise", LATENT_NOTHING: "latent nothing"}
RESIZE_MODES = ["Just resize", "Crop and resize", "Resize and fill", "Just resize (latent upscale)"]


@dataclass
class PreparedImages:
    """What the sampling needs from the init images, and what puts the result back over the originals."""

    pixels: list[Image.Image]                   # W x H, what the VAE encodes
    mask: Image.Image | None = None             # W x H latent-mask source (after blur, crop)
    overlays: list[Image.Image] | None = None   # originals with the masked area transparent
    paste_to: tuple[int, int, int, int] | None = None  # "Only masked": where the result goes back


def prepare_images(p) -> PreparedImages:
    """Resize/crop the init images and the mask to the job's size, as A1111's img2img does."""
    crop_region, mask, mask_for_overlay, paste_to = None, None, None, None
    if p.image_mask is not None:
        mask = masking.create_binary_mask(p.image_mask, round_mask=p.mask_round)
        if p.inpainting_mask_invert:
            mask = Image.eval(mask, lambda v: 255 - v)
        mask = masking.blur(mask, p.mask_blur_x, p.mask_blur_y)
        if p.inpaint_full_res:
            mask_for_overlay = mask
            crop_region = masking.get_crop_region(mask, p.inpaint_full_res_padding)
            if crop_region is None:
                mask = mask_for_overlay = None  # nothing to inpaint: behave as plain img2img
            else:
                crop_region = masking.expand_crop_region(crop_region, p.width, p.height, mask.width, mask.height)
                x1, y1, x2, y2 = crop_region
                mask = images.resize_image(2, mask.crop(crop_region), p.width, p.height)
                paste_to = (x1, y1, x2 - x1, y2 - y1)
        else:
            mask = images.resize_image(p.resize_mode, mask, p.width, p.height)
            mask_for_overlay = Image.fromarray(np.clip(np.asarray(mask, dtype=np.float32) * 2, 0, 255).astype(np.uint8))
    pixels, overlays = [], []
    background = job_context.settings(p).img2img_background_color  # what transparent parts of an init image become
    for img in p.init_images:
        image = images.flatten(img, background)
        if crop_region is None and p.resize_mode != 3:
            image = images.resize_image(p.resize_mode, image, p.width, p.height)
        if mask_for_overlay is not None:
            overlays.append(masking.overlay_for(image, mask_for_overlay))
        if crop_region is not None:
            image = images.resize_image(2, image.crop(crop_region), p.width, p.height)
        elif p.resize_mode == 3:
            image = image.resize((p.width, p.height), Image.LANCZOS)
        if mask is not None and p.inpainting_fill == FILL:
            image = masking.fill(image, mask)
        pixels.append(image)
    return PreparedImages(pixels, mask, overlays or None, paste_to)


def to_tensor(pixels: list[Image.Image], device, dtype) -> torch.Tensor:
    arr = np.stack([np.asarray(im, dtype=np.float32) / 127.5 - 1.0 for im in pixels])
    return torch.from_numpy(arr).permute(0, 3, 1, 2).to(device, dtype)


def encode(model, pixels: list[Image.Image], method: str = "Full") -> torch.Tensor:
    """VAE-encode images to scaled latents (the distribution's mode: deterministic for the same image); method "TAESD"
    takes the tiny encoder instead (sd_vae_encode_method)."""
    if method == "TAESD":
        return sd_vae_taesd.encode(model, (to_tensor(pixels, model.device, torch.float32) + 1.0) / 2.0)
    vae = model.vae
    with torch.inference_mode():
        x = to_tensor(pixels, model.device, next(vae.parameters()).dtype)
        return model_families.vae_encode(model, x)


def latent_mask(mask: Image.Image, latent: torch.Tensor, round_mask: bool) -> torch.Tensor:
    """1 where the latent is regenerated, 0 where it is kept; bicubic downscale of the mask, rounded (A1111)."""
    small = mask.convert("RGB").resize((latent.shape[3], latent.shape[2]), Image.BICUBIC)
    m = np.asarray(small, dtype=np.float32)[..., 0] / 255
    if round_mask:
        m = np.around(m)
    return torch.from_numpy(m).to(latent.device)[None, None].expand(latent.shape[0], latent.shape[1], -1, -1).contiguous()


def masked_init_latent(init: torch.Tensor, regen: torch.Tensor, fill_mode: int, noise: torch.Tensor) -> torch.Tensor:
    """Masked content: original keeps the encoded latent, latent noise / latent nothing replace the masked area."""
    if fill_mode == LATENT_NOISE:
        return init * (1 - regen) + noise * regen
    if fill_mode == LATENT_NOTHING:
        return init * (1 - regen)
    return init


def inpainting_conditioning(model, pixels: list[Image.Image], mask: Image.Image | None, latent: torch.Tensor,
                            mask_weight: float = 1.0, method: str = "Full") -> torch.Tensor | None:
    """For 9-channel UNets: the mask and the VAE encoding (method: as `encode`) of the image with the masked area
    blanked."""
    if not model.family.is_inpainting:
        return None
    source = to_tensor(pixels, model.device, torch.float32)
    if mask is None:
        m = torch.ones_like(source[:, :1])
    else:
        m = torch.from_numpy(np.around(np.asarray(mask.convert("L"), dtype=np.float32) / 255)).to(model.device)
        m = m[None, None].expand(source.shape[0], 1, -1, -1)
    masked = torch.lerp(source, source * (1.0 - m), mask_weight)
    vae = model.vae
    if method == "TAESD":
        encoded = sd_vae_taesd.encode(model, (masked + 1.0) / 2.0)
    else:
        with torch.inference_mode():
            encoded = vae.encode(masked.to(next(vae.parameters()).dtype)).latent_dist.mode().float() * vae.config.scaling_factor
    m_small = torch.nn.functional.interpolate(m, size=latent.shape[-2:])
    return torch.cat([m_small, encoded], dim=1)


def blend(current: torch.Tensor, init_latent: torch.Tensor, regen: torch.Tensor, on_blend=None, denoiser=None,
          sigma=None) -> torch.Tensor:
    """The regenerated area from `current`, the rest from the init latent; `on_blend(MaskBlendArgs)` (the scripts'
    on_mask_blend) may replace the result."""
    blended = init_latent * (1 - regen) + current * regen
    if on_blend is None:
        return blended
    mba = MaskBlendArgs(current, regen, init_latent, 1 - regen, blended, denoiser=denoiser, sigma=sigma)
    on_blend(mba)
    return mba.blended_latent


class MaskedDenoiser:
    """Keeps the unmasked part of the init latent at every step (A1111 blends each denoised estimate)."""

    def __init__(self, inner, init_latent: torch.Tensor, regen: torch.Tensor, on_blend=None):
        self.inner = inner
        self.init_latent = init_latent
        self.regen = regen
        self.on_blend = on_blend

    def __call__(self, x, sigma):
        return blend(self.inner(x, sigma), self.init_latent, self.regen, self.on_blend, self.inner, sigma)

    def __getattr__(self, name):
        return getattr(self.inner, name)
