"""Reference units (reference_only, reference_adain, reference_adain+attn) in the sampling loop: they change the
image, weight 0 / disabled equal no unit bit for bit, the write pass sees the noised reference, style fidelity and the
guidance window apply, they run beside a ControlNet, in img2img and the Hires. fix pass, on SDXL, and the UNet's
attention processors and hooks are exactly its own again after the job (also after an error)."""
from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from modules import processing, processing_img2img, script_callbacks
from modules.controlnet import apply, reference
from modules.controlnet.units import ControlNetUnit
from modules.shared_options import opts
from tests.fixtures.controlnets import write_controlnet
from tests.integration.engine_helpers import pixels, start_engine, txt2img

SD1, SDXL = "tiny_sd1", "tiny_sdxl"
SETTINGS = dict(prompt="a red cube", negative_prompt="blurry", steps=2, width=64, height=64, seed=1234,
                sampler_name="Euler", cfg_scale=7.0, do_not_save_samples=True, do_not_save_grid=True)


@pytest.fixture()
def engine(tiny_models_dir, tmp_path):
    return start_engine(tiny_models_dir, tmp_path)


def picture() -> np.ndarray:
    rng = np.random.default_rng(3)
    image = (rng.random((48, 64, 3)) * 255).astype(np.uint8)
    image[8:40, 16:48] = (250, 30, 30)
    return image


def ref(module="reference_only", **fields) -> ControlNetUnit:
    return ControlNetUnit(module=module, model="None", image=picture(), **fields)


def run(checkpoint, *units, cn_dir=None, img2img=False, **kwargs):
    settings = {**SETTINGS, **kwargs}
    prepared = apply.prepare(list(units), settings["width"], settings["height"], None, [cn_dir] if cn_dir else [], [])
    if img2img:
        p = processing.StableDiffusionProcessingImg2Img(init_images=[Image.fromarray(picture()[:, ::-1].copy())],
                                                        denoising_strength=0.6, controlnet_units=prepared, **settings)
    else:
        p = processing.StableDiffusionProcessingTxt2Img(controlnet_units=prepared, **settings)
    opts.set("sd_model_checkpoint", checkpoint)
    result = processing.process_images(p)
    return result, p


def image(result) -> np.ndarray:
    return pixels(result.images[0])


def test_each_reference_module_changes_the_image_in_its_own_way(engine):
    plain = image(txt2img(SD1, steps=2))
    images = []
    for module in ("reference_only", "reference_adain", "reference_adain+attn"):
        result, p = run(SD1, ref(module))
        assert sorted({step for step, _ in p.denoiser.stage.control.applied}) == [0, 1]
        images.append(image(result))
    assert not any(np.array_equal(im, plain) for im in images)
    assert not np.array_equal(images[0], images[1]) and not np.array_equal(images[1], images[2])


def test_weight_zero_or_disabled_equals_no_unit_bit_for_bit(engine):
    plain = image(txt2img(SD1, steps=2))
    for inactive in (dict(weight=0.0), dict(enabled=False)):
        result, p = run(SD1, ref(**inactive))
        assert np.array_equal(image(result), plain)
        assert p.controlnet_units == []


def test_the_write_pass_sees_the_noised_reference(engine):
    inputs, sigmas = [], []
    script_callbacks.on_cfg_denoiser(lambda params: sigmas.append(params.sigma.clone()), name="test_reference")
    unet = engine.get(processing.resolve_checkpoint(SD1)).unet
    handle = unet.conv_in.register_forward_pre_hook(lambda _m, args: inputs.append(args[0].clone()))
    try:
        run(SD1, ref(resize_mode="Just Resize"), steps=2)
    finally:
        handle.remove()
        script_callbacks.remove_current_script_callbacks()
    assert len(inputs) == 2 * len(sigmas) == 4  # per evaluation: the write pass, then the real one
    model = engine.get(processing.resolve_checkpoint(SD1))
    latent = processing_img2img.encode(model, [Image.fromarray(picture()).resize((64, 64), Image.Resampling.LANCZOS)])
    noise = reference.noise([1234], tuple(latent.shape[1:]), latent.device)
    for evaluation, sigma in enumerate(sigmas):
        s = sigma.reshape(-1, 1, 1, 1)[:1]
        expected = (latent + s * noise) / (s**2 + 1) ** 0.5
        written = inputs[2 * evaluation]
        assert written.shape[0] == 2  # the cond and the uncond row, as the real pass has
        torch.testing.assert_close(written, expected.expand(2, -1, -1, -1), atol=1e-5, rtol=1e-5)
        assert not torch.allclose(inputs[2 * evaluation + 1], written, atol=1e-3)


