"""Qwen-Image on tiny random weights in the ComfyUI file layouts: loading (every tensor from its file, sizes from the
tensors, a clear error for a missing part), prompt embeddings and Euler sampling against diffusers' QwenImagePipeline,
the VAE's per-channel latent normalisation, and a txt2img job through the UI's Generate path."""
from __future__ import annotations

import pytest
import torch
from diffusers import FlowMatchEulerDiscreteScheduler, QwenImagePipeline

from modules import infotext_utils, processing, processing_img2img as i2i, sd_models, sd_samplers
from modules.model_families import detect_flow_family, flow_sampling, qwen_image
from modules.rng import ImageRNG
from modules.sd_models_config import skeleton
from modules.sd_models_loader import CheckpointLoadError
from modules.sd_samplers_cfg_denoiser import CFGDenoiser
from modules.shared_options import opts
from modules.shared_state import state
from tests.fixtures import qwen_image as tiny_qwen
from tests.integration.engine_helpers import start_engine
from tests.integration.test_ui_txt2img import controls, run, text_of

CHECKPOINT = "qwen_image_bf16"
SIZE = 64


@pytest.fixture(scope="module")
def tiny():
    return tiny_qwen.make(seed=5)


@pytest.fixture(scope="module")
def files(tmp_path_factory, tiny):
    root = tmp_path_factory.mktemp("qwen_image")
    tiny_qwen.write_transformer(root / "models" / "Stable-diffusion" / f"{CHECKPOINT}.safetensors", tiny)
    tiny_qwen.write_parts(root / "models", tiny)
    return root


@pytest.fixture
def engine(files):
    return start_engine(files / "models", files / "data")


def _assert_same(ours: dict, theirs: dict):
    assert set(ours) == set(theirs)
    for key, value in theirs.items():
        assert torch.equal(ours[key], value), key


def _model(engine):
    return engine.get(sd_models.get_closet_checkpoint_match(CHECKPOINT))


def _pipe(model, text_encoder=None):
    pipe = QwenImagePipeline(scheduler=FlowMatchEulerDiscreteScheduler.from_config(skeleton("qwen_image", "scheduler")),
                             vae=model.vae, text_encoder=text_encoder, tokenizer=model.tokenizers["tokenizer"],
                             transformer=model.unet)
    pipe.set_progress_bar_config(disable=True)
    return pipe


def test_transformer_with_separate_parts(engine, tiny):
    model = _model(engine)
    family = model.family
    assert family.label == "Qwen-Image" and family.uses_dynamic_shift and not family.distilled_guidance
    assert (family.recommended_steps, family.recommended_cfg_scale) == (50, 4.0)
    _assert_same(model.unet.state_dict(), tiny.transformer.state_dict())
    _assert_same(model.vae.state_dict(), tiny.vae.state_dict())
    language = {k.removeprefix("model.language_model."): v for k, v in tiny.qwen25vl.state_dict().items()
                if k.startswith("model.language_model.")}
    _assert_same(model.text_encoders["text_encoder"].state_dict(), language)
    assert list(model.text_encoders) == ["text_encoder"]
    assert model.extra["modules"] == ["qwen_2.5_vl_7b.safetensors", "qwen_image_vae.safetensors"]


def test_sizes_come_from_the_tensors(tiny):
    config = qwen_image.transformer_config(tiny.transformer.state_dict(), "")
    for key in ("in_channels", "out_channels", "num_layers", "attention_head_dim", "num_attention_heads",
                "joint_attention_dim"):
        assert config[key] == tiny.transformer.config[key], key
    assert list(config["axes_dims_rope"]) == list(tiny.transformer.config.axes_dims_rope)
    assert qwen_image.rope_axes(128) == [16, 56, 56]  # the released split


def test_prefixed_layout_and_missing_parts(tmp_path, tiny):
    models = tmp_path / "models"
    tiny_qwen.write_transformer(models / "Stable-diffusion" / "qwen-prefixed.safetensors", tiny,
                                prefix="model.diffusion_model.")
    tiny_qwen.write_parts(models, tiny)
    sd = {"model.diffusion_model." + k: v for k, v in tiny.transformer.state_dict().items()}
    assert isinstance(detect_flow_family(sd), qwen_image.QwenImageFamily)
    start_engine(models, tmp_path / "data")
    model = sd_models.model_manager.get(sd_models.get_closet_checkpoint_match("qwen-prefixed"))
    _assert_same(model.unet.state_dict(), tiny.transformer.state_dict())

    bare = tmp_path / "bare"
    tiny_qwen.write_transformer(bare / "Stable-diffusion" / "qwen-bare.safetensors", tiny)
    tiny_qwen.write_parts(bare, tiny, qwen25vl=False, vae=False)
    start_engine(bare, tmp_path / "data2")
    with pytest.raises(CheckpointLoadError) as err:
        sd_models.model_manager.get(sd_models.get_closet_checkpoint_match("qwen-bare"))
    message = str(err.value)
    assert "Qwen-Image transformer" in message and "qwen_2.5_vl_7b.safetensors" in message
    assert "qwen_image_vae.safetensors" in message and str(bare / "text_encoder") in message
    assert str(bare / "VAE") in message


