"""Extras: upscale and restore faces in existing images, then the extension postprocessing scripts (A1111's
modules.postprocessing). The UI and the API both call run_postprocessing (run_extras is A1111's positional form of it).

Steps, in A1111's order: the scripts' process_firstpass; Upscale (Upscaler 1, optionally blended with Upscaler 2),
GFPGAN, CodeFormer (with upscale_first=False face restoration runs before the upscale); the scripts' process().
Results go to outputs/extras-images with the source's metadata kept and the extras infotext
(`Postprocess upscale by: 4, Postprocess upscaler: ...`, then the scripts' pp.info) added as `extras`.
"""
from __future__ import annotations

import collections
import hashlib
import logging
import os
from dataclasses import dataclass

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from modules import (
    face_restoration,
    images,
    infotext_utils,
    scripts,
    scripts_postprocessing,
    upscaler,
)
from modules.shared_options import opts
from modules.shared_state import state

log = logging.getLogger(__name__)

EXTRAS_SINGLE, EXTRAS_BATCH, EXTRAS_DIRECTORY = 0, 1, 2
RESIZE_BY, RESIZE_TO = 0, 1


@dataclass
class PostprocessingOptions:
    """What to do to each image; field names and defaults are those of A1111's /sdapi/v1/extras-* requests."""

    resize_mode: int = RESIZE_BY
    upscaling_resize: float = 2
    max_side_length: int = 0
    upscaling_resize_w: int = 512
    upscaling_resize_h: int = 512
    upscaling_crop: bool = True
    extras_upscaler_1: str = "None"
    extras_upscaler_2: str = "None"
    extras_upscaler_2_visibility: float = 0
    gfpgan_visibility: float = 0
    codeformer_visibility: float = 0
    codeformer_weight: float = 0
    upscale_first: bool = True


_upscale_cache: collections.OrderedDict = collections.OrderedDict()


def limit_size_by_one_dimension(w: float, h: float, limit: int) -> tuple[int, int]:
    """(w, h) shrunk so that the longer side is `limit`, keeping the aspect ratio."""
    if h > w and h > limit:
        w, h = limit * w // h, limit
    elif w > limit:
        w, h = limit, limit * h // w
    return int(w), int(h)


def _cached_upscale(image: Image.Image, data: upscaler.UpscalerData, scale: float) -> Image.Image:
    """The same image, upscaler and scale again (e.g. after changing only the visibility) come from a small cache."""
    key = (hashlib.sha256(image.tobytes()).hexdigest(), image.size, image.mode, data.name, scale)
    if key in _upscale_cache:
        _upscale_cache.move_to_end(key)
        return _upscale_cache[key]
    result = data.scaler.upscale(image, scale, data.data_path)
    _upscale_cache[key] = result
    while len(_upscale_cache) > max(int(opts.upscaling_max_images_in_cache), 0):
        _upscale_cache.popitem(last=False)
    return result


