"""A1111 module names extensions import: each one behaves as A1111's does, on the tiny models."""
from __future__ import annotations

import gc
import hashlib
import io
import logging
import shutil
import weakref

import numpy as np
import pytest
import torch
from PIL import Image

from modules import (
    hypernetworks,
    images,
    live_preview,
    processing,
    sd_models,
    sd_samplers,
    sd_samplers_kdiffusion,
    sd_vae_approx,
    shared,
    shared_total_tqdm,
    styles,
)
from modules.sd_models_loader import CheckpointLoadError
from modules.shared_cmd_options import cmd_opts
from modules.shared_options import opts
from modules.shared_state import state
from tests.fixtures import checkpoints
from tests.integration.engine_helpers import pixels, start_engine, txt2img


@pytest.fixture()
def models_tree(tiny_models_dir, tmp_path):
    root = tmp_path / "models"
    shutil.copytree(tiny_models_dir, root)
    return root


def _job() -> processing.Processed:
    """A generation that leaves the checkpoint to the sd_model_checkpoint setting."""
    return processing.process_images(processing.StableDiffusionProcessingTxt2Img(
        prompt="a red cube", steps=2, width=64, height=64, seed=7, sampler_name="Euler", do_not_save_samples=True,
        do_not_save_grid=True))


# --- modules.shared ---------------------------------------------------------------------------------------------

def test_prompt_styles_is_the_styles_database_and_feeds_prompt_no_styles(tmp_path, monkeypatch):
    path = tmp_path / "styles.csv"
    path.write_text('name,prompt,negative_prompt\nframe,"frame of {prompt}, golden",\ntail,tail text,\n',
                    encoding="utf-8-sig")
    monkeypatch.setattr(cmd_opts, "styles_file", [str(path)])
    assert shared.prompt_styles is styles.prompt_styles()
    assert list(shared.prompt_styles.styles) == ["frame", "tail"]
    p = processing.StableDiffusionProcessingTxt2Img(prompt="x", styles=["frame", "tail"])
    styled = shared.prompt_styles.apply_styles_to_prompt("a cat", p.styles)
    assert styled == "frame of a cat, golden, tail text"
    assert images.FilenameGenerator(p, 1, styled, None).apply("[prompt_no_styles]") == "a cat"
    shared.prompt_styles.save_style("new", "n", "")
    assert "new" in styles.prompt_styles().styles


def test_hypernetworks_lists_the_folder_into_the_engines_dict(tmp_path, monkeypatch):
    folder = tmp_path / "hypernetworks"
    (folder / "sub").mkdir(parents=True)
    for name in ("one.pt", "sub/two.pt", "notes.txt"):
        (folder / name).write_bytes(b"x")
    monkeypatch.setattr(cmd_opts, "hypernetwork_dir", str(folder))
    hypernetworks.hypernetworks.clear()
    try:
        assert shared.hypernetworks == {"one": str(folder / "one.pt"), "two": str(folder / "sub" / "two.pt")}
        assert shared.hypernetworks is hypernetworks.hypernetworks
    finally:
        hypernetworks.hypernetworks.clear()


def test_latent_upscale_modes_are_hires_fix_modes_in_a1111_shape():
    assert shared.latent_upscale_modes == {name: {"mode": mode, "antialias": antialias}
                                           for name, (mode, antialias) in processing.LATENT_UPSCALE_MODES.items()}


def test_latent_upscale_modes_have_a1111_names():
    assert shared.latent_upscale_modes == {
        "Latent": {"mode": "bilinear", "antialias": False},
        "Latent (antialiased)": {"mode": "bilinear", "antialias": True},
        "Latent (bicubic)": {"mode": "bicubic", "antialias": False},
        "Latent (bicubic antialiased)": {"mode": "bicubic", "antialias": True},
        "Latent (nearest)": {"mode": "nearest", "antialias": False},
        "Latent (nearest-exact)": {"mode": "nearest-exact", "antialias": False},
    }


@pytest.fixture()
def job_of_two_images(monkeypatch):
    monkeypatch.setattr(state, "job_count", 2)
    monkeypatch.setattr(state, "sampling_steps", 3)
    monkeypatch.setattr(cmd_opts, "disable_console_progressbars", False)
    opts.set("multiple_tqdm", True)
    yield
    opts.set("multiple_tqdm", True)


def test_total_tqdm_counts_steps_of_the_whole_job(job_of_two_images):
    out = io.StringIO()
    bar = shared_total_tqdm.TotalTQDM(file=out)
    for _ in range(4):
        bar.update()
    assert "Total progress" in out.getvalue() and "0/6" in out.getvalue()
    bar.updateTotal(10)
    bar.clear()
    assert "4/10" in out.getvalue().rsplit("Total progress", 1)[1]
    bar.clear()  # a second clear has no bar to end
    assert shared.total_tqdm is shared_total_tqdm.total_tqdm


