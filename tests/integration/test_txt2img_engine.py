"""process_images on tiny random-weight checkpoints: reproducibility, batches, variation, refiner, clip skip, tiling."""
from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from modules import images, processing, sd_samplers
from modules.shared_options import opts
from modules.shared_state import state
from tests.integration.engine_helpers import pixels, start_engine, txt2img

SD1 = "tiny_sd1"
SDXL = "tiny_sdxl"
REFINER = "tiny_sdxl_refiner"


@pytest.fixture()
def engine(tiny_models_dir, tmp_path):
    return start_engine(tiny_models_dir, tmp_path)


def test_same_seed_gives_identical_pixels(engine):
    a = txt2img(SD1).images[0]
    b = txt2img(SD1).images[0]
    c = txt2img(SD1, seed=1235).images[0]
    assert a.size == (64, 64)
    assert np.array_equal(pixels(a), pixels(b))
    assert not np.array_equal(pixels(a), pixels(c))


@pytest.mark.parametrize("sampler", ["Euler", "Euler a", "DPM++ 2M SDE"])
def test_batch_image_k_equals_single_image_with_seed_plus_k(engine, sampler):
    batch = txt2img(SD1, sampler_name=sampler, batch_size=3, seed=100)
    assert batch.all_seeds == [100, 101, 102]
    images_only = batch.images[batch.index_of_first_image:]
    for k in range(3):
        single = txt2img(SD1, sampler_name=sampler, seed=100 + k).images[0]
        diff = np.abs(pixels(images_only[k]) - pixels(single))
        # Same noise (tests/unit/test_rng.py checks it bit for bit); batched float math may round one level apart.
        assert diff.max() <= 1 and (diff > 0).mean() < 0.01, f"image {k} of the batch differs"
    assert not np.array_equal(pixels(images_only[0]), pixels(images_only[1]))


def test_batch_count_continues_seeds(engine):
    result = txt2img(SD1, n_iter=2, batch_size=1, seed=7)
    assert result.all_seeds == [7, 8]
    assert np.array_equal(pixels(result.images[-1]), pixels(txt2img(SD1, seed=8).images[0]))


def test_variation_strength_zero_equals_no_variation(engine):
    plain = txt2img(SD1, seed=5).images[0]
    zero = txt2img(SD1, seed=5, subseed=999, subseed_strength=0.0).images[0]
    some = txt2img(SD1, seed=5, subseed=999, subseed_strength=0.5).images[0]
    assert np.array_equal(pixels(plain), pixels(zero))
    assert not np.array_equal(pixels(plain), pixels(some))


def test_variation_keeps_seed_and_increments_subseed(engine):
    result = txt2img(SD1, seed=5, subseed=50, subseed_strength=0.3, batch_size=2)
    assert result.all_seeds == [5, 5]
    assert result.all_subseeds == [50, 51]
    assert "Variation seed: 50, Variation seed strength: 0.3" in result.infotexts[-2]


def test_seed_resize_from_keeps_centre_of_smaller_noise(engine):
    small = txt2img(SD1, seed=3, width=64, height=64)
    resized = txt2img(SD1, seed=3, width=64, height=64, seed_resize_from_w=64, seed_resize_from_h=64)
    assert np.array_equal(pixels(small.images[0]), pixels(resized.images[0]))
    wider = txt2img(SD1, seed=3, width=96, height=64, seed_resize_from_w=64, seed_resize_from_h=64)
    assert "Seed resize from: 64x64" in wider.info


def test_clip_skip_two_changes_the_image(engine):
    one = txt2img(SD1).images[0]
    two = txt2img(SD1, override_settings={"CLIP_stop_at_last_layers": 2}).images[0]
    assert not np.array_equal(pixels(one), pixels(two))
    assert opts.CLIP_stop_at_last_layers == 1, "override_settings must be restored after the job"


def test_sdxl_generates_and_writes_size_conditioned_image(engine):
    result = txt2img(SDXL, steps=3)
    assert result.images[0].size == (64, 64)
    assert np.isfinite(pixels(result.images[0])).all()


@pytest.mark.parametrize("steps,switch_at", [(10, 0.5), (10, 0.8), (6, 0.5)])
def test_refiner_unet_runs_from_switch_step_by_sampling_steps(engine, steps, switch_at):
    opts.set("refiner_switch_by_sample_steps", True)
    p = processing.StableDiffusionProcessingTxt2Img(prompt="x", steps=steps, width=64, height=64, seed=1, sampler_name="Euler",
                                                    refiner_checkpoint=REFINER, refiner_switch_at=switch_at,
                                                    do_not_save_samples=True)
    opts.set("sd_model_checkpoint", SDXL)
    result = processing.process_images(p)
    calls = p.denoiser.calls
    refiner_steps = [step for step, title in calls if REFINER in title]
    base_steps = [step for step, title in calls if REFINER not in title]
    assert refiner_steps[0] == round(switch_at * steps)
    assert base_steps == list(range(round(switch_at * steps)))
    assert refiner_steps == list(range(round(switch_at * steps), steps))
    assert "Refiner: tiny_sdxl_refiner [" in result.info and f"Refiner switch at: {switch_at}" in result.info


