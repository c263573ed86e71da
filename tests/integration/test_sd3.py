"""SD 3.5 through the real path: Medium and Large files load in Stability's layout and the all-in-one layout (sizes from
the tensors, every tensor equal to the source), a missing part names what to put where; our Euler matches diffusers'
StableDiffusion3Pipeline on the same tiny parts; seeds, batches and real CFG behave as for SD; the infotext round-trips."""
from __future__ import annotations

import numpy as np
import pytest
import torch
from diffusers import FlowMatchEulerDiscreteScheduler, StableDiffusion3Pipeline

from modules import infotext_utils, ldm_layout, model_families, processing, sd_models, sd_samplers
from modules.model_families import flow_sampling, sd3
from modules.rng import ImageRNG
from modules.sd_models_config import UnknownModelError, skeleton
from modules.sd_models_loader import CheckpointLoadError
from modules.sd_samplers_cfg_denoiser import CFGDenoiser
from modules.sd_samplers_common import InterruptedException
from modules.shared_state import state
from tests.fixtures import flux as tiny_flux, sd3 as tiny_sd3
from tests.integration.engine_helpers import pixels, start_engine, txt2img

CHECKPOINT = "sd3.5_medium"
MODULES = ["clip_l.safetensors", "clip_g.safetensors", "t5xxl_fp16.safetensors", "sd3.5_vae.safetensors"]


@pytest.fixture(scope="module")
def tiny():
    return tiny_sd3.make(seed=31)


@pytest.fixture(scope="module")
def files(tmp_path_factory, tiny):
    root = tmp_path_factory.mktemp("sd3")
    tiny_sd3.write_transformer_only(root / "models" / "Stable-diffusion" / f"{CHECKPOINT}.safetensors", tiny)
    tiny_sd3.write_parts(root / "models", tiny)
    flux_vae = {k: v + 1 for k, v in ldm_layout.vae_to_ldm(tiny.vae, "").items()}  # Flux's ae: same shapes, sorts first
    tiny_flux._save(root / "models" / "VAE" / "ae.safetensors", flux_vae)
    return root


@pytest.fixture(scope="module")
def manager(files):
    return start_engine(files / "models", files / "data")


@pytest.fixture
def engine(files, manager):
    """The module's models, loaded once; settings afresh for each test (others start engines of their own)."""
    return start_engine(files / "models", files / "data", manager=manager)


def sd3_txt2img(**kwargs):
    defaults = dict(cfg_scale=1.0, negative_prompt="", steps=3, width=64, height=64)
    return txt2img(CHECKPOINT, **{**defaults, **kwargs})


def _assert_same(module, reference):
    ours, theirs = module.state_dict(), reference.state_dict()
    assert set(ours) == set(theirs)
    for key, value in theirs.items():
        assert torch.equal(ours[key], value), key


def _assert_all_parts(model, tiny):
    _assert_same(model.unet, tiny.transformer)
    _assert_same(model.text_encoders["text_encoder"], tiny.clip_l)
    _assert_same(model.text_encoders["text_encoder_2"], tiny.clip_g)
    _assert_same(model.text_encoders["text_encoder_3"], tiny.t5)
    _assert_same(model.vae, tiny.vae)


def test_transformer_only_with_separate_parts(engine, tiny):
    model = engine.get(sd_models.get_closet_checkpoint_match(CHECKPOINT))
    assert model.family.label == "SD 3.5 Medium" and not model.family.distilled_guidance
    _assert_all_parts(model, tiny)  # the VAE with sd3 in its name, not Flux's ae beside it
    assert model.unet.config.dual_attention_layers == (0,)
    assert model.extra["modules"] == MODULES


def test_sizes_come_from_the_tensors(tiny):
    sd3_medium = tiny_sd3.make(seed=33, medium=False, qk_norm=False)  # SD 3 Medium: no q/k norms, 64-wide heads
    for source, label in ((tiny, "SD 3.5 Medium"), (sd3_medium, "SD 3")):
        config = sd3.transformer_config(source.transformer_sai, "")
        expected = {k: v for k, v in source.transformer.config.items() if k in config and k != "sample_size"}
        assert {k: config[k] for k in expected} == expected
        assert sd3.detect({tiny_sd3.PREFIX + k: v for k, v in source.transformer_sai.items()}).label == label
    assert sd3_medium.transformer.config.qk_norm is None
    assert sd3.detect(tiny.transformer_sai).label == "SD 3.5 Medium"  # Stability's keys without the prefix
    narrow = {**tiny.transformer_sai, "joint_blocks.0.x_block.mlp.fc1.weight": torch.zeros(3 * 64, 64)}
    with pytest.raises(UnknownModelError, match="SD3 blocks with an MLP of 192 for width 64"):
        sd3.transformer_config(narrow, "")
    assert sd3.clip_config(tiny_sd3.clip_file_dict(tiny.clip_g), "", "text_encoder_2")["hidden_size"] == 128


