"""Dataset preparation for training (A1111 1.6's Train > Preprocess images, without extensions): every image of a
source folder resized, split, focal-cropped and/or flipped into a destination folder, with a caption .txt beside each.

Outputs are named as A1111 names them, `{index:05}-{subindex}-{source name}.png` (+ `.txt`), the index counting the
source folder's entries in name order. The destination must lie inside the data folder (a relative path is taken from
it); a caption comes from BLIP and/or DeepBooru and the source's own .txt as `existing_caption_action` says.
"""
from __future__ import annotations

import logging
import math
import os
from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np
from PIL import Image, ImageOps

from modules import autocrop, devices, images, job_context, options, paths_internal

log = logging.getLogger(__name__)

CAPTION_ACTIONS = ("ignore", "copy", "prepend", "append")


@dataclass
class PreprocessOptions:
    src: str
    dst: str
    width: int = 512
    height: int = 512
    existing_caption_action: str = "ignore"
    keep_original_size: bool = False
    flip: bool = False
    split: bool = False
    caption_blip: bool = False
    caption_deepbooru: bool = False
    split_threshold: float = 0.5
    overlap_ratio: float = 0.2
    focal_crop: bool = False
    focal_crop_face_weight: float = 0.9
    focal_crop_entropy_weight: float = 0.15
    focal_crop_edges_weight: float = 0.5
    focal_crop_debug: bool = False


def resolve_folders(src: str, dst: str) -> tuple[str, str]:
    """Absolute source and destination; ValueError when the destination leaves the data folder or equals the source."""
    src, dst = (src or "").strip(), (dst or "").strip()
    if not src or not dst:
        raise ValueError("Preprocess: enter a source and a destination directory")
    root = paths_internal.data_path
    src, dst = (os.path.normpath(os.path.join(root, path)) for path in (src, dst))
    if not options.inside_data_dir(dst):
        raise ValueError(f"Preprocess: the destination directory must be inside the data folder {root}")
    if not os.path.isdir(src):
        raise ValueError(f"Preprocess: source directory not found: {src}")
    if os.path.realpath(src) == os.path.realpath(dst):
        raise ValueError("Preprocess: same directory specified as source and destination")
    return src, dst


def split_pic(image: Image.Image, inverse_xy: bool, width: int, height: int, overlap_ratio: float) -> Iterator[Image.Image]:
    """Overlapping crops along the long side of an image scaled so its short side fits (A1111's split)."""
    from_w, from_h = (image.height, image.width) if inverse_xy else (image.width, image.height)
    to_w, to_h = (height, width) if inverse_xy else (width, height)
    h = from_h * to_w // from_w
    image = image.resize((h, to_w) if inverse_xy else (to_w, h))
    count = math.ceil((h - to_h * overlap_ratio) / (to_h * (1.0 - overlap_ratio)))
    step = (h - to_h) / (count - 1) if count > 1 else 0
    for i in range(count):
        y = int(step * i)
        yield image.crop((y, 0, y + to_h, to_w) if inverse_xy else (0, y, to_w, y + to_h))


class Writer:
    """Saves one source image's outputs with their captions, numbering them."""

    def __init__(self, opts: PreprocessOptions, dst: str, captioners: list):
        self.opts, self.dst, self.captioners = opts, dst, captioners
        self.index, self.subindex, self.name, self.existing_caption = 0, 0, "", None
        self.written = 0

    def start(self, index: int, filename: str, existing_caption: str | None) -> None:
        self.index, self.subindex, self.existing_caption = index, 0, existing_caption
        self.name = os.path.splitext(os.path.basename(filename))[0]

    def caption(self, image: Image.Image) -> str:
        caption = ", ".join(text for text in (caption(image) for caption in self.captioners) if text)
        existing, action = self.existing_caption, self.opts.existing_caption_action
        if existing and action == "prepend":
            caption = f"{existing} {caption}"
        elif existing and action == "append":
            caption = f"{caption} {existing}"
        elif existing and action == "copy":
            caption = existing
        return caption.strip()

    def save_one(self, image: Image.Image) -> None:
        basename = f"{self.index:05}-{self.subindex}-{self.name}"
        image.save(os.path.join(self.dst, f"{basename}.png"))
        caption = self.caption(image)
        if caption:
            with open(os.path.join(self.dst, f"{basename}.txt"), "w", encoding="utf8") as file:
                file.write(caption)
        self.subindex += 1
        self.written += 1

    def save(self, image: Image.Image) -> None:
        self.save_one(image)
        if self.opts.flip:
            self.save_one(ImageOps.mirror(image))


