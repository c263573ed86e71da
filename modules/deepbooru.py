"""Interrogate DeepBooru (A1111's modules.deepbooru): Danbooru tags of an image from DeepDanbooru.

The model is A1111's torch port, model-resnet_custom_v3.pt in models/torch_deepdanbooru (downloaded there once from
A1111's TorchDeepDanbooru release). Tags at or above the score threshold are kept, "rating:" tags dropped, then sorted
(by name or by score), filtered, with spaces for underscores and escaped brackets as the settings say.
"""
from __future__ import annotations

import os
import re

import numpy as np
import torch
from PIL import Image

from modules import deepbooru_model, devices, images, interrogate_files, job_context, paths_internal

MODEL_FILE = "model-resnet_custom_v3.pt"
MODEL_URL = f"https://github.com/AUTOMATIC1111/TorchDeepDanbooru/releases/download/v1/{MODEL_FILE}"
FOLDER = "torch_deepdanbooru"  # A1111's folder; newer A1111 builds use "DeepDanbooru", which is read too
OTHER_FOLDERS = ("DeepDanbooru",)
IMAGE_SIDE = 512
re_special = re.compile(r"([\\()])")


def model_folder() -> str:
    return os.path.join(paths_internal.models_path, FOLDER)


def find_model_file() -> str:
    for folder in OTHER_FOLDERS:
        path = os.path.join(paths_internal.models_path, folder, MODEL_FILE)
        if os.path.isfile(path):
            return path
    return interrogate_files.require(MODEL_URL, model_folder(), MODEL_FILE, "Interrogate DeepBooru")


def format_tags(probabilities: dict[str, float], settings, include_ranks: bool | None = None) -> str:
    """The tags A1111 writes for these scores under these settings (threshold, sort, filter, spaces, escape, ranks)."""
    threshold = settings.interrogate_deepbooru_score_threshold
    kept = {tag: p for tag, p in probabilities.items() if p >= threshold and not tag.startswith("rating:")}
    ordered = sorted(kept) if settings.deepbooru_sort_alpha else sorted(kept, key=lambda tag: -kept[tag])
    # the filter names tags as the user sees them, with spaces or underscores
    filtered = {t.strip().replace(" ", "_") for t in settings.deepbooru_filter_tags.split(",")}
    ranks = settings.interrogate_return_ranks if include_ranks is None else include_ranks
    result = []
    for tag in (t for t in ordered if t not in filtered):
        text = tag.replace("_", " ") if settings.deepbooru_use_spaces else tag
        if settings.deepbooru_escape:
            text = re_special.sub(r"\\\1", text)
        result.append(f"({text}:{kept[tag]:.3f})" if ranks else text)
    return ", ".join(result)


class DeepDanbooru:
    def __init__(self):
        self.model: deepbooru_model.DeepDanbooruModel | None = None

    def load(self) -> None:
        if self.model is not None:
            return
        path = find_model_file()
        state = torch.load(path, map_location="cpu", weights_only=True)
        self.model = deepbooru_model.DeepDanbooruModel.from_state_dict(state).eval()

    def start(self) -> None:
        self.load()
        device = devices.get_device_for("interrogate")
        self.model.to(device, torch.float32 if device.type == "cpu" else devices.dtype)

    def stop(self) -> None:
        if not job_context.settings().interrogate_keep_models_in_memory:
            self.model.to(devices.cpu)
            devices.torch_gc()

    def tag(self, pil_image: Image.Image) -> str:
        self.start()
        try:
            return self.tag_multi(pil_image)
        finally:
            self.stop()

    def probabilities(self, pil_image: Image.Image) -> dict[str, float]:
        picture = images.resize_image(2, pil_image.convert("RGB"), IMAGE_SIDE, IMAGE_SIDE)
        batch = torch.from_numpy(np.asarray(picture, dtype=np.float32)[None] / 255)
        with torch.inference_mode():
            scores = self.model(batch.to(self.model.n_Conv_0.weight.device))[0].float().cpu().numpy()
        return dict(zip(self.model.tags, scores.tolist()))

    def tag_multi(self, pil_image: Image.Image, force_disable_ranks: bool = False) -> str:
        """Tags of an image with the model started (A1111's name: callers tagging many images start it once)."""
        return format_tags(self.probabilities(pil_image), job_context.settings(),
                           include_ranks=False if force_disable_ranks else None)


model = DeepDanbooru()
