"""Z-Image through the real path: its ComfyUI-repackaged files load (sizes from the tensors), a missing part names what
to put where; the prompt becomes what ZImagePipeline.encode_prompt makes; our Euler matches diffusers' ZImagePipeline
(Turbo's CFG off, and real CFG) and ZImageImg2ImgPipeline on the same tiny parts; txt2img through process_images and
the txt2img tab's job is seeded as SD is; the infotext names the modules."""
from __future__ import annotations

import numpy as np
import pytest
import torch
from diffusers import FlowMatchEulerDiscreteScheduler, ZImageImg2ImgPipeline, ZImagePipeline

from modules import infotext_utils, processing, processing_img2img as i2i, sd_models, sd_samplers
from modules.model_families import detect_flow_family, flow_sampling, z_image
from modules.rng import ImageRNG
from modules.sd_models_config import skeleton
from modules.sd_models_loader import CheckpointLoadError
from modules.sd_samplers_cfg_denoiser import CFGDenoiser
from modules.shared_options import opts
from modules.shared_state import state
from tests.fixtures import z_image as tiny_z_image
from tests.integration.engine_helpers import pixels, start_engine, txt2img
from tests.integration.test_img2img import picture
from tests.integration.test_ui_txt2img import controls, run, text_of

CHECKPOINT = "z_image_turbo_bf16"


@pytest.fixture(scope="module")
def tiny():
    return tiny_z_image.make(seed=5)


@pytest.fixture(scope="module")
def files(tmp_path_factory, tiny):
    root = tmp_path_factory.mktemp("z_image")
    tiny_z_image.write_transformer(root / "models" / "Stable-diffusion" / f"{CHECKPOINT}.safetensors", tiny)
    tiny_z_image.write_parts(root / "models", tiny)
    return root


@pytest.fixture
def engine(files):
    return start_engine(files / "models", files / "data")


def z_txt2img(**kwargs):
    defaults = dict(cfg_scale=1.0, negative_prompt="", steps=3, width=64, height=64)
    return txt2img(CHECKPOINT, **{**defaults, **kwargs})


def _assert_same(module, reference):
    ours, theirs = module.state_dict(), reference.state_dict()
    assert set(ours) == set(theirs)
    for key, value in theirs.items():
        assert torch.equal(ours[key], value), key


def _model(engine):
    return engine.get(sd_models.get_closet_checkpoint_match(CHECKPOINT))


def test_transformer_with_separate_parts(engine, tiny):
    model = _model(engine)
    assert model.family.label == "Z-Image" and model.family.shift == 3.0 and not model.family.distilled_guidance
    _assert_same(model.unet, tiny.transformer)
    _assert_same(model.text_encoders["text_encoder"], tiny.qwen3)
    _assert_same(model.vae, tiny.vae)
    assert list(model.text_encoders) == ["text_encoder"]
    assert model.extra["modules"] == ["qwen_3_4b.safetensors", "ae.safetensors"]


def test_sizes_come_from_the_tensors(tiny):
    config = z_image.transformer_config(tiny.transformer_comfy, "")
    ref = tiny.transformer.config
    for key in ("dim", "n_layers", "n_refiner_layers", "n_heads", "cap_feat_dim", "in_channels"):
        assert config[key] == ref[key], key
    assert list(config["axes_dims"]) == list(ref["axes_dims"])
    assert z_image.rope_axes(128) == [32, 48, 48]  # the released split


