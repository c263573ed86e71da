"""ControlNetUnit from what clients send: the extension's fields, legacy aliases, enum forms and image forms."""
from __future__ import annotations

import base64
import io

import numpy as np
import pytest
from PIL import Image

from modules.controlnet import apply
from modules.controlnet.units import ControlNetUnit, UnitError, decode_image


def b64(image: Image.Image) -> str:
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return base64.b64encode(buffer.getvalue()).decode()


def test_legacy_aliases_and_enum_forms():
    unit = ControlNetUnit.from_dict({"input_image": "x", "lowvram": True, "guessmode": True, "guidance": 0.5,
                                     "resize_mode": "Envelope (Outer Fit)", "model": "cn"})
    assert (unit.image, unit.low_vram, unit.weight) == ("x", True, 0.5)
    assert unit.control_mode == "ControlNet is more important" and unit.resize_mode == "Resize and Fill"
    assert ControlNetUnit.from_dict({"resize_mode": 0, "control_mode": 1}).resize_mode == "Just Resize"
    assert ControlNetUnit.from_dict({"control_mode": "ControlMode.PROMPT"}).control_mode == "My prompt is more important"
    # a current field wins over its legacy alias; unknown fields are kept
    both = ControlNetUnit.from_dict({"image": "new", "input_image": "old", "hr_option": "Both"})
    assert both.image == "new" and both.extra == {"hr_option": "Both"}


def test_bad_modes_are_refused_naming_the_choices():
    with pytest.raises(UnitError, match="resize_mode 'Stretch' is not one of Just Resize, Crop and Resize"):
        ControlNetUnit.from_dict({"resize_mode": "Stretch"})


def test_active_needs_enabled_model_and_weight():
    assert ControlNetUnit(model="cn").active
    assert not ControlNetUnit(model="None").active and not ControlNetUnit(model="cn", weight=0).active
    assert not ControlNetUnit(model="cn", enabled=False).active


def test_image_forms():
    red = Image.new("RGB", (4, 4), (255, 0, 0))
    for value in (red, np.asarray(red), b64(red), "data:image/png;base64," + b64(red), [b64(red)]):
        image, _ = decode_image(value)
        assert np.array_equal(np.asarray(image), np.asarray(red))
    image, mask = decode_image({"image": b64(red), "mask": b64(Image.new("RGB", (4, 4)))})
    assert image.size == mask.size == (4, 4)
    assert decode_image("") == (None, None)
    with pytest.raises(UnitError, match="not a base64-encoded image"):
        decode_image("not an image")


def test_the_img2img_input_stands_in_for_a_missing_image(tmp_path):
    (tmp_path / "cn.safetensors").write_bytes(b"")
    init = Image.new("RGB", (64, 64), (10, 20, 30))
    prepared = apply.prepare([ControlNetUnit(model="cn", image="")], 64, 64, init, [tmp_path], [])
    assert np.array_equal(np.asarray(prepared[0].detected), np.asarray(init))
    with pytest.raises(ValueError, match="ControlNet 0 is enabled but has no image"):
        apply.prepare([ControlNetUnit(model="cn")], 64, 64, None, [tmp_path], [])


def test_pixel_perfect_resolution_matches_the_target():
    wide = Image.new("RGB", (1024, 512))
    assert apply.pixel_perfect_resolution(wide, 512, 512, "Crop and Resize") == 512
    assert apply.pixel_perfect_resolution(wide, 512, 512, "Resize and Fill") == 256
