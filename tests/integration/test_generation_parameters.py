"""The parameter table: every parameter's infotext round-trips through the writer, the reader, the API model and the
UI paste; a parameter added to the table shows up in the API schema, the UI, the infotext and the X/Y/Z axes with no
other edit."""
from __future__ import annotations

import dataclasses

import gradio as gr
import pytest

from modules import generation_parameters as gp, infotext_utils, scripts, ui_common, ui_loadsave, ui_txt2img
from modules.api import models

# A value unlike the default for every parameter the infotext carries; a new row without one gets a value by type.
SAMPLES = {
    "steps": 33, "cfg_scale": 6.5, "seed": 1234, "width": 96, "height": 160, "batch_size": 3, "subseed": 77,
    "subseed_strength": 0.25, "seed_resize_from_w": 320, "seed_resize_from_h": 448, "denoising_strength": 0.35,
    "refiner_switch_at": 0.6, "hr_scale": 1.5, "hr_resize_x": 640, "hr_resize_y": 768, "hr_second_pass_steps": 7,
    "hr_upscaler": "Latent (nearest)", "hr_checkpoint_name": "other [0123456789]", "hr_sampler_name": "Euler a",
    "hr_scheduler": "Karras", "hr_prompt": "a castle, at night: detailed", "hr_negative_prompt": "blurry",
    "image_cfg_scale": 1.25, "inpainting_mask_invert": 1, "mask_blur": 9, "mask_blur_x": 3, "mask_blur_y": 5,
    "inpainting_fill": 2, "inpaint_full_res": True, "inpaint_full_res_padding": 40, "initial_noise_multiplier": 0.9,
}
# What other keys need for a key to be written (a variation seed needs a strength, padding needs "Only masked").
ENABLERS = {"subseed": {"subseed_strength": 0.5}, "refiner_switch_at": {"refiner_checkpoint": "refiner [0123456789]"},
            "inpaint_full_res_padding": {"inpaint_full_res": True}, "mask_blur_x": {"mask_blur": None},
            "mask_blur_y": {"mask_blur": None}}


def sample(row: gp.Param):
    if row.name in SAMPLES:
        return SAMPLES[row.name]
    kind = ui_txt2img._scalar_type(row.type)
    return {int: 3, float: 1.5, bool: True, str: "some text"}[kind]


def pair_partner(row: gp.Param, spec: gp.Infotext, tab: str):
    for other in gp.params_for(tab):
        for s in other.infotext:
            if s.key == spec.key and s.part and s.part != spec.part:
                return other
    return None


def written_rows(tab: str):
    return [(row, spec) for row in gp.params_for(tab) for spec in row.infotext if spec.written]


def infotext_of(tab: str, row: gp.Param, spec: gp.Infotext) -> tuple[dict, str]:
    values = {r.name: r.default for r in gp.params_for(tab)} | ENABLERS.get(row.name, {}) | {row.name: sample(row)}
    partner = pair_partner(row, spec, tab)
    if partner is not None:
        values[partner.name] = sample(partner)
    return values, infotext_utils.create_infotext("a cat", "dog", gp.infotext_params(values, tab))


def paste_target(tab: str, names: list[str]) -> ui_common.PasteTarget:
    rows = {row.name: row for row in gp.params_for(tab)}
    radios = {n: list(rows[n].ui.choices) for n in names if rows[n].ui is not None and rows[n].ui.index}
    return ui_common.PasteTarget(tab, {n: gr.Textbox(render=False) for n in names},
                                 gr.Dropdown(render=False, multiselect=True), radios)


def api_model(tab: str):
    txt2img, img2img = models.build()
    return (txt2img, {}) if tab == "txt2img" else (img2img, {"init_images": ["x"]})


CASES = [(tab, row.name, spec.key) for tab in gp.TABS for row, spec in written_rows(tab)]


def test_the_round_trip_covers_every_written_key():
    keys = {key for _, _, key in CASES}
    assert {"Steps", "CFG scale", "Seed", "Size", "Variation seed", "Seed resize from", "Refiner switch at",
            "Hires upscale", "Hires resize", "Mask blur", "Masked content", "Masked area padding"} <= keys


@pytest.mark.parametrize("tab, name, key", CASES)
def test_every_parameter_round_trips_through_infotext_api_and_paste(tab, name, key):
    row = gp.BY_NAME[name].for_tab(tab)
    spec = next(s for s in row.infotext if s.key == key)
    values, text = infotext_of(tab, row, spec)
    assert f"{key}: " in text, text
    parsed = infotext_utils.parse_generation_parameters(text, [])
    pasted = infotext_utils.infotext_to_fields(parsed, tab)
    if spec.read is None:  # pasted another way: the sampler pair, the refiner finder, a setting's own label
        expected = {"sampler_name": ("sampler_name", values["sampler_name"]),
                    "scheduler": ("scheduler", values["scheduler"]),
                    "refiner_checkpoint": ("refiner_checkpoint", values["refiner_checkpoint"])}.get(name)
        if expected is None:
            assert parsed[key] == str(values[name])
        elif values[name] is not None:
            assert pasted.fields[expected[0]] == expected[1]
        return
    assert pasted.fields[name] == values[name]
    assert key not in pasted.unknown

    if row.api:
        model, required = api_model(tab)
        assert getattr(model(**required, **{name: values[name]}), name) == values[name]

    if row.ui is not None:
        updates, _, _ = ui_common.paste_updates(parsed, paste_target(tab, [name]))
        shown = list(row.ui.choices)[int(values[name])] if row.ui.index else values[name]
        assert updates[0]["value"] == shown