def face_finder():
    """Face boxes from the face restorers' detector (models/GFPGAN); without its file, focal crops go without faces."""
    from modules import face_detection
    from modules.shared_cmd_options import cmd_opts

    folder = getattr(cmd_opts, "gfpgan_models_path", None) or os.path.join(paths_internal.models_path, "GFPGAN")
    try:
        detector = face_detection.get_detector(folder, devices.get_device_for("interrogate"))
    except (FileNotFoundError, ValueError) as error:
        log.warning("Auto focal point crop goes without face detection: %s", error)
        return None
    return lambda image: [tuple(face.box) for face in detector.detect(np.asarray(image.convert("RGB")))]


def read_caption(path: str) -> str | None:
    if not os.path.isfile(path):
        return None
    with open(path, encoding="utf8") as file:
        return file.read()


def process_image(img: Image.Image, opts: PreprocessOptions, writer: Writer, find_faces) -> None:
    width, height = opts.width, opts.height
    if img.height > img.width:
        ratio, inverse_xy = (img.width * height) / (img.height * width), False
    else:
        ratio, inverse_xy = (img.height * width) / (img.width * height), True
    default_resize = True
    if opts.split and ratio < 1.0 and ratio <= opts.split_threshold:
        for piece in split_pic(img, inverse_xy, width, height, opts.overlap_ratio):
            writer.save(piece)
        default_resize = False
    if opts.focal_crop and img.height != img.width:
        settings = autocrop.Settings(width, height, opts.focal_crop_edges_weight, opts.focal_crop_entropy_weight,
                                     opts.focal_crop_face_weight, opts.focal_crop_debug, find_faces)
        for focal in autocrop.crop_image(img, settings):
            writer.save(focal)
        default_resize = False
    if opts.keep_original_size:
        writer.save(img)
        default_resize = False
    if default_resize:
        writer.save(images.resize_image(1, img, width, height))


def captioners(opts: PreprocessOptions) -> list:
    found = []
    if opts.caption_blip:
        from modules import interrogate

        interrogate.interrogator.load()
        found.append(interrogate.interrogator.generate_caption)
    if opts.caption_deepbooru:
        from modules import deepbooru

        deepbooru.model.start()
        found.append(deepbooru.model.tag_multi)
    return found


def release_captioners(opts: PreprocessOptions) -> None:
    if opts.caption_blip:
        from modules import interrogate

        interrogate.interrogator.unload()
    if opts.caption_deepbooru:
        from modules import deepbooru

        deepbooru.model.stop()


def preprocess(opts: PreprocessOptions) -> str:
    """Run the preparation; the message says how many images were written where."""
    if opts.existing_caption_action not in CAPTION_ACTIONS:
        raise ValueError(f"Preprocess: existing caption action must be one of {', '.join(CAPTION_ACTIONS)}")
    src, dst = resolve_folders(opts.src, opts.dst)
    opts.split_threshold = max(0.0, min(1.0, opts.split_threshold))
    opts.overlap_ratio = max(0.0, min(0.9, opts.overlap_ratio))
    os.makedirs(dst, exist_ok=True)
    files = sorted(os.listdir(src))
    state = job_context.state()
    state.begin(job="preprocess")
    state.job_count = len(files)
    try:
        writer = Writer(opts, dst, captioners(opts))
        find_faces = face_finder() if opts.focal_crop and opts.focal_crop_face_weight > 0 else None
        for index, name in enumerate(files):
            if state.interrupted:
                break
            state.textinfo = f"Preprocessing [Image {index}/{len(files)}]"
            path = os.path.join(src, name)
            try:
                with Image.open(path) as opened:
                    img = ImageOps.exif_transpose(opened).convert("RGB")
            except (OSError, ValueError):
                state.nextjob()
                continue  # not an image (captions, notes)
            caption_file = f"{os.path.splitext(path)[0]}.txt"
            writer.start(index, name, read_caption(caption_file))
            process_image(img, opts, writer, find_faces)
            state.nextjob()
    finally:
        release_captioners(opts)
        state.end()
    return f"Preprocessing finished: {writer.written} image(s) written to {dst}."
