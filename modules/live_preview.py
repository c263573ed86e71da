"""Live previews: the latent being sampled -> a picture, by the method of A1111's `show_progress_type` setting."""
from __future__ import annotations

import logging

import numpy as np
import torch
from PIL import Image

from modules import images, job_context, processing, sd_models, sd_vae_approx, sd_vae_taesd

log = logging.getLogger(__name__)


CHEAP = "Approx cheap"
FULL = "Full"
APPROX_NN = "Approx NN"
TAESD = "TAESD"
DECODERS = {APPROX_NN: sd_vae_approx.decode, TAESD: sd_vae_taesd.decode}  # -> [B, 3, H, W] in 0..1
# (method, latent space) whose weights could not be had: a preview never tries (and warns) twice
_unavailable: set[tuple[str, str]] = set()


def approx_cheap(latents: torch.Tensor, latent_space: str = "sd") -> list[Image.Image]:
    """[B, 4, h, w] latents -> B RGB images of h x w pixels through the linear channel map (almost free)."""
    factors = sd_vae_approx.LATENT_RGB_FACTORS[latent_space].to(latents.device, torch.float32)
    rgb = torch.einsum("bchw,cr->bhwr", latents.float(), factors)
    pixels = ((rgb + 1.0) / 2.0).clamp(0, 1).mul(255).round().to(torch.uint8).cpu().numpy()
    return [Image.fromarray(np.ascontiguousarray(p)) for p in pixels]


def effective_method(method: str, model) -> str:
    """The method that runs. Full becomes Approx NN under --medvram/--lowvram unless `live_preview_allow_lowvram_full`,
    as in A1111; Approx NN and TAESD become Approx cheap once their weights could not be had; no model: Approx cheap."""
    if model is not None and model.latent_space not in sd_vae_approx.LATENT_RGB_FACTORS:
        return FULL  # a family without published factors or tiny decoders (Flux.1) previews through its own VAE
    if model is None or method not in (FULL, APPROX_NN, TAESD):
        return CHEAP
    if method == FULL and model.plan.memory_mode != "normal" and not job_context.settings().live_preview_allow_lowvram_full:
        method = APPROX_NN
    return CHEAP if (method, model.latent_space) in _unavailable else method


def latents_to_images(latents: torch.Tensor, model=None, method: str = CHEAP) -> list[Image.Image]:
    """One preview image per latent of the batch: Full at the image's size (the real VAE, whatever the VAE decode
    method), TAESD too, Approx NN at half of it, Approx cheap at the latent's."""
    method = effective_method(method, model)
    if method == FULL:
        return processing.decode_latents(model, latents.to(model.device), method=FULL)
    if method in DECODERS:
        try:
            return processing.batch_to_images(DECODERS[method](model, latents))
        except sd_vae_taesd.WeightsUnavailable as e:
            _unavailable.add((method, model.latent_space))
            log.warning("Live preview %s runs as %s: %s", method, CHEAP, e)
    return approx_cheap(latents, model.latent_space if model is not None else "sd")


def preview_image(latents: torch.Tensor, model=None, method: str = CHEAP, grid: bool = True) -> Image.Image:
    """The picture shown while sampling: every image of the batch in a grid (`show_progress_grid`), else the first."""
    if not grid:
        latents = latents[:1]
    pictures = latents_to_images(latents, model, method)
    return pictures[0] if len(pictures) == 1 else images.image_grid(pictures, batch_size=len(pictures))


def decode_preview(latents: torch.Tensor) -> Image.Image:
    """`state.preview_decoder`: the current model and the live-preview settings."""
    manager = sd_models.model_manager
    model = manager.current if manager is not None else None
    return preview_image(latents, model, job_context.settings().show_progress_type, grid=bool(job_context.settings().show_progress_grid))