def test_large_and_all_in_one_and_missing_parts(tmp_path, tiny):
    large = tiny_sd3.make(seed=32, medium=False)
    models = tmp_path / "models"
    tiny_sd3.write_all_in_one(models / "Stable-diffusion" / "sd3.5_large_aio.safetensors", large)
    tiny_sd3.write_transformer_only(models / "Stable-diffusion" / "sd3.5_large.safetensors", large, with_vae=True)
    tiny_sd3.write_parts(models, large, clip_g=False, vae=False)
    start_engine(models, tmp_path / "data")
    model = sd_models.model_manager.get(sd_models.get_closet_checkpoint_match("sd3.5_large_aio"))
    assert model.family.label == "SD 3.5 Large" and model.unet.config.dual_attention_layers == ()
    assert model.unet.config.qk_norm == "rms_norm"
    _assert_all_parts(model, large)
    assert model.extra["modules"] == []
    with pytest.raises(CheckpointLoadError) as err:
        sd_models.model_manager.get(sd_models.get_closet_checkpoint_match("sd3.5_large.safetensors"))
    message = str(err.value)
    assert "SD 3.5 transformer" in message and "CLIP-G" in message and "clip_g.safetensors" in message
    assert str(models / "text_encoder") in message
    assert "CLIP-L" not in message and "T5" not in message and "VAE" not in message  # the file's own VAE counts
    tiny_sd3.write_transformer_only(models / "Stable-diffusion" / "sd3.5_bare.safetensors", tiny)
    sd_models.list_models()
    with pytest.raises(CheckpointLoadError) as err:
        sd_models.model_manager.get(sd_models.get_closet_checkpoint_match("sd3.5_bare"))
    assert "CLIP-G" in str(err.value) and f"sd3.5_vae.safetensors) in {models / 'VAE'}" in str(err.value)


def test_a_clip_without_its_projection_is_named(tmp_path, tiny):
    models = tmp_path / "models"
    tiny_sd3.write_transformer_only(models / "Stable-diffusion" / "sd3.5_medium.safetensors", tiny)
    tiny_sd3.write_parts(models, tiny, clip_l=False)
    flat = {k: v for k, v in tiny_sd3.clip_file_dict(tiny.clip_l).items() if not k.startswith("text_projection.")}
    tiny_flux._save(models / "text_encoder" / "clip_l.safetensors", flat)
    start_engine(models, tmp_path / "data")
    with pytest.raises(CheckpointLoadError, match="clip_l.safetensors has no text_projection: SD 3.5 needs its CLIP-L"):
        sd_models.model_manager.get(sd_models.get_closet_checkpoint_match("sd3.5_medium"))


