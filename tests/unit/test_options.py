"""Settings: A1111 keys and defaults, set/save/load, atomic writes, corrupt and wrongly typed config.json, option helpers."""
import copy
import json
import logging
import os
import sys
import types

import pytest

from modules import options, paths_internal
from modules.options import OptionInfo, Options, options_section
from modules.shared_cmd_options import cmd_opts
from modules.shared_options import options_templates, restricted_opts, retired_options

A1111_DEFAULTS = {
    "sd_checkpoint_hash": "", "sd_vae": "Automatic", "sd_vae_overrides_per_model_preferences": True,
    "sd_checkpoints_limit": 1, "sd_checkpoints_keep_in_cpu": True, "sd_unet": "Automatic", "CLIP_stop_at_last_layers": 1,
    "emphasis": "Original", "comma_padding_backtrack": 20, "upcast_attn": False, "randn_source": "GPU",
    "eta_noise_seed_delta": 0, "eta_ancestral": 1.0, "eta_ddim": 0.0, "s_churn": 0.0, "s_tmin": 0.0, "s_tmax": 0.0,
    "s_noise": 1.0, "sigma_min": 0.0, "sigma_max": 0.0, "rho": 0.0, "uni_pc_variant": "bh1", "uni_pc_skip_type": "time_uniform",
    "uni_pc_order": 3, "uni_pc_lower_order_final": True, "sdxl_crop_top": 0, "sdxl_crop_left": 0,
    "sdxl_refiner_low_aesthetic_score": 2.5, "sdxl_refiner_high_aesthetic_score": 6.0, "samples_save": True,
    "samples_format": "png", "samples_filename_pattern": "", "save_images_add_number": True,
    "save_images_replace_action": "Replace", "grid_save": True, "grid_format": "png", "grid_extended_filename": False,
    "grid_only_if_multiple": True, "grid_prevent_empty_spots": False, "n_rows": -1, "enable_pnginfo": True,
    "save_txt": False, "jpeg_quality": 80, "webp_lossless": False, "export_for_4chan": True, "save_to_dirs": True,
    "grid_save_to_dirs": True, "directories_filename_pattern": "[date]", "directories_max_prompt_words": 8,
    "outdir_samples": "", "outdir_txt2img_samples": "outputs/txt2img-images",
    "outdir_img2img_samples": "outputs/img2img-images", "outdir_extras_samples": "outputs/extras-images",
    "outdir_grids": "", "outdir_txt2img_grids": "outputs/txt2img-grids", "outdir_img2img_grids": "outputs/img2img-grids",
    "outdir_save": "log/images", "outdir_init_images": "outputs/init-images", "show_progress_every_n_steps": 10,
    "show_progress_type": "Approx NN", "live_previews_enable": True, "live_previews_image_format": "png",
    "show_progress_grid": True, "quicksettings_list": ["sd_model_checkpoint", "sd_vae", "forge_additional_modules", "CLIP_stop_at_last_layers"], "hide_samplers": [],
    "add_model_hash_to_info": True, "add_model_name_to_info": True, "add_vae_hash_to_info": True,
    "add_vae_name_to_info": True, "add_version_to_infotext": True, "disable_weights_auto_swap": True,
    "auto_vae_precision": True, "auto_vae_precision_bfloat16": False, "sgm_noise_multiplier": False,
    "refiner_switch_by_sample_steps": False, "hires_fix_refiner_pass": "second pass", "tiling": False,
    "face_restoration": False, "face_restoration_model": "CodeFormer", "code_former_weight": 0.5,
    "disabled_extensions": [], "disable_all_extensions": "none", "sd_model_checkpoint": None,
}


def fresh_store():
    """A store over copies of the templates, so no test changes the process-wide settings or their callbacks."""
    return Options({key: copy.copy(info) for key, info in options_templates.items()}, restricted_opts, retired_options)