@pytest.mark.parametrize("switch", ["--disable-console-progressbars", "multiple_tqdm off"])
def test_total_tqdm_stays_silent_when_switched_off(job_of_two_images, monkeypatch, switch):
    if switch == "multiple_tqdm off":
        opts.set("multiple_tqdm", False)
    else:
        monkeypatch.setattr(cmd_opts, "disable_console_progressbars", True)
    out = io.StringIO()
    bar = shared_total_tqdm.TotalTQDM(file=out)
    bar.reset()
    bar.update()
    bar.updateTotal(5)
    bar.clear()
    assert out.getvalue() == ""


@pytest.fixture()
def file_tree(tmp_path):
    root = tmp_path / "tree"
    for name in ("b.txt", "A.png", ".hidden.png", "img10.png", "img2.png", "sub/c.PNG", ".git/d.png"):
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_bytes(b"x")
    return root


def test_listfiles_sorted_full_paths_without_dot_files_or_folders(file_tree):
    assert shared.listfiles(str(file_tree)) == [str(file_tree / n) for n in ("A.png", "b.txt", "img10.png", "img2.png")]


def test_walk_files_recursive_natural_order_filtered_by_extension(file_tree):
    opts.set("list_hidden_files", True)
    found = list(shared.walk_files(str(file_tree), allowed_extensions=[".png"]))
    assert found == [str(file_tree / n)
                     for n in (".hidden.png", "A.png", "img2.png", "img10.png", ".git/d.png", "sub/c.PNG")]
    assert len(list(shared.walk_files(str(file_tree)))) == 7
    opts.set("list_hidden_files", False)
    try:
        hidden_off = list(shared.walk_files(str(file_tree)))
    finally:
        opts.set("list_hidden_files", True)
    assert str(file_tree / ".git/d.png") not in hidden_off and len(hidden_off) == 6
    assert list(shared.walk_files(str(file_tree / "missing"))) == []


def test_list_checkpoint_tiles_titles_and_short_names(models_tree, tmp_path):
    manager = start_engine(models_tree, tmp_path)
    assert shared.list_checkpoint_tiles() == sd_models.checkpoint_registry.titles()
    assert shared.list_checkpoint_tiles(use_short=True) == ["tiny_sdxl_refiner", "tiny_sd1", "tiny_sdxl"]
    info = manager.get(sd_models.get_closet_checkpoint_match("tiny_sd1")).sd_checkpoint_info
    assert shared.list_checkpoint_tiles(True)[1] == f"tiny_sd1 [{info.shorthash}]"
    assert info.title in shared.list_checkpoint_tiles()


# --- modules.images ---------------------------------------------------------------------------------------------

def test_flatten_composites_transparency_on_the_colour():
    img = Image.new("RGBA", (3, 1))
    img.putdata([(255, 0, 0, 255), (0, 0, 255, 0), (0, 0, 0, 128)])
    flat = images.flatten(img, "#ffffff")
    assert flat.mode == "RGB"
    assert list(flat.getdata()) == [(255, 0, 0), (255, 255, 255), (127, 127, 127)]
    palette = Image.new("P", (2, 1))
    palette.putpalette([10, 20, 30, 40, 50, 60])
    palette.putdata([0, 1])
    palette.info["transparency"] = 1
    assert list(images.flatten(palette, (0, 255, 0)).getdata()) == [(10, 20, 30), (0, 255, 0)]
    opaque = Image.new("L", (1, 1), 200)
    assert list(images.flatten(opaque, "#000000").getdata()) == [(200, 200, 200)]


# --- modules.sd_models ------------------------------------------------------------------------------------------

def test_select_checkpoint_follows_the_setting_then_falls_back(models_tree, tmp_path, caplog):
    start_engine(models_tree, tmp_path)
    opts.set("sd_model_checkpoint", "tiny_sdxl")
    assert sd_models.select_checkpoint().name == "tiny_sdxl.safetensors"
    del opts.data["sd_model_checkpoint"]
    assert sd_models.select_checkpoint().name == "refiners/tiny_sdxl_refiner.safetensors"
    opts.set("sd_model_checkpoint", "gone.safetensors")
    with caplog.at_level(logging.WARNING):
        assert sd_models.select_checkpoint().name == "refiners/tiny_sdxl_refiner.safetensors"
    assert "Checkpoint gone.safetensors not found; loading fallback" in caplog.text


