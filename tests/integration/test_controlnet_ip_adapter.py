"""IP-Adapter units (plain and plus, SD1 and SDXL, .bin and .safetensors) with CLIP vision encoders of both layouts
from models/clip_vision: they change the image through the UNet's cross-attention only while they run."""
from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from modules import processing
from modules.controlnet import apply, clip_vision, models
from modules.controlnet.units import ControlNetUnit
from modules.shared_options import opts
from tests.fixtures.ip_adapters import write_clip_vision, write_ip_adapter
from tests.integration.engine_helpers import pixels, start_engine, txt2img

SD1, SDXL = "tiny_sd1", "tiny_sdxl"


@pytest.fixture(scope="module")
def dirs(tmp_path_factory):
    root = tmp_path_factory.mktemp("ip")
    write_ip_adapter(root / "ControlNet" / "ip-adapter_sd15.bin", "v1")
    write_ip_adapter(root / "ControlNet" / "ip-adapter-plus_sdxl_vit-h.safetensors", "xl_base", plus=True)
    write_clip_vision(root / "clip_vision" / "clip_h.pth")
    write_clip_vision(root / "open_clip" / "CLIP-ViT-H-14-laion2B.safetensors", open_clip=True)
    return root


@pytest.fixture()
def engine(tiny_models_dir, tmp_path):
    return start_engine(tiny_models_dir, tmp_path)


def picture(seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (48, 40, 3), dtype=np.uint8)


def unit(model="ip-adapter_sd15", **fields) -> ControlNetUnit:
    return ControlNetUnit(**{"module": "ip-adapter_clip_sd15", "model": model, "image": picture(), **fields})


def run(checkpoint, dirs, *units, clip="clip_vision", **kwargs):
    settings = dict(prompt="a red cube", negative_prompt="blurry", steps=4, width=64, height=64, seed=1234,
                    sampler_name="Euler", cfg_scale=7.0, do_not_save_samples=True, do_not_save_grid=True)
    p = processing.StableDiffusionProcessingTxt2Img(**{**settings, **kwargs})
    p.controlnet_units = apply.prepare(list(units), 64, 64, None, [dirs / "ControlNet"], [], [dirs / clip])
    opts.set("sd_model_checkpoint", checkpoint)
    return processing.process_images(p), p


def model(name: str):
    return processing.manager_for(processing.StableDiffusionProcessingTxt2Img()).get(processing.resolve_checkpoint(name))


def test_plain_sd1_adapter_changes_the_image_and_the_unet_gets_its_processors_back(engine, dirs):
    plain = pixels(txt2img(SD1).images[0])
    unet = model(SD1).unet
    before = dict(unet.attn_processors)
    result, p = run(SD1, dirs, unit())
    assert p.denoiser.stage.control.applied
    assert not np.array_equal(pixels(result.images[0]), plain)
    assert dict(unet.attn_processors) == before
    other, _ = run(SD1, dirs, unit(image=picture(1)))
    assert not np.array_equal(pixels(other.images[0]), pixels(result.images[0]))
    assert np.array_equal(pixels(txt2img(SD1).images[0]), plain)  # nothing of the adapter stays behind


def test_outside_its_window_an_ip_adapter_adds_nothing(engine, dirs):
    plain = pixels(txt2img(SD1, steps=4).images[0])
    result, p = run(SD1, dirs, unit(guidance_start=0.9, guidance_end=1.0), steps=4)
    assert not p.denoiser.stage.control.applied
    assert np.array_equal(pixels(result.images[0]), plain)


def test_plus_sdxl_adapter_with_an_open_clip_encoder(engine, dirs):
    plain = pixels(txt2img(SDXL).images[0])
    result, p = run(SDXL, dirs, unit("ip-adapter-plus_sdxl_vit-h", module="ip-adapter_clip_sdxl_plus_vith"),
                    clip="open_clip")
    bound = p.denoiser.stage.control.bound[0]
    assert bound.image_tokens.cond.shape == (1, 4, 192)
    assert not np.array_equal(pixels(result.images[0]), plain)


def test_open_clip_and_transformers_layouts_encode_the_same(dirs, tmp_path):
    made = write_clip_vision(tmp_path / "a" / "clip_h.safetensors", seed=2)
    write_clip_vision(tmp_path / "b" / "clip_h.safetensors", seed=2, open_clip=True)
    image = Image.fromarray(picture())
    with torch.no_grad():
        expected = made(clip_vision.pixels(image, 32, "cpu", torch.float32)).image_embeds
        for folder in ("a", "b"):
            encoder = clip_vision.load(tmp_path / folder / "clip_h.safetensors", torch.device("cpu"), torch.float32)
            got = encoder(clip_vision.pixels(image, 32, "cpu", torch.float32)).image_embeds
            assert torch.allclose(got, expected, atol=1e-5)


def test_wrong_family_missing_encoder_and_wrong_preprocessor_are_clear_errors(engine, dirs, tmp_path):
    with pytest.raises(models.ControlNetFamilyError, match=r"IP-Adapter ip-adapter_sd15 is for .*tiny_sdxl"):
        run(SDXL, dirs, unit())
    with pytest.raises(clip_vision.ClipVisionMissingError, match=r"clip_g .*put clip_g.pth .* in .*nowhere"):
        apply.prepare([unit(module="ip-adapter_clip_sdxl")], 64, 64, None, [dirs / "ControlNet"], [],
                      [tmp_path / "nowhere"])
    with pytest.raises(ValueError, match="needs an ip-adapter_clip_\\* preprocessor"):
        run(SD1, dirs, unit(module="none"))


def test_an_ip_adapter_and_a_reference_unit_compose(engine, dirs):
    unet = model(SD1).unet
    before = dict(unet.attn_processors)
    seen = {}

    def record(_module, _args, _output):  # the real pass's processors: IP-Adapter's on attn2, reference's on attn1
        names = {type(p).__name__ for p in unet.attn_processors.values()}
        seen.setdefault("names", names)
    handle = unet.mid_block.register_forward_hook(record)
    try:
        reference = ControlNetUnit(module="reference_only", model="None", image=picture(1))
        both, p = run(SD1, dirs, unit(), reference, steps=2)
    finally:
        handle.remove()
    assert {"IPAdapterAttnProcessor2_0", "ReferenceAttnProcessor"} <= seen["names"]
    assert {index for _, index in p.denoiser.stage.control.applied} == {0, 1}
    assert not np.array_equal(pixels(both.images[0]), pixels(run(SD1, dirs, unit(), steps=2)[0].images[0]))
    assert unet.attn_processors == before
