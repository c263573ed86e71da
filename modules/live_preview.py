"""Live previews: the latent being sampled -> a picture, by the method of A1111's `show_progress_type` setting."""
from __future__ import annotations


import numpy as np
import torch
from PIL import Image

from modules import images, processing, sd_models
from modules.shared_options import opts


# Published least-squares fits from the four latent channels to RGB in [-1, 1], one matrix per latent space
# (rows: latent channels, columns: R, G, B); the same factors A1111's "Approx cheap" uses.
LATENT_RGB_FACTORS = {
    "sd": torch.tensor([
        [0.298, 0.207, 0.208],
        [0.187, 0.286, 0.173],
        [-0.158, 0.189, 0.264],
        [-0.184, -0.271, -0.473],
    ]),
    "sdxl": torch.tensor([
        [0.3448, 0.4168, 0.4395],
        [-0.1953, -0.0290, 0.0250],
        [0.1074, 0.0886, -0.0163],
        [-0.3730, -0.2499, -0.2088],
    ]),
}
CHEAP = "Approx cheap"
FULL = "Full"


def approx_cheap(latents: torch.Tensor, latent_space: str = "sd") -> list[Image.Image]:
    """[B, 4, h, w] latents -> B RGB images of h x w pixels through the linear channel map (almost free)."""
    factors = LATENT_RGB_FACTORS[latent_space].to(latents.device, torch.float32)
    rgb = torch.einsum("bchw,cr->bhwr", latents.float(), factors)
    pixels = ((rgb + 1.0) / 2.0).clamp(0, 1).mul(255).round().to(torch.uint8).cpu().numpy()
    return [Image.fromarray(np.ascontiguousarray(p)) for p in pixels]


def effective_method(method: str, model) -> str:
    """The method that runs: Approx NN and TAESD need decoder weights Atelier does not ship, so they run as Approx
    cheap; Full also does under --medvram/--lowvram unless `live_preview_allow_lowvram_full`, as in A1111."""
    if method == FULL and model is not None:
        if model.plan.memory_mode == "normal" or opts.live_preview_allow_lowvram_full:
            return FULL
    return CHEAP


def latents_to_images(latents: torch.Tensor, model=None, method: str = CHEAP) -> list[Image.Image]:
    """One preview image per latent of the batch; Full is the real VAE decode at the image's size."""
    if effective_method(method, model) == FULL:
        return processing.decode_latents(model, latents.to(model.device))
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
    return preview_image(latents, model, opts.show_progress_type, grid=bool(opts.show_progress_grid))