def _stage(model, steps, prompt, negative):
    p = processing.StableDiffusionProcessingTxt2Img(steps=steps, sampler_name="Euler")
    return processing.make_stage(model, p, [prompt], [negative], SIZE, SIZE)


def _embeds(cond) -> torch.Tensor:
    return cond.context[0][cond.mask[0].bool()]


def test_prompt_encoding_is_qwenimagepipelines(engine, tiny):
    model = _model(engine)
    cond = _stage(model, 2, "a red cube", "").cond.batch[0][0].schedules[0].cond
    theirs, mask = _pipe(model, tiny.qwen25vl).encode_prompt("a red cube", device=torch.device("cpu"))
    assert mask is None and cond.context.shape[1] == 1024
    assert _embeds(cond).shape == theirs[0].shape  # the prompt's 10 characters, the template's tail
    torch.testing.assert_close(_embeds(cond), theirs[0].float(), rtol=0, atol=1e-6)


def test_the_schedule_is_qwenimagepipelines(engine):
    model = _model(engine)
    pipe = _pipe(model)
    ours = flow_sampling.get_sigmas(model.family, "Euler", "Simple", 30, 1024, 1024)
    mu = flow_sampling.calculate_mu(flow_sampling.image_seq_len(1024, 1024), skeleton("qwen_image", "scheduler"))
    pipe.scheduler.set_timesteps(sigmas=[1 - i / 30 for i in range(30)], mu=mu)
    torch.testing.assert_close(ours, pipe.scheduler.sigmas.float(), rtol=0, atol=1e-6)
    assert abs(float(ours[-2]) - 0.02) < 1e-6


@pytest.mark.parametrize("cfg", [1.0, 4.0])
def test_euler_matches_diffusers_qwenimage_pipeline(engine, cfg):
    model = _model(engine)
    steps = 3
    stage = _stage(model, steps, "a red cube", "blurry, dark")
    x = ImageRNG((16, SIZE // 8, SIZE // 8), [77], device=torch.device("cpu")).first()
    sigmas = flow_sampling.get_sigmas(model.family, "Euler", "Simple", steps, SIZE, SIZE)
    denoiser = CFGDenoiser().prepare(stage, cfg, state, schedule=sigmas.tolist())
    ours = sd_samplers.sample(sd_samplers.find_sampler("Euler"), denoiser, x * sigmas[0], sigmas, None)

    pos, neg = _embeds(stage.cond.batch[0][0].schedules[0].cond), _embeds(stage.uncond[0][0].cond)
    reference = _pipe(model)(prompt_embeds=pos[None], negative_prompt_embeds=neg[None] if cfg > 1 else None,
                             latents=flow_sampling.pack(x), num_inference_steps=steps, true_cfg_scale=cfg,
                             height=SIZE, width=SIZE, output_type="latent").images
    reference = flow_sampling.unpack(reference, SIZE // 8, SIZE // 8)
    assert (ours - x).abs().max() > 0.1
    torch.testing.assert_close(ours, reference, rtol=0, atol=1e-4)


def test_vae_latents_are_normalised_per_channel(engine):
    model = _model(engine)
    latents = torch.randn(1, 16, SIZE // 8, SIZE // 8, generator=torch.Generator().manual_seed(3))
    with torch.inference_mode():
        ours = processing.decode_first_stage(model, latents, "Full")
        vae = model.vae
        mean = torch.tensor(vae.config.latents_mean).view(1, 16, 1, 1, 1)
        std = torch.tensor(vae.config.latents_std).view(1, 16, 1, 1, 1)
        theirs = vae.decode(latents[:, :, None] * std + mean, return_dict=False)[0][:, :, 0]  # QwenImagePipeline's
    torch.testing.assert_close(ours, theirs, rtol=0, atol=1e-5)
    encoded = i2i.encode(model, processing.decode_latents(model, latents))
    assert encoded.shape == latents.shape and encoded.dtype == torch.float32


def test_the_txt2img_tab_generates_and_the_infotext_names_the_modules(engine):
    opts.set("sd_model_checkpoint", CHECKPOINT)
    opts.set("samples_save", False)
    gallery, _, info_html, _ = run(controls(negative_prompt="blurry", steps=2, cfg_scale=4.0))
    info = text_of(info_html)
    assert gallery[0].size == (SIZE, SIZE) and gallery[0].info["parameters"] == info
    assert "Steps: 2, Sampler: Euler, Schedule type: Simple, CFG scale: 4, " in info
    assert "Module 1: qwen_2.5_vl_7b, Module 2: qwen_image_vae" in info
    pasted = infotext_utils.infotext_to_fields(infotext_utils.parse_generation_parameters(info))
    assert pasted.override_settings["forge_additional_modules"] == ["qwen_2.5_vl_7b", "qwen_image_vae"]
