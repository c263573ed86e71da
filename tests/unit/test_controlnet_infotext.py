"""The extension's ControlNet infotext: written as it writes it, and real A1111 lines read back into units."""
from __future__ import annotations

from pathlib import Path

from modules import infotext_utils
from modules.controlnet import infotext, models
from modules.controlnet.apply import PreparedUnit
from modules.controlnet.units import ControlNetUnit

# from a PNG made by A1111 1.9 with sd-webui-controlnet 1.1.445
REAL = """a cat
Negative prompt: blurry
Steps: 20, Sampler: DPM++ 2M, Schedule type: Karras, CFG scale: 7, Seed: 1, Size: 512x512, Model hash: 6ce0161689, \
Model: v1-5-pruned-emaonly, ControlNet 0: "Module: canny, Model: control_v11p_sd15_canny [d14c016b], Weight: 0.8, \
Resize Mode: Crop and Resize, Processor Res: 512, Threshold A: 100.0, Threshold B: 200.0, Guidance Start: 0.1, \
Guidance End: 0.9, Pixel Perfect: True, Control Mode: My prompt is more important, Hr Option: Both, \
Save Detected Map: True", ControlNet 1: "Module: none, Model: control_v11f1p_sd15_depth [cfd03158], Weight: 1, \
Resize Mode: Just Resize, Low Vram: False, Guidance Start: 0, Guidance End: 1, Pixel Perfect: False, \
Control Mode: Balanced", Version: v1.9.4"""
# the extension's first infotext form (1.1.1xx)
OLD = ('preprocessor: depth, model: control_sd15_depth [fef5e48e], weight: 0.5, starting/ending: (0, 0.6), '
       'resize mode: Just Resize, pixel perfect: False, control mode: ControlNet is more important, '
       'preprocessor params: (384, 64, 64)')


def test_real_infotext_pastes_into_units():
    units = infotext.units_from_params(infotext_utils.parse_generation_parameters(REAL))
    first, second = units[0], units[1]
    assert first == ControlNetUnit(enabled=True, module="canny", model="control_v11p_sd15_canny [d14c016b]",
                                   weight=0.8, resize_mode="Crop and Resize", processor_res=512, threshold_a=100.0,
                                   threshold_b=200.0, guidance_start=0.1, guidance_end=0.9, pixel_perfect=True,
                                   control_mode="My prompt is more important",
                                   extra={"hr_option": "Both", "save_detected_map": True})
    assert second.model == "control_v11f1p_sd15_depth [cfd03158]" and second.resize_mode == "Just Resize"
    assert second.weight == 1 and second.guidance_end == 1 and second.control_mode == "Balanced" and not second.low_vram


def test_old_form_pastes_into_a_unit():
    unit = infotext.units_from_params({"ControlNet": OLD})[0]
    assert (unit.module, unit.model, unit.weight) == ("depth", "control_sd15_depth [fef5e48e]", 0.5)
    assert (unit.guidance_start, unit.guidance_end, unit.processor_res, unit.threshold_a) == (0, 0.6, 384, 64)
    assert unit.control_mode == "ControlNet is more important"


def test_written_line_reads_back(tmp_path: Path):
    (tmp_path / "cn.pth").write_bytes(b"\0" * 16)
    unit = ControlNetUnit(module="canny", model="cn", weight=0.7, processor_res=512, threshold_a=100, threshold_b=200,
                          guidance_start=0.2, control_mode="ControlNet is more important")
    text = infotext.unit_to_infotext(PreparedUnit(0, unit, models.ControlNetInfo(tmp_path / "cn.pth"), None))
    assert text.startswith("Module: canny, Model: cn [")
    assert "Weight: 0.7, Resize Mode: Crop and Resize, Processor Res: 512, Threshold A: 100.0" in text
    back = infotext.parse_unit(text)
    assert (back.module, back.weight, back.guidance_start, back.control_mode) == \
        ("canny", 0.7, 0.2, "ControlNet is more important")


def test_a_reference_unit_round_trips_with_model_none():
    unit = ControlNetUnit(module="reference_adain+attn", model="None", weight=0.7, threshold_a=0.25,
                          guidance_start=0.1, control_mode="ControlNet is more important")
    text = infotext.unit_to_infotext(PreparedUnit(0, unit, None, None))
    assert text.startswith("Module: reference_adain+attn, Model: None, Weight: 0.7,") and "Threshold A: 0.25" in text
    line = f'a cat\nSteps: 20, Sampler: Euler, Seed: 1, Size: 512x512, ControlNet 0: "{text}"'
    pasted = infotext.units_from_params(infotext_utils.parse_generation_parameters(line))[0]
    assert pasted.module == "reference_adain+attn" and pasted.model == "None" and pasted.active
    assert (pasted.weight, pasted.threshold_a, pasted.guidance_start, pasted.control_mode) == \
        (0.7, 0.25, 0.1, "ControlNet is more important")