def test_style_fidelity_changes_the_image(engine):
    low, high = (image(run(SD1, ref(threshold_a=value))[0]) for value in (0.0, 1.0))
    assert not np.array_equal(low, high)


def test_guidance_window_and_weight_pick_steps_and_layers(engine):
    _, p = run(SD1, ref(guidance_start=0.5, guidance_end=1.0), steps=4)
    assert sorted({step for step, _ in p.denoiser.stage.control.applied}) == [2, 3]
    layers = p.denoiser.stage.control.layers
    ranks = sorted(layers.attention.values())
    assert ranks[0] == 0.0 and all(0 <= r < 1 for r in ranks)  # weight 1 reaches every self-attention
    assert layers.blocks[0] == (p.sd_model.unet.mid_block, 0.0)


def test_processors_and_hooks_are_restored_after_the_job_and_after_an_error(engine):
    unet = engine.get(processing.resolve_checkpoint(SD1)).unet
    before = dict(unet.attn_processors)
    run(SD1, ref("reference_adain+attn"))
    assert unet.attn_processors == before
    assert not any(m._forward_hooks for m in unet.modules())
    calls = []

    def fail(_module, _args, _output):
        calls.append(1)
        if len(calls) == 2:  # in the real pass of the first evaluation, after the write pass
            raise RuntimeError("boom")

    handle = unet.mid_block.register_forward_hook(fail)
    try:
        with pytest.raises(RuntimeError, match="boom"):
            run(SD1, ref("reference_adain+attn"))
    finally:
        handle.remove()
    assert unet.attn_processors == before
    assert not any(m._forward_hooks for m in unet.modules())


def test_beside_a_controlnet_both_apply(engine, tmp_path):
    write_controlnet(tmp_path / "cn_sd1.safetensors", "v1")
    control = ControlNetUnit(model="cn_sd1", image=picture())
    both, p = run(SD1, control, ref(), cn_dir=tmp_path)
    assert {index for _, index in p.denoiser.stage.control.applied} == {0, 1}
    assert not np.array_equal(image(both), image(run(SD1, control, cn_dir=tmp_path)[0]))


def test_batch_image_equals_its_solo_run(engine):
    batch, _ = run(SD1, ref(), batch_size=2)
    solo, _ = run(SD1, ref(), seed=1235)
    assert np.array_equal(pixels(batch.images[1]), image(solo))


def test_img2img_and_the_hires_pass(engine):
    plain = pixels(processing.process_images(processing.StableDiffusionProcessingImg2Img(
        init_images=[Image.fromarray(picture()[:, ::-1].copy())], denoising_strength=0.6, **SETTINGS)).images[0])
    assert not np.array_equal(image(run(SD1, ref(), img2img=True)[0]), plain)
    result, p = run(SD1, ref(), enable_hr=True, hr_scale=2, hr_upscaler="Latent", denoising_strength=0.5)
    stack = p.denoiser.stage.control
    assert stack.hires and stack.applied and stack.references[0].latent.shape[-2:] == (16, 16)
    assert stack.references[0].fidelity == 0.0  # as the extension: no style fidelity in the hires pass
    assert result.images[0].size == (128, 128)


def test_sdxl(engine):
    plain = image(txt2img(SDXL, steps=2))
    result, p = run(SDXL, ref("reference_adain+attn"))
    assert not np.array_equal(image(result), plain)
    assert p.denoiser.stage.control.references[0].fidelity == pytest.approx(0.5 ** 3)
