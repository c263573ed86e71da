"""ui-config.json: saved fields apply to the controls, invalid choices are ignored, Defaults writes the changes."""
import json

import gradio as gr

from modules.ui_components import InputAccordion
from modules.ui_loadsave import UiLoadsave


def build(loadsave):
    with gr.Blocks() as demo:
        with gr.Column() as column:
            steps = gr.Slider(minimum=1, maximum=150, step=1, value=20, label="Sampling steps")
            sampler = gr.Dropdown(["Euler", "DPM++ 2M"], value="DPM++ 2M", label="Sampling method")
            picker = gr.Dropdown(["1024x1024"], value=None, label="SDXL size")
            with InputAccordion(False, label="Refiner") as refiner:
                switch = gr.Slider(minimum=0.01, maximum=1, step=0.01, value=0.8, label="Switch at")
            gr.Button("Generate")
        loadsave.add_block(column, "txt2img", skip=[picker])
    return demo, steps, sampler, picker, refiner, switch


def test_missing_file_registers_defaults_and_dump_writes_them(tmp_path):
    path = tmp_path / "ui-config.json"
    loadsave = UiLoadsave(str(path))
    build(loadsave)
    assert list(loadsave.component_mapping) == ["txt2img/Sampling steps", "txt2img/Sampling method", "txt2img/Refiner",
                                                "txt2img/Switch at"]
    loadsave.dump_defaults()
    saved = json.loads(path.read_text(encoding="utf8"))
    assert saved["txt2img/Sampling steps/value"] == 20
    assert saved["txt2img/Sampling steps/maximum"] == 150
    assert saved["txt2img/Sampling method/value"] == "DPM++ 2M"
    assert saved["txt2img/Refiner/value"] is False
    assert "txt2img/SDXL size/value" not in saved  # skipped: an action, not a default


def test_saved_values_and_limits_apply(tmp_path):
    path = tmp_path / "ui-config.json"
    path.write_text(json.dumps({
        "txt2img/Sampling steps/value": 30, "txt2img/Sampling steps/maximum": 200,
        "txt2img/Sampling method/value": "Euler", "txt2img/Refiner/value": True,
    }), encoding="utf8")
    loadsave = UiLoadsave(str(path))
    demo, steps, sampler, _, refiner, _ = build(loadsave)
    assert (steps.value, steps.maximum) == (30, 200)
    assert sampler.value == "Euler"
    assert refiner.value is True and refiner.accordion.open is True
    props = {c["props"].get("label"): c["props"] for c in demo.get_config_file()["components"]}
    assert props["Sampling steps"]["value"] == 30 and props["Sampling steps"]["maximum"] == 200


def test_value_not_among_choices_is_ignored(tmp_path):
    path = tmp_path / "ui-config.json"
    path.write_text(json.dumps({"txt2img/Sampling method/value": "No such sampler"}), encoding="utf8")
    _, _, sampler, _, _, _ = build(UiLoadsave(str(path)))
    assert sampler.value == "DPM++ 2M"


def test_corrupt_file_is_never_overwritten_by_defaults(tmp_path):
    path = tmp_path / "ui-config.json"
    path.write_text("{not json", encoding="utf8")
    loadsave = UiLoadsave(str(path))
    _, steps, _, _, _, _ = build(loadsave)
    assert loadsave.error_loading and steps.value == 20
    loadsave.dump_defaults()
    assert path.read_text(encoding="utf8") == "{not json"


def test_view_and_apply_write_only_changes(tmp_path):
    path = tmp_path / "ui-config.json"
    loadsave = UiLoadsave(str(path))
    build(loadsave)
    loadsave.dump_defaults()
    values = [33, "DPM++ 2M", False, 0.8]  # the page's current values, in registration order
    assert loadsave.iter_changes(loadsave.read_from_file(), values) == [("txt2img/Sampling steps/value", 20, 33)]
    assert "<td>txt2img/Sampling steps/value</td><td>20</td><td>33</td>" in loadsave.ui_view(*values)
    assert loadsave.ui_apply(*values).startswith("<p>Wrote 1 change to ")
    saved = json.loads(path.read_text(encoding="utf8"))
    assert saved["txt2img/Sampling steps/value"] == 33
    assert saved["txt2img/Sampling steps/maximum"] == 150
    assert loadsave.ui_apply(*values) == "<p>No changes</p>"
    assert not list(tmp_path.glob("*.tmp"))


def test_next_start_uses_the_applied_default(tmp_path):
    path = tmp_path / "ui-config.json"
    first = UiLoadsave(str(path))
    build(first)
    first.ui_apply(12, "Euler", True, 0.5)
    _, steps, sampler, _, refiner, switch = build(UiLoadsave(str(path)))
    assert (steps.value, sampler.value, refiner.value, switch.value) == (12, "Euler", True, 0.5)
