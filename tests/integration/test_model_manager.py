"""The model manager: family detection, exact offline loading in the original layouts, registry, hashes, VAE, bad files."""
from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
import torch

from modules import sd_models, sd_models_config, sd_vae
from modules.sd_models_loader import CheckpointLoadError
from modules.shared_cmd_options import cmd_opts
from modules.shared_options import opts
from tests.fixtures import checkpoints
from tests.integration.engine_helpers import CPU, pixels, start_engine, txt2img


def _load(ckpt, tmp_path):
    return sd_models.build_model(sd_models.CheckpointInfo(str(ckpt.path)), CPU, tmp_path / "cache")


def _assert_same_weights(expected: torch.nn.Module, got: torch.nn.Module):
    ref, new = expected.state_dict(), got.state_dict()
    assert set(ref) == set(new)
    assert all(torch.equal(ref[k], new[k]) for k in ref)
    assert not any(t.is_meta for t in list(got.parameters()) + list(got.buffers()))


@pytest.mark.parametrize("name,family,prediction", [
    ("sd1_ckpt", "v1", "epsilon"), ("sd2v_ckpt", "v2", "v_prediction"), ("sdxl_ckpt", "xl_base", "epsilon"),
    ("sdxl_refiner_ckpt", "xl_refiner", "epsilon"), ("sd1_inpaint_ckpt", "v1", "epsilon"),
])
def test_each_family_loads_every_tensor_exactly(request, tmp_path, name, family, prediction):
    ckpt = request.getfixturevalue(name)
    model = _load(ckpt, tmp_path)
    assert model.family.name == family and model.family.prediction_type == prediction
    assert model.family.is_inpainting == (name == "sd1_inpaint_ckpt")
    _assert_same_weights(ckpt.unet, model.unet)
    _assert_same_weights(ckpt.vae, model.vae)
    for expected, got in zip(ckpt.text_encoders, model.text_encoders.values()):
        _assert_same_weights(expected, got)


def test_sdxl_inpainting_is_detected(tmp_path):
    ckpt = checkpoints.write_sdxl(tmp_path / "xl_inpaint.safetensors", inpainting=True)
    model = _load(ckpt, tmp_path)
    assert model.family.name == "xl_base" and model.family.in_channels == 9
    assert model.family.label == "SDXL inpainting"


def test_plain_ckpt_loads_through_weights_only_pickle(sd1_ckpt, tmp_path):
    path = tmp_path / "plain.ckpt"
    checkpoints.write_ckpt(path, sd1_ckpt.state_dict)
    model = sd_models.build_model(sd_models.CheckpointInfo(str(path)), CPU, tmp_path / "cache")
    _assert_same_weights(sd1_ckpt.unet, model.unet)


def test_unknown_state_dict_is_refused(tmp_path):
    from safetensors.torch import save_file

    path = tmp_path / "lora_like.safetensors"
    save_file({"lora_unet_x.lora_down.weight": torch.zeros(2, 2)}, str(path))
    with pytest.raises(CheckpointLoadError, match="lora_like.safetensors.*not a Stable Diffusion checkpoint"):
        sd_models.build_model(sd_models.CheckpointInfo(str(path)), CPU, tmp_path / "cache")


def test_family_rules_from_tensors(sd1_ckpt, sdxl_ckpt):
    sd1 = sd_models_config.detect_family(sd1_ckpt.state_dict)
    cfg = sd_models_config.unet_config(sd1_ckpt.state_dict, sd1, None)
    assert cfg["attention_head_dim"] == 8 and cfg["block_out_channels"] == [32, 64]
    xl = sd_models_config.detect_family(sdxl_ckpt.state_dict)
    cfg = sd_models_config.unet_config(sdxl_ckpt.state_dict, xl, 128)
    assert cfg["attention_head_dim"] == [1, 2] and cfg["addition_time_embed_dim"] == 8
    assert cfg["down_block_types"] == ["DownBlock2D", "CrossAttnDownBlock2D"]


@pytest.fixture()
def models_tree(tiny_models_dir, tmp_path):
    root = tmp_path / "models"
    shutil.copytree(tiny_models_dir, root)
    return root


