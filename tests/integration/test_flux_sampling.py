"""Flux.1 sampling in our loop: the schedule and Euler match diffusers' FluxPipeline on the same tiny parts; seeds,
batches, distilled guidance and real CFG behave as in Forge; txt2img writes Forge's infotext keys."""
from __future__ import annotations

import numpy as np
import pytest
import torch
from diffusers import FlowMatchEulerDiscreteScheduler, FluxPipeline

from modules import infotext_utils, processing, sd_models, sd_samplers
from modules.model_families import flow_sampling
from modules.rng import ImageRNG
from modules.sd_models_config import skeleton
from modules.sd_samplers_cfg_denoiser import CFGDenoiser
from modules.shared_state import state
from tests.fixtures import flux as tiny_flux
from tests.integration.engine_helpers import pixels, start_engine, txt2img

CHECKPOINT = "flux1-dev"


@pytest.fixture(scope="module")
def engine(tmp_path_factory):
    root = tmp_path_factory.mktemp("flux")
    models = root / "models"
    tiny = tiny_flux.make(seed=5)
    tiny_flux.write_transformer_only(models / "Stable-diffusion" / "flux1-dev.safetensors", tiny)
    tiny_flux.write_parts(models, tiny)
    schnell = tiny_flux.make(seed=6, guidance=False)
    tiny_flux.write_all_in_one(models / "Stable-diffusion" / "flux1-schnell-aio.safetensors", schnell)
    start_engine(models, root / "data")
    return sd_models.model_manager


def flux_txt2img(**kwargs):
    defaults = dict(cfg_scale=1.0, negative_prompt="", steps=3, width=64, height=64)
    defaults.update(kwargs)
    return txt2img(CHECKPOINT, **defaults)


@pytest.mark.parametrize("width, height", [(64, 64), (1024, 1024), (512, 768)])
def test_schedule_is_diffusers_shifted_schedule(width, height):
    from modules.model_families.flux import FluxFamily

    steps = 6
    ours = flow_sampling.get_sigmas(FluxFamily(), "Euler", "Simple", steps, width, height)
    config = skeleton("flux", "scheduler")
    scheduler = FlowMatchEulerDiscreteScheduler.from_config(config)
    mu = flow_sampling.calculate_mu(flow_sampling.image_seq_len(width, height), config)
    scheduler.set_timesteps(sigmas=np.linspace(1.0, 1 / steps, steps), mu=mu)
    torch.testing.assert_close(ours, scheduler.sigmas.float(), rtol=0, atol=1e-6)
    schnell = flow_sampling.get_sigmas(FluxFamily(guidance_embeds=False), "Euler", None, steps, width, height)
    torch.testing.assert_close(schnell, torch.cat([torch.linspace(1, 1 / steps, steps), torch.zeros(1)]))
    shifted = flow_sampling.get_sigmas(FluxFamily(), "Euler", None, steps, width, height, shift=3.0)
    s = torch.linspace(1, 1 / steps, steps, dtype=torch.float64)
    torch.testing.assert_close(shifted[:-1], (3 * s / (1 + 2 * s)).float())


