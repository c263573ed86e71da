"""The ControlNet accordion (no browser): its layout, the unit its widgets make, the type filter, the map preview and
pasting a real infotext into the unit's widgets."""
from __future__ import annotations

import gradio as gr
import numpy as np
import pytest

from modules import infotext_utils, ui_controlnet
from modules.controlnet import preprocessors
from tests.unit.test_controlnet_infotext import REAL


@pytest.fixture()
def accordion(tmp_path, monkeypatch):
    monkeypatch.setattr(ui_controlnet, "model_choices", lambda: ["None", "control_v11p_sd15_canny [d14c016b]",
                                                                 "control_v11f1p_sd15_depth [cfd03158]"])
    with gr.Blocks() as blocks:
        states, fields = ui_controlnet.accordion(False, 3)
    return blocks, states, fields


def test_layout_has_a_tab_per_unit_with_the_extensions_controls(accordion):
    blocks, states, fields = accordion
    assert len(states) == 3 and all(isinstance(s, gr.State) and s.value is None for s in states)
    ids = {getattr(block, "elem_id", None) for block in blocks.blocks.values()}
    for index in range(3):
        prefix = f"txt2img_controlnet_ControlNet-{index}"
        assert {f"{prefix}_input_image", f"{prefix}_enable_checkbox", f"{prefix}_pixel_perfect_checkbox",
                f"{prefix}_preprocessor_preview", f"{prefix}_type_filter_radio", f"{prefix}_preprocessor_dropdown",
                f"{prefix}_model_dropdown", f"{prefix}_control_weight_slider", f"{prefix}_control_mode_radio",
                f"{prefix}_generated_image"} <= ids
    assert "txt2img_controlnet" in ids


def test_widgets_make_the_unit():
    image = np.zeros((8, 8, 3), dtype=np.uint8)
    unit = ui_controlnet.make_unit(image, True, False, True, "canny", "cn [abc]", 0.6, 0.1, 0.8, 512, 100, 200,
                                   "ControlNet is more important", "Just Resize")
    assert unit.active and unit.module == "canny" and unit.weight == 0.6 and unit.pixel_perfect
    assert unit.control_mode == "ControlNet is more important" and unit.resize_mode == "Just Resize"
    assert unit.image is image


def test_type_filter_narrows_preprocessors_and_models(accordion):
    modules, model = ui_controlnet.filtered("Canny")
    assert modules["choices"] == ["none", "canny"] and modules["value"] == "canny"
    assert model["choices"] == ["None", "control_v11p_sd15_canny [d14c016b]"]
    modules, _ = ui_controlnet.filtered("All")
    assert modules["choices"] == list(preprocessors.PREPROCESSORS)


def test_preview_shows_the_map_and_the_missing_annotator_message():
    image = np.zeros((64, 64, 3), dtype=np.uint8)
    image[16:48, 16:48] = 255
    detected = np.asarray(ui_controlnet.preview(image, "canny", 64, 100, 200))
    assert detected[32, 32].max() == 0 and detected[14:18, 30].max() == 255
    with pytest.raises(gr.Error, match="dpt_hybrid-midas-501f0c75.pt"):
        ui_controlnet.preview(image, "depth_midas", 64, -1, -1)


def test_pasting_a_real_infotext_restores_the_units(accordion):
    _, _, fields = accordion
    params = infotext_utils.parse_generation_parameters(REAL)
    values = {(widget.elem_id, index): read(params) for index, (widget, read) in enumerate(fields)}
    by_id = {elem_id: value for (elem_id, _), value in values.items()}
    assert by_id["txt2img_controlnet_ControlNet-0_enable_checkbox"] is True
    assert by_id["txt2img_controlnet_ControlNet-0_preprocessor_dropdown"] == "canny"
    assert by_id["txt2img_controlnet_ControlNet-0_model_dropdown"] == "control_v11p_sd15_canny [d14c016b]"
    assert by_id["txt2img_controlnet_ControlNet-0_control_weight_slider"] == 0.8
    assert by_id["txt2img_controlnet_ControlNet-1_resize_mode_radio"] == "Just Resize"
    assert by_id["txt2img_controlnet_ControlNet-2_enable_checkbox"] is False