def test_select_checkpoint_without_checkpoints_is_none_with_a1111_message(tmp_path, caplog):
    start_engine(tmp_path / "no-models", tmp_path)
    with caplog.at_level(logging.ERROR):
        assert sd_models.select_checkpoint() is None
    assert "No checkpoints found" in caplog.text and str(tmp_path / "no-models" / "Stable-diffusion") in caplog.text
    with pytest.raises(FileNotFoundError, match="Can't run without a checkpoint"):
        sd_models.reload_model_weights()


def test_reload_model_weights_switches_the_model_a_generation_uses(models_tree, tmp_path):
    folder = models_tree / "Stable-diffusion"
    shutil.copyfile(folder / "tiny_sd1.safetensors", folder / "copy_sd1.safetensors")
    manager = start_engine(models_tree, tmp_path)
    opts.set("sd_model_checkpoint", "tiny_sd1")
    first = _job()
    copy_info = sd_models.get_closet_checkpoint_match("copy_sd1")
    copy = sd_models.reload_model_weights(info=copy_info)
    assert shared.sd_model is copy and copy.sd_checkpoint_info is copy_info
    assert opts.sd_model_checkpoint == copy_info.title
    assert "Model: copy_sd1," in _job().infotexts[0]
    assert sd_models.reload_model_weights() is copy  # the setting's checkpoint, already loaded: no new load
    reloaded = sd_models.reload_model_weights(info=copy_info, forced_reload=True)
    assert reloaded is not copy and manager.current is reloaded and copy.sd_checkpoint_info.filename in manager.loaded
    assert all(torch.equal(a, b) for a, b in zip(copy.unet.state_dict().values(), reloaded.unet.state_dict().values()))
    sd1_info = sd_models.get_closet_checkpoint_match("tiny_sd1")
    sd_models.reload_model_weights(info=sd1_info)
    assert opts.sd_model_checkpoint == sd1_info.title
    again = _job()
    assert "Model: tiny_sd1," in again.infotexts[0]
    assert np.array_equal(pixels(again.images[0]), pixels(first.images[0]))


def test_unload_model_weights_frees_and_the_next_job_reloads(models_tree, tmp_path):
    manager = start_engine(models_tree, tmp_path)
    before = pixels(txt2img("tiny_sd1").images[0])
    gone = weakref.ref(shared.sd_model)
    assert sd_models.unload_model_weights() is None
    assert shared.sd_model is None and not manager.loaded
    gc.collect()
    assert gone() is None, "an unloaded model must not stay in memory"
    assert np.array_equal(pixels(txt2img("tiny_sd1").images[0]), before)
    assert shared.sd_model.sd_checkpoint_info.name == "tiny_sd1.safetensors"


def test_unload_model_weights_of_one_checkpoint_keeps_the_others(models_tree, tmp_path):
    manager = start_engine(models_tree, tmp_path)
    xl_info = sd_models.get_closet_checkpoint_match("tiny_sdxl")
    manager.get(xl_info, make_current=False)
    current = sd_models.reload_model_weights(info=sd_models.get_closet_checkpoint_match("tiny_sd1"))
    sd_models.unload_model_weights(info=xl_info)
    assert list(manager.loaded) == [current.sd_checkpoint_info.filename] and manager.current is current
    sd_models.unload_model_weights(sd_model=current)
    assert not manager.loaded and manager.current is None


def test_model_hash_is_the_legacy_8_hex(sd1_ckpt, tmp_path):
    data = sd1_ckpt.path.read_bytes()
    assert len(data) > 0x110000, "the fixture must reach past the hashed window"
    expected = hashlib.sha256(data[0x100000:0x110000]).hexdigest()[:8]
    assert sd_models.model_hash(str(sd1_ckpt.path)) == expected
    assert sd_models.model_hash(str(tmp_path / "missing.ckpt")) == "NOFILE"


def test_read_state_dict_reads_tensors_and_refuses_pickled_code(sd1_ckpt, tmp_path):
    state_dict = sd_models.read_state_dict(str(sd1_ckpt.path))
    assert state_dict.keys() == sd1_ckpt.state_dict.keys()
    assert all(torch.equal(state_dict[k], sd1_ckpt.state_dict[k]) for k in state_dict)
    plain = tmp_path / "plain.ckpt"
    checkpoints.write_ckpt(plain, {"w": torch.arange(3.0)})
    assert torch.equal(sd_models.read_state_dict(str(plain))["w"], torch.arange(3.0))
    assert sd_models.read_state_dict(str(plain), map_location="meta")["w"].is_meta
    bad = tmp_path / "bad.ckpt"
    marker = checkpoints.write_malicious_ckpt(bad)
    with pytest.raises(CheckpointLoadError, match="pickled code"):
        sd_models.read_state_dict(str(bad))
    assert not marker.exists(), "the pickle's payload must never run"


