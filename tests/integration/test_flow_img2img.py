"""Chroma and SD 3.5 img2img, inpainting and Hires. fix, as Flux.1's: diffusers' ChromaImg2ImgPipeline and
StableDiffusion3Img2ImgPipeline (schedule cut, noising, real CFG) matched within 1e-4 on the same tiny parts; the
unmasked area stays; Hires. fix runs its second pass at the upscaled size, seeded."""
from __future__ import annotations

import numpy as np
import pytest
import torch
from diffusers import ChromaImg2ImgPipeline, FlowMatchEulerDiscreteScheduler, StableDiffusion3Img2ImgPipeline
from diffusers.image_processor import VaeImageProcessor

from modules import processing, processing_img2img as i2i, sd_models, sd_samplers
from modules.model_families import flow_sampling
from modules.sd_models_config import skeleton
from modules.sd_samplers_cfg_denoiser import CFGDenoiser
from modules.shared_options import opts
from modules.shared_state import state
from tests.fixtures import chroma as tiny_chroma, sd3 as tiny_sd3
from tests.integration.engine_helpers import pixels, start_engine, txt2img
from tests.integration.test_img2img import picture, square_mask

CHECKPOINTS = {"chroma": "chroma-unlocked", "sd3": "sd3.5_medium"}


@pytest.fixture(scope="module")
def roots(tmp_path_factory):
    out = {}
    for family, name in CHECKPOINTS.items():
        root = tmp_path_factory.mktemp(family)
        fixture = tiny_chroma if family == "chroma" else tiny_sd3
        tiny = fixture.make(seed=41)
        fixture.write_transformer_only(root / "models" / "Stable-diffusion" / f"{name}.safetensors", tiny)
        fixture.write_parts(root / "models", tiny)
        out[family] = root
    return out


@pytest.fixture(params=list(CHECKPOINTS))
def family(request, roots):
    start_engine(roots[request.param] / "models", roots[request.param] / "data")
    return request.param


def model_of(family):
    return sd_models.model_manager.get(sd_models.get_closet_checkpoint_match(CHECKPOINTS[family]))


def reference_pipeline(family, model):
    scheduler = FlowMatchEulerDiscreteScheduler.from_config(skeleton(family, "scheduler"))
    if family == "chroma":
        pipe = ChromaImg2ImgPipeline(scheduler=scheduler, vae=model.vae, text_encoder=model.text_encoders["text_encoder"],
                                     tokenizer=model.tokenizers["tokenizer"], transformer=model.unet)
        # takes the encoded latent as FluxImg2ImgPipeline's processor does (Chroma's would resize it as an image)
        pipe.image_processor = VaeImageProcessor(vae_scale_factor=pipe.vae_scale_factor * 2,
                                                 vae_latent_channels=pipe.latent_channels)
        return pipe
    return StableDiffusion3Img2ImgPipeline(
        scheduler=scheduler, vae=model.vae, transformer=model.unet,
        text_encoder=model.text_encoders["text_encoder"], tokenizer=model.tokenizers["tokenizer"],
        text_encoder_2=model.text_encoders["text_encoder_2"], tokenizer_2=model.tokenizers["tokenizer_2"],
        text_encoder_3=model.text_encoders["text_encoder_3"], tokenizer_3=model.tokenizers["tokenizer_3"])


def img2img(family, **kwargs) -> processing.Processed:
    fields = dict(prompt="a red cube", negative_prompt="blurry", steps=3, width=64, height=64, seed=1234,
                  sampler_name="Euler", cfg_scale=3.0, init_images=[picture(0)], denoising_strength=0.6,
                  do_not_save_samples=True, do_not_save_grid=True)
    opts.set("sd_model_checkpoint", CHECKPOINTS[family])
    return processing.process_images(processing.StableDiffusionProcessingImg2Img(**{**fields, **kwargs}))


def test_img2img_matches_the_diffusers_img2img_pipeline(family):
    model, size, steps, strength, cfg = model_of(family), 64, 4, 0.6, 3.0
    init = i2i.encode(model, [picture(3)])
    p = processing.StableDiffusionProcessingImg2Img(steps=steps, sampler_name="Euler")
    stage = processing.make_stage(model, p, ["a red cube"], ["blurry"], size, size)
    tail = processing.denoising_tail(model, flow_sampling.get_sigmas(model.family, "Euler", "Simple", steps, size, size),
                                     strength)
    noise = torch.randn(init.shape, generator=torch.Generator().manual_seed(7))
    x = processing.noised_start(p, init, noise, tail[0], flow=True)
    denoiser = CFGDenoiser().prepare(stage, cfg, state, schedule=tail.tolist())
    ours = sd_samplers.sample(sd_samplers.find_sampler("Euler"), denoiser, x, tail, None)

    cond, uncond = stage.cond.batch[0][0].schedules[0].cond, stage.uncond[0][0].cond
    pipe = reference_pipeline(family, model)
    pipe.set_progress_bar_config(disable=True)
    if family == "chroma":
        embeds = dict(prompt_embeds=cond.context, prompt_attention_mask=cond.mask,
                      negative_prompt_embeds=uncond.context, negative_prompt_attention_mask=uncond.mask)
    else:
        embeds = dict(prompt_embeds=cond.context, pooled_prompt_embeds=cond.pooled,
                      negative_prompt_embeds=uncond.context, negative_pooled_prompt_embeds=uncond.pooled)
    out = pipe(image=init, strength=strength, num_inference_steps=steps, guidance_scale=cfg, height=size, width=size,
               output_type="latent", generator=torch.Generator().manual_seed(7), **embeds).images
    reference = flow_sampling.unpack(out, size // 8, size // 8) if family == "chroma" else out
    assert len(tail) - 1 == 3 and (ours - init).abs().max() > 0.1
    torch.testing.assert_close(ours, reference, rtol=0, atol=1e-4)


def test_inpainting_keeps_the_unmasked_area_and_is_seeded(family):
    init, mask = picture(4), square_mask(box=(16, 16, 47, 47))
    kw = dict(init_images=[init], mask=mask, mask_blur=0, inpainting_fill=1, inpaint_full_res=False,
              denoising_strength=0.9)
    result = img2img(family, **kw)
    out, source = pixels(result.images[0]), pixels(init)
    keep = np.asarray(mask) == 0
    assert (out[keep] == source[keep]).all()
    assert np.abs(out[~keep] - source[~keep]).mean() > 5
    assert (pixels(img2img(family, **kw).images[0]) == out).all()
    assert "Denoising strength: 0.9" in result.infotexts[0] and "CFG scale: 3.0" in result.infotexts[0]


def test_hires_fix_second_pass_at_the_upscaled_size(family):
    kw = dict(cfg_scale=3.0, negative_prompt="blurry", steps=2, width=64, height=64, seed=9, enable_hr=True, hr_scale=2,
              hr_upscaler="Latent", denoising_strength=0.5, hr_second_pass_steps=2)
    first = txt2img(CHECKPOINTS[family], **kw)
    assert first.images[0].size == (128, 128) and "Hires upscale: 2" in first.infotexts[0]
    assert (pixels(first.images[0]) == pixels(txt2img(CHECKPOINTS[family], **kw).images[0])).all()
    other = txt2img(CHECKPOINTS[family], **{**kw, "denoising_strength": 0.8})
    assert (pixels(first.images[0]) != pixels(other.images[0])).any()