def test_registry_titles_aliases_and_cached_hashes(models_tree, tmp_path):
    manager = start_engine(models_tree, tmp_path)
    titles = sd_models.checkpoint_registry.titles()
    assert titles == ["refiners/tiny_sdxl_refiner.safetensors", "tiny_sd1.safetensors", "tiny_sdxl.safetensors"]
    info = sd_models.get_closet_checkpoint_match("tiny_sd1")
    assert len(info.hash) == 8 and info.sha256 is None  # sha256 is computed lazily, at first load (A1111)
    manager.get(info)
    assert len(info.shorthash) == 10
    assert info.title == f"tiny_sd1.safetensors [{info.shorthash}]"
    assert info.title in sd_models.checkpoints_list
    for alias in (info.shorthash, info.sha256, info.hash, "tiny_sd1.safetensors", info.title, f"tiny_sd1 [{info.shorthash}]"):
        assert sd_models.get_closet_checkpoint_match(alias) is info, alias
    assert sd_models.get_closet_checkpoint_match("refiner").name == "refiners/tiny_sdxl_refiner.safetensors"
    cache = json.loads((tmp_path / "cache.json").read_text())
    assert cache["hashes"]["checkpoint/tiny_sd1.safetensors"]["sha256"] == info.sha256
    # a restart finds the hash in the cache without reading the file again
    start_engine(models_tree, tmp_path)
    assert sd_models.get_closet_checkpoint_match("tiny_sd1").shorthash == info.shorthash


def test_lru_keeps_limit_models(models_tree, tmp_path):
    manager = start_engine(models_tree, tmp_path, limit=1)
    first = manager.get(sd_models.get_closet_checkpoint_match("tiny_sd1"))
    manager.get(sd_models.get_closet_checkpoint_match("tiny_sdxl"))
    assert len(manager.loaded) == 1 and first.sd_checkpoint_info.filename not in manager.loaded


@pytest.mark.parametrize("damage", ["corrupt", "truncated", "malicious"])
def test_bad_file_is_refused_and_previous_model_stays_usable(models_tree, tmp_path, damage):
    bad = models_tree / "Stable-diffusion" / f"bad_{damage}.ckpt"
    if damage == "corrupt":
        checkpoints.write_corrupt(bad)
    elif damage == "truncated":
        bad = bad.with_suffix(".safetensors")
        checkpoints.write_truncated(bad, models_tree / "Stable-diffusion" / "tiny_sd1.safetensors")
    else:
        checkpoints.write_malicious_ckpt(bad)
    manager = start_engine(models_tree, tmp_path)
    before = txt2img("tiny_sd1").images[0]
    with pytest.raises(CheckpointLoadError) as err:
        manager.get(sd_models.get_closet_checkpoint_match(bad.stem))
    assert bad.name in str(err.value)
    if damage == "malicious":
        assert "pickled code" in str(err.value)
        assert not checkpoints.malicious_marker(bad).exists(), "the pickle's payload must never run"
    assert manager.current.sd_checkpoint_info.name == "tiny_sd1.safetensors"
    opts.set("sd_model_checkpoint", "tiny_sd1")
    after = txt2img("tiny_sd1").images[0]
    assert np.array_equal(pixels(before), pixels(after))


def test_vae_choice_automatic_none_and_file(models_tree, tmp_path):
    start_engine(models_tree, tmp_path)
    base = txt2img("tiny_sd1").images[0]
    opts.set("sd_vae", "tiny_vae.safetensors")
    external = txt2img("tiny_sd1")
    assert not np.array_equal(pixels(base), pixels(external.images[0]))
    assert "VAE: tiny_vae.safetensors" in external.info and "VAE hash: " in external.info
    opts.set("sd_vae", "None")
    assert np.array_equal(pixels(base), pixels(txt2img("tiny_sd1").images[0]))
    # Automatic: a .vae.safetensors beside the checkpoint
    shutil.copyfile(models_tree / "VAE" / "tiny_vae.safetensors", models_tree / "Stable-diffusion" / "tiny_sd1.vae.safetensors")
    sd_vae.refresh_vae_list(cmd_opts)
    opts.set("sd_vae", "Automatic")
    auto = txt2img("tiny_sd1").images[0]
    assert np.array_equal(pixels(auto), pixels(external.images[0]))
    assert opts.set("sd_vae", "nope.pt") is False and opts.sd_vae == "Automatic"  # the setting refuses an unknown file
    with pytest.raises(ValueError, match="VAE not found: nope.pt"):  # a stale config.json value: the job says why
        sd_vae.resolve_vae(str(models_tree / "Stable-diffusion" / "tiny_sd1.safetensors"), "nope.pt")


def test_refiner_stays_resident_beside_the_current_model(models_tree, tmp_path):
    manager = start_engine(models_tree, tmp_path, limit=1)
    base = manager.get(sd_models.get_closet_checkpoint_match("tiny_sdxl"))
    refiner = manager.get(sd_models.get_closet_checkpoint_match("tiny_sdxl_refiner"), make_current=False)
    assert manager.current is base
    assert set(manager.loaded) == {base.sd_model_checkpoint, refiner.sd_model_checkpoint}
    assert manager.get(sd_models.get_closet_checkpoint_match("tiny_sdxl_refiner"), make_current=False) is refiner
