"""Callbacks fired by the engine on the tiny SD1 checkpoint: the CFG callbacks at every sampling step, the image-save
callbacks, and on_model_loaded."""
from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from modules import images, script_callbacks, sd_models
from modules.shared_options import opts
from tests.integration.engine_helpers import pixels, start_engine, txt2img

SD1 = "tiny_sd1.safetensors"


@pytest.fixture(scope="module")
def engine(tiny_models_dir, tmp_path_factory):
    return start_engine(tiny_models_dir, tmp_path_factory.mktemp("data"))


@pytest.fixture(autouse=True)
def no_callbacks():
    script_callbacks.clear_callbacks()
    yield
    script_callbacks.clear_callbacks()


def test_cfg_callbacks_see_every_step_and_can_change_the_result(engine):
    plain = txt2img(SD1, steps=3, batch_size=2)
    seen = []

    def denoiser(params):
        seen.append(("denoiser", params.sampling_step, params.total_sampling_steps, tuple(params.x.shape),
                     tuple(params.text_cond.shape), tuple(params.text_uncond.shape), params.image_cond))
        assert params.denoiser.cfg_scale == 7.0 and params.sigma.shape == (2,)

    def denoised(params):
        seen.append(("denoised", params.sampling_step, tuple(params.x.shape)))
        assert params.inner_model is sd_models.model_manager.current.unet

    def after(params):
        seen.append(("after", params.sampling_step, tuple(params.x.shape)))

    script_callbacks.on_cfg_denoiser(denoiser)
    script_callbacks.on_cfg_denoised(denoised)
    script_callbacks.on_cfg_after_cfg(after)
    watched = txt2img(SD1, steps=3, batch_size=2)
    context = tuple(seen[0][4])
    assert seen == [item for step in range(3) for item in (
        ("denoiser", step, 3, (2, 4, 8, 8), context, context, None),  # two images' latents and prompt embeddings
        ("denoised", step, (4, 4, 8, 8)),  # the cond rows, then the uncond rows
        ("after", step, (2, 4, 8, 8)))]
    assert np.array_equal(pixels(plain.images[1]), pixels(watched.images[1]))  # watching changes nothing

    script_callbacks.clear_callbacks()
    script_callbacks.on_cfg_after_cfg(lambda params: setattr(params, "x", torch.zeros_like(params.x)))
    zeroed = txt2img(SD1, steps=3)
    assert not np.array_equal(pixels(plain.images[1]), pixels(zeroed.images[0]))


def test_cfg_denoiser_callback_may_replace_the_conditioning(engine):
    base = txt2img(SD1, steps=2, prompt="a red cube", negative_prompt="")
    other = txt2img(SD1, steps=2, prompt="a blue ball", negative_prompt="")
    conds = []
    script_callbacks.on_cfg_denoiser(lambda params: conds.append(params.text_cond))
    txt2img(SD1, steps=2, prompt="a blue ball", negative_prompt="")
    script_callbacks.clear_callbacks()
    script_callbacks.on_cfg_denoiser(lambda params: setattr(params, "text_cond", conds[params.sampling_step]))
    swapped = txt2img(SD1, steps=2, prompt="a red cube", negative_prompt="")
    assert np.array_equal(pixels(swapped.images[0]), pixels(other.images[0]))
    assert not np.array_equal(pixels(base.images[0]), pixels(other.images[0]))


def test_before_image_saved_can_change_the_image_and_image_saved_gets_the_file(tmp_path):
    saved = []

    def invert(params):
        assert params.pnginfo == {"parameters": "a red cube"} and params.p == "job"
        assert params.filename.startswith(str(tmp_path)) and params.filename.endswith(".png")
        params.image = Image.new("RGB", params.image.size, (0, 0, 255))
        params.pnginfo["extra"] = "by a callback"

    script_callbacks.on_before_image_saved(invert)
    script_callbacks.on_image_saved(lambda params: saved.append((params.filename, params.image.getpixel((0, 0)))))
    fullfn, _ = images.save_image(Image.new("RGB", (8, 8), (255, 0, 0)), str(tmp_path), "", seed=1, prompt="p",
                                  info="a red cube", p="job", forced_filename="picture", save_to_dirs=False)
    assert fullfn == str(tmp_path / "picture.png")
    assert saved == [(fullfn, (0, 0, 255))]
    with Image.open(fullfn) as image:
        assert image.getpixel((0, 0)) == (0, 0, 255)
        assert image.info["parameters"] == "a red cube" and image.info["extra"] == "by a callback"


def test_before_image_saved_may_choose_the_file(tmp_path):
    script_callbacks.on_before_image_saved(lambda params: setattr(params, "filename", str(tmp_path / "mine.webp")))
    fullfn, _ = images.save_image(Image.new("RGB", (8, 8)), str(tmp_path / "out"), "", info="x", forced_filename="a")
    assert fullfn == str(tmp_path / "mine.webp")
    with Image.open(fullfn) as image:
        assert image.format == "WEBP"


def test_model_loaded_fires_once_per_load(engine):
    loaded = []
    script_callbacks.on_model_loaded(lambda model: loaded.append(model.sd_checkpoint_info.name_for_extra))
    engine.unload_all()
    opts.set("sd_model_checkpoint", SD1)
    txt2img(SD1, steps=1)
    txt2img(SD1, steps=1)  # already loaded: no callback
    assert loaded == ["tiny_sd1"]
