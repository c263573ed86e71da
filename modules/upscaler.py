"""Upscalers under A1111's names: the `Upscaler` base class, `UpscalerData` list entries, the built-in None / Lanczos /
Nearest, the `sd_upscalers` list that Extras and Hires. fix choose from, and tiled running of upscaling models.

An upscaler class covers one kind (e.g. ESRGAN model files); each of its `scalers` is one choice in the lists.
Extensions add kinds by subclassing `Upscaler`; `refresh_upscalers` finds every subclass.
"""
from __future__ import annotations

import logging
import math
import os
from abc import abstractmethod
from collections.abc import Callable

import torch
from PIL import Image

from modules import paths_internal

log = logging.getLogger(__name__)

LANCZOS = Image.Resampling.LANCZOS
NEAREST = Image.Resampling.NEAREST
MODEL_EXTENSIONS = (".pth", ".pt", ".ckpt", ".safetensors")
# an upscaling model is run at most this many times to reach the asked scale (e.g. a 2x model twice for 4x)
MAX_PASSES = 3


class UpscalerData:
    """One entry of the upscaler lists: a name, the model file (or None) and the Upscaler that runs it."""

    def __init__(self, name: str, path: str | None, upscaler: Upscaler | None = None, scale: float = 4, model=None,
                 sha256: str | None = None):
        self.name = name
        self.data_path = path
        self.local_data_path = path
        self.scaler = upscaler
        self.scale = scale
        self.model = model
        self.sha256 = sha256

    def __repr__(self) -> str:
        return f"<UpscalerData name={self.name} path={self.data_path} scale={self.scale}>"


