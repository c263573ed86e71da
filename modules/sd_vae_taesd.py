"""TAESD, the tiny autoencoder of SD's latent space (madebyollin/taesd): fast low-memory decode and encode.

The files are the official nn.Sequential state dicts in models/VAE-taesd: taesd_{decoder,encoder}.pth for SD1/SD2,
taesdxl_{decoder,encoder}.pth for SDXL. A missing file is downloaded once into that folder (`weights_file`).
"""
from __future__ import annotations

import functools
import logging
import os
import pickle

import torch
from torch import nn

from modules import modelloader, paths_internal

log = logging.getLogger(__name__)

TAESD_URL = "https://github.com/madebyollin/taesd/raw/main/"
FILE_PREFIX = {"sd": "taesd", "sdxl": "taesdxl"}  # per latent space


class WeightsUnavailable(ValueError):
    """A decoder's weight file is missing and could not be downloaded, or cannot be loaded (a 422 in the API)."""


def weights_file(folder: str, name: str, url: str) -> str:
    """The path of `name` in `folder`, downloaded from `url` first when missing; WeightsUnavailable names the file,
    the folder and the URL when it is missing and cannot be fetched (offline, HF_HUB_OFFLINE or a failed request)."""
    try:
        return modelloader.load_file_from_url(url, model_dir=folder, file_name=name)
    except modelloader.DownloadError as e:
        raise WeightsUnavailable(f"{name} not found in {folder} (download failed: {e}). Download it from {url} on a computer that is "
                                 f"online and put it into that folder.") from None


def conv(n_in: int, n_out: int, **kwargs) -> nn.Conv2d:
    return nn.Conv2d(n_in, n_out, 3, padding=1, **kwargs)


class Clamp(nn.Module):
    """Soft-limits latents to about ±3, the range TAESD was trained on."""

    def forward(self, x):
        return torch.tanh(x / 3) * 3


class Block(nn.Module):
    """Three 3x3 convolutions with ReLUs between, plus a residual path (keys conv.0, conv.2, conv.4)."""

    def __init__(self, n_in: int, n_out: int):
        super().__init__()
        self.conv = nn.Sequential(conv(n_in, n_out), nn.ReLU(), conv(n_out, n_out), nn.ReLU(), conv(n_out, n_out))
        self.skip = nn.Conv2d(n_in, n_out, 1, bias=False) if n_in != n_out else nn.Identity()
        self.fuse = nn.ReLU()

    def forward(self, x):
        return self.fuse(self.conv(x) + self.skip(x))


def encoder(latent_channels: int = 4) -> nn.Sequential:
    """Image in 0..1 -> latent (the UNet's scaled latent space), 8x smaller."""
    layers = [conv(3, 64), Block(64, 64)]
    for _ in range(3):
        layers += [conv(64, 64, stride=2, bias=False), Block(64, 64), Block(64, 64), Block(64, 64)]
    return nn.Sequential(*layers, conv(64, latent_channels))


def decoder(latent_channels: int = 4) -> nn.Sequential:
    """Latent (the UNet's scaled latent space) -> image around 0..1, 8x larger."""
    layers = [Clamp(), conv(latent_channels, 64), nn.ReLU()]
    for _ in range(3):
        layers += [Block(64, 64), Block(64, 64), Block(64, 64), nn.Upsample(scale_factor=2), conv(64, 64, bias=False)]
    return nn.Sequential(*layers, Block(64, 64), conv(64, 3))


def folder() -> str:
    return os.path.join(paths_internal.models_path, "VAE-taesd")


def file_name(kind: str, latent_space: str = "sd") -> str:
    """kind: "decoder" or "encoder"."""
    return f"{FILE_PREFIX[latent_space]}_{kind}.pth"


def load_module(module: nn.Module, path: str, device: torch.device, dtype: torch.dtype) -> nn.Module:
    """`module` with the state dict of `path` (strict: every key used, every shape right), frozen on device."""
    try:
        module.load_state_dict(torch.load(path, map_location="cpu", weights_only=True), strict=True)
    except (RuntimeError, KeyError, ValueError, EOFError, OSError, pickle.UnpicklingError) as e:
        raise WeightsUnavailable(f"Could not load {path}: {e}") from e
    return module.to(device, dtype).eval().requires_grad_(False)


@functools.lru_cache(maxsize=8)
def _cached(kind: str, path: str, mtime: float, device: torch.device, dtype: torch.dtype) -> nn.Module:
    return load_module(decoder() if kind == "decoder" else encoder(), path, device, dtype)


def _model(kind: str, latent_space: str, device, dtype) -> nn.Module:
    name = file_name(kind, latent_space)
    path = weights_file(folder(), name, TAESD_URL + name)
    return _cached(kind, path, os.path.getmtime(path), torch.device(device or "cpu"), dtype)


def decoder_model(latent_space: str = "sd", device=None, dtype: torch.dtype = torch.float32) -> nn.Module:
    """The TAESD decoder of a latent space ("sd" or "sdxl"), loaded once per file and device."""
    return _model("decoder", latent_space, device, dtype)


def encoder_model(latent_space: str = "sd", device=None, dtype: torch.dtype = torch.float32) -> nn.Module:
    """The TAESD encoder of a latent space ("sd" or "sdxl"), loaded once per file and device."""
    return _model("encoder", latent_space, device, dtype)


def placement(model) -> tuple[torch.device, torch.dtype]:
    """Where the model's VAE computes, in the VAE's precision."""
    return model.device, next(model.vae.parameters()).dtype


def decode(model, latents: torch.Tensor) -> torch.Tensor:
    """The model's latents -> float32 [B, 3, H, W] images in 0..1."""
    device, dtype = placement(model)
    net = decoder_model(model.latent_space, device, dtype)
    with torch.inference_mode():
        return net(latents.to(device, dtype)).float().clamp(0, 1)


def encode(model, images: torch.Tensor) -> torch.Tensor:
    """[B, 3, H, W] images in 0..1 -> the model's float32 latents."""
    device, dtype = placement(model)
    net = encoder_model(model.latent_space, device, dtype)
    with torch.inference_mode():
        return net(images.to(device, dtype)).float()