@pytest.fixture
def opts():
    return fresh_store()


@pytest.fixture
def data_dir(tmp_path):
    saved = (paths_internal.data_path, paths_internal.models_path)
    paths_internal.configure(str(tmp_path))
    yield tmp_path
    paths_internal.configure(*saved)


@pytest.fixture
def flags():
    """Set command-line flags on cmd_opts for one test."""
    saved = dict(vars(cmd_opts))
    yield cmd_opts
    vars(cmd_opts).clear()
    vars(cmd_opts).update(saved)


def test_a1111_keys_and_defaults(opts):
    for key, default in A1111_DEFAULTS.items():
        assert key in options_templates or key in retired_options, key
        assert getattr(opts, key) == default, key
        assert type(getattr(opts, key)) is type(default), key
    assert restricted_opts <= set(options_templates)
    assert {"outdir_samples", "outdir_txt2img_samples", "samples_filename_pattern"} <= restricted_opts


def test_sections_as_a1111():
    assert options_templates["samples_format"].section == ("saving-images", "Saving images/grids")
    assert options_templates["outdir_txt2img_samples"].section == ("saving-paths", "Paths for saving")
    assert options_templates["save_to_dirs"].section == ("saving-to-dirs", "Saving to a directory")
    assert options_templates["sd_model_checkpoint"].section == ("sd", "Stable Diffusion")
    assert options_templates["sdxl_crop_top"].section == ("sdxl", "Stable Diffusion XL")
    assert options_templates["sd_vae"].section == ("vae", "VAE")
    assert options_templates["eta_ancestral"].section == ("sampler-params", "Sampler parameters")
    assert options_templates["live_previews_enable"].section == ("ui", "Live previews")
    assert options_templates["enable_pnginfo"].section == ("infotext", "Infotext")
    assert options_templates["face_restoration_model"].section == ("face-restoration", "Face restoration")
    assert options_templates["sd_checkpoint_hash"].section == (None, "Hidden options")
    assert options_templates["samples_format"].category_id == "saving"
    assert options_templates["CLIP_stop_at_last_layers"].infotext == "Clip skip"


def test_set_and_get(opts):
    assert opts.set("samples_format", "jpg") is True
    assert opts.samples_format == "jpg" and opts.data["samples_format"] == "jpg"
    assert opts.set("samples_format", "jpg") is False  # unchanged
    opts.CLIP_stop_at_last_layers = 2
    assert opts.data["CLIP_stop_at_last_layers"] == 2
    assert opts.get_default("CLIP_stop_at_last_layers") == 1
    assert opts.get_default("no_such_key") is None
    with pytest.raises(KeyError, match="unknown setting: no_such_key"):
        opts.set("no_such_key", 1)


def test_wrong_type_is_refused_by_set(opts, caplog):
    with caplog.at_level(logging.WARNING, logger=options.__name__):
        assert opts.set("jpeg_quality", "high") is False
    assert opts.jpeg_quality == 80
    assert "jpeg_quality" in caplog.text and "'high'" in caplog.text
    assert opts.set("jpeg_quality", 90.0) is True  # int and float are the same kind of value
    assert opts.set("enable_pnginfo", 1) is False  # a bool option takes bools only


def test_save_load_round_trip(opts, tmp_path):
    filename = tmp_path / "config.json"
    opts.set("samples_format", "webp")
    opts.set("CLIP_stop_at_last_layers", 2)
    opts.set("quicksettings_list", ["sd_model_checkpoint", "sd_vae"])
    opts.set("samples_filename_pattern", "[seed]-café-猫")
    opts.save(str(filename))

    text = filename.read_text(encoding="utf8")
    assert text.startswith('{\n    "')  # indent 4, as A1111 writes it
    assert "café-猫" in text  # UTF-8, not \u escapes
    assert json.loads(text)["CLIP_stop_at_last_layers"] == 2

    loaded = fresh_store()
    loaded.load(str(filename))
    assert loaded.samples_format == "webp"
    assert loaded.CLIP_stop_at_last_layers == 2
    assert loaded.quicksettings_list == ["sd_model_checkpoint", "sd_vae"]
    assert loaded.samples_filename_pattern == "[seed]-café-猫"
    assert loaded.data == opts.data


