"""Interrogate CLIP and DeepBooru on tiny random-weight models in the real files' layouts (tests/fixtures/
interrogators.py): the text's shape, the settings' effect, and the clear message when a model file is missing and
cannot be downloaded. Also the img2img buttons' handler."""
from __future__ import annotations

import os
import re
import shutil

import numpy as np
import pytest
import torch
from PIL import Image

from modules import deepbooru, deepbooru_model, interrogate, modelloader, paths_internal
from modules.interrogate_files import ModelFileMissing
from modules.shared_options import opts
from tests.fixtures import interrogators


@pytest.fixture(scope="module")
def tiny_interrogators(tmp_path_factory):
    return interrogators.write_interrogators(tmp_path_factory.mktemp("interrogator-models"))


@pytest.fixture
def models_dir(tiny_interrogators, monkeypatch):
    monkeypatch.setattr(paths_internal, "models_path", str(tiny_interrogators))
    return tiny_interrogators


@pytest.fixture
def setting(monkeypatch):
    return lambda key, value: monkeypatch.setitem(opts.data, key, value)


def picture(width=96, height=64, seed=0) -> Image.Image:
    return Image.fromarray((np.random.RandomState(seed).rand(height, width, 3) * 255).astype(np.uint8))


def category_items() -> dict[str, list[str]]:
    return {c.name: c.items for c in interrogate.InterrogateModels().categories()}


def test_the_full_size_model_has_exactly_the_layout_of_a1111s_file():
    with torch.device("meta"):
        model = deepbooru_model.DeepDanbooruModel()
    ours = {key: tuple(value.shape) for key, value in model.state_dict().items()}
    assert ours == interrogators.deepbooru_layout()


def test_deepbooru_tags_above_the_threshold_sorted_escaped_without_ratings(models_dir, setting):
    setting("interrogate_deepbooru_score_threshold", 0.0)
    text = deepbooru.DeepDanbooru().tag(picture())
    tags = text.split(", ")
    expected = sorted(t for t in interrogators.DEEPBOORU_TAGS if not t.startswith("rating:"))
    assert tags == [t.replace("_", " ").replace("(", r"\(").replace(")", r"\)") for t in expected]

    setting("interrogate_deepbooru_score_threshold", 0.5)
    setting("deepbooru_sort_alpha", False)
    setting("interrogate_return_ranks", True)
    ranked = [re.fullmatch(r"\((.+):(\d\.\d{3})\)", t) for t in deepbooru.DeepDanbooru().tag(picture()).split(", ") if t]
    assert all(ranked)
    scores = [float(m.group(2)) for m in ranked]
    assert scores == sorted(scores, reverse=True) and all(s >= 0.5 for s in scores)


def test_clip_interrogator_gives_a_caption_then_the_best_items_of_each_category(models_dir, setting):
    items = category_items()
    assert set(items) == {"artists", "flavors.top3", "mediums", "movements"}
    text = interrogate.InterrogateModels().interrogate(picture())
    caption, *ranked = text.split(", ")
    assert caption and set(caption.split()) <= set(interrogators.BLIP_WORDS)
    assert not caption.startswith("a picture of")  # BLIP's prompt is cut
    # one line of each category, three of flavors.top3, in the files' (sorted) order
    assert len(ranked) == 6
    assert ranked[0] in items["artists"] and ranked[4] in items["mediums"] and ranked[5] in items["movements"]
    assert set(ranked[1:4]) <= set(items["flavors.top3"]) and len(set(ranked[1:4])) == 3

    setting("interrogate_clip_skip_categories", ["artists", "flavors.top3"])
    setting("interrogate_return_ranks", True)
    setting("interrogate_clip_min_length", 1)
    setting("interrogate_clip_max_length", 8)
    skipped = interrogate.InterrogateModels().interrogate(picture())
    caption, *ranked = skipped.split(", ")
    assert len(caption.split()) <= 4  # max_length counts BLIP's start token and its prompt's three words too
    assert len(ranked) == 2 and all(re.fullmatch(r"\(.+:\d\.\d{3}\)", r) for r in ranked)


