"""A1111's "Approx NN" live-preview decoder: eight small convolutions from the latent to a half-size RGB image.

Its files are A1111's state dicts (keys conv1..conv8) in models/VAE-approx: model.pt for SD1/SD2, vaeapprox-sdxl.pt
for SDXL, downloaded once from A1111's release when missing (sd_vae_taesd.weights_file).
"""
from __future__ import annotations

import functools
import os

import torch
from torch import nn

from modules import paths_internal
from modules.sd_vae_taesd import load_module, placement, weights_file

APPROX_URL = "https://github.com/AUTOMATIC1111/stable-diffusion-webui/releases/download/v1.0.0-pre/"
FILE_NAMES = {"sd": "model.pt", "sdxl": "vaeapprox-sdxl.pt"}  # per latent space
PAD = 11  # the eight unpadded convolutions shrink each side by 11 pixels in all

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


class VAEApprox(nn.Module):
    def __init__(self, latent_channels: int = 4):
        super().__init__()
        widths = [latent_channels, 8, 16, 32, 64, 32, 16, 8, 3]
        kernels = [7, 5, 3, 3, 3, 3, 3, 3]
        for i, k in enumerate(kernels):
            self.add_module(f"conv{i + 1}", nn.Conv2d(widths[i], widths[i + 1], k))

    def forward(self, x):
        """Latent [B, C, h, w] -> [B, 3, 2h, 2w] around -1..1."""
        x = nn.functional.interpolate(x, (x.shape[2] * 2, x.shape[3] * 2))
        x = nn.functional.pad(x, (PAD, PAD, PAD, PAD))
        for layer in self.children():
            x = nn.functional.leaky_relu(layer(x), 0.1)
        return x


def folder() -> str:
    return os.path.join(paths_internal.models_path, "VAE-approx")


@functools.lru_cache(maxsize=4)
def _cached(path: str, mtime: float, device: torch.device, dtype: torch.dtype) -> nn.Module:
    return load_module(VAEApprox(), path, device, dtype)


def model(latent_space: str = "sd", device=None, dtype: torch.dtype = torch.float32) -> nn.Module:
    """The Approx NN decoder of a latent space ("sd" or "sdxl"), loaded once per file and device."""
    name = FILE_NAMES[latent_space]
    path = weights_file(folder(), name, APPROX_URL + name)
    return _cached(path, os.path.getmtime(path), torch.device(device or "cpu"), dtype)


def decode(sd_model, latents: torch.Tensor) -> torch.Tensor:
    """The model's latents -> float32 [B, 3, 2h, 2w] images in 0..1 (a quarter of the image's size)."""
    device, dtype = placement(sd_model)
    net = model(sd_model.latent_space, device, dtype)
    with torch.inference_mode():
        return ((net(latents.to(device, dtype)).float() + 1.0) / 2.0).clamp(0, 1)


def cheap_approximation(sample: torch.Tensor) -> torch.Tensor:
    """A1111's name: one [4, h, w] latent of the loaded model -> [h, w, 3] RGB in [-1, 1] by the linear channel map."""
    from modules import shared  # the loaded model's latent space; imported here as shared imports the engine

    space = getattr(shared.sd_model, "latent_space", "sd")
    return torch.einsum("chw,cr->hwr", sample.float(), LATENT_RGB_FACTORS[space].to(sample.device))
