"""Inpainting masks (A1111's modules.masking names): blur, crop region for "Only masked", fill, overlay."""
from __future__ import annotations

import numpy as np
from PIL import Image, ImageFilter, ImageOps

from modules import images


def create_binary_mask(image: Image.Image, round_mask: bool = True) -> Image.Image:
    """A mask as L: a drawn RGBA layer gives its alpha channel (thresholded at half when rounding), others their grey."""
    if image.mode == "RGBA" and image.getextrema()[-1] != (255, 255):
        alpha = image.getchannel("A")
        return alpha.point(lambda v: 255 if v > 128 else 0) if round_mask else alpha
    return image.convert("L")


def _gaussian_kernel(sigma: float) -> np.ndarray:
    radius = int(2.5 * sigma + 0.5)
    x = np.arange(-radius, radius + 1, dtype=np.float64)
    k = np.exp(-(x**2) / (2 * sigma**2))
    return k / k.sum()


def blur(mask: Image.Image, sigma_x: float, sigma_y: float) -> Image.Image:
    """Separable Gaussian blur of an L mask, each axis with its own sigma (A1111's mask blur x/y)."""
    arr = np.asarray(mask, dtype=np.float64)
    for axis, sigma in ((1, sigma_x), (0, sigma_y)):
        if sigma > 0:
            k = _gaussian_kernel(sigma)
            pad = [(0, 0), (0, 0)]
            pad[axis] = (len(k) // 2, len(k) // 2)
            padded = np.pad(arr, pad, mode="reflect")
            arr = np.apply_along_axis(np.convolve, axis, padded, k, mode="valid")
    return Image.fromarray(np.clip(np.round(arr), 0, 255).astype(np.uint8), "L")


def get_crop_region(mask: Image.Image, pad: int = 0) -> tuple[int, int, int, int] | None:
    """Bounding box (x1, y1, x2, y2) of the non-zero mask pixels grown by `pad`, or None for an empty mask."""
    box = mask.getbbox()
    if box is None:
        return None
    x1, y1, x2, y2 = box
    return max(x1 - pad, 0), max(y1 - pad, 0), min(x2 + pad, mask.width), min(y2 + pad, mask.height)


def _grow(lo: int, hi: int, size: int, limit: int) -> tuple[int, int]:
    """Widen [lo, hi) to `size` around its centre, shifted back inside [0, limit) where it can be."""
    diff = size - (hi - lo)
    lo, hi = lo - diff // 2, hi + diff - diff // 2
    if hi >= limit:
        lo, hi = lo - (hi - limit), limit
    if lo < 0:
        lo, hi = 0, min(hi - lo, limit)
    return lo, hi


def expand_crop_region(region, target_w: int, target_h: int, image_w: int, image_h: int) -> tuple[int, int, int, int]:
    """Grow the region to the target's aspect ratio, staying inside the image where it can."""
    x1, y1, x2, y2 = region
    ratio_target = target_w / target_h
    if (x2 - x1) / (y2 - y1) > ratio_target:  # too wide: grow the height
        y1, y2 = _grow(y1, y2, int((x2 - x1) / ratio_target), image_h)
    else:  # too tall: grow the width
        x1, x2 = _grow(x1, x2, int((y2 - y1) * ratio_target), image_w)
    return x1, y1, x2, y2


def fill(image: Image.Image, mask: Image.Image) -> Image.Image:
    """Masked content "fill": paint the masked area with ever sharper blurs of what surrounds it."""
    outside = Image.new("RGBa", image.size)
    outside.paste(image.convert("RGBA").convert("RGBa"), mask=ImageOps.invert(mask.convert("L")))
    filled = Image.new("RGBA", image.size)
    for radius, repeats in ((256, 1), (64, 1), (16, 2), (4, 4), (2, 2), (0, 1)):
        blurred = outside.filter(ImageFilter.GaussianBlur(radius)).convert("RGBA")
        for _ in range(repeats):
            filled.alpha_composite(blurred)
    return filled.convert("RGB")


def overlay_for(image: Image.Image, mask_for_overlay: Image.Image) -> Image.Image:
    """The original with the masked area transparent: composited over a result it restores every unmasked pixel."""
    overlay = Image.new("RGBa", image.size)
    overlay.paste(image.convert("RGBA").convert("RGBa"), mask=ImageOps.invert(mask_for_overlay.convert("L")))
    return overlay.convert("RGBA")


def apply_overlay(image: Image.Image, paste_loc, overlay: Image.Image | None) -> Image.Image:
    """Put a generated image back: into its crop region ("Only masked"), then under the original's unmasked pixels."""
    if overlay is None:
        return image
    if paste_loc is not None:
        x, y, w, h = paste_loc
        base = Image.new("RGBA", overlay.size)
        base.paste(images.resize_image(1, image, w, h), (x, y))
        image = base
    image = image.convert("RGBA")
    image.alpha_composite(overlay)
    return image.convert("RGB")