def test_read_only_keys_fill_their_fields():
    parsed = infotext_utils.parse_generation_parameters("a cat\nSteps: 3, Seed: 1, Batch size: 4, Size: 64x64", [])
    assert infotext_utils.infotext_to_fields(parsed, "txt2img").fields["batch_size"] == 4


def test_deliberate_differences_are_stated_once_in_the_table():
    steps, cfg, switch = gp.BY_NAME["steps"], gp.BY_NAME["cfg_scale"], gp.BY_NAME["refiner_switch_at"]
    assert (steps.api_value, steps.ui.value) == (50, 20) and steps.note
    assert (cfg.api_range, (cfg.ui.minimum, cfg.ui.maximum, cfg.ui.step)) == ((0, 30), (1.0, 30.0, 0.5)) and cfg.note
    assert (switch.api_range, switch.ui.minimum) == ((0, 1), 0.01) and switch.note
    txt2img, img2img = models.build()
    assert txt2img.model_fields["steps"].default == 50 and img2img.model_fields["inpaint_full_res_padding"].default == 0


SHARPNESS = gp.Param("test_sharpness", float, 0.0, "base", api_range=(0, 2),
                     ui=gp.Control("slider", "Sharpness", 0.0, 0, 2, 0.1),
                     infotext=(gp.Infotext("Sharpness", skip=lambda v: not v.get("test_sharpness"), read=float),),
                     axis=gp.Axis("Sharpness", float), file_option=float)


@pytest.fixture
def sharpness(monkeypatch):
    """A throwaway parameter in the table, taken out afterwards."""
    monkeypatch.setattr(gp, "PARAMETERS", [*gp.PARAMETERS, SHARPNESS])
    monkeypatch.setitem(gp.BY_NAME, SHARPNESS.name, SHARPNESS)
    monkeypatch.setattr(scripts, "scripts_data", [])
    monkeypatch.setattr(scripts, "scripts_txt2img", scripts.ScriptRunner())
    monkeypatch.setattr(scripts, "scripts_img2img", scripts.ScriptRunner())
    return SHARPNESS


def test_a_parameter_added_to_the_table_appears_everywhere(sharpness, tmp_path):
    # the API: a field with its default and range, in the schema
    txt2img, img2img = models.build()
    schema = txt2img.model_json_schema()["properties"]["test_sharpness"]
    assert (schema["default"], schema["minimum"], schema["maximum"]) == (0.0, 0, 2)
    assert "test_sharpness" in img2img.model_fields
    with pytest.raises(ValueError, match="test_sharpness"):
        txt2img(test_sharpness=3)

    # the processing class: a field with the engine default
    @dataclasses.dataclass
    @gp.declare_fields("StableDiffusionProcessing")
    class Job:
        pass

    assert Job().test_sharpness == 0.0 and Job(test_sharpness=1.5).test_sharpness == 1.5

    # the UI: a control with the table's label and id, passed to Generate by name and filled by "Send to"
    loadsave = ui_loadsave.UiLoadsave(str(tmp_path / "ui-config.json"))
    with gr.Blocks():
        ui = ui_txt2img.create_ui(loadsave, lambda key: None)
    control = ui.controls["test_sharpness"]
    assert (control.label, control.elem_id, control.maximum) == ("Sharpness", "txt2img_test_sharpness", 2)
    assert ui.paste.fields["test_sharpness"] is control
    assert ui_txt2img.job_fields("txt2img", {"test_sharpness": 1.5})["test_sharpness"] == 1.5

    # the infotext: written after A1111's base block, read back, pasted
    text = infotext_utils.create_infotext("a cat", "", gp.infotext_params({"steps": 3, "seed": 1, "test_sharpness": 1.5},
                                                                          "txt2img"))
    assert text == "a cat\nSteps: 3, Seed: 1, Sharpness: 1.5"
    parsed = infotext_utils.parse_generation_parameters(text, [])
    assert infotext_utils.infotext_to_fields(parsed, "txt2img").fields["test_sharpness"] == 1.5
    updates, _, _ = ui_common.paste_updates(parsed, ui.paste)
    assert updates[list(ui.paste.fields).index("test_sharpness")]["value"] == 1.5

    # the X/Y/Z plot and prompts from file
    from scripts import prompts_from_file, xyz_grid
    assert xyz_grid.build_axis_options()[-1].label == "Sharpness"
    assert prompts_from_file.build_prompt_tags()["test_sharpness"] == ("test_sharpness", float)


def test_without_the_throwaway_parameter_nothing_has_it():
    assert "test_sharpness" not in models.StableDiffusionTxt2ImgProcessingAPI.model_fields
    assert "test_sharpness" not in gp.BY_NAME
