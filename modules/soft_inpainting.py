"""Soft inpainting (A1111 1.7+'s built-in "Soft Inpainting" script, its maths written anew): during sampling the
original latent is blended into the denoised one by the soft (unrounded, blurred) mask, more strongly at high noise;
after sampling the original pixels are composited back wherever the result barely differs from them. The script
(scripts/soft_inpainting.py) calls these through the mask-blend, post-sample and mask-overlay hooks."""
from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np
import torch
from PIL import Image, ImageFilter

from modules import images, masking


@dataclass(frozen=True)
class Settings:
    mask_blend_power: float = 1.0  # "Schedule bias"
    mask_blend_scale: float = 0.5  # "Preservation strength"
    inpaint_detail_preservation: float = 4.0  # "Transition contrast boost"
    composite_mask_influence: float = 0.0  # "Mask influence"
    composite_difference_threshold: float = 0.5  # "Difference threshold"
    composite_difference_contrast: float = 2.0  # "Difference contrast"

    def infotext(self) -> dict:
        return {ENABLED_KEY: True, **{INFOTEXT_KEYS[name]: value for name, value in asdict(self).items()}}


ENABLED_KEY = "Soft inpainting enabled"
# A1111's labels (UI) and infotext keys, by setting
LABELS = {"mask_blend_power": "Schedule bias", "mask_blend_scale": "Preservation strength",
          "inpaint_detail_preservation": "Transition contrast boost", "composite_mask_influence": "Mask influence",
          "composite_difference_threshold": "Difference threshold",
          "composite_difference_contrast": "Difference contrast"}
INFOTEXT_KEYS = {name: f"Soft inpainting {label[0].lower()}{label[1:]}" for name, label in LABELS.items()}


def step_weight(settings: Settings, nmask: torch.Tensor, sigma: float) -> torch.Tensor:
    """How much of the denoised latent a step keeps (1 = all): the mask raised to sigma**bias * strength, so the
    original weighs more at high noise and where the mask is partial."""
    return torch.pow(nmask, (sigma ** settings.mask_blend_power) * settings.mask_blend_scale)


def latent_blend(settings: Settings, original: torch.Tensor, current: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
    """Interpolate latent vectors (over channels) by t, with their lengths interpolated apart as power means of
    degree `inpaint_detail_preservation`, which keeps the contrast a plain lerp loses where the two differ."""
    t = t.to(current.dtype)
    t_len = t[:, :1]
    mixed = original * (1 - t) + current * t
    degree = settings.inpaint_detail_preservation
    length = torch.linalg.vector_norm(mixed, dim=1, keepdim=True).double() + 1e-5
    wanted = (torch.linalg.vector_norm(original, dim=1, keepdim=True).double() ** degree * (1 - t_len).double()
              + torch.linalg.vector_norm(current, dim=1, keepdim=True).double() ** degree * t_len.double()) ** (1 / degree)
    return mixed * (wanted / length).to(mixed.dtype)


def gaussian_kernel(stddev: float = 1.5, radius: int = 2) -> np.ndarray:
    """A (2r+1)² Gaussian window, shifted and rescaled so it reaches 0 one pixel past the radius and 1 at the centre."""
    edge = np.exp(-((radius + 1) ** 2) / stddev ** 2)
    offsets = np.arange(-radius, radius + 1, dtype=np.float64)
    distance2 = offsets[:, None] ** 2 + offsets[None, :] ** 2
    return np.maximum(0.0, (np.exp(-distance2 / stddev ** 2) - edge) / (1 - edge))


def percentile_filter(image: np.ndarray, kernel: np.ndarray, low: float, high: float, min_width: float = 1.0):
    """Each pixel becomes the mean of its neighbours' values between two weighted percentiles: the neighbours (weighted
    by the kernel, the image's edge cut off) are sorted and stacked by weight, and the window [low, high] of the stack
    (at least `min_width` of weight wide, kept inside the stack) is averaged by overlap."""
    r = kernel.shape[0] // 2
    h, w = image.shape
    padded = np.pad(image.astype(np.float64), r)
    inside = np.pad(np.ones_like(image, dtype=np.float64), r)
    values = np.stack([padded[dy:dy + h, dx:dx + w] for dy in range(2 * r + 1) for dx in range(2 * r + 1)], -1)
    weights = np.stack([inside[dy:dy + h, dx:dx + w] * kernel[dy, dx]
                        for dy in range(2 * r + 1) for dx in range(2 * r + 1)], -1)
    order = np.argsort(values, axis=-1, kind="stable")
    values, weights = np.take_along_axis(values, order, -1), np.take_along_axis(weights, order, -1)
    top = np.cumsum(weights, -1)
    bottom = top - weights
    total = top[..., -1:]
    lo, hi = total * low, total * high
    narrow = (hi - lo) < min_width
    centre = (lo + hi) / 2
    lo = np.where(narrow, centre - min_width / 2, lo)
    hi = np.where(narrow, centre + min_width / 2, hi)
    over, under = hi > total, lo < 0
    lo, hi = np.where(over, total - min_width, lo), np.where(over, total, hi)
    lo, hi = np.where(under, 0, lo), np.where(under, min_width, hi)
    overlap = np.clip(np.minimum(hi, top) - np.maximum(lo, bottom), 0, None)
    weight = overlap.sum(-1)
    return np.where(weight > 0, (values * overlap).sum(-1) / np.where(weight > 0, weight, 1), 0.0)


def smootherstep(x):
    return x * x * x * (x * (6 * x - 15) + 10)


def composite_masks(settings: Settings, nmask: torch.Tensor, original: torch.Tensor, processed: torch.Tensor,
                    width: int, height: int, full_size: tuple[int, int], paste_to) -> list[Image.Image]:
    """One mask per image of where the result replaces the original pixels (255 = result): the latents' per-position
    distance, smoothed by two percentile filters, against a threshold that the soft mask biases by `mask influence`;
    then at pixel size, blurred, and placed into the full image when only the masked area was generated."""
    keep = 1 - torch.clamp(nmask[:, 0].float(), 0, 1) ** (settings.mask_blend_scale / 2)
    keep = 0.5 * (1 - settings.composite_mask_influence) + keep * settings.composite_mask_influence
    scalar = (keep / (1.00001 - keep)).cpu().numpy()
    distances = torch.linalg.vector_norm((processed - original).float(), dim=1).cpu().numpy()
    kernel = gaussian_kernel()
    masks = []
    for i, distance in enumerate(distances):
        distance = percentile_filter(distance, kernel, 0.9, 1.0)
        distance = percentile_filter(distance, kernel, 0.25, 0.75)
        with np.errstate(divide="ignore", invalid="ignore"):
            ratio = distance / (settings.composite_difference_threshold * scalar[min(i, len(scalar) - 1)])
            kept = smootherstep(1 / (1 + ratio ** settings.composite_difference_contrast))
        mask = Image.fromarray((255.0 * (1 - np.nan_to_num(kept, nan=1.0))).astype(np.uint8))
        mask = images.resize_image(2, mask, width, height).convert("L")
        mask = mask.filter(ImageFilter.GaussianBlur(radius=4))
        if paste_to is not None:
            x, y, w, h = paste_to
            full = Image.new("L", full_size)
            full.paste(mask.resize((w, h), Image.LANCZOS), (x, y))
            mask = full
        masks.append(mask)
    return masks


def overlays(masks: list[Image.Image], originals: list[Image.Image]) -> list[Image.Image]:
    """The originals with each result's area made transparent by its composite mask."""
    return [masking.overlay_for(originals[i % len(originals)], mask) for i, mask in enumerate(masks)]