def test_dict_limit_keeps_the_first_lines_only(models_dir, setting):
    setting("interrogate_clip_dict_limit", 1)
    setting("interrogate_clip_skip_categories", ["flavors.top3"])
    _, *ranked = interrogate.InterrogateModels().interrogate(picture()).split(", ")
    items = category_items()
    assert ranked == [items["artists"][0], items["mediums"][0], items["movements"][0]]


def test_missing_files_that_cannot_be_downloaded_give_a_clear_message(tmp_path, monkeypatch):
    monkeypatch.setattr(paths_internal, "models_path", str(tmp_path))
    asked = []

    def unreachable(url, *, model_dir, file_name=None, **kwargs):
        asked.append(url)
        raise modelloader.DownloadError("network unreachable")

    monkeypatch.setattr(modelloader, "load_file_from_url", unreachable)
    with pytest.raises(ModelFileMissing) as error:
        deepbooru.DeepDanbooru().tag(picture())
    folder = str(tmp_path / "torch_deepdanbooru")
    assert f"model-resnet_custom_v3.pt in {folder}" in str(error.value) and "network unreachable" in str(error.value)
    assert asked == [deepbooru.MODEL_URL]

    with pytest.raises(ModelFileMissing) as error:
        interrogate.InterrogateModels().interrogate(picture())
    assert f"config.json in {tmp_path / 'BLIP' / 'blip-image-captioning-base'}" in str(error.value)
    assert asked[-1].endswith("/Salesforce/blip-image-captioning-base/resolve/main/config.json")


def test_a_missing_file_is_downloaded_once_into_its_folder(tiny_interrogators, tmp_path, monkeypatch):
    monkeypatch.setattr(paths_internal, "models_path", str(tmp_path))
    source = tiny_interrogators / "torch_deepdanbooru" / deepbooru.MODEL_FILE
    downloads = []

    def download(url, path, timeout=0):
        downloads.append(url)
        os.makedirs(os.path.dirname(path), exist_ok=True)
        shutil.copy(source, path)

    monkeypatch.setattr(modelloader, "download", download)
    monkeypatch.setenv("HF_HUB_OFFLINE", "0")
    model = deepbooru.DeepDanbooru()
    model.load()
    assert (tmp_path / "torch_deepdanbooru" / deepbooru.MODEL_FILE).is_file() and model.model.tags == interrogators.DEEPBOORU_TAGS
    deepbooru.DeepDanbooru().load()
    assert downloads == [deepbooru.MODEL_URL]


def test_img2img_buttons_fill_the_prompt_from_the_modes_image(models_dir, monkeypatch, setting):
    from modules import ui_img2img, ui_interrogate

    setting("interrogate_deepbooru_score_threshold", 0.0)
    monkeypatch.setattr(deepbooru, "model", deepbooru.DeepDanbooru())
    image = picture()
    sketch = {"background": picture(seed=1), "composite": image, "layers": []}
    from_img2img = ui_interrogate.run("deepdanbooru", ui_img2img.IMG2IMG, image, None, None, None, None, "", "")
    from_sketch = ui_interrogate.run("deepdanbooru", ui_img2img.SKETCH, None, sketch, None, None, None, "", "")
    assert from_img2img == from_sketch and "long hair" in from_img2img
    with pytest.raises(Exception, match="upload an image first"):
        ui_interrogate.run("clip", ui_img2img.INPAINT_UPLOAD, None, None, None, None, None, "", "")


def test_only_img2img_has_the_buttons_with_a1111s_ids():
    import gradio as gr

    from modules import ui_toprow

    with gr.Blocks():
        img2img, txt2img = ui_toprow.create_toprow("img2img"), ui_toprow.create_toprow("txt2img")
    assert (img2img.interrogate.elem_id, img2img.deepbooru.elem_id) == ("interrogate", "deepbooru")
    assert (img2img.interrogate.value, img2img.deepbooru.value) == ("\U0001f4ce", "\U0001f4e6")
    assert txt2img.interrogate is None and txt2img.deepbooru is None