def test_save_leaves_no_temp_file_and_creates_the_folder(opts, tmp_path):
    filename = tmp_path / "new" / "config.json"
    opts.save(str(filename))
    assert os.listdir(tmp_path / "new") == ["config.json"]
    assert json.loads(filename.read_text(encoding="utf8"))["samples_format"] == "png"


def test_failed_save_keeps_the_old_file(opts, tmp_path):
    filename = tmp_path / "config.json"
    opts.save(str(filename))
    before = filename.read_bytes()
    opts.data["not_json"] = object()
    with pytest.raises(TypeError):
        opts.save(str(filename))
    assert filename.read_bytes() == before
    assert os.listdir(tmp_path) == ["config.json"]


def test_missing_file_gives_defaults(opts, tmp_path, caplog):
    opts.set("samples_format", "jpg")
    with caplog.at_level(logging.WARNING):
        opts.load(str(tmp_path / "config.json"))
    assert opts.samples_format == "png"
    assert caplog.text == ""
    assert not (tmp_path / "config.json").exists()


@pytest.mark.parametrize("content", [b'{"samples_format": "jpg",', b"\xff\xfe\x00garbage", b'["a list"]'])
def test_corrupt_file_is_moved_aside(opts, data_dir, caplog, content):
    filename = data_dir / "config.json"
    filename.write_bytes(content)
    with caplog.at_level(logging.WARNING, logger=options.__name__):
        opts.load(str(filename))
    moved = data_dir / "tmp" / "config.json"
    assert moved.read_bytes() == content
    assert not filename.exists()
    assert opts.samples_format == "png"
    assert str(filename) in caplog.text and str(moved) in caplog.text


def test_wrong_types_in_file_are_dropped(opts, tmp_path, caplog):
    filename = tmp_path / "config.json"
    filename.write_text(json.dumps({
        "samples_format": 5, "enable_pnginfo": "yes", "jpeg_quality": 90.5, "CLIP_stop_at_last_layers": 2,
        "extension_option": "kept", "sd_model_checkpoint": "model.safetensors [abcdef0123]",
    }), encoding="utf8")
    with caplog.at_level(logging.WARNING, logger=options.__name__):
        opts.load(str(filename))
    assert opts.samples_format == "png" and opts.enable_pnginfo is True
    assert opts.jpeg_quality == 90.5 and opts.CLIP_stop_at_last_layers == 2
    assert opts.sd_model_checkpoint == "model.safetensors [abcdef0123]"  # None default: any value
    assert opts.data["extension_option"] == "kept"  # options of extensions not loaded yet survive
    assert "samples_format" in caplog.text and "enable_pnginfo" in caplog.text and "jpeg_quality" not in caplog.text


def test_old_a1111_keys_are_migrated(opts, tmp_path):
    filename = tmp_path / "config.json"
    filename.write_text(json.dumps({"quicksettings": "sd_model_checkpoint, sd_vae", "sd_vae_as_default": True}), encoding="utf8")
    opts.load(str(filename))
    assert opts.quicksettings_list == ["sd_model_checkpoint", "sd_vae"]
    assert opts.sd_vae_overrides_per_model_preferences is False


def test_api_cannot_change_restricted_api_options(opts):
    assert opts.set("api_forbid_local_requests", False, is_api=True) is False
    assert opts.api_forbid_local_requests is True
    assert opts.set("api_forbid_local_requests", False) is True


