"""ControlNet units in the sampling loop: they change the image, only in their step window, sum, respect weight 0 and
disabled bit for bit, follow the control modes, run in the Hires. fix pass and skip a refiner of another family."""
from __future__ import annotations

import logging

import numpy as np
import pytest

from modules import processing
from modules.controlnet import apply, models
from modules.controlnet.units import ControlNetUnit
from modules.shared_options import opts
from tests.fixtures.controlnets import write_controlnet
from tests.integration.engine_helpers import pixels, start_engine, txt2img

SD1, SDXL, REFINER = "tiny_sd1", "tiny_sdxl", "tiny_sdxl_refiner"


@pytest.fixture(scope="module")
def cn_dir(tmp_path_factory):
    root = tmp_path_factory.mktemp("ControlNet")
    write_controlnet(root / "cn_sd1.safetensors", "v1")
    write_controlnet(root / "cn_sd1_other.pth", "v1", seed=5)
    write_controlnet(root / "cn_sdxl.safetensors", "xl_base")
    return root


@pytest.fixture()
def engine(tiny_models_dir, tmp_path):
    return start_engine(tiny_models_dir, tmp_path)


def square() -> np.ndarray:
    image = np.zeros((64, 64, 3), dtype=np.uint8)
    image[16:48, 16:48] = 255
    return image


def units(cn_dir, *given: ControlNetUnit, size=64):
    return apply.prepare(list(given), size, size, None, [cn_dir], [])


def unit(model="cn_sd1", **fields) -> ControlNetUnit:
    return ControlNetUnit(model=model, image=square(), **fields)


class Run:
    """A job's result with its processing object, whose denoiser tells which unit ran at which step."""

    def __init__(self, checkpoint, cn_dir, *given, **kwargs):
        settings = dict(prompt="a red cube", negative_prompt="blurry", steps=4, width=64, height=64, seed=1234,
                        sampler_name="Euler", cfg_scale=7.0, do_not_save_samples=True, do_not_save_grid=True)
        p = processing.StableDiffusionProcessingTxt2Img(**{**settings, **kwargs}, controlnet_units=units(cn_dir, *given))
        opts.set("sd_model_checkpoint", checkpoint)
        result = processing.process_images(p)
        self.images, self.infotexts, self.denoiser = result.images, result.infotexts, p.denoiser


run = Run


def test_a_unit_changes_the_image(engine, cn_dir):
    plain = pixels(txt2img(SD1).images[0])
    assert not np.array_equal(pixels(run(SD1, cn_dir, unit()).images[0]), plain)


@pytest.mark.parametrize("inactive", [dict(weight=0.0), dict(enabled=False), dict(model="None")])
def test_weight_zero_or_disabled_equals_no_controlnet_bit_for_bit(engine, cn_dir, inactive):
    plain = pixels(txt2img(SD1).images[0])
    result = run(SD1, cn_dir, unit(**inactive))
    assert np.array_equal(pixels(result.images[0]), plain)
    assert "ControlNet 0" not in result.infotexts[0]


def test_guidance_window_applies_only_in_its_steps(engine, cn_dir):
    result = run(SD1, cn_dir, unit(guidance_start=0.5, guidance_end=0.75), steps=8)
    steps = sorted({step for step, _ in result.denoiser.stage.control.applied})
    assert steps == [4, 5, 6]  # step / 8 within [0.5, 0.75]
    full = pixels(run(SD1, cn_dir, unit()).images[0])
    assert not np.array_equal(pixels(result.images[0]), full)


def test_two_units_both_contribute(engine, cn_dir):
    a = unit()
    b = unit("cn_sd1_other")
    both = run(SD1, cn_dir, a, b)
    assert {index for _, index in both.denoiser.stage.control.applied} == {0, 1}
    only_a, only_b = pixels(run(SD1, cn_dir, a).images[0]), pixels(run(SD1, cn_dir, b).images[0])
    assert not np.array_equal(pixels(both.images[0]), only_a)
    assert not np.array_equal(pixels(both.images[0]), only_b)


def test_control_modes_differ(engine, cn_dir):
    images = [pixels(run(SD1, cn_dir, unit(control_mode=mode)).images[0])
              for mode in ("Balanced", "My prompt is more important", "ControlNet is more important")]
    assert not np.array_equal(images[0], images[1])
    assert not np.array_equal(images[0], images[2])


def test_wrong_family_is_refused_with_both_names(engine, cn_dir):
    with pytest.raises(models.ControlNetFamilyError, match="cn_sd1 is for SD1.*tiny_sdxl.*SDXL"):
        run(SDXL, cn_dir, unit())


def test_sdxl_unit_applies_and_the_refiner_of_another_width_runs_without_it(engine, cn_dir, caplog):
    with caplog.at_level(logging.INFO, logger="modules.controlnet.apply"):
        result = run(SDXL, cn_dir, unit("cn_sdxl"), refiner_checkpoint=REFINER, refiner_switch_at=0.5)
    assert result.denoiser.switched_at_step is not None
    assert "not applied to the refiner" in caplog.text
    plain = pixels(txt2img(SDXL, refiner_checkpoint=REFINER, refiner_switch_at=0.5).images[0])
    assert not np.array_equal(pixels(result.images[0]), plain)


def test_applied_in_the_hires_pass(engine, cn_dir):
    hires = dict(enable_hr=True, hr_scale=2, hr_upscaler="Latent", denoising_strength=0.5)
    result = run(SD1, cn_dir, unit(module="canny"), **hires)
    stack = result.denoiser.stage.control
    assert stack.hires and stack.applied and stack.bound[0].hint.shape[-2:] == (128, 128)
    assert stack._scales(stack.bound[0].prepared, 4)[0] < 0.1  # canny is soft in the hires pass, as in the extension