def test_euler_matches_diffusers_sd3_pipeline(engine):
    model = engine.get(sd_models.get_closet_checkpoint_match(CHECKPOINT))
    steps, size, cfg = 3, 32, 3.0  # a 4x4 latent: 2x2 patches
    scheduler = FlowMatchEulerDiscreteScheduler.from_config(skeleton("sd3", "scheduler"))
    sigmas = flow_sampling.get_sigmas(model.family, "Euler", "Simple", steps, size, size)
    scheduler.set_timesteps(steps)
    torch.testing.assert_close(sigmas, scheduler.sigmas.float(), rtol=0, atol=1e-6)

    p = processing.StableDiffusionProcessingTxt2Img(steps=steps, sampler_name="Euler")
    stage = processing.make_stage(model, p, ["a red cube"], ["blurry"], size, size)
    x = ImageRNG((16, size // 8, size // 8), [77], device=torch.device("cpu")).first()
    denoiser = CFGDenoiser().prepare(stage, cfg, state, schedule=sigmas.tolist())
    ours = sd_samplers.sample(sd_samplers.find_sampler("Euler"), denoiser, x * sigmas[0], sigmas, None)

    cond = stage.cond.batch[0][0].schedules[0].cond
    uncond = stage.uncond[0][0].cond
    pipe = StableDiffusion3Pipeline(
        scheduler=FlowMatchEulerDiscreteScheduler.from_config(skeleton("sd3", "scheduler")), vae=model.vae,
        text_encoder=model.text_encoders["text_encoder"], tokenizer=model.tokenizers["tokenizer"],
        text_encoder_2=model.text_encoders["text_encoder_2"], tokenizer_2=model.tokenizers["tokenizer_2"],
        text_encoder_3=model.text_encoders["text_encoder_3"], tokenizer_3=model.tokenizers["tokenizer_3"],
        transformer=model.unet)
    pipe.set_progress_bar_config(disable=True)
    reference = pipe(prompt_embeds=cond.context, pooled_prompt_embeds=cond.pooled,
                     negative_prompt_embeds=uncond.context, negative_pooled_prompt_embeds=uncond.pooled,
                     latents=x.clone(), num_inference_steps=steps, guidance_scale=cfg, height=size, width=size,
                     output_type="latent").images
    assert (ours - x).abs().max() > 0.1
    torch.testing.assert_close(ours, reference, rtol=0, atol=1e-4)


def test_prompt_embedding_is_diffusers(engine):
    model = engine.get(sd_models.get_closet_checkpoint_match(CHECKPOINT))
    cond = processing.make_stage(model, processing.StableDiffusionProcessingTxt2Img(steps=2, sampler_name="Euler"),
                                 ["a red cube"], [""], 64, 64).cond.batch[0][0].schedules[0].cond
    pipe = StableDiffusion3Pipeline(
        scheduler=None, vae=None, transformer=None,
        text_encoder=model.text_encoders["text_encoder"], tokenizer=model.tokenizers["tokenizer"],
        text_encoder_2=model.text_encoders["text_encoder_2"], tokenizer_2=model.tokenizers["tokenizer_2"],
        text_encoder_3=model.text_encoders["text_encoder_3"], tokenizer_3=model.tokenizers["tokenizer_3"])
    context, _, pooled, _ = pipe.encode_prompt("a red cube", "a red cube", "a red cube", do_classifier_free_guidance=False,
                                               max_sequence_length=256)
    assert cond.context.shape == (1, 77 + 256, tiny_sd3.T5_WIDTH)
    torch.testing.assert_close(cond.context, context.float(), rtol=0, atol=1e-5)
    torch.testing.assert_close(cond.pooled, pooled.float(), rtol=0, atol=1e-5)


def test_long_prompts_are_cut_with_a_warning_and_encoding_stops_when_asked(engine, caplog):
    model = engine.get(sd_models.get_closet_checkpoint_match(CHECKPOINT))
    encoder = model_families.prompt_encoder(model)
    with caplog.at_level("WARNING"):
        cond = encoder.get_learned_conditioning(["ab" * 200])[0]  # 400 T5 tokens (one a character)
    assert cond.context.shape == (1, 77 + 256, tiny_sd3.T5_WIDTH)
    assert "longer than 256 T5 tokens" in caplog.text
    with pytest.raises(InterruptedException):
        model_families.prompt_encoder(model, should_stop=lambda: True).get_learned_conditioning(["abc"])


def test_same_seed_same_pixels_and_batch_image_k_is_seed_plus_k(engine):
    batch = sd3_txt2img(seed=100, batch_size=2)
    images = batch.images[batch.index_of_first_image:]
    assert np.array_equal(pixels(sd3_txt2img(seed=100).images[0]), pixels(sd3_txt2img(seed=100).images[0]))
    for k in range(2):
        diff = np.abs(pixels(images[k]) - pixels(sd3_txt2img(seed=100 + k).images[0]))
        assert diff.max() <= 1 and (diff > 0).mean() < 0.01, f"image {k} of the batch differs"
    assert np.abs(pixels(images[0]) - pixels(images[1])).max() > 1


def test_real_cfg_with_a_negative_prompt_changes_the_image(engine):
    base = pixels(sd3_txt2img(seed=7).images[0])
    cfg = pixels(sd3_txt2img(seed=7, cfg_scale=4.0, negative_prompt="blurry").images[0])
    other_negative = pixels(sd3_txt2img(seed=7, cfg_scale=4.0, negative_prompt="sharp").images[0])
    assert np.abs(base - cfg).max() > 0 and np.abs(cfg - other_negative).max() > 0


def test_infotext_round_trips(engine):
    info = sd3_txt2img(seed=9, cfg_scale=4.0, negative_prompt="blurry").infotexts[0]
    assert "CFG scale: 4.0" in info and "Schedule type: Simple" in info
    assert "Distilled CFG Scale" not in info
    assert "Module 1: clip_l, Module 2: clip_g, Module 3: t5xxl_fp16, Module 4: sd3.5_vae" in info
    params = infotext_utils.parse_generation_parameters(info)
    pasted = infotext_utils.infotext_to_fields(params)
    assert pasted.override_settings["forge_additional_modules"] == ["clip_l", "clip_g", "t5xxl_fp16", "sd3.5_vae"]
    assert pasted.fields["cfg_scale"] == 4.0 and pasted.fields["seed"] == 9
