"""img2img Batch: every image of a folder through the engine (A1111's modules.img2img names).

As A1111: with an output folder each result is named after its input (`frame001.png`, `frame001-<n>.png` for several
per input; numbered as the settings say), so frame sequences keep their order; without one, results are saved as any
img2img job's. Parameters may come from each input's PNG info (or a same-named file in another folder)."""
from __future__ import annotations

import copy
import logging
import os
from dataclasses import dataclass, field

from PIL import Image, UnidentifiedImageError

from modules import images, infotext_utils, processing
from modules.shared_state import state

log = logging.getLogger(__name__)
IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".webp", ".bmp", ".tif", ".tiff", ".avif")
# A1111's "Parameters to take from png info" choices: infotext key -> (attribute, type); prompts are appended
PNG_INFO_PROPS = {"Prompt": ("prompt", str), "Negative prompt": ("negative_prompt", str), "Seed": ("seed", int),
                  "CFG scale": ("cfg_scale", float), "Sampler": ("sampler_name", str), "Steps": ("steps", int)}


@dataclass
class BatchResult:
    processed: list = field(default_factory=list)   # (file name, Processed)
    errors: list[str] = field(default_factory=list)  # "file: reason", reported and skipped


def process_batch(p: processing.StableDiffusionProcessingImg2Img, input_dir: str, output_dir: str,
                  inpaint_mask_dir: str | None = None, use_png_info: bool = False, png_info_props=(),
                  png_info_dir: str | None = None) -> BatchResult:
    """The k-th image processed uses seed + k (unless its PNG info gives the seed); a file that cannot be read is
    reported and the rest go on."""
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
                info = _png_info(im, png_info_dir, name) if use_png_info else {}
            mask = _mask_for(inpaint_mask_dir, name)
        except (OSError, UnidentifiedImageError) as e:
            result.errors.append(f"{name}: {e}")
            log.warning("img2img batch: skipped %s: %s", name, e)
            continue
        job = copy.copy(p)
        job.extra_generation_params = dict(p.extra_generation_params)
        job.init_images, job.mask, job.image_mask = [image], mask, mask
        job.seed = seed + len(result.processed)
        _apply_png_info(job, info, png_info_props)
        if output_dir:
            job.outpath_samples = output_dir
            job.override_settings = {**(p.override_settings or {}), **_named_after(name, p)}
        result.processed.append((name, processing.process_images(job)))
    return result


def _named_after(name: str, p) -> dict:
    """A1111's settings for a result named after its input: no subfolders, a name that exists gets a number suffix."""
    stem = os.path.splitext(name)[0]
    several = p.n_iter > 1 or p.batch_size > 1
    return {"save_to_dirs": False, "save_images_replace_action": "Add number suffix",
            "samples_filename_pattern": f"{stem}-[generation_number]" if several else stem}


def _png_info(image: Image.Image, info_dir: str | None, name: str) -> dict:
    """The infotext parameters of the input (or of the file of the same name in `info_dir`); {} if it has none."""
    try:
        if info_dir:
            with Image.open(os.path.join(info_dir, name)) as other:
                text, _ = images.read_info_from_image(other)
        else:
            text, _ = images.read_info_from_image(image)
    except (OSError, UnidentifiedImageError) as e:
        log.warning("img2img batch: no PNG info for %s: %s", name, e)
        return {}
    return infotext_utils.parse_generation_parameters(text) if text else {}


def _apply_png_info(job, info: dict, props) -> None:
    """The chosen parameters from the input's PNG info; its prompts are appended to the tab's (A1111)."""
    for key in props or ():
        if key not in info or key not in PNG_INFO_PROPS:
            continue
        attribute, kind = PNG_INFO_PROPS[key]
        if attribute in ("prompt", "negative_prompt"):
            setattr(job, attribute, " ".join(part for part in (getattr(job, attribute), str(info[key])) if part))
        else:
            setattr(job, attribute, kind(info[key]))


def _mask_for(mask_dir: str | None, name: str) -> Image.Image | None:
    if not mask_dir:
        return None
    stem = os.path.splitext(name)[0]
    for candidate in sorted(os.listdir(mask_dir)):
        if os.path.splitext(candidate)[0] == stem:
            with Image.open(os.path.join(mask_dir, candidate)) as im:
                return im.copy()
    return None