def test_frozen_settings(opts, flags, tmp_path):
    flags.freeze_settings = True
    assert opts.set("samples_format", "jpg") is False
    assert opts.samples_format == "png"
    with pytest.raises(RuntimeError, match="--freeze-settings"):
        opts.save(str(tmp_path / "config.json"))
    flags.freeze_settings = False
    flags.freeze_settings_in_sections = "saving-images, sd"
    assert opts.set("samples_format", "jpg") is False
    assert opts.set("eta_ddim", 0.5) is True
    flags.freeze_specific_settings = "eta_ddim"
    assert opts.set("eta_ddim", 0.2) is False


def test_hidden_dir_options_are_refused(opts, flags):
    flags.hide_ui_dir_config = True
    assert opts.set("outdir_samples", "somewhere") is False
    assert opts.set("samples_format", "jpg") is True
    assert options_templates["outdir_samples"].component_args() == {"visible": False}
    flags.hide_ui_dir_config = False
    assert opts.set("outdir_samples", "somewhere") is True


def test_onchange(opts):
    calls = []
    opts.onchange("samples_format", lambda: calls.append(opts.samples_format))
    assert calls == ["png"]  # call=True runs it once right away
    opts.set("samples_format", "jpg")
    assert calls == ["png", "jpg"]
    opts.set("samples_format", "webp", run_callbacks=False)
    assert calls == ["png", "jpg"]
    opts.onchange("n_rows", lambda: calls.append("n_rows"), call=False)
    assert calls == ["png", "jpg"]


def test_failing_onchange_restores_the_old_value(opts):
    def refuse():
        raise ValueError("no")

    opts.onchange("samples_format", refuse, call=False)
    assert opts.set("samples_format", "jpg") is False
    assert opts.samples_format == "png"


def test_add_option_keeps_a_loaded_value(opts, tmp_path):
    filename = tmp_path / "config.json"
    filename.write_text(json.dumps({"my_ext_strength": 0.7}), encoding="utf8")
    opts.load(str(filename))
    opts.add_option("my_ext_strength", OptionInfo(0.5, "Strength", section=("my_ext", "My extension")))
    opts.add_option("my_ext_mode", OptionInfo("fast", "Mode", section=("my_ext", "My extension")))
    assert opts.my_ext_strength == 0.7
    assert opts.my_ext_mode == "fast"
    assert opts.set("my_ext_mode", "slow") is True


def test_templates_added_later_are_seen_by_the_store():
    templates = {"a": OptionInfo(1, "A")}
    store = Options(templates, set())
    templates.update(options_section(("ext", "Extension"), {"b": OptionInfo("x", "B")}))
    assert store.b == "x"
    assert store.set("b", "y") is True


def test_option_info_chaining():
    info = OptionInfo(1, "Label").info("a hint").needs_reload_ui().link("wiki", "https://example.com/w")
    assert isinstance(info, OptionInfo)
    assert info.comment_after == "<span class='info'>(a hint)</span> <span class='info'>(requires Reload UI)</span>"
    assert info.comment_before == "[<a href='https://example.com/w' target='_blank'>wiki</a>]"


def test_options_section_sets_section_and_category():
    section = options_section(("my-id", "My label", "sd"), {"k": OptionInfo(0, "K")})
    assert section["k"].section == ("my-id", "My label")
    assert section["k"].category_id == "sd"
    plain = options_section(("other", "Other"), {"k": OptionInfo(0, "K")})
    assert plain["k"].section == ("other", "Other") and plain["k"].category_id is None


def test_cast_value(opts):
    assert opts.cast_value("CLIP_stop_at_last_layers", "2") == 2
    assert opts.cast_value("eta_ancestral", "0.5") == 0.5
    assert opts.cast_value("enable_pnginfo", "False") is False
    assert opts.cast_value("samples_format", "jpg") == "jpg"
    assert opts.cast_value("samples_format", None) is None
    with pytest.raises(ValueError):
        opts.cast_value("CLIP_stop_at_last_layers", "two")


