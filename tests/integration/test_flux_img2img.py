"""Flux.1 img2img, inpainting and Hires. fix: diffusers' FluxImg2ImgPipeline's cut of the schedule and its noising
x_t = (1 - sigma) * x0 + sigma * noise, matched within 1e-4 on the same tiny parts; same seed, same pixels; the
unmasked area stays; Hires. fix runs its second pass at the upscaled size."""
from __future__ import annotations

import numpy as np
import pytest
import torch
from diffusers import FlowMatchEulerDiscreteScheduler, FluxImg2ImgPipeline

from modules import processing, processing_img2img as i2i, sd_models, sd_samplers
from modules.model_families import flow_sampling
from modules.sd_models_config import skeleton
from modules.sd_samplers_cfg_denoiser import CFGDenoiser
from modules.shared_options import opts
from modules.shared_state import state
from tests.fixtures import flux as tiny_flux
from tests.integration.engine_helpers import pixels, start_engine, txt2img
from tests.integration.test_img2img import picture, square_mask

CHECKPOINT = "flux1-dev"


@pytest.fixture(scope="module")
def engine(tmp_path_factory):
    root = tmp_path_factory.mktemp("fluxi2i")
    models = root / "models"
    tiny = tiny_flux.make(seed=21)
    tiny_flux.write_transformer_only(models / "Stable-diffusion" / f"{CHECKPOINT}.safetensors", tiny)
    tiny_flux.write_parts(models, tiny)
    manager = start_engine(models, root / "data")
    return manager.get(sd_models.get_closet_checkpoint_match(CHECKPOINT))


def img2img(**kwargs) -> processing.Processed:
    fields = dict(prompt="a red cube", negative_prompt="", steps=4, width=64, height=64, seed=1234, sampler_name="Euler",
                  cfg_scale=1.0, init_images=[picture(0)], denoising_strength=0.6, do_not_save_samples=True,
                  do_not_save_grid=True)
    fields.update(kwargs)
    opts.set("sd_model_checkpoint", CHECKPOINT)
    return processing.process_images(processing.StableDiffusionProcessingImg2Img(**fields))


@pytest.mark.parametrize("steps, strength", [(4, 0.6), (4, 0.5), (4, 1.0)])
def test_img2img_matches_diffusers_flux_img2img_pipeline(engine, steps, strength):
    model, size = engine, 64
    image = picture(3)
    pipe = FluxImg2ImgPipeline(scheduler=FlowMatchEulerDiscreteScheduler.from_config(skeleton("flux", "scheduler")),
                               vae=model.vae, text_encoder=model.text_encoders["text_encoder"],
                               tokenizer=model.tokenizers["tokenizer"],
                               text_encoder_2=model.text_encoders["text_encoder_2"],
                               tokenizer_2=model.tokenizers["tokenizer_2"], transformer=model.unet)
    pipe.set_progress_bar_config(disable=True)
    init = i2i.encode(model, [image])
    with torch.inference_mode():  # diffusers' _encode_vae_image, with the distribution's mode
        dist = model.vae.encode(pipe.image_processor.preprocess(image, height=size, width=size)).latent_dist
        reference_init = (dist.mode() - model.vae.config.shift_factor) * model.vae.config.scaling_factor
    torch.testing.assert_close(init, reference_init, rtol=0, atol=1e-5)

    p = processing.StableDiffusionProcessingImg2Img(steps=steps, sampler_name="Euler", distilled_cfg_scale=3.5)
    stage = processing.make_stage(model, p, ["a red cube"], [""], size, size)
    sigmas = flow_sampling.get_sigmas(model.family, "Euler", "Simple", steps, size, size)
    tail = processing.denoising_tail(model, sigmas, strength)
    noise = torch.randn(init.shape, generator=torch.Generator().manual_seed(7))
    x = processing.noised_start(p, init, noise, tail[0], flow=True)
    denoiser = CFGDenoiser().prepare(stage, 1.0, state, schedule=tail.tolist())
    ours = sd_samplers.sample(sd_samplers.find_sampler("Euler"), denoiser, x, tail, None)

    cond = stage.cond.batch[0][0].schedules[0].cond
    packed = pipe(image=init, prompt_embeds=cond.context, pooled_prompt_embeds=cond.pooled, strength=strength,
                  num_inference_steps=steps, guidance_scale=3.5, height=size, width=size, output_type="latent",
                  generator=torch.Generator().manual_seed(7)).images
    reference = flow_sampling.unpack(packed, size // 8, size // 8)
    assert (ours - init).abs().max() > 0.1
    torch.testing.assert_close(ours, reference, rtol=0, atol=1e-4)


def test_img2img_same_seed_same_pixels_and_strength_matters(engine):
    first = img2img()
    assert (pixels(first.images[0]) == pixels(img2img().images[0])).all()
    assert (pixels(first.images[0]) != pixels(img2img(denoising_strength=0.9).images[0])).any()
    assert "Denoising strength: 0.6" in first.infotexts[0] and "Distilled CFG Scale: 3.5" in first.infotexts[0]


def test_batch_image_k_is_seed_plus_k_alone(engine):
    batch = img2img(batch_size=2, init_images=[picture(0)])
    alone = img2img(seed=1235)
    assert (pixels(batch.images[1]) == pixels(alone.images[0])).all()


def test_inpainting_blends_the_masked_latent_and_keeps_the_rest(engine):
    init = picture(4)
    mask = square_mask(box=(16, 16, 47, 47))
    result = img2img(init_images=[init], mask=mask, mask_blur=0, inpainting_fill=1, inpaint_full_res=False,
                     denoising_strength=0.9)
    out, source = pixels(result.images[0]), pixels(init)
    keep = np.asarray(mask) == 0
    assert (out[keep] == source[keep]).all()
    assert np.abs(out[~keep] - source[~keep]).mean() > 5
    assert "Mask blur: 0" in result.infotexts[0] or "Masked content" in result.infotexts[0]


def test_hires_fix_second_pass_at_the_upscaled_size_is_reproducible(engine):
    kw = dict(cfg_scale=1.0, negative_prompt="", steps=3, width=64, height=64, seed=9, enable_hr=True, hr_scale=2,
              hr_upscaler="Latent", denoising_strength=0.5, hr_second_pass_steps=3)
    first = txt2img(CHECKPOINT, **kw)
    assert first.images[0].size == (128, 128)
    assert (pixels(first.images[0]) == pixels(txt2img(CHECKPOINT, **kw).images[0])).all()
    other = txt2img(CHECKPOINT, **{**kw, "denoising_strength": 0.8})
    assert (pixels(first.images[0]) != pixels(other.images[0])).any()
    assert "Hires upscale: 2" in first.infotexts[0]