# --- modules.sd_samplers / sd_samplers_kdiffusion ---------------------------------------------------------------

def test_samplers_follow_hide_samplers_and_map_names_and_aliases():
    opts.set("hide_samplers", [])
    assert sd_samplers.samplers == sd_samplers.all_samplers == sd_samplers.samplers_for_img2img
    opts.set("hide_samplers", ["PLMS", "Euler"])
    try:
        names = [s.name for s in sd_samplers.samplers]
        img2img_names = [s.name for s in sd_samplers.samplers_for_img2img]
    finally:
        opts.set("hide_samplers", [])
    assert names == img2img_names == [s.name for s in sd_samplers.all_samplers if s.name not in ("PLMS", "Euler")]
    assert sd_samplers.samplers_map["k_euler_a"] == sd_samplers.samplers_map["euler a"] == "Euler a"
    assert sd_samplers.samplers_map["dpm++ 2m sde heun"] == "DPM++ 2M SDE Heun"
    assert all(sd_samplers.samplers_map[s.name.lower()] == s.name for s in sd_samplers.all_samplers)


def test_samplers_k_diffusion_is_the_table_the_sampler_list_is_built_from():
    table = sd_samplers_kdiffusion.samplers_k_diffusion
    labels = [row[0] for row in table]
    assert labels == [s.name for s in sd_samplers.all_samplers][:len(table)]
    assert "DDIM" not in labels and "LCM" not in labels
    assert ("Euler a", "sample_euler_ancestral", ["k_euler_a", "k_euler_ancestral"], {"uses_ensd": True}) in table
    for label, funcname, aliases, options in table:
        data = sd_samplers.all_samplers_map[label]
        assert callable(getattr(sd_samplers_kdiffusion, funcname))
        assert data.aliases == tuple(aliases) and data.default_scheduler == options.get("scheduler", "uniform")
        assert data.discard_penultimate_sigma == options.get("discard_next_to_last_sigma", False)
        assert data.ancestral == options.get("uses_ensd", False)
        assert data.brownian == options.get("brownian_noise", False)
        assert data.second_order == options.get("second_order", False)
    heun = sd_samplers.create_sampler("DPM++ 2M SDE Heun", None).func
    assert heun.func is sd_samplers_kdiffusion.sample_dpmpp_2m_sde and heun.keywords == {"solver_type": "heun"}


def test_sample_to_image_decodes_one_latent_of_the_batch(models_tree, tmp_path):
    start_engine(models_tree, tmp_path)
    model = sd_models.reload_model_weights(info=sd_models.get_closet_checkpoint_match("tiny_sd1"))
    latents = torch.randn(2, 4, 8, 8, generator=torch.Generator().manual_seed(3))
    full = sd_samplers.sample_to_image(latents, index=1, approximation=0)
    assert full.size == (64, 64) and full.mode == "RGB"
    assert np.array_equal(pixels(full), pixels(processing.decode_latents(model, latents[1:2])[0]))
    cheap = sd_samplers.sample_to_image(latents, 1, approximation=2)
    assert cheap.size == (8, 8)
    assert np.array_equal(pixels(cheap), pixels(live_preview.approx_cheap(latents[1:2])[0]))
    assert not np.array_equal(pixels(cheap), pixels(sd_samplers.sample_to_image(latents, 0, approximation=2)))
    try:
        opts.set("show_progress_type", "Full")
        assert sd_samplers.sample_to_image(latents).size == (64, 64)
        opts.set("show_progress_type", "Approx cheap")
        assert sd_samplers.sample_to_image(latents).size == (8, 8)
    finally:
        opts.data.pop("show_progress_type", None)


def test_cheap_approximation_is_the_live_previews_channel_map(models_tree, tmp_path):
    """multidiffusion's tilevae imports sd_vae_approx.cheap_approximation: [4, h, w] -> [h, w, 3] in [-1, 1]."""
    start_engine(models_tree, tmp_path)
    sd_models.reload_model_weights(info=sd_models.get_closet_checkpoint_match("tiny_sd1"))
    latent = torch.randn(4, 8, 8, generator=torch.Generator().manual_seed(4))
    rgb = sd_vae_approx.cheap_approximation(latent)
    assert rgb.shape == (8, 8, 3)
    as_pixels = ((rgb + 1) / 2).clamp(0, 1).mul(255).round().to(torch.uint8).numpy()
    assert np.array_equal(as_pixels, pixels(live_preview.approx_cheap(latent[None])[0]))
