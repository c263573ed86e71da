"""Settings tab and quicksettings: sections, value types, Apply (saved atomically, refusals named), components."""
import json

import gradio as gr
import pytest

from modules import ui_settings
from modules.shared_cmd_options import cmd_opts
from modules.shared_options import opts
from modules.ui_components import InputAccordion, ToolButton
from modules.ui_loadsave import UiLoadsave


def test_sections_follow_category_then_label_and_skip_hidden():
    page = ui_settings.sections()
    labels = [s.label for s in page]
    assert "Hidden options" not in labels
    categories = [s.category for s in page]
    order = ["Saving images", "Stable Diffusion", "User Interface", "System", "Postprocessing"]
    assert [c for c in dict.fromkeys(categories) if c in order] == order
    for category in order:
        inside = [s.label.lower() for s in page if s.category == category]
        assert inside == sorted(inside)
    by_label = {s.label: s for s in page}
    assert by_label["Live previews"].key == ("ui", "Live previews")  # shares its id with "User interface"
    assert by_label["Live previews"].elem_id == "settings_section_live_previews"
    assert by_label["Saving images/grids"].elem_id == "settings_section_saving_images_grids"
    assert "show_progress_every_n_steps" in by_label["Live previews"].keys


@pytest.mark.parametrize("key, value, expected", [
    ("jpeg_quality", 95.0, 95), ("img_downscale_threshold", 4, 4.0), ("samples_save", 1, True),
    ("samples_filename_pattern", None, ""), ("samples_format", "jpg", "jpg"), ("sd_model_checkpoint", "x", "x"),
])
def test_coerce_to_the_options_type(key, value, expected):
    result = ui_settings.coerce(key, value)
    assert result == expected and type(result) is type(expected)


@pytest.fixture
def settings_page(tmp_path, monkeypatch):
    config = tmp_path / "config.json"
    monkeypatch.setattr(cmd_opts, "ui_settings_file", str(config))
    for key in ("samples_format", "jpeg_quality", "tiling", "quicksettings_list"):
        monkeypatch.setitem(opts.data, key, opts.data_labels[key].default)
    settings = ui_settings.UiSettings()
    with gr.Blocks() as demo:
        settings.add_quicksettings()
        settings.create_ui(UiLoadsave(str(tmp_path / "ui-config.json")))
        settings.add_functionality(demo)
    return settings, config


def values_with(settings, **changes):
    return [changes.get(key, getattr(opts, key)) for key in settings.components]


def test_every_visible_option_has_a_control_with_a_1111_id(settings_page):
    settings, _ = settings_page
    assert set(settings.quicksettings) == {"sd_model_checkpoint", "sd_vae", "forge_additional_modules",
                                           "CLIP_stop_at_last_layers"}  # Forge's "VAE / Text Encoder" too
    assert settings.quicksettings["forge_additional_modules"].multiselect
    assert "sd_model_checkpoint" not in settings.components  # only at the top of the page
    assert settings.quicksettings["CLIP_stop_at_last_layers"].elem_id == "setting_CLIP_stop_at_last_layers"
    assert settings.components["samples_format"].elem_id == "setting_samples_format"
    assert isinstance(settings.quicksettings["CLIP_stop_at_last_layers"], gr.Slider)
    assert isinstance(settings.components["tiling"], gr.Checkbox)
    assert isinstance(settings.components["show_progress_type"], gr.Radio)
    assert "sd_vae_explanation" not in settings.components  # text, not a value
    assert "disabled_extensions" not in settings.components  # hidden section


def test_apply_saves_changed_values_once(settings_page):
    settings, config = settings_page
    *updates, message = settings.run_settings(*values_with(settings, samples_format="jpg", jpeg_quality=90.0, tiling=True))
    assert message == "3 settings changed: samples_format, jpeg_quality, tiling."
    assert (opts.samples_format, opts.jpeg_quality, opts.tiling) == ("jpg", 90, True)
    saved = json.loads(config.read_text(encoding="utf8"))
    assert (saved["samples_format"], saved["jpeg_quality"], saved["tiling"]) == ("jpg", 90, True)
    assert not list(config.parent.glob("*.tmp"))
    assert len(updates) == len(settings.components)
    *_, message = settings.run_settings(*values_with(settings))
    assert message == "0 settings changed."


def test_refused_change_is_named_and_put_back(settings_page, monkeypatch):
    settings, config = settings_page
    monkeypatch.setattr(cmd_opts, "freeze_specific_settings", "jpeg_quality")
    *updates, message = settings.run_settings(*values_with(settings, samples_format="webp", jpeg_quality=10))
    assert message.startswith("1 setting changed: samples_format. Not changed (frozen, restricted or of the wrong type")
    assert message.endswith(": jpeg_quality.")
    keys = list(settings.components)
    assert updates[keys.index("jpeg_quality")]["value"] == 80
    assert json.loads(config.read_text(encoding="utf8"))["jpeg_quality"] == 80


def test_quicksetting_saves_at_once(settings_page):
    settings, config = settings_page
    update, message = settings.run_settings_single(["sd_model_checkpoint", "sd_vae"], "quicksettings_list")
    assert (update["value"], message) == (["sd_model_checkpoint", "sd_vae"], "")
    assert json.loads(config.read_text(encoding="utf8"))["quicksettings_list"] == ["sd_model_checkpoint", "sd_vae"]


def test_missing_checkpoint_in_quicksettings_is_an_error_and_keeps_the_old_choice(settings_page):
    settings, _ = settings_page
    old = opts.sd_model_checkpoint
    update, message = settings.run_settings_single("no_such_model.safetensors", "sd_model_checkpoint")
    assert message.startswith("<div class='error'><b>Error:</b> Checkpoint not found: no_such_model.safetensors.")
    assert opts.sd_model_checkpoint == old


def test_quicksettings_react_to_the_users_own_changes_only():
    with gr.Blocks():
        slider, dropdown, checkbox = gr.Slider(), gr.Dropdown(["a"]), gr.Checkbox()
        assert ui_settings.quicksetting_event(slider) == slider.release
        assert ui_settings.quicksetting_event(dropdown) == dropdown.select
        assert ui_settings.quicksetting_event(checkbox) == checkbox.input


def test_subclassed_components_render_as_their_stock_component():
    with gr.Blocks() as demo:
        ToolButton("🎲", elem_id="txt2img_random_seed")
        with InputAccordion(True, label="Refiner", elem_id="txt2img_enable_refiner"):
            gr.Slider(label="Switch at")
    components = {c["props"].get("elem_id"): c for c in demo.get_config_file()["components"]}
    button = components["txt2img_random_seed"]
    assert (button["type"], button["props"]["value"], button["props"]["elem_classes"]) == ("button", "🎲", ["tool"])
    accordion, checkbox = components["txt2img_enable_refiner"], components["txt2img_enable_refiner-checkbox"]
    assert (accordion["type"], accordion["props"]["label"], accordion["props"]["open"]) == ("accordion", "Refiner", True)
    assert (checkbox["type"], checkbox["props"]["value"], checkbox["props"]["label"]) == ("checkbox", True, "Refiner")
