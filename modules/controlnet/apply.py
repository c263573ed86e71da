"""Units prepared once per job, then bound to a model and size as the residuals the denoiser adds to its UNet.

Semantics follow sd-webui-controlnet: each unit's residuals are scaled by its weight and applied only while
step / total steps lies in [guidance_start, guidance_end]; "My prompt is more important" uses the soft scales
weight * 0.825 ** (12 - i) over the outputs (also forced in the Hires. fix pass for canny and mlsd maps);
"ControlNet is more important" adds the residuals to the conditional rows only. Several units sum.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from PIL import Image, ImageOps

from modules.controlnet import models, preprocessors
from modules.controlnet.units import CONTROL_MODES, ControlNetUnit, decode_image

log = logging.getLogger(__name__)
_SOFT_IN_HIRES = ("canny", "mlsd")


@dataclass
class PreparedUnit:
    index: int  # the unit's place among the script's units ("ControlNet 0", ...)
    unit: ControlNetUnit
    info: models.ControlNetInfo
    detected: Image.Image  # the preprocessed map


def pixel_perfect_resolution(image: Image.Image, width: int, height: int, resize_mode: str) -> int:
    """The preprocessor resolution that gives the map exactly the target's pixels (the extension's rule)."""
    k = (height / image.height, width / image.width)
    scale = min(k) if resize_mode == "Resize and Fill" else max(k)
    return int(round(scale * min(image.size)))


def prepare(units: list[ControlNetUnit], width: int, height: int, init_image: Image.Image | None,
            model_dirs: list[Path], annotator_dirs: list[Path]) -> list[PreparedUnit]:
    """The active units with their model file and detected map; the img2img input stands in for a missing image."""
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
        prepared.append(PreparedUnit(index, unit, models.find_model(unit.model, model_dirs), detected))
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
    controlnet: object
    hint: torch.Tensor


@dataclass
class ControlStack:
    """The active units for one model at one size: residuals per UNet evaluation; `applied` records (step, unit)."""

    bound: list[_Bound]
    hires: bool = False
    applied: list[tuple[int, int]] = field(default_factory=list)

    def residuals(self, x, t, context, added, first_uncond: int, step: int, total_steps: int):
        """(down residuals, mid residual) summed over the units active at this step, or None when none is."""
        progress = step / max(total_steps, 1)
        total = None
        for b in self.bound:
            unit = b.prepared.unit
            if progress < unit.guidance_start or progress > unit.guidance_end:
                continue
            self.applied.append((step, b.prepared.index))
            dtype = b.hint.dtype
            down, mid = b.controlnet(x.to(dtype), t.to(dtype), encoder_hidden_states=context.to(dtype),
                                     controlnet_cond=b.hint.expand(x.shape[0], -1, -1, -1),
                                     added_cond_kwargs=None if added is None else {k: v.to(dtype) for k, v in added.items()},
                                     return_dict=False)
            outputs = [*down, mid]
            for i, (out, scale) in enumerate(zip(outputs, self._scales(b.prepared, len(outputs)))):
                outputs[i] = out * scale
            if unit.control_mode == CONTROL_MODES[2] and first_uncond < x.shape[0]:
                rows = (torch.arange(x.shape[0], device=x.device) < first_uncond).to(dtype)[:, None, None, None]
                outputs = [out * rows for out in outputs]
            total = outputs if total is None else [a + o for a, o in zip(total, outputs)]
        return None if total is None else (tuple(total[:-1]), total[-1])

    def _scales(self, prepared: PreparedUnit, count: int) -> list[float]:
        weight = float(prepared.unit.weight)
        soft = prepared.unit.control_mode == CONTROL_MODES[1] or \
            (self.hires and any(name in prepared.unit.module for name in _SOFT_IN_HIRES))
        return [weight * 0.825 ** float(12 - i) for i in range(count)] if soft else [weight] * count


def stack_for(prepared: list[PreparedUnit], model, width: int, height: int, manager, *, refiner: bool = False,
              hires: bool = False) -> ControlStack | None:
    """The units bound to `model` at width x height; a wrong-family unit is an error, except for the refiner,
    which just runs without it (an SD1 ControlNet cannot guide an SDXL refiner)."""
    bound = []
    dtype = next(model.unet.parameters()).dtype
    for p in prepared:
        try:
            controlnet = cached_load(p.info.path, model, manager)
        except models.ControlNetFamilyError as e:
            if not refiner:
                raise
            log.info("ControlNet %d is not applied to the refiner: %s", p.index, e)
            continue
        hint = hint_tensor(fit(p.detected, width, height, p.unit.resize_mode), model.device, dtype)
        bound.append(_Bound(p, controlnet, hint))
    return ControlStack(bound, hires=hires) if bound else None
