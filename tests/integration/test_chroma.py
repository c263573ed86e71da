"""Chroma through the real path: its files load in each layout (sizes from the tensors), a missing part names what to
put where; txt2img through process_images is seeded as SD is; our Euler matches diffusers' ChromaPipeline on the same
tiny parts; real CFG with a negative prompt changes the image; the infotext is Forge's."""
from __future__ import annotations

import numpy as np
import pytest
import torch
from diffusers import ChromaPipeline, FlowMatchEulerDiscreteScheduler

from modules import infotext_utils, processing, sd_models, sd_samplers
from modules.model_families import chroma, flow_sampling
from modules.rng import ImageRNG
from modules.sd_models_config import skeleton
from modules.sd_models_loader import CheckpointLoadError
from modules.sd_samplers_cfg_denoiser import CFGDenoiser
from modules.shared_state import state
from tests.fixtures import chroma as tiny_chroma
from tests.integration.engine_helpers import pixels, start_engine, txt2img

CHECKPOINT = "chroma-unlocked"


@pytest.fixture(scope="module")
def tiny():
    return tiny_chroma.make(seed=21)


@pytest.fixture(scope="module")
def files(tmp_path_factory, tiny):
    root = tmp_path_factory.mktemp("chroma")
    tiny_chroma.write_transformer_only(root / "models" / "Stable-diffusion" / f"{CHECKPOINT}.safetensors", tiny)
    tiny_chroma.write_parts(root / "models", tiny)
    return root


@pytest.fixture(scope="module")
def manager(files):
    return start_engine(files / "models", files / "data")


@pytest.fixture
def engine(files, manager):
    """The module's models, loaded once; settings afresh for each test (others start engines of their own)."""
    return start_engine(files / "models", files / "data", manager=manager)


def chroma_txt2img(**kwargs):
    defaults = dict(cfg_scale=1.0, negative_prompt="", steps=3, width=64, height=64)
    return txt2img(CHECKPOINT, **{**defaults, **kwargs})


def _assert_same(module, reference):
    ours, theirs = module.state_dict(), reference.state_dict()
    assert set(ours) == set(theirs)
    for key, value in theirs.items():
        assert torch.equal(ours[key], value), key


def test_transformer_only_with_separate_parts(engine, tiny):
    model = engine.get(sd_models.get_closet_checkpoint_match(CHECKPOINT))
    assert model.family.label == "Chroma" and not model.family.distilled_guidance
    _assert_same(model.unet, tiny.transformer)
    _assert_same(model.text_encoders["text_encoder"], tiny.t5)
    _assert_same(model.vae, tiny.vae)
    assert list(model.text_encoders) == ["text_encoder"]  # T5 only, no CLIP
    assert model.extra["modules"] == ["t5xxl_fp16.safetensors", "ae.safetensors"]


def test_sizes_come_from_the_tensors(tiny):
    config = chroma.transformer_config(tiny.transformer_bfl, "")
    assert (config["num_layers"], config["num_single_layers"], config["approximator_layers"]) == (1, 2, 2)
    assert (config["approximator_num_channels"], config["approximator_hidden_dim"]) == (16, 32)
    assert config["num_attention_heads"] * config["attention_head_dim"] == tiny.transformer.inner_dim


def test_all_in_one_and_missing_parts(tmp_path, tiny):
    models = tmp_path / "models"
    tiny_chroma.write_all_in_one(models / "Stable-diffusion" / "chroma-aio.safetensors", tiny)
    tiny_chroma.write_parts(models, tiny, t5=False, vae=False)
    tiny_chroma.write_transformer_only(models / "Stable-diffusion" / "chroma-bare.safetensors", tiny)
    start_engine(models, tmp_path / "data")
    model = sd_models.model_manager.get(sd_models.get_closet_checkpoint_match("chroma-aio"))
    _assert_same(model.unet, tiny.transformer)
    assert model.extra["modules"] == []
    with pytest.raises(CheckpointLoadError) as err:
        sd_models.model_manager.get(sd_models.get_closet_checkpoint_match("chroma-bare"))
    message = str(err.value)
    assert "Chroma transformer" in message and "T5-XXL" in message and "ae.safetensors" in message
    assert "CLIP" not in message