def test_prefixed_layout_and_missing_parts(tmp_path, tiny):
    models = tmp_path / "models"
    tiny_z_image.write_transformer(models / "Stable-diffusion" / "z-prefixed.safetensors", tiny,
                                   prefix="model.diffusion_model.")
    tiny_z_image.write_parts(models, tiny)
    assert isinstance(detect_flow_family({"model.diffusion_model." + k: v for k, v in tiny.transformer_comfy.items()}),
                      z_image.ZImageFamily)
    start_engine(models, tmp_path / "data")
    _assert_same(sd_models.model_manager.get(sd_models.get_closet_checkpoint_match("z-prefixed")).unet,
                 tiny.transformer)

    bare = tmp_path / "bare"
    tiny_z_image.write_transformer(bare / "Stable-diffusion" / "z-bare.safetensors", tiny)
    tiny_z_image.write_parts(bare, tiny, qwen3=False, vae=False)
    start_engine(bare, tmp_path / "data2")
    with pytest.raises(CheckpointLoadError) as err:
        sd_models.model_manager.get(sd_models.get_closet_checkpoint_match("z-bare"))
    message = str(err.value)
    assert "Z-Image transformer" in message and "qwen_3_4b.safetensors" in message and "ae.safetensors" in message
    assert "text_encoder" in message and "VAE" in message and "T5" not in message


def _stage(model, steps, prompt, negative, size):
    p = processing.StableDiffusionProcessingTxt2Img(steps=steps, sampler_name="Euler")
    return processing.make_stage(model, p, [prompt], [negative], size, size)


def test_prompt_encoding_is_zimagepipelines(engine):
    model = _model(engine)
    cond = _stage(model, 2, "a red cube", "", 64).cond.batch[0][0].schedules[0].cond
    pipe = ZImagePipeline(scheduler=FlowMatchEulerDiscreteScheduler.from_config(skeleton("z_image", "scheduler")),
                          vae=model.vae, text_encoder=model.text_encoders["text_encoder"],
                          tokenizer=model.tokenizers["tokenizer"], transformer=model.unet)
    theirs, _ = pipe.encode_prompt("a red cube", device=torch.device("cpu"), do_classifier_free_guidance=False)
    ours = cond.context[0][cond.mask[0].bool()]
    # <|im_start|> user \n-less chars: the template's tokens around the prompt's 8 characters
    assert ours.shape == theirs[0].shape and cond.context.shape[1] == 512
    torch.testing.assert_close(ours, theirs[0].float(), rtol=0, atol=1e-6)


