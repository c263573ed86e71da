"""Embeddings carried in PNG images (A1111's "Save images with embedding in PNG chunks").

The embedding's data (the dict of its .pt file) travels JSON-serialised then base64-encoded in the PNG text chunk
`sd-ti-embedding`, each tensor as {"TORCHTENSOR": nested lists}, so files made by A1111 and by Atelier read both ways.
A1111's second form, the data hidden in the pixels, is neither written nor read.
"""
from __future__ import annotations

import base64
import binascii
import json
import os

import numpy as np
import torch
from PIL import Image, ImageDraw, PngImagePlugin

from modules import images, job_context

EMBEDDING_CHUNK = "sd-ti-embedding"
TENSOR_KEY = "TORCHTENSOR"
TEXT_FILL = (255, 255, 255, 230)
PADDING = 10


def _to_json(value):
    """The data with every tensor replaced by A1111's {"TORCHTENSOR": lists} form."""
    if isinstance(value, torch.Tensor):
        return {TENSOR_KEY: value.detach().to("cpu", torch.float32).tolist()}
    if isinstance(value, dict):
        return {str(key): _to_json(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [_to_json(item) for item in value]
    return value


def _tensor_hook(obj: dict):
    # float32: the vectors were float32 when written, so the round trip is exact
    return torch.from_numpy(np.array(obj[TENSOR_KEY], dtype=np.float32)) if TENSOR_KEY in obj else obj


def embedding_to_b64(data: dict) -> str:
    """The chunk text for an embedding's data dict (tensors become lists)."""
    return base64.b64encode(json.dumps(_to_json(data)).encode("utf8")).decode("ascii")


def embedding_from_b64(text: str | bytes) -> dict:
    """The data dict back from a chunk's text, tensors as float32 tensors; ValueError when it is not such data."""
    try:
        data = json.loads(base64.b64decode(text, validate=True), object_hook=_tensor_hook)
    except (binascii.Error, UnicodeDecodeError, ValueError) as e:
        raise ValueError(f"the {EMBEDDING_CHUNK} chunk does not hold embedding data: {e}") from None
    if not isinstance(data, dict):
        raise ValueError(f"the {EMBEDDING_CHUNK} chunk does not hold embedding data")
    return data


def embedding_data_from_image(path: str) -> dict | None:
    """The embedding data of an image file's `sd-ti-embedding` chunk; None when it has none."""
    with Image.open(path) as image:
        text = getattr(image, "text", {}).get(EMBEDDING_CHUNK)
    return None if text is None else embedding_from_b64(text)


def save_image_with_embedding(image: Image.Image, data: dict, path: str) -> str:
    """`image` as a PNG at `path` carrying `data` in its chunk, written atomically; the path."""
    info = PngImagePlugin.PngInfo()
    info.add_text(EMBEDDING_CHUNK, embedding_to_b64(data))
    tmp = f"{path}.tmp"
    image.save(tmp, format="PNG", pnginfo=info)
    os.replace(tmp, path)
    return path


def _shade(image: Image.Image) -> Image.Image:
    """Dark bands fading out from the top and bottom edges over a quarter of the height each, so that white text
    reads on any picture."""
    height = image.height
    y = np.arange(height, dtype=np.float32)
    band = max(height / 4, 1.0)
    fade = np.clip(np.maximum(1 - y / band, 1 - (height - 1 - y) / band), 0, 1)
    column = Image.fromarray((fade * 200).astype(np.uint8)[:, None], mode="L")
    overlay = Image.new("RGBA", image.size, (0, 0, 0, 0))
    overlay.putalpha(column.resize(image.size))
    return Image.alpha_composite(image.convert("RGBA"), overlay)


def _fitting_size(draw: ImageDraw.ImageDraw, text: str, width: float, start: int = 32, largest: int = 72) -> int:
    """The font size at which `text` fills `width`, at most `largest`."""
    measured = draw.textlength(text or " ", font=images.grid_font(job_context.settings().font or "", start))
    return max(8, min(int(start * width / max(measured, 1.0)), largest))


def caption_image_overlay(image: Image.Image, title: str, footer_left: str, footer_mid: str,
                          footer_right: str) -> Image.Image:
    """A copy of `image` (RGBA) with `title` top left and three footers along the bottom, as on A1111's previews."""
    captioned = _shade(image)
    draw = ImageDraw.Draw(captioned)
    width, height = captioned.size
    title_font = images.grid_font(job_context.settings().font or "", _fitting_size(draw, title, width * 0.75 - PADDING * 4))
    draw.text((PADDING, PADDING), title, anchor="lt", font=title_font, fill=TEXT_FILL)
    size = min(_fitting_size(draw, text, width / 3 - PADDING) for text in (footer_left, footer_mid, footer_right))
    font = images.grid_font(job_context.settings().font or "", size)
    bottom = height - PADDING
    draw.text((PADDING, bottom), footer_left, anchor="ls", font=font, fill=TEXT_FILL)
    draw.text((width / 2, bottom), footer_mid, anchor="ms", font=font, fill=TEXT_FILL)
    draw.text((width - PADDING, bottom), footer_right, anchor="rs", font=font, fill=TEXT_FILL)
    return captioned