def test_euler_matches_diffusers_chroma_pipeline(engine):
    model = engine.get(sd_models.get_closet_checkpoint_match(CHECKPOINT))
    steps, size, cfg = 3, 32, 3.0  # a 4x4 latent: 2x2 packed tokens
    p = processing.StableDiffusionProcessingTxt2Img(steps=steps, sampler_name="Euler")
    stage = processing.make_stage(model, p, ["a red cube"], ["blurry"], size, size)
    x = ImageRNG((16, size // 8, size // 8), [77], device=torch.device("cpu")).first()
    sigmas = flow_sampling.get_sigmas(model.family, "Euler", "Simple", steps, size, size)
    denoiser = CFGDenoiser().prepare(stage, cfg, state, schedule=sigmas.tolist())
    ours = sd_samplers.sample(sd_samplers.find_sampler("Euler"), denoiser, x * sigmas[0], sigmas, None)

    cond = stage.cond.batch[0][0].schedules[0].cond
    uncond = stage.uncond[0][0].cond
    pipe = ChromaPipeline(scheduler=FlowMatchEulerDiscreteScheduler.from_config(skeleton("chroma", "scheduler")),
                          vae=model.vae, text_encoder=model.text_encoders["text_encoder"],
                          tokenizer=model.tokenizers["tokenizer"], transformer=model.unet)
    pipe.set_progress_bar_config(disable=True)
    packed = pipe(prompt_embeds=cond.context, prompt_attention_mask=cond.mask,
                  negative_prompt_embeds=uncond.context, negative_prompt_attention_mask=uncond.mask,
                  latents=flow_sampling.pack(x), num_inference_steps=steps, guidance_scale=cfg, height=size,
                  width=size, output_type="latent").images
    reference = flow_sampling.unpack(packed, size // 8, size // 8)
    assert (ours - x).abs().max() > 0.1
    torch.testing.assert_close(ours, reference, rtol=0, atol=1e-4)


def test_prompt_mask_keeps_one_padding_token(engine):
    model = engine.get(sd_models.get_closet_checkpoint_match(CHECKPOINT))
    cond = processing.make_stage(model, processing.StableDiffusionProcessingTxt2Img(steps=2, sampler_name="Euler"),
                                              ["abc"], [""], 64, 64).cond.batch[0][0].schedules[0].cond
    assert cond.context.shape[1] == 512
    assert cond.mask[0].tolist() == [1.0] * 5 + [0.0] * 507  # a, b, c, </s> and the first padding token


def test_same_seed_same_pixels_and_batch_image_k_is_seed_plus_k(engine):
    batch = chroma_txt2img(seed=100, batch_size=2)
    images = batch.images[batch.index_of_first_image:]
    assert np.array_equal(pixels(chroma_txt2img(seed=100).images[0]), pixels(chroma_txt2img(seed=100).images[0]))
    for k in range(2):
        diff = np.abs(pixels(images[k]) - pixels(chroma_txt2img(seed=100 + k).images[0]))
        assert diff.max() <= 1 and (diff > 0).mean() < 0.01, f"image {k} of the batch differs"
    assert np.abs(pixels(images[0]) - pixels(images[1])).max() > 1


def test_real_cfg_with_a_negative_prompt_changes_the_image(engine):
    base = pixels(chroma_txt2img(seed=7).images[0])
    cfg = pixels(chroma_txt2img(seed=7, cfg_scale=4.0, negative_prompt="blurry").images[0])
    other_negative = pixels(chroma_txt2img(seed=7, cfg_scale=4.0, negative_prompt="sharp").images[0])
    assert np.abs(base - cfg).max() > 0 and np.abs(cfg - other_negative).max() > 0


def test_infotext_is_forges(engine):
    info = chroma_txt2img(seed=9, cfg_scale=4.0, negative_prompt="blurry").infotexts[0]
    assert "CFG scale: 4.0" in info and "Schedule type: Simple" in info
    assert "Distilled CFG Scale" not in info
    assert "Module 1: t5xxl_fp16, Module 2: ae" in info
    params = infotext_utils.parse_generation_parameters(info)
    pasted = infotext_utils.infotext_to_fields(params)
    assert pasted.override_settings["forge_additional_modules"] == ["t5xxl_fp16", "ae"]
    assert pasted.fields["cfg_scale"] == 4.0
