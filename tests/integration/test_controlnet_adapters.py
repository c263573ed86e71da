"""T2I-Adapters (both layouts, SD1 and SDXL) and the SDXL union ControlNet: told apart by their keys, loaded through
one path, applied in the sampling loop; loaded control models are kept by the job's model manager."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from modules import processing
from modules.controlnet import apply, models
from modules.controlnet.units import ControlNetUnit
from modules.shared_options import opts
from tests.fixtures.controlnets import write_t2i_adapter, write_union_controlnet
from tests.integration.engine_helpers import pixels, start_engine, txt2img

SD1, SDXL = "tiny_sd1", "tiny_sdxl"


@pytest.fixture(scope="module")
def cn_dir(tmp_path_factory):
    root = tmp_path_factory.mktemp("ControlNet")
    write_t2i_adapter(root / "t2iadapter_canny_sd15v2.pth", "v1")
    write_t2i_adapter(root / "t2i-adapter_diffusers_xl_canny.safetensors", "xl_base", layout="diffusers")
    write_union_controlnet(root / "controlnet-union-sdxl-promax.safetensors")
    return root


@pytest.fixture()
def engine(tiny_models_dir, tmp_path):
    return start_engine(tiny_models_dir, tmp_path)


def model(name: str):
    return processing.manager_for(processing.StableDiffusionProcessingTxt2Img()).get(processing.resolve_checkpoint(name))


def same_weights(a: torch.nn.Module, b: torch.nn.Module) -> bool:
    sa, sb = a.state_dict(), b.state_dict()
    return set(sa) == set(sb) and all(torch.equal(sa[k].float(), sb[k].float()) for k in sa)


def square() -> np.ndarray:
    image = np.zeros((64, 64, 3), dtype=np.uint8)
    image[16:48, 16:48] = 255
    return image


def run(checkpoint, cn_dir, *units: ControlNetUnit, **kwargs):
    settings = dict(prompt="a red cube", negative_prompt="blurry", steps=4, width=64, height=64, seed=1234,
                    sampler_name="Euler", cfg_scale=7.0, do_not_save_samples=True, do_not_save_grid=True)
    p = processing.StableDiffusionProcessingTxt2Img(**{**settings, **kwargs})
    p.controlnet_units = apply.prepare(list(units), 64, 64, None, [cn_dir], [])
    opts.set("sd_model_checkpoint", checkpoint)
    return processing.process_images(p), p


@pytest.mark.parametrize("family, checkpoint", [("v1", SD1), ("xl_base", SDXL)])
def test_t2i_adapter_layouts_load_the_same_weights(engine, tmp_path, family, checkpoint):
    made = write_t2i_adapter(tmp_path / "original.pth", family, seed=3)
    write_t2i_adapter(tmp_path / "diffusers.safetensors", family, layout="diffusers", seed=3)
    target = model(checkpoint)
    for name in ("original.pth", "diffusers.safetensors"):
        loaded = models.load(tmp_path / name, target)
        assert type(loaded).__name__ == "T2IAdapter" and same_weights(loaded, made)
        assert loaded.config.downscale_factor == (16 if family == "xl_base" else 8)


def test_sketch_adapter_takes_one_channel(engine, tmp_path):
    write_t2i_adapter(tmp_path / "t2iadapter_sketch.pth", "v1", sketch=True)
    assert models.load(tmp_path / "t2iadapter_sketch.pth", model(SD1)).config.in_channels == 1


@pytest.mark.parametrize("checkpoint, name", [(SD1, "t2iadapter_canny_sd15v2"), (SDXL, "t2i-adapter_diffusers_xl_canny")])
def test_t2i_adapter_unit_changes_the_image_through_the_intrablock_residuals(engine, cn_dir, checkpoint, name):
    plain = pixels(txt2img(checkpoint).images[0])
    result, p = run(checkpoint, cn_dir, ControlNetUnit(model=name, image=square()))
    stack = p.denoiser.stage.control
    assert stack.bound[0].features is not None and stack.applied
    assert not np.array_equal(pixels(result.images[0]), plain)
    weak, _ = run(checkpoint, cn_dir, ControlNetUnit(model=name, image=square(), weight=0.3))
    assert not np.array_equal(pixels(weak.images[0]), pixels(result.images[0]))


def test_t2i_adapter_guidance_window(engine, cn_dir):
    _, p = run(SD1, cn_dir, ControlNetUnit(model="t2iadapter_canny_sd15v2", image=square(), guidance_end=0.5), steps=8)
    assert sorted({step for step, _ in p.denoiser.stage.control.applied}) == [0, 1, 2, 3, 4]


def test_t2i_adapter_of_the_wrong_family_is_refused(engine, cn_dir):
    with pytest.raises(models.ControlNetFamilyError, match=r"T2I-Adapter t2iadapter_canny_sd15v2 is for SD1.*tiny_sdxl"):
        run(SDXL, cn_dir, ControlNetUnit(model="t2iadapter_canny_sd15v2", image=square()))


def test_union_controlnet_loads_and_its_control_type_matters(engine, cn_dir, tmp_path):
    made = write_union_controlnet(tmp_path / "union.safetensors", seed=1)
    loaded = models.load(tmp_path / "union.safetensors", model(SDXL))
    assert type(loaded).__name__ == "ControlNetUnionModel" and loaded.config.num_control_type == 8
    assert same_weights(loaded, made)
    name = "controlnet-union-sdxl-promax"
    plain = pixels(txt2img(SDXL).images[0])
    canny, p = run(SDXL, cn_dir, ControlNetUnit(module="canny", model=name, image=square()))
    assert p.denoiser.stage.control.bound[0].union_type == 3
    depth, p = run(SDXL, cn_dir, ControlNetUnit(model=name, image=square(), extra={"union_control_type": "Depth"}))
    assert p.denoiser.stage.control.bound[0].union_type == 1
    assert not np.array_equal(pixels(canny.images[0]), plain)
    assert not np.array_equal(pixels(canny.images[0]), pixels(depth.images[0]))
    with pytest.raises(ValueError, match="needs a control type"):
        run(SDXL, cn_dir, ControlNetUnit(model=name, image=square()))


def test_loaded_control_models_are_kept_by_the_jobs_model_manager(engine, cn_dir):
    unit = ControlNetUnit(model="t2iadapter_canny_sd15v2", image=square())
    _, first = run(SD1, cn_dir, unit)
    _, second = run(SD1, cn_dir, unit)
    assert second.denoiser.stage.control.bound[0].controlnet is first.denoiser.stage.control.bound[0].controlnet
    assert list(engine.auxiliary.values()) == [first.denoiser.stage.control.bound[0].controlnet]
    engine.unload_all()
    assert not engine.auxiliary