def test_dumpjson(opts):
    opts.set("samples_format", "jpg")
    d = json.loads(opts.dumpjson())
    assert d["samples_format"] == "jpg"
    assert d["CLIP_stop_at_last_layers"] == 1
    assert "wiki" in d["_comments_before"]["CLIP_stop_at_last_layers"]
    assert ["Saving images/grids", "Saving images"] in d["_categories"]
    assert ["Sampler parameters", "Stable Diffusion"] in d["_categories"]
    assert d["_categories"][-1] == ["Defaults", "Other"]


def test_reorder_groups_options_by_category(opts):
    opts.add_option("zz_extension_option", OptionInfo(0, "late", section=("saving-images", "Saving images/grids")))
    opts.reorder()
    keys = list(opts.data_labels)
    category_ids = [opts.data_labels[k].category_id for k in keys]
    assert opts.data_labels["zz_extension_option"].category_id == "saving"  # takes its section's category
    assert category_ids.index("sd") > max(i for i, c in enumerate(category_ids) if c == "saving")
    assert keys.index("zz_extension_option") < keys.index("sd_model_checkpoint")
    assert opts.samples_format == "png"  # values are untouched


def test_choices_come_from_the_modules_that_know_them(monkeypatch):
    import modules
    from modules import shared_options

    refreshed = []
    fakes = {
        "sd_models": types.SimpleNamespace(checkpoint_registry=types.SimpleNamespace(titles=lambda: ["a.safetensors [0123456789]"]),
                                           list_models=lambda flags: refreshed.append(("checkpoints", flags))),
        "sd_vae": types.SimpleNamespace(vae_dict={"v.safetensors": "/m/VAE/v.safetensors"},
                                        refresh_vae_list=lambda flags: refreshed.append(("vae", flags))),
        "sd_samplers": types.SimpleNamespace(all_samplers=[types.SimpleNamespace(name="Euler a"), types.SimpleNamespace(name="DPM++ 2M")]),
    }
    for name, fake in fakes.items():
        monkeypatch.setitem(sys.modules, f"modules.{name}", fake)
        monkeypatch.setattr(modules, name, fake, raising=False)

    assert options_templates["sd_model_checkpoint"].component_args() == {"choices": ["a.safetensors [0123456789]"]}
    assert options_templates["sd_vae"].component_args() == {"choices": ["Automatic", "None", "v.safetensors"]}
    assert options_templates["hide_samplers"].component_args() == {"choices": ["Euler a", "DPM++ 2M"]}
    options_templates["sd_model_checkpoint"].refresh()
    options_templates["sd_vae"].refresh()
    assert refreshed == [("checkpoints", cmd_opts), ("vae", cmd_opts)]
    assert "samples_format" in shared_options.setting_choices()["choices"]
    assert {"Clip skip", "Model hash", "VAE"} <= set(shared_options.infotext_choices()["choices"])


# (setting, refused value, what the refusal says): one rule for every way a setting changes
REFUSED_VALUES = [
    ("outdir_samples", "/tmp/x", "must name a folder inside the data directory"),
    ("outdir_txt2img_samples", "outputs/../../x", "must name a folder inside the data directory"),
    ("outdir_save", "../log", "must name a folder inside the data directory"),
    ("outdir_init_images", "/", "must name a folder inside the data directory"),
    ("samples_filename_pattern", "../../[seed]", "must name a folder inside the data directory"),
    ("directories_filename_pattern", "/etc/[date]", "must name a folder inside the data directory"),
    ("sd_vae", "../../etc/passwd", "is not one of its choices: Automatic, None"),
    ("samples_format", "../x", "is not one of its choices: png, jpg"),
    ("grid_format", "exe", "is not one of its choices: png, jpg"),
    ("samples_format", 5, "5 is a int, expected a str"),
    ("jpeg_quality", "best", "'best' is a str, expected a int"),
    ("emphasis", "Loud", "is not one of its choices: None, Ignore, Original, No norm"),
    ("quicksettings_list", ["sd_vae", "no_such_setting"], "is not one of its choices"),
    ("samples_save", "yes", "is a str, expected a bool"),
]