def test_euler_matches_diffusers_flux_pipeline(engine):
    model = engine.get(sd_models.get_closet_checkpoint_match(CHECKPOINT))
    steps, size = 3, 32  # a 4x4 latent: 2x2 packed tokens
    p = processing.StableDiffusionProcessingTxt2Img(steps=steps, sampler_name="Euler", distilled_cfg_scale=3.5)
    stage = processing.make_stage(model, p, ["a red cube"], [""], size, size)
    x = ImageRNG((16, size // 8, size // 8), [77], device=torch.device("cpu")).first()
    sigmas = flow_sampling.get_sigmas(model.family, "Euler", "Simple", steps, size, size)
    denoiser = CFGDenoiser().prepare(stage, 1.0, state, schedule=sigmas.tolist())
    ours = sd_samplers.sample(sd_samplers.find_sampler("Euler"), denoiser, x * sigmas[0], sigmas, None)

    cond = stage.cond.batch[0][0].schedules[0].cond
    pipe = FluxPipeline(scheduler=FlowMatchEulerDiscreteScheduler.from_config(skeleton("flux", "scheduler")),
                        vae=model.vae, text_encoder=model.text_encoders["text_encoder"],
                        tokenizer=model.tokenizers["tokenizer"], text_encoder_2=model.text_encoders["text_encoder_2"],
                        tokenizer_2=model.tokenizers["tokenizer_2"], transformer=model.unet)
    pipe.set_progress_bar_config(disable=True)
    packed = pipe(prompt_embeds=cond.context, pooled_prompt_embeds=cond.pooled, latents=flow_sampling.pack(x),
                  num_inference_steps=steps, guidance_scale=3.5, height=size, width=size, output_type="latent").images
    reference = flow_sampling.unpack(packed, size // 8, size // 8)
    assert (ours - x).abs().max() > 0.1  # the run moved the latent
    torch.testing.assert_close(ours, reference, rtol=0, atol=1e-4)


def test_same_seed_same_pixels_and_batch_image_k_is_seed_plus_k(engine):
    batch = flux_txt2img(seed=100, batch_size=2, n_iter=1)
    assert batch.all_seeds == [100, 101]
    images = batch.images[batch.index_of_first_image:]
    assert np.array_equal(pixels(flux_txt2img(seed=100).images[0]), pixels(flux_txt2img(seed=100).images[0]))
    for k in range(2):
        single = flux_txt2img(seed=100 + k).images[0]
        diff = np.abs(pixels(images[k]) - pixels(single))
        # same noise; batched float math may round one level apart (as for SD)
        assert diff.max() <= 1 and (diff > 0).mean() < 0.01, f"image {k} of the batch differs"
    assert np.abs(pixels(images[0]) - pixels(images[1])).max() > 1


def test_distilled_guidance_and_real_cfg_change_the_image(engine):
    base = pixels(flux_txt2img(seed=7).images[0])
    guided = pixels(flux_txt2img(seed=7, distilled_cfg_scale=7.0).images[0])
    real_cfg = pixels(flux_txt2img(seed=7, cfg_scale=4.0, negative_prompt="blurry").images[0])
    assert np.abs(base - guided).max() > 0
    assert np.abs(base - real_cfg).max() > 0


def test_real_cfg_runs_the_uncond_pass_only_above_one(engine):
    calls = []
    model = engine.get(sd_models.get_closet_checkpoint_match(CHECKPOINT))
    hook = model.unet.register_forward_hook(lambda m, args, kwargs, out: calls.append(kwargs["hidden_states"].shape[0]),
                                            with_kwargs=True)
    try:
        flux_txt2img(seed=8, steps=2)
        flux_txt2img(seed=8, steps=2, cfg_scale=3.0, negative_prompt="blurry")
    finally:
        hook.remove()
    assert calls == [1, 1, 2, 2]


def test_infotext_has_forge_keys_and_round_trips(engine):
    result = flux_txt2img(seed=9, distilled_cfg_scale=4.5, sampler_name="Euler")
    info = result.infotexts[0]
    assert "Distilled CFG Scale: 4.5" in info and "Schedule type: Simple" in info and "CFG scale: 1.0" in info
    assert "Module 1: clip_l, Module 2: t5xxl_fp16, Module 3: ae" in info  # Forge's keys for the separate parts
    params = infotext_utils.parse_generation_parameters(info)
    assert params["Distilled CFG Scale"] == "4.5" and params["Sampler"] == "Euler"
    pasted = infotext_utils.infotext_to_fields(params)
    assert pasted.fields["distilled_cfg_scale"] == 4.5 and not pasted.unknown
    assert pasted.override_settings["forge_additional_modules"] == ["clip_l", "t5xxl_fp16", "ae"]


def test_schnell_all_in_one_generates_without_distilled_guidance(engine):
    result = txt2img("flux1-schnell-aio", cfg_scale=1.0, negative_prompt="", steps=2, width=64, height=64, seed=3)
    assert "Distilled CFG Scale" not in result.infotexts[0]
    assert pixels(result.images[0]).std() > 0


def test_samplers_that_do_not_apply_are_refused(engine):
    with pytest.raises(ValueError, match="does not apply to Flux.1"):
        flux_txt2img(sampler_name="Euler a")
    with pytest.raises(ValueError, match="Schedule type Karras"):
        flux_txt2img(sampler_name="Euler", scheduler="Karras")
    for name in flow_sampling.FLOW_SAMPLERS:
        assert flux_txt2img(sampler_name=name, steps=2, seed=1).images


@pytest.mark.parametrize("method", ["Approx cheap", "Approx NN", "TAESD", "Full"])
def test_live_preview_decodes_flux_latents_with_its_vae(engine, method):
    from modules import live_preview

    model = engine.get(sd_models.get_closet_checkpoint_match(CHECKPOINT))
    latents = torch.randn(1, 16, 8, 8)
    preview = live_preview.latents_to_images(latents, model, method)[0]
    assert preview.size == (64, 64)
    assert np.array_equal(np.asarray(preview), np.asarray(processing.decode_latents(model, latents)[0]))