def test_refiner_switch_by_timestep_follows_the_schedule(engine):
    """A1111 >= 1.9: switch once the nearest training timestep of sigma has passed switch_at of the way."""
    p = processing.StableDiffusionProcessingTxt2Img(prompt="x", steps=10, width=64, height=64, seed=1, sampler_name="Euler",
                                                    refiner_checkpoint=REFINER, refiner_switch_at=0.5, do_not_save_samples=True)
    opts.set("sd_model_checkpoint", SDXL)
    processing.process_images(p)
    model_sigmas = p.sd_model.model_sigmas
    sigmas = sd_samplers.get_sigmas(sd_samplers.find_sampler("Euler"), "Automatic", 10, model_sigmas, is_sdxl=True)
    done = [(999 - float(model_sigmas.sigma_to_t(s.reshape(1)).round())) / 1000 for s in sigmas[:-1]]
    expected = next(i for i, d in enumerate(done) if d >= 0.5)
    assert p.denoiser.switched_at_step == expected
    assert [s for s, t in p.denoiser.calls if REFINER in t][0] == expected


def test_refiner_of_another_latent_space_is_refused(engine):
    with pytest.raises(ValueError, match="do not share a latent space"):
        txt2img(SD1, refiner_checkpoint=REFINER, refiner_switch_at=0.5)


def test_every_sampler_name_produces_a_finite_image(engine):
    for sampler in sd_samplers.all_samplers:
        result = txt2img(SD1, sampler_name=sampler.name, steps=3)
        arr = np.asarray(result.images[0])
        assert arr.shape == (64, 64, 3) and arr.std() > 0, sampler.name  # a NaN latent decodes to one flat colour
        assert f"Sampler: {sampler.name}," in result.info


def test_old_combined_sampler_name_is_split(engine):
    result = txt2img(SD1, sampler_name="DPM++ 2M Karras")
    assert "Sampler: DPM++ 2M, Schedule type: Karras," in result.info


def test_infotext_of_a_known_job(engine):
    result = txt2img(SD1, prompt="a cat, (fluffy:1.2)", negative_prompt="dog", steps=4, seed=42, sampler_name="Euler a",
                     cfg_scale=6.5)
    info = engine.current.sd_checkpoint_info
    assert result.info == (
        "a cat, (fluffy:1.2)\nNegative prompt: dog\n"
        f"Steps: 4, Sampler: Euler a, Schedule type: Automatic, CFG scale: 6.5, Seed: 42, Size: 64x64, "
        f"Model hash: {info.shorthash}, Model: tiny_sd1, Version: {processing.VERSION}"
    )


def test_saved_png_carries_the_infotext(engine, tmp_path):
    result = txt2img(SD1, do_not_save_samples=False)
    saved = list((tmp_path / "outputs" / "txt2img-images").rglob("*.png"))
    assert len(saved) == 1
    assert saved[0].name.startswith("00000-1234")
    text, _ = images.read_info_from_image(Image.open(saved[0]))
    assert text == result.info
    assert (tmp_path / "params.txt").read_text() == result.info


def test_tiling_makes_unet_and_vae_wrap_around(engine):
    """With circular padding the image is a torus: shifting the latent shifts the picture, edges included."""
    txt2img(SD1)
    model = engine.current
    z = torch.randn(1, 4, 8, 8, generator=torch.Generator().manual_seed(0))
    shift = 4  # latent pixels; a multiple of the tiny UNet's downsampling

    def decode(latent):
        with torch.inference_mode():
            return model.vae.decode(latent).sample

    with processing.seamless_tiling(model, True):
        wrapped = decode(torch.roll(z, shift, dims=3))
        rolled = torch.roll(decode(z), 8 * shift, dims=3)
        assert torch.allclose(wrapped, rolled, atol=1e-4)
    plain = decode(torch.roll(z, shift, dims=3))
    assert not torch.allclose(plain, torch.roll(decode(z), 8 * shift, dims=3), atol=1e-4)
    tiled = txt2img(SD1, tiling=True)
    assert ", Tiling: True," in tiled.info


def test_interrupt_between_steps_keeps_the_image(engine):
    import threading

    def stop_when_running():
        for _ in range(2000):
            if state.sampling_step >= 2:
                state.interrupt()
                return
            threading.Event().wait(0.005)

    reference = txt2img(SD1, steps=4).images[0]
    watcher = threading.Thread(target=stop_when_running)
    watcher.start()
    result = txt2img(SD1, steps=150, n_iter=3)
    watcher.join()
    assert len(result.images) == 1
    assert state.sampling_step < 150
    after = txt2img(SD1, steps=4).images[0]
    assert np.array_equal(pixels(after), pixels(reference)), "the next job starts clean and runs to the end"


def test_bad_size_is_refused_with_a_clear_message(engine):
    with pytest.raises(ValueError, match="multiples of 8"):
        txt2img(SD1, width=63)


def test_unknown_sampler_is_refused(engine):
    with pytest.raises(ValueError, match="Sampler not found"):
        txt2img(SD1, sampler_name="Nope")


def test_half_precision_vae_nan_is_decoded_again_in_float32(sdxl_ckpt):
    import copy
    from types import SimpleNamespace

    vae = copy.deepcopy(sdxl_ckpt.vae).half()
    latents = torch.full((1, 4, 8, 8), 1e4)  # beyond float16's range once divided by the scaling factor
    with torch.inference_mode():
        assert torch.isnan(vae.decode((latents / vae.config.scaling_factor).half()).sample).any()
    opts.set("auto_vae_precision", True)
    decoded = processing.decode_latents(SimpleNamespace(vae=vae), latents)
    assert next(vae.parameters()).dtype == torch.float32
    assert np.asarray(decoded[0]).std() > 0
