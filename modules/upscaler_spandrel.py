"""Model-file upscalers (ESRGAN, RealESRGAN, SwinIR, DAT, HAT, ...) and face-restoration nets loaded with spandrel.

spandrel detects the architecture and its sizes from the weights, so any file in a kind's folder loads through one
path; the kind only decides the folder. Files are read weights-only (safetensors, or torch's weights_only unpickler:
no code in a downloaded file ever runs). Models run on the model manager's device unless --use-cpu names them.
"""
from __future__ import annotations

import functools
import logging
import os
import re
from dataclasses import dataclass

import numpy as np
import torch
from PIL import Image
from safetensors.torch import load_file
from spandrel import (
    MAIN_REGISTRY,
    ArchRegistry,
    ImageModelDescriptor,
    ModelLoader,
    ModelTiling,
    UnsupportedModelError,
    canonicalize_state_dict,
)

from modules import devices, job_context, modelloader, sd_models
from modules.upscaler import Upscaler, UpscalerData, default_models_path, tiled_upscale

log = logging.getLogger(__name__)

_SCALE_IN_NAME = re.compile(r"(?:^|[^a-z0-9])(\d)x|x(\d)(?:[^0-9]|$)", re.I)


def scale_from_name(filename: str, default: int = 4) -> int:
    """The factor a file name announces ("4x-UltraSharp", "RealESRGAN_x2plus"); the model itself says for sure."""
    match = _SCALE_IN_NAME.search(os.path.splitext(os.path.basename(filename))[0])
    return int(match.group(1) or match.group(2)) if match else default


def load_state_dict(path: str) -> dict:
    """The tensors of a model file, without running any code stored in it."""
    if path.lower().endswith(".safetensors"):
        return load_file(path, device="cpu")
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:  # a pickle that needs more than tensors: refused rather than executed
        raise ValueError(f"Cannot read {path} as plain weights (only tensors are loaded from .pth/.pt/.ckpt files): "
                         f"{error}") from error


def model_device(part: str, cmd_opts=None) -> torch.device:
    """The model manager's device, or the CPU when --use-cpu names `part` (esrgan, gfpgan, codeformer) or all."""
    if cmd_opts is None:
        from modules.shared_cmd_options import cmd_opts
    use_cpu = getattr(cmd_opts, "use_cpu", None) or []
    if "all" in use_cpu or part in use_cpu:
        return torch.device("cpu")
    manager = sd_models.model_manager
    return manager.plan.device if manager is not None else devices.get_optimal_device()


def load_spandrel_model(path: str, device: torch.device, *, expected_architectures: tuple[str, ...] | None = None,
                        prefer_half: bool = False, registry: ArchRegistry = MAIN_REGISTRY) -> ImageModelDescriptor:
    """The image model in `path` on `device`; ValueError with the file's name for anything that is not one."""
    state = canonicalize_state_dict(load_state_dict(path))
    try:
        descriptor = ModelLoader(device, registry=registry).load_from_state_dict(state)
    except UnsupportedModelError as error:
        raise ValueError(f"{os.path.basename(path)}: the model architecture in this file is not supported") from error
    if not isinstance(descriptor, ImageModelDescriptor):
        raise ValueError(f"{os.path.basename(path)} is a {descriptor.purpose} model, not an image model")
    if expected_architectures and descriptor.architecture.id not in expected_architectures:
        raise ValueError(f"{os.path.basename(path)} holds a {descriptor.architecture.name} model, "
                         f"expected {' or '.join(expected_architectures)}")
    if prefer_half and device.type == "cuda" and descriptor.supports_half:
        descriptor.model.half()
    descriptor.model.eval()
    log.info("Loaded %s (%s, %sx) on %s", path, descriptor.architecture.name, descriptor.scale, device)
    return descriptor


@functools.lru_cache(maxsize=1)
def _cached_model(path: str, mtime: float, device: torch.device, prefer_half: bool) -> ImageModelDescriptor:
    return load_spandrel_model(path, device, prefer_half=prefer_half)


def pil_to_tensor(image: Image.Image, device: torch.device, dtype: torch.dtype) -> torch.Tensor:
    array = np.asarray(image.convert("RGB"), dtype=np.float32) / 255.0
    return torch.from_numpy(array).permute(2, 0, 1).unsqueeze(0).to(device, dtype)


def tensor_to_pil(tensor: torch.Tensor) -> Image.Image:
    array = tensor[0].float().clamp(0, 1).mul(255).round().byte().permute(1, 2, 0).cpu().numpy()
    return Image.fromarray(np.ascontiguousarray(array))