@pytest.mark.parametrize("cfg", [1.0, 3.0])
def test_euler_matches_diffusers_zimage_pipeline(engine, cfg):
    model = _model(engine)
    steps, size = 3, 64
    stage = _stage(model, steps, "a red cube", "blurry", size)
    x = ImageRNG((16, size // 8, size // 8), [77], device=torch.device("cpu")).first()
    sigmas = flow_sampling.get_sigmas(model.family, "Euler", "Simple", steps, size, size)
    denoiser = CFGDenoiser().prepare(stage, cfg, state, schedule=sigmas.tolist())
    ours = sd_samplers.sample(sd_samplers.find_sampler("Euler"), denoiser, x * sigmas[0], sigmas, None)

    cond = stage.cond.batch[0][0].schedules[0].cond
    uncond = stage.uncond[0][0].cond
    pipe = ZImagePipeline(scheduler=FlowMatchEulerDiscreteScheduler.from_config(skeleton("z_image", "scheduler")),
                          vae=model.vae, text_encoder=model.text_encoders["text_encoder"],
                          tokenizer=model.tokenizers["tokenizer"], transformer=model.unet)
    pipe.set_progress_bar_config(disable=True)
    reference = pipe(prompt_embeds=[cond.context[0][cond.mask[0].bool()]],
                     negative_prompt_embeds=[uncond.context[0][uncond.mask[0].bool()]],
                     latents=x, num_inference_steps=steps, guidance_scale=cfg - 1.0, height=size,
                     width=size, output_type="latent").images
    assert (ours - x).abs().max() > 0.1
    torch.testing.assert_close(ours, reference, rtol=0, atol=1e-4)


def test_img2img_matches_diffusers_zimage_img2img_pipeline(engine):
    model, size, steps, strength = _model(engine), 64, 4, 0.6
    init = i2i.encode(model, [picture(3)])
    p = processing.StableDiffusionProcessingImg2Img(steps=steps, sampler_name="Euler")
    stage = processing.make_stage(model, p, ["a red cube"], [""], size, size)
    tail = processing.denoising_tail(model, flow_sampling.get_sigmas(model.family, "Euler", "Simple", steps, size,
                                                                     size), strength)
    noise = torch.randn(init.shape, generator=torch.Generator().manual_seed(7))
    x = processing.noised_start(p, init, noise, tail[0], flow=True)
    denoiser = CFGDenoiser().prepare(stage, 1.0, state, schedule=tail.tolist())
    ours = sd_samplers.sample(sd_samplers.find_sampler("Euler"), denoiser, x, tail, None)

    cond = stage.cond.batch[0][0].schedules[0].cond
    pipe = ZImageImg2ImgPipeline(
        scheduler=FlowMatchEulerDiscreteScheduler.from_config(skeleton("z_image", "scheduler")), vae=model.vae,
        text_encoder=model.text_encoders["text_encoder"], tokenizer=model.tokenizers["tokenizer"],
        transformer=model.unet)
    pipe.set_progress_bar_config(disable=True)
    pipe.image_processor.register_to_config(vae_latent_channels=16)  # take our encoded latent as it is
    reference = pipe(image=init, prompt_embeds=[cond.context[0][cond.mask[0].bool()]], strength=strength,
                     num_inference_steps=steps, guidance_scale=0.0, height=size, width=size, output_type="latent",
                     generator=torch.Generator().manual_seed(7)).images
    assert len(tail) - 1 == 3 and (ours - init).abs().max() > 0.1
    torch.testing.assert_close(ours, reference, rtol=0, atol=1e-4)


def test_img2img_job_runs_through_process_images(engine):
    opts.set("sd_model_checkpoint", CHECKPOINT)
    result = processing.process_images(processing.StableDiffusionProcessingImg2Img(
        prompt="a red cube", negative_prompt="", steps=4, width=64, height=64, seed=3, sampler_name="Euler",
        cfg_scale=1.0, init_images=[picture(0)], denoising_strength=0.6, do_not_save_samples=True,
        do_not_save_grid=True))
    assert result.images[0].size == (64, 64) and "Denoising strength: 0.6" in result.infotexts[0]


def test_batch_image_k_is_seed_plus_k(engine):
    batch = z_txt2img(seed=100, batch_size=2)
    images = batch.images[batch.index_of_first_image:]
    for k in range(2):
        diff = np.abs(pixels(images[k]) - pixels(z_txt2img(seed=100 + k).images[0]))
        assert diff.max() <= 1 and (diff > 0).mean() < 0.01, f"image {k} of the batch differs"
    assert np.abs(pixels(images[0]) - pixels(images[1])).max() > 1


def test_cfg_with_a_negative_prompt_changes_the_image_and_the_infotext_names_the_modules(engine):
    base = z_txt2img(seed=7)
    cfg = z_txt2img(seed=7, cfg_scale=4.0, negative_prompt="blurry")
    assert np.abs(pixels(base.images[0]) - pixels(cfg.images[0])).max() > 0
    info = cfg.infotexts[0]
    assert "CFG scale: 4.0" in info and "Schedule type: Simple" in info and "Distilled CFG Scale" not in info
    assert "Module 1: qwen_3_4b, Module 2: ae" in info
    pasted = infotext_utils.infotext_to_fields(infotext_utils.parse_generation_parameters(info))
    assert pasted.override_settings["forge_additional_modules"] == ["qwen_3_4b", "ae"]


def test_the_txt2img_tab_generates_with_turbos_settings(engine):
    opts.set("sd_model_checkpoint", CHECKPOINT)
    opts.set("samples_save", False)
    gallery, _, info_html, _ = run(controls(negative_prompt="", steps=3, cfg_scale=1.0))
    info = text_of(info_html)
    assert gallery[0].size == (64, 64) and gallery[0].info["parameters"] == info
    assert "Steps: 3, Sampler: Euler, Schedule type: Simple, CFG scale: 1, " in info
    assert "Module 1: qwen_3_4b, Module 2: ae" in info
