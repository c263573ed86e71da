"""Flux.1 files load through the real path (registry -> model manager) in each layout users have; every tensor is the
file's; a missing part is an error naming what to put where."""
from __future__ import annotations

import pytest
import torch

from modules import sd_models
from modules.model_families import flow_sampling, flux
from modules.sd_models_loader import CheckpointLoadError
from modules.shared_options import opts
from tests.fixtures import flux as tiny_flux
from tests.integration.engine_helpers import start_engine, txt2img


@pytest.fixture(scope="module")
def tiny():
    return tiny_flux.make(seed=3)


def _assert_same(module, reference):
    ours, theirs = module.state_dict(), reference.state_dict()
    assert set(ours) == set(theirs)
    for key, value in theirs.items():
        assert torch.equal(ours[key], value), key


def _load(tmp_path, filename):
    start_engine(tmp_path / "models", tmp_path / "data")
    info = sd_models.get_closet_checkpoint_match(filename)
    assert info is not None, sd_models.checkpoint_registry.titles()
    return sd_models.model_manager.get(info)


def _assert_model(model, tiny):
    _assert_same(model.unet, tiny.transformer)
    _assert_same(model.vae, tiny.vae)
    _assert_same(model.text_encoders["text_encoder"], tiny.clip_l)
    _assert_same(model.text_encoders["text_encoder_2"], tiny.t5)
    assert model.family.is_flow and model.family.label == "Flux.1"
    assert isinstance(model.model_sigmas, flow_sampling.FlowSigmas)


def test_transformer_only_with_separate_parts(tmp_path, tiny):
    models = tmp_path / "models"
    tiny_flux.write_transformer_only(models / "Stable-diffusion" / "flux1-dev.safetensors", tiny)
    tiny_flux.write_parts(models, tiny)
    model = _load(tmp_path, "flux1-dev")
    _assert_model(model, tiny)
    assert model.extra["modules"] == ["clip_l.safetensors", "t5xxl_fp16.safetensors", "ae.safetensors"]
    assert "flux1-dev.safetensors" in sd_models.checkpoint_tiles()[0]


def test_all_in_one_needs_no_module_files(tmp_path, tiny):
    models = tmp_path / "models"
    tiny_flux.write_all_in_one(models / "Stable-diffusion" / "flux-aio.safetensors", tiny)
    tiny_flux.write_t5_tokenizer(models)
    model = _load(tmp_path, "flux-aio")
    _assert_model(model, tiny)
    assert model.extra["modules"] == []


def test_schnell_has_no_guidance(tmp_path):
    schnell = tiny_flux.make(seed=4, guidance=False)
    family = flux.detect(schnell.transformer_bfl)
    assert family.label == "Flux.1 schnell" and not family.uses_dynamic_shift
    config = flux.transformer_config(schnell.transformer_bfl, "")
    assert config["guidance_embeds"] is False
    assert (config["num_attention_heads"], config["attention_head_dim"]) == (tiny_flux.HEADS, tiny_flux.HEAD_DIM)
    assert (config["num_layers"], config["num_single_layers"]) == (1, 2)


@pytest.mark.parametrize("missing, named", [
    ("t5", ["T5-XXL", "text_encoder"]),
    ("vae", ["ae.safetensors", "VAE"]),
    ("clip", ["CLIP-L", "text_encoder"]),
    ("tokenizer", ["T5 tokenizer", "t5_tokenizer"]),
])
def test_missing_part_is_a_clear_error(tmp_path, tiny, missing, named):
    models = tmp_path / "models"
    tiny_flux.write_transformer_only(models / "Stable-diffusion" / "flux1-dev.safetensors", tiny)
    tiny_flux.write_parts(models, tiny, **{missing: False})
    with pytest.raises(CheckpointLoadError) as err:
        _load(tmp_path, "flux1-dev")
    for word in named:
        assert word in str(err.value)
    assert sd_models.model_manager.current is None


def test_rope_axes_keep_released_split():
    assert flux.rope_axes(128) == [16, 56, 56]
    assert sum(flux.rope_axes(32)) == 32 and all(a % 2 == 0 for a in flux.rope_axes(32))


def test_chosen_modules_replace_the_default_and_the_checkpoints_own(tmp_path, tiny):
    models = tmp_path / "models"
    tiny_flux.write_all_in_one(models / "Stable-diffusion" / "flux-aio.safetensors", tiny)
    tiny_flux.write_parts(models, tiny)
    other = tiny_flux.make(seed=9)
    tiny_flux.write_parts(models / "other", other, t5=False, tokenizer=False)
    (models / "other" / "VAE" / "ae.safetensors").rename(models / "VAE" / "ae_other.safetensors")
    model = _load(tmp_path, "flux-aio")
    assert model.extra["modules"] == []  # nothing chosen: the checkpoint's own parts
    opts.set("forge_additional_modules", ["ae_other.safetensors"])
    model = sd_models.model_manager.get(sd_models.get_closet_checkpoint_match("flux-aio"))
    assert model.extra["modules"] == ["ae_other.safetensors"]
    _assert_same(model.vae, other.vae)
    _assert_same(model.text_encoders["text_encoder"], tiny.clip_l)


def test_the_next_job_runs_with_modules_chosen_after_the_checkpoint_loaded(tmp_path, tiny):
    """The quicksettings row's case: the checkpoint is loaded, then other modules are chosen; the next job (which
    finds its checkpoint already current) reloads it with them."""
    models = tmp_path / "models"
    tiny_flux.write_transformer_only(models / "Stable-diffusion" / "flux-t.safetensors", tiny)
    tiny_flux.write_parts(models, tiny)
    other = tiny_flux.make(seed=9)
    tiny_flux.write_parts(models / "other", other, clip=False, t5=False, tokenizer=False)
    (models / "other" / "VAE" / "ae.safetensors").rename(models / "VAE" / "ae_other.safetensors")
    first = _load(tmp_path, "flux-t")
    assert first.extra["modules"] == ["clip_l.safetensors", "t5xxl_fp16.safetensors", "ae.safetensors"]
    opts.set("forge_additional_modules", ["ae_other.safetensors"])
    processed = txt2img("flux-t", steps=1, cfg_scale=1.0, negative_prompt="")
    assert "Module 3: ae_other," in processed.infotexts[0]
    _assert_same(sd_models.model_manager.current.vae, other.vae)
