"""img2img Batch: every image of a folder through the engine (A1111's modules.img2img names)."""
from __future__ import annotations

import copy
import logging
import os
from dataclasses import dataclass, field

from PIL import Image, UnidentifiedImageError

from modules import processing
from modules.shared_state import state

log = logging.getLogger(__name__)
IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".webp", ".bmp", ".tif", ".tiff", ".avif")


@dataclass
class BatchResult:
    processed: list = field(default_factory=list)   # (file name, Processed)
    errors: list[str] = field(default_factory=list)  # "file: reason", reported and skipped


def process_batch(p: processing.StableDiffusionProcessingImg2Img, input_dir: str, output_dir: str,
                  inpaint_mask_dir: str | None = None) -> BatchResult:
    """The k-th image processed uses seed + k; a file that cannot be read is reported and the rest go on."""
    if not os.path.isdir(input_dir):
        raise ValueError(f"Input directory not found: {input_dir}")
    files = sorted(f for f in os.listdir(input_dir) if f.lower().endswith(IMAGE_EXTENSIONS))
    result = BatchResult()
    seed = processing.get_fixed_seed(p.seed)
    for name in files:
        if state.interrupted or state.stopping_generation:
            break
        try:
            with Image.open(os.path.join(input_dir, name)) as im:
                image = im.convert("RGB")
            mask = _mask_for(inpaint_mask_dir, name)
        except (OSError, UnidentifiedImageError) as e:
            result.errors.append(f"{name}: {e}")
            log.warning("img2img batch: skipped %s: %s", name, e)
            continue
        job = copy.copy(p)
        job.extra_generation_params = dict(p.extra_generation_params)
        job.init_images, job.mask, job.image_mask = [image], mask, mask
        job.seed = seed + len(result.processed)
        job.outpath_samples = output_dir or p.outpath_samples
        result.processed.append((name, processing.process_images(job)))
    return result


def _mask_for(mask_dir: str | None, name: str) -> Image.Image | None:
    if not mask_dir:
        return None
    stem = os.path.splitext(name)[0]
    for candidate in sorted(os.listdir(mask_dir)):
        if os.path.splitext(candidate)[0] == stem:
            with Image.open(os.path.join(mask_dir, candidate)) as im:
                return im.copy()
    return None