def upscale(image: Image.Image, info: dict, data: upscaler.UpscalerData, o: PostprocessingOptions) -> Image.Image:
    """One upscaler's result, by scale or to W x H (scaled to cover it, then centre-cropped when crop is on)."""
    mode, scale, crop = o.resize_mode, o.upscaling_resize, o.upscaling_crop
    width, height = o.upscaling_resize_w, o.upscaling_resize_h
    if mode == RESIZE_TO:
        scale = max(width / image.width, height / image.height)
        info["Postprocess upscale to"] = f"{width}x{height}"
    else:
        info["Postprocess upscale by"] = scale
        if o.max_side_length and max(image.size) * scale > o.max_side_length:
            mode, crop = RESIZE_TO, False
            width, height = limit_size_by_one_dimension(image.width * scale, image.height * scale, o.max_side_length)
            scale = max(width / image.width, height / image.height)
            info["Max side length"] = o.max_side_length
    result = _cached_upscale(image, data, scale)
    if mode == RESIZE_TO and crop:
        cropped = Image.new("RGB", (width, height))
        cropped.paste(result, box=(width // 2 - result.width // 2, height // 2 - result.height // 2))
        result = cropped
        info["Postprocess crop to"] = f"{result.width}x{result.height}"
    return result


def run_upscale(image: Image.Image, info: dict, o: PostprocessingOptions) -> Image.Image:
    """Upscaler 1, with Upscaler 2 alpha-blended over it at its visibility; nothing at all when Upscaler 1 is None."""
    first = upscaler.find_upscaler(o.extras_upscaler_1)
    second = upscaler.find_upscaler(o.extras_upscaler_2)
    if first is None:
        return image
    result = upscale(image, info, first, o)
    info["Postprocess upscaler"] = first.name
    if second is not None and o.extras_upscaler_2_visibility > 0:
        other = upscale(image, info, second, o)
        result = Image.blend(result, other.convert(result.mode), o.extras_upscaler_2_visibility)
        info["Postprocess upscaler 2"] = second.name
    return result


def restore_with(image: Image.Image, name: str, visibility: float, **kwargs) -> Image.Image:
    """The face restorer's result blended over image at visibility (1 = only the restored image)."""
    restored = Image.fromarray(face_restoration.get_restorer(name).restore(np.asarray(image.convert("RGB")), **kwargs))
    return restored if visibility >= 1 else Image.blend(image.convert("RGB"), restored, visibility)


def run_face_restoration(image: Image.Image, info: dict, o: PostprocessingOptions) -> Image.Image:
    if o.gfpgan_visibility > 0:
        image = restore_with(image, "GFPGAN", o.gfpgan_visibility)
        info["GFPGAN visibility"] = round(o.gfpgan_visibility, 3)
    if o.codeformer_visibility > 0:
        image = restore_with(image, "CodeFormer", o.codeformer_visibility, w=o.codeformer_weight)
        info["CodeFormer visibility"] = round(o.codeformer_visibility, 3)
        info["CodeFormer weight"] = round(o.codeformer_weight, 3)
    return image


def postprocess_image(image: Image.Image, o: PostprocessingOptions) -> tuple[Image.Image, dict]:
    """(result, extras infotext items) for one image."""
    info: dict = {}
    steps = (run_upscale, run_face_restoration) if o.upscale_first else (run_face_restoration, run_upscale)
    for step in steps:
        image = step(image, info, o)
    return image, info


def _input_images(extras_mode: int, image, image_folder, input_dir: str):
    """(image or path, source name or None) for each image to process."""
    if extras_mode == EXTRAS_BATCH:
        for item in image_folder or []:
            if isinstance(item, Image.Image):
                yield item, None
            else:
                yield os.fspath(item), os.fspath(item)
    elif extras_mode == EXTRAS_DIRECTORY:
        from modules.shared_cmd_options import cmd_opts
        if getattr(cmd_opts, "hide_ui_dir_config", False):
            raise ValueError("Batch from directory is disabled by --hide-ui-dir-config")
        if not input_dir:
            raise ValueError("Input directory not selected")
        if not os.path.isdir(input_dir):
            raise ValueError(f"Input directory not found: {input_dir}")
        for name in sorted(os.listdir(input_dir)):
            path = os.path.join(input_dir, name)
            if os.path.isfile(path):
                yield path, path
    else:
        if image is None:
            raise ValueError("Image not selected")
        yield image, None


def _open(item) -> Image.Image | None:
    if isinstance(item, Image.Image):
        return item
    try:
        with Image.open(item) as opened:
            image = ImageOps.exif_transpose(opened)
            image.info = dict(opened.info)  # exif_transpose drops the text chunks that carry the infotext
            return image
    except (UnidentifiedImageError, OSError) as error:
        log.warning("Skipping %s: not an image (%s)", item, error)
        return None


def target_size(image: Image.Image, o: PostprocessingOptions) -> tuple[int, int]:
    """The size the upscale aims at, which scripts read from pp.shared (A1111's upscale first pass sets it alike)."""
    if o.resize_mode == RESIZE_TO:
        return o.upscaling_resize_w, o.upscaling_resize_h
    width, height = int(image.width * o.upscaling_resize), int(image.height * o.upscaling_resize)
    return limit_size_by_one_dimension(width, height, o.max_side_length) if o.max_side_length else (width, height)


def run_postprocessing(extras_mode: int, image, image_folder, input_dir: str, output_dir: str, show_extras_results: bool,
                       options: PostprocessingOptions, save_output: bool = True,
                       script_args: list | None = None) -> tuple[list[Image.Image], str]:
    """Process the single image, the uploaded batch or every image of input_dir; returns (shown images, infotext of
    the last one). Files go to output_dir (batch from directory) or to the extras output folder.

    script_args are the values of the extension scripts' controls, in the Extras tab's order; None (the API) gives
    every script None for each control, as A1111's API does."""
    if extras_mode == EXTRAS_DIRECTORY and output_dir:
        outpath = output_dir
    else:
        outpath = opts.outdir_samples or opts.outdir_extras_samples
    runner = scripts.scripts_postproc
    if script_args is None:
        script_args = runner.create_args_for_run({})
    outputs: list[Image.Image] = []
    infotext = ""
    items = list(_input_images(extras_mode, image, image_folder, input_dir))
    state.begin(job="extras")
    state.job_count = len(items)
    try:
        for item, name in items:
            state.textinfo = name
            state.skipped = False
            if state.interrupted or state.stopping_generation:
                break
            source = _open(item)
            if source is None:
                state.nextjob()
                continue
            results, infotext = process_one(source, name, outpath, options, save_output, runner, script_args)
            if extras_mode != EXTRAS_DIRECTORY or show_extras_results:
                outputs += results
            state.nextjob()
    finally:
        state.end()
    return outputs, infotext


def process_one(source: Image.Image, name: str | None, outpath: str, options: PostprocessingOptions, save_output: bool,
                runner: scripts_postprocessing.ScriptPostprocessingRunner, script_args: list) -> tuple[list[Image.Image], str]:
    """The image and the extra images the scripts made from it, each saved with its own infotext and name suffix;
    returns them and the infotext of the last."""
    geninfo, existing = images.read_info_from_image(source)
    if geninfo:
        existing["parameters"] = geninfo
    source = source if source.mode in ("RGB", "RGBA") else source.convert("RGB")
    pp = scripts_postprocessing.PostprocessedImage(source)
    pp.shared.target_width, pp.shared.target_height = target_size(source, options)
    runner.run_firstpass(pp, script_args)
    pp.image, info = postprocess_image(pp.image, options)
    pp.info.update(info)
    if opts.use_upscaler_name_as_suffix and "Postprocess upscaler" in info:
        pp.nametags.append(info["Postprocess upscaler"])
    runner.run_process(pp, script_args)
    results, infotext, used_suffixes = [], "", {}
    for done in [pp, *pp.extra_images]:
        suffix = done.get_suffix(used_suffixes)
        infotext = ", ".join(k if k == v else f"{k}: {infotext_utils.quote(v)}" for k, v in done.info.items() if v is not None)
        pnginfo = {**existing, "postprocessing": infotext} if opts.enable_pnginfo else existing
        if opts.enable_pnginfo:
            done.image.info = dict(pnginfo)
        state.assign_current_image(done.image)
        if save_output:
            forced = os.path.splitext(os.path.basename(name))[0] + suffix if opts.use_original_name_batch and name else None
            saved, _ = images.save_image(done.image, path=outpath, basename="", extension=opts.samples_format, info=infotext,
                                         short_filename=True, no_prompt=True, grid=False, pnginfo_section_name="extras",
                                         existing_info=pnginfo, forced_filename=forced, suffix=suffix)
            if done.caption:
                save_caption(saved, done.caption)
        results.append(done.image)
    return results, infotext


def save_caption(image_path: str, caption: str) -> None:
    """A script's caption beside the saved image as .txt. An existing caption is kept, put before or after the new one
    by the postprocessing_existing_caption_action setting (A1111's, added by an extension; "Ignore" replaces it)."""
    path = os.path.splitext(image_path)[0] + ".txt"
    try:
        with open(path, encoding="utf8") as file:
            existing = file.read().strip()
    except FileNotFoundError:
        existing = ""
    action = getattr(opts, "postprocessing_existing_caption_action", "Ignore")
    if existing and action == "Prepend":
        caption = f"{existing} {caption}"
    elif existing and action == "Append":
        caption = f"{caption} {existing}"
    elif existing and action == "Keep":
        caption = existing
    caption = caption.strip()
    if caption:
        with open(path, "w", encoding="utf8") as file:
            file.write(caption)


def run_extras(extras_mode, resize_mode, image, image_folder, input_dir, output_dir, show_extras_results, gfpgan_visibility,
               codeformer_visibility, codeformer_weight, upscaling_resize, upscaling_resize_w, upscaling_resize_h,
               upscaling_crop, extras_upscaler_1, extras_upscaler_2, extras_upscaler_2_visibility, upscale_first: bool,
               save_output: bool = True, max_side_length: int = 0) -> tuple[list[Image.Image], str]:
    """A1111's positional entry point (the API's): the same as run_postprocessing."""
    options = PostprocessingOptions(
        resize_mode=resize_mode, upscaling_resize=upscaling_resize, max_side_length=max_side_length,
        upscaling_resize_w=upscaling_resize_w, upscaling_resize_h=upscaling_resize_h, upscaling_crop=upscaling_crop,
        extras_upscaler_1=extras_upscaler_1, extras_upscaler_2=extras_upscaler_2,
        extras_upscaler_2_visibility=extras_upscaler_2_visibility, gfpgan_visibility=gfpgan_visibility,
        codeformer_visibility=codeformer_visibility, codeformer_weight=codeformer_weight, upscale_first=upscale_first)
    return run_postprocessing(extras_mode, image, image_folder, input_dir, output_dir, show_extras_results, options,
                              save_output=save_output)
