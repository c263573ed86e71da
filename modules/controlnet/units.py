"""A ControlNet unit as sd-webui-controlnet defines it: its field names, values, legacy aliases and image forms."""
from __future__ import annotations

import base64
import binascii
import io
from dataclasses import dataclass, field, fields

import numpy as np
from PIL import Image

RESIZE_MODES = ("Just Resize", "Crop and Resize", "Resize and Fill")
# the extension's older names, and the enum indices its API also takes
RESIZE_ALIASES = {"Scale to Fit (Inner Fit)": "Crop and Resize", "Envelope (Outer Fit)": "Resize and Fill",
                  "ResizeMode.RESIZE": "Just Resize", "ResizeMode.INNER_FIT": "Crop and Resize",
                  "ResizeMode.OUTER_FIT": "Resize and Fill"}
CONTROL_MODES = ("Balanced", "My prompt is more important", "ControlNet is more important")
# legacy field -> current field (the extension's external_code)
FIELD_ALIASES = {"input_image": "image", "lowvram": "low_vram", "guidance": "weight"}
# the "Reference" control type's modules: they act through the UNet itself, with the model "None"
REFERENCE_MODULES = ("reference_only", "reference_adain", "reference_adain+attn")


class UnitError(ValueError):
    """A unit a caller sent that cannot be used (bad image, unknown mode): a 422 in the API."""


@dataclass
class ControlNetUnit:
    enabled: bool = True
    module: str = "none"
    model: str = "None"
    weight: float = 1.0
    image: object = None  # numpy HxWx3 uint8, PIL, base64 string, or {"image": ..., "mask": ...}
    mask: object = None
    resize_mode: str = "Crop and Resize"
    low_vram: bool = False
    processor_res: int = -1
    threshold_a: float = -1
    threshold_b: float = -1
    guidance_start: float = 0.0
    guidance_end: float = 1.0
    pixel_perfect: bool = False
    control_mode: str = "Balanced"
    extra: dict = field(default_factory=dict)  # fields of newer extension versions we accept and keep

    @property
    def active(self) -> bool:
        """Enabled with a model (a reference module needs none) and a non-zero weight: only then does it change
        anything."""
        return bool(self.enabled) and float(self.weight) != 0.0 and \
            (self.model not in (None, "", "None") or self.module in REFERENCE_MODULES)

    @staticmethod
    def from_value(value) -> ControlNetUnit:
        """A unit from what a script arg may hold: a unit object (ours or a client's), or a dict of fields."""
        if isinstance(value, ControlNetUnit):
            return value
        if not isinstance(value, dict):
            value = {f.name: getattr(value, f.name) for f in fields(ControlNetUnit) if hasattr(value, f.name)}
        return ControlNetUnit.from_dict(value)

    @staticmethod
    def from_dict(data: dict) -> ControlNetUnit:
        known = {f.name for f in fields(ControlNetUnit)} - {"extra"}
        values, extra = {}, {}
        for key, value in data.items():
            name = FIELD_ALIASES.get(key, key)
            if key == "guessmode":
                if value and "control_mode" not in data:
                    values["control_mode"] = CONTROL_MODES[2]  # guess mode became "ControlNet is more important"
            elif name not in known:
                extra[key] = value
            elif (key == name or name not in data) and value is not None:  # a current field wins over its alias
                values[name] = value
        unit = ControlNetUnit(**values, extra=extra)
        unit.resize_mode = _choice(unit.resize_mode, RESIZE_MODES, RESIZE_ALIASES, "resize_mode")
        unit.control_mode = _choice(unit.control_mode, CONTROL_MODES, {}, "control_mode")
        return unit


def _choice(value, choices: tuple[str, ...], aliases: dict, what: str) -> str:
    if isinstance(value, int) and not isinstance(value, bool) and 0 <= value < len(choices):
        return choices[value]
    text = str(value)
    if text.startswith("ControlMode."):
        text = {"BALANCED": choices[0], "PROMPT": choices[1], "CONTROL": choices[2]}.get(text.split(".", 1)[1], text)
    text = aliases.get(text, text)
    if text not in choices:
        raise UnitError(f"ControlNet {what} {value!r} is not one of {', '.join(choices)}")
    return text


def decode_image(value) -> tuple[Image.Image | None, Image.Image | None]:
    """(image, mask from the image's own dict or alpha) from the forms the extension accepts."""
    if value is None or (isinstance(value, (str, list)) and not value):
        return None, None
    if isinstance(value, list):  # the extension's batch form: the first image of the list
        return decode_image(value[0])
    if isinstance(value, dict):
        image, _ = decode_image(value.get("image"))
        mask, _ = decode_image(value.get("mask"))
        return image, mask
    if isinstance(value, Image.Image):
        return value.convert("RGB"), None
    if isinstance(value, np.ndarray):
        array = value.astype(np.uint8)
        if array.ndim == 2:
            array = np.stack([array] * 3, axis=-1)
        return Image.fromarray(array[..., :3]), None
    if isinstance(value, str):
        data = value.split(",", 1)[1] if value.startswith("data:") else value
        try:
            return Image.open(io.BytesIO(base64.b64decode(data, validate=True))).convert("RGB"), None
        except (binascii.Error, ValueError, OSError) as e:
            raise UnitError(f"ControlNet image is not a base64-encoded image: {e}") from e
    raise UnitError(f"ControlNet image of type {type(value).__name__} is not supported")