@pytest.mark.parametrize("key, value, message", REFUSED_VALUES, ids=[f"{k}={v!r}" for k, v, _ in REFUSED_VALUES])
def test_refused_values_through_every_way_of_setting(opts, data_dir, key, value, message):
    before = getattr(opts, key)
    with pytest.raises(ValueError, match=f"Setting {key}.*"):
        opts.check_value(key, value)
    with pytest.raises(ValueError) as raised:
        setattr(opts, key, value)  # scripts' `shared.opts.x = ...`, override_settings, X/Y/Z
    assert message in str(raised.value)
    assert opts.set(key, value) is False and opts.set(key, value, is_api=True) is False
    assert getattr(opts, key) == before


def test_accepted_values(opts, data_dir):
    for key, value in [("outdir_samples", str(data_dir / "elsewhere")), ("outdir_samples", "mine/outputs"),
                       ("samples_filename_pattern", "[seed]-[prompt_words]"), ("samples_format", "webp"),
                       ("grid_format", "jpg"), ("sd_vae", "None"), ("jpeg_quality", 90.0), ("emphasis", "No norm"),
                       ("quicksettings_list", ["sd_vae"]), ("outdir_samples", "")]:
        assert opts.set(key, value) is True, (key, value)


def test_a_choice_new_since_the_list_was_made_refreshes_it(opts, data_dir, monkeypatch):
    from modules import sd_vae

    monkeypatch.setattr(sd_vae, "vae_dict", {})
    refreshed = []
    opts.data_labels["sd_vae"].refresh = lambda: (refreshed.append(True), sd_vae.vae_dict.update({"new.safetensors": "x"}))
    assert opts.set("sd_vae", "new.safetensors") is True and refreshed == [True]


def test_override_settings_are_checked_like_every_other_change(data_dir):
    from modules import job_context

    store = fresh_store()
    with pytest.raises(ValueError, match="Setting outdir_samples must name a folder inside the data directory"):
        job_context.layered(store, {"CLIP_stop_at_last_layers": 2, "outdir_samples": "/tmp/x"})
    with pytest.raises(ValueError, match="Unknown setting in override_settings: no_such_setting"):
        job_context.layered(store, {"no_such_setting": 1})
    assert store.outdir_samples == "" and store.CLIP_stop_at_last_layers == 1  # none applied, not even the good one


def test_a_layer_shows_its_values_over_the_store_and_never_writes_it(data_dir, tmp_path):
    from modules import job_context

    store = fresh_store()
    view = job_context.layered(store, {"CLIP_stop_at_last_layers": 2})
    view.eta_noise_seed_delta = 31337  # code running for the job writes its own view
    assert view.set("samples_format", "jpg") is True
    assert (view.CLIP_stop_at_last_layers, view.eta_noise_seed_delta, view.samples_format) == (2, 31337, "jpg")
    assert view.data["CLIP_stop_at_last_layers"] == 2 and dict(view.data)["samples_format"] == "jpg"
    assert (store.CLIP_stop_at_last_layers, store.eta_noise_seed_delta, store.samples_format) == (1, 0, "png")
    inner = job_context.layered(view, {"CLIP_stop_at_last_layers": 3})  # a sub-job over the job
    assert (inner.CLIP_stop_at_last_layers, inner.eta_noise_seed_delta) == (3, 31337)
    view.save(str(tmp_path / "config.json"))  # saving from inside a job writes the saved values only
    assert json.loads((tmp_path / "config.json").read_text())["CLIP_stop_at_last_layers"] == 1
    assert view.data_labels is store.data_labels and hasattr(view, "CLIP_stop_at_last_layers")