def upscale_with_model(descriptor: ImageModelDescriptor, image: Image.Image, tile_size: int, tile_overlap: int) -> Image.Image:
    """One pass of an image model over a PIL image, tiled when the model allows it (ESRGAN_tile / _overlap)."""
    tensor = pil_to_tensor(image, descriptor.device, descriptor.dtype)
    if descriptor.tiling != ModelTiling.SUPPORTED:
        tile_size = 0  # the model tiles internally or would show seams
    with torch.inference_mode():
        output = tiled_upscale(tensor, descriptor, descriptor.scale, tile_size, tile_overlap)
    return tensor_to_pil(output)


@dataclass(frozen=True)
class OfferedModel:
    """A model A1111 lists before its file exists, under its name: downloaded from `url` into the kind's folder, as
    `file_name`, the first time it is chosen."""

    name: str
    url: str
    file_name: str
    scale: int = 4


class ModelNotDownloaded(ValueError):
    """An offered model's file could not be had (offline, refused): a user's matter, with where to put the file."""


class UpscalerSpandrel(Upscaler):
    """Every model file in the kind's folder (models/<folder>, or its --<kind>-models-path) is one upscaler,
    named after the file; the kind's `offered` models are listed under A1111's names, their file or their URL."""

    name = None  # a base: each kind below names itself
    folder: str = ""
    offered: tuple[OfferedModel, ...] = ()

    def __init__(self, dirname: str | None = None):
        self.model_path = default_models_path(self.folder)
        self.user_path = dirname
        super().__init__()
        files = self.find_models()
        by_name = {os.path.basename(f).lower(): f for f in files}
        offered = [UpscalerData(m.name, by_name.get(m.file_name.lower(), m.url), self, m.scale) for m in self.offered]
        taken = {data.data_path for data in offered}
        self.scalers = offered + [UpscalerData(os.path.splitext(os.path.basename(f))[0], f, self, scale_from_name(f))
                                  for f in files if f not in taken]

    def local_path(self, path: str) -> str:
        """The file of an upscaler: its own path, or an offered model's file, downloaded once (a log line says so)."""
        model = next((m for m in self.offered if m.url == path), None)
        if model is None:
            return path
        try:
            return modelloader.load_file_from_url(model.url, model_dir=self.model_path, file_name=model.file_name)
        except modelloader.DownloadError as error:
            raise ModelNotDownloaded(
                f"{model.name}: could not download {model.file_name} from {model.url} ({error}). Download it and put "
                f"it in {self.model_path}") from error

    def load_model(self, path: str) -> ImageModelDescriptor:
        from modules.shared_cmd_options import cmd_opts

        path = self.local_path(path)
        if not os.path.isfile(path):
            raise FileNotFoundError(f"Upscaler model file not found: {path}")
        prefer_half = not getattr(cmd_opts, "no_half", False)
        return _cached_model(os.path.abspath(path), os.path.getmtime(path), model_device("esrgan", cmd_opts), prefer_half)

    def do_upscale(self, img: Image.Image, selected_model: str | None) -> Image.Image:
        return upscale_with_model(self.load_model(selected_model), img, int(job_context.settings().ESRGAN_tile), int(job_context.settings().ESRGAN_tile_overlap))


class UpscalerESRGAN(UpscalerSpandrel):
    name = "ESRGAN"
    folder = "ESRGAN"
    offered = (OfferedModel("ESRGAN_4x", "https://github.com/cszn/KAIR/releases/download/v1.0/ESRGAN.pth", "ESRGAN_4x.pth"),)


REALESRGAN_RELEASES = "https://github.com/xinntao/Real-ESRGAN/releases/download"


class UpscalerRealESRGAN(UpscalerSpandrel):
    name = "RealESRGAN"
    folder = "RealESRGAN"
    offered = (  # A1111's two enabled by default (realesrgan_enabled_models)
        OfferedModel("R-ESRGAN 4x+", f"{REALESRGAN_RELEASES}/v0.1.0/RealESRGAN_x4plus.pth", "RealESRGAN_x4plus.pth"),
        OfferedModel("R-ESRGAN 4x+ Anime6B", f"{REALESRGAN_RELEASES}/v0.2.2.4/RealESRGAN_x4plus_anime_6B.pth",
                     "RealESRGAN_x4plus_anime_6B.pth"),
    )


class UpscalerSwinIR(UpscalerSpandrel):
    name = "SwinIR"
    folder = "SwinIR"
    offered = (OfferedModel("SwinIR 4x", "https://github.com/JingyunLiang/SwinIR/releases/download/v0.0/"
                            "003_realSR_BSRGAN_DFOWMFC_s64w8_SwinIR-L_x4_GAN.pth", "SwinIR_4x.pth"),)


class UpscalerDAT(UpscalerSpandrel):
    name = "DAT"
    folder = "DAT"


class UpscalerHAT(UpscalerSpandrel):
    name = "HAT"
    folder = "HAT"
