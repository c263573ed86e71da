"""`ControlNet N: "Module: canny, Model: name [hash], Weight: 1.0, ..."`: the extension's infotext, written and read.

Reading also takes the extension's older form ("preprocessor: canny, model: ..., starting/ending: (0, 1), ...").
"""
from __future__ import annotations

import re

from modules.controlnet.units import ControlNetUnit

_FIELDS = [("Module", "module"), ("Model", "model"), ("Weight", "weight"), ("Resize Mode", "resize_mode"),
           ("Processor Res", "processor_res"), ("Threshold A", "threshold_a"), ("Threshold B", "threshold_b"),
           ("Guidance Start", "guidance_start"), ("Guidance End", "guidance_end"), ("Pixel Perfect", "pixel_perfect"),
           ("Control Mode", "control_mode")]
_KEY = re.compile(r"^ControlNet(?: (\d+))?$")
_OLD_NAMES = {"preprocessor": "module"}


def unit_to_infotext(prepared) -> str:
    unit = prepared.unit
    values = {"module": unit.module, "model": prepared.info.title if prepared.info else "None", "weight": float(unit.weight),
              "resize_mode": unit.resize_mode, "processor_res": int(unit.processor_res),
              "threshold_a": float(unit.threshold_a), "threshold_b": float(unit.threshold_b),
              "guidance_start": float(unit.guidance_start), "guidance_end": float(unit.guidance_end),
              "pixel_perfect": bool(unit.pixel_perfect), "control_mode": unit.control_mode}
    return ", ".join(f"{label}: {values[name]}" for label, name in _FIELDS)


def _value(text: str):
    if text in ("True", "False"):
        return text == "True"
    try:
        return int(text)
    except ValueError:
        try:
            return float(text)
        except ValueError:
            return text


def parse_unit(text: str) -> ControlNetUnit:
    """A unit from one infotext value (quotes already removed), enabled, as pasting restores it."""
    values: dict = {"enabled": True}
    old = {}
    for item in re.split(r", (?=[A-Za-z/ ]+: )", text.strip().strip('"')):
        key, _, value = item.partition(": ")
        key = key.strip().lower()
        if key in ("starting/ending", "preprocessor params"):
            old[key] = value.strip()
        else:  # "Resize Mode" -> resize_mode; later fields (Hr Option, ...) are kept in the unit's extra
            values[_OLD_NAMES.get(key, key.replace(" ", "_"))] = _value(value.strip())
    if "starting/ending" in old:
        start, end = (float(v) for v in old["starting/ending"].strip("()").split(","))
        values.update(guidance_start=start, guidance_end=end)
    if "preprocessor params" in old:
        res, a, b = (float(v) for v in old["preprocessor params"].strip("()").split(","))
        values.update(processor_res=int(res), threshold_a=a, threshold_b=b)
    return ControlNetUnit.from_dict(values)


def units_from_params(params: dict) -> dict[int, ControlNetUnit]:
    """{unit index: unit} from a parsed infotext's `ControlNet N` entries (`ControlNet` alone is unit 0)."""
    units = {}
    for key, value in params.items():
        match = _KEY.match(str(key))
        if match:
            units[int(match.group(1) or 0)] = parse_unit(str(value))
    return units