class Upscaler:
    """One kind of upscaler. Subclasses set `name`, fill `scalers` in __init__(dirname) and implement do_upscale."""

    name: str | None = None
    model_path: str | None = None  # the default models/ folder of this kind
    user_path: str | None = None  # the folder given by its --<kind>-models-path flag
    tile = True

    def __init__(self, create_dirs: bool = False):
        self.scalers: list[UpscalerData] = []
        self.scale = 1.0
        if create_dirs and self.model_path:
            os.makedirs(self.model_path, exist_ok=True)

    @abstractmethod
    def do_upscale(self, img: Image.Image, selected_model: str | None) -> Image.Image:
        """One pass of the model: img enlarged by its own factor (or by self.scale for plain resizers)."""

    def upscale(self, img: Image.Image, scale: float, selected_model: str | None = None) -> Image.Image:
        """img enlarged `scale` times; as in A1111 each side is rounded down to a multiple of 8.

        A model is applied up to MAX_PASSES times until the size is reached; Lanczos makes up the rest."""
        self.scale = scale
        dest_w, dest_h = int(img.width * scale // 8 * 8), int(img.height * scale // 8 * 8)
        if dest_w < 1 or dest_h < 1:
            raise ValueError(f"Upscaling a {img.width}x{img.height} image by {scale} leaves no pixels (sides are "
                             f"rounded down to multiples of 8)")
        for attempt in range(MAX_PASSES):
            if img.width >= dest_w and img.height >= dest_h and (attempt > 0 or scale != 1):
                break
            size = img.size
            img = self.do_upscale(img, selected_model)
            if img.size == size:
                break
        if img.size != (dest_w, dest_h):
            img = img.resize((dest_w, dest_h), resample=LANCZOS)
        return img

    def find_models(self, ext_filter=MODEL_EXTENSIONS) -> list[str]:
        """Model files under model_path and user_path (recursively, sorted), each listed once."""
        found: list[str] = []
        for folder in dict.fromkeys(p for p in (self.model_path, self.user_path) if p):
            if not os.path.isdir(folder):
                continue
            for root, _, files in sorted(os.walk(folder, followlinks=True)):
                found += [os.path.join(root, f) for f in sorted(files, key=str.lower) if f.lower().endswith(ext_filter)]
        return list(dict.fromkeys(os.path.abspath(f) for f in found))


class UpscalerNone(Upscaler):
    name = "None"

    def __init__(self, dirname: str | None = None):
        super().__init__()
        self.scalers = [UpscalerData("None", None, self)]

    def do_upscale(self, img, selected_model=None):
        return img


class UpscalerResize(Upscaler):
    """A plain Pillow resize by self.scale."""

    resample: Image.Resampling

    def __init__(self, dirname: str | None = None):
        super().__init__()
        self.scalers = [UpscalerData(self.name, None, self)]

    def do_upscale(self, img, selected_model=None):
        return img.resize((int(img.width * self.scale), int(img.height * self.scale)), resample=self.resample)


class UpscalerLanczos(UpscalerResize):
    name = "Lanczos"
    resample = LANCZOS


class UpscalerNearest(UpscalerResize):
    name = "Nearest"
    resample = NEAREST


BUILTIN_UPSCALERS = (UpscalerNone, UpscalerLanczos, UpscalerNearest)

sd_upscalers: list[UpscalerData] = []
"""Every upscaler choice, None / Lanczos / Nearest first, then the others sorted by name (A1111's shared.sd_upscalers)."""


def _subclasses(cls) -> list[type]:
    result = []
    for sub in cls.__subclasses__():
        result += [sub, *_subclasses(sub)]
    return result


def models_path_flag(cls: type) -> str:
    """The command-line option holding a kind's folder, by A1111's rule: UpscalerESRGAN -> esrgan_models_path."""
    return f"{cls.__name__.replace('Upscaler', '').lower()}_models_path"


def refresh_upscalers(cmd_opts) -> list[UpscalerData]:
    """Rebuild sd_upscalers from every Upscaler kind (built-in, model files, extensions) and return it."""
    from modules import upscaler_spandrel  # noqa: F401  (defines the model-file kinds)

    datas: list[UpscalerData] = []
    for cls in dict.fromkeys(_subclasses(Upscaler)):
        if cls.name is None:
            continue  # a base class of other kinds
        try:
            datas += cls(getattr(cmd_opts, models_path_flag(cls), None)).scalers
        except Exception:
            log.exception("Could not list the upscalers of %s", cls.__name__)  # one broken kind must not hide the rest
    builtin = [d for d in datas if isinstance(d.scaler, BUILTIN_UPSCALERS)]
    others = sorted((d for d in datas if not isinstance(d.scaler, BUILTIN_UPSCALERS)), key=lambda d: d.name.lower())
    sd_upscalers[:] = builtin + others
    return sd_upscalers


def find_upscaler(name: str | None) -> UpscalerData | None:
    """The entry named `name` (the list is refreshed once when empty); None for None/empty names."""
    if not name or name == "None":
        return None
    if not sd_upscalers:
        from modules.shared_cmd_options import cmd_opts
        refresh_upscalers(cmd_opts)
    found = next((d for d in sd_upscalers if d.name == name), None)
    if found is None:
        raise ValueError(f"Upscaler not found: {name}. Available: {', '.join(d.name for d in sd_upscalers)}")
    return found


def upscale_to(image: Image.Image, width: int, height: int, name: str | None) -> Image.Image:
    """image enlarged by the named upscaler to cover width x height, then Lanczos-resized to exactly that size
    (how A1111's resize_image enlarges for img2img and Hires. fix)."""
    data = find_upscaler(name)
    scale = max(width / image.width, height / image.height)
    if data is not None and scale > 1.0:
        image = data.scaler.upscale(image, scale, data.data_path)
    if image.size != (width, height):
        image = image.resize((width, height), resample=LANCZOS)
    return image


def default_models_path(folder: str) -> str:
    return os.path.join(paths_internal.models_path, folder)


def _tile_starts(length: int, tile: int, overlap: int) -> list[int]:
    """Tile origins covering 0..length with at least `overlap` shared pixels; the last tile ends at the edge."""
    if length <= tile:
        return [0]
    count = math.ceil((length - overlap) / (tile - overlap))
    return sorted({min(i * (tile - overlap), length - tile) for i in range(count)})


def _ramp(length: int, fade_start: int, fade_end: int) -> torch.Tensor:
    """Weights along one tile side: rising linearly over fade_start pixels, falling over fade_end, 1 between."""
    weights = torch.ones(length)
    if fade_start:
        weights[:fade_start] = torch.arange(1, fade_start + 1) / (fade_start + 1)
    if fade_end:
        weights[length - fade_end:] = torch.minimum(weights[length - fade_end:],
                                                   torch.arange(fade_end, 0, -1) / (fade_end + 1))
    return weights


def tiled_upscale(image: torch.Tensor, model: Callable[[torch.Tensor], torch.Tensor], scale: int, tile_size: int,
                  tile_overlap: int) -> torch.Tensor:
    """model(image) computed tile by tile (tile_size pixels, tile_overlap shared between neighbours), the tiles'
    overlaps cross-faded linearly, so large images fit in memory. tile_size 0 runs the whole image at once."""
    _, _, height, width = image.shape
    if tile_size <= 0 or (height <= tile_size and width <= tile_size):
        return model(image)
    overlap = min(tile_overlap, tile_size // 2)
    out = weight = None
    for y in _tile_starts(height, tile_size, overlap):
        for x in _tile_starts(width, tile_size, overlap):
            tile = image[..., y:y + tile_size, x:x + tile_size]
            result = model(tile)
            if out is None:
                out = result.new_zeros(1, result.shape[1], height * scale, width * scale)
                weight = result.new_zeros(1, 1, height * scale, width * scale)
            th, tw = result.shape[-2:]
            fade = overlap * scale
            rows = _ramp(th, fade if y > 0 else 0, fade if y + tile.shape[-2] < height else 0)
            cols = _ramp(tw, fade if x > 0 else 0, fade if x + tile.shape[-1] < width else 0)
            mask = (rows[:, None] * cols[None, :]).to(result)
            out[..., y * scale:y * scale + th, x * scale:x * scale + tw] += result * mask
            weight[..., y * scale:y * scale + th, x * scale:x * scale + tw] += mask
    return out / weight
