"""The generation parameters, each declared once: attribute (A1111's name) and type, engine default, API default and
range, UI control, infotext key, X/Y/Z axis and prompts-from-file option. The processing classes' fields, the API
request models, the UI controls and the values they pass, the infotext writer and reader, "Send to" and the X/Y/Z
axes are made from this table (docs/architecture.md, "Parameter table"). No gradio here: a control is data that the
UI face turns into a component.

Where A1111's UI and API differ on purpose, the row says so once: `api_default` (what a request that leaves the
field out gets, A1111's StableDiffusionProcessing default) beside `ui.value` (A1111's ui.py control default), and
`api_range` beside the control's minimum/maximum.
"""
from __future__ import annotations

import dataclasses
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

# Choices of index-valued controls, in index order (A1111's names; the API and the engine use the index).
RESIZE_MODES = ("Just resize", "Crop and resize", "Resize and fill", "Just resize (latent upscale)")
MASK_MODES = ("Inpaint masked", "Inpaint not masked")
MASKED_CONTENT = ("fill", "original", "latent noise", "latent nothing")
INPAINT_AREAS = ("Whole picture", "Only masked")
SAME_CHECKPOINT, SAME_SAMPLER, SAME_SCHEDULER = "Use same checkpoint", "Use same sampler", "Use same scheduler"
NO_REFINER = "None"

# The groups, and the processing class whose field each group's parameters are.
GROUPS = {"base": "StableDiffusionProcessing", "seed": "StableDiffusionProcessing",
          "refiner": "StableDiffusionProcessing", "hires": "StableDiffusionProcessingTxt2Img",
          "img2img": "StableDiffusionProcessingImg2Img", "inpaint": "StableDiffusionProcessingImg2Img"}
TABS = ("txt2img", "img2img")
_SAME = object()  # api_default not given: the engine default


def slider_number(value) -> int | float:
    """Gradio sliders give floats; A1111's page gave 7 for a whole number, and its infotext says `CFG scale: 7`."""
    value = float(value)
    return int(value) if value.is_integer() else value


def _int(value) -> int:
    return int(float(value))


def parse_bool(text: str) -> bool:
    """`true` or `false` (prompts from file); anything else is an error."""
    if text.lower() not in ("true", "false"):
        raise ValueError(f"{text!r} is not true or false")
    return text.lower() == "true"


def split_styles(text: str) -> list[str]:
    return [name.strip() for name in text.split(",") if name.strip()]


@dataclass(frozen=True)
class Control:
    """A UI control as data. kind: slider, number, dropdown, radio, textbox, checkbox or accordion (a checkbox that
    opens a section). elem_id and label are A1111's (`{tab}` is txt2img or img2img): tests and extensions find controls
    by them. choices: the fixed choices, or the name of a list the UI face fills when it builds the page.
    none_choice: the choice that means None to the engine ("Use same sampler"). index: the control gives the index of
    its choice (A1111's type="index"). options: further component arguments (lines, placeholder, precision...)."""

    kind: str
    label: str
    value: Any
    minimum: float | None = None
    maximum: float | None = None
    step: float | None = None
    elem_id: str = "{tab}_{name}"
    choices: tuple | str | None = None
    none_choice: str | None = None
    index: bool = False
    options: dict = field(default_factory=dict)


@dataclass(frozen=True)
class Infotext:
    """How a parameter is written to and read from the infotext. A pair (`Size: 512x768`) is two rows with the same
    key and part 1 / part 2; the reader gets `<key>-1` / `<key>-2`. skip(values) leaves the key out (values: the job's
    parameters by name); show turns the value into what is written; read turns the written text back (None: the key
    is written but not pasted into a field, e.g. a setting reads it). base: the key is in A1111's fixed first block
    (processing.INFOTEXT_BASE_ORDER places it); other keys follow that block in the table's order."""

    key: str
    part: int | None = None
    skip: Callable[[dict], bool] | None = None
    show: Callable[[Any], Any] | None = None
    read: Callable[[Any], Any] | None = str
    base: bool = False
    written: bool = True  # False: only read (A1111 reads `Batch size` and `Styles array` but never writes them)

    @property
    def read_key(self) -> str:
        return f"{self.key}-{self.part}" if self.part else self.key


@dataclass(frozen=True)
class Axis:
    """An X/Y/Z plot axis that sets the parameter: its label (A1111's) and how a value is parsed (int and float take
    ranges like `1-5 (+2)`)."""

    label: str
    type: type


@dataclass(frozen=True)
class Param:
    name: str
    type: Any  # the field's annotation
    default: Any  # the engine's (the processing field's) default
    group: str
    api_default: Any = _SAME
    api_type: Any = None  # the request field's type when it is not `type`
    api_range: tuple[float | None, float | None] | None = None
    api: bool = True  # a request field
    ui: Control | None = None  # None: no control of its own (the prompt row's, or API only)
    infotext: tuple[Infotext, ...] = ()
    axis: Axis | None = None
    file_option: Callable[[str], Any] | None = None  # prompts from file: `--name value` parsed by this
    img2img: dict = field(default_factory=dict)  # what differs on the img2img tab/class (default, ui)
    note: str = ""  # a deliberate difference from A1111, or between A1111's faces

    @property
    def tabs(self) -> tuple[str, ...]:
        return {"hires": ("txt2img",), "img2img": ("img2img",), "inpaint": ("img2img",)}.get(self.group, TABS)

    def for_tab(self, tab: str) -> Param:
        """The row as the tab sees it (img2img's own default or control)."""
        return dataclasses.replace(self, **self.img2img) if tab == "img2img" and self.img2img else self

    @property
    def api_value(self):
        return self.default if self.api_default is _SAME else self.api_default


def _slider(label, value, minimum, maximum, step, **kw) -> Control:
    return Control("slider", label, value, minimum, maximum, step, **kw)


def _size(label, elem="{tab}_{name}") -> Control:
    return _slider(label, 512, 64, 2048, 8, elem_id=elem)


_no_variation = lambda v: not v.get("subseed_strength")  # noqa: E731 - read as a rule of the table
_both_nonzero = lambda a, b: lambda v: not (v.get(a, 0) > 0 and v.get(b, 0) > 0)  # noqa: E731


PARAMETERS: list[Param] = [
    # --- base: the prompt row's values
    Param("prompt", str | list[str], "", "base", api_type=str, infotext=(Infotext("Prompt", written=False),),
          file_option=str),
    Param("negative_prompt", str | list[str], "", "base", api_type=str,
          infotext=(Infotext("Negative prompt", written=False),), file_option=str),
    Param("styles", list[str], [], "base", api_type=list[str] | None, api_default=None,
          infotext=(Infotext("Styles array", read=list, written=False),),
          file_option=split_styles),
    # --- base: sampler row, size, batch, CFG (infotext keys of the base block in A1111's order)
    Param("sampler_name", str | None, None, "base",
          ui=Control("dropdown", "Sampling method", "DPM++ 2M", elem_id="{tab}_sampling", choices="samplers"),
          infotext=(Infotext("Sampler", read=None, base=True),),  # pasted with Schedule type (sampler_and_scheduler)
          axis=Axis("Sampler", str), file_option=None,
          note="API: null means sampler_index (default \"Euler\"); UI default DPM++ 2M (A1111)"),
    Param("scheduler", str | None, None, "base",
          ui=Control("dropdown", "Schedule type", "Automatic", choices="schedulers"),
          infotext=(Infotext("Schedule type", read=None, base=True),), axis=Axis("Schedule type", str)),
    Param("steps", int, 50, "base", api_range=(1, 150), ui=_slider("Sampling steps", 20, 1, 150, 1),
          infotext=(Infotext("Steps", read=_int, base=True),), axis=Axis("Steps", int), file_option=int,
          note="API default 50, UI default 20 (A1111)"),
    Param("cfg_scale", float | None, 7.0, "base", api_default=None, api_range=(0, 30),
          ui=_slider("CFG Scale", 7.0, 1.0, 30.0, 0.5),
          infotext=(Infotext("CFG scale", read=float, base=True),), axis=Axis("CFG Scale", float), file_option=float,
          note="UI slider 1-30 step 0.5 (A1111); the API also takes 0-1 (A1111's API has no minimum: guidance-free "
               "and distilled models are run at CFG 0-1), up to the UI's 30. None (an API request without it): the "
               "model family's default, 1 for Flux.1 (Forge's), else 7; the UI's slider moves to it with the model"),
    Param("distilled_cfg_scale", float, 3.5, "base", api_range=(0, 30),
          ui=_slider("Distilled CFG Scale", 3.5, 0.0, 30.0, 0.1),
          infotext=(Infotext("Distilled CFG Scale", read=float, written=False),),
          axis=Axis("Distilled CFG Scale", float), file_option=float,
          note="Forge's: the guidance Flux.1 dev embeds (real CFG stays cfg_scale); written by the engine only for "
               "models that embed it"),
    Param("width", int, 512, "base", api_range=(64, 2048), ui=_size("Width"),
          infotext=(Infotext("Size", part=1, read=_int, base=True),), file_option=int),
    Param("height", int, 512, "base", api_range=(64, 2048), ui=_size("Height"),
          infotext=(Infotext("Size", part=2, read=_int, base=True),), file_option=int),
    Param("n_iter", int, 1, "base", api_range=(1, 100), ui=_slider("Batch count", 1, 1, 100, 1, elem_id="{tab}_batch_count"),
          file_option=int),
    Param("batch_size", int, 1, "base", api_range=(1, 8), ui=_slider("Batch size", 1, 1, 8, 1),
          infotext=(Infotext("Batch size", read=_int, written=False),), file_option=int),
    Param("denoising_strength", float | None, None, "base", api_default=0.75, api_range=(0, 1),
          ui=_slider("Denoising strength", 0.7, 0.0, 1.0, 0.01),
          infotext=(Infotext("Denoising strength", read=float, base=True),), axis=Axis("Denoising", float),
          img2img=dict(default=0.75, ui=_slider("Denoising strength", 0.75, 0.0, 1.0, 0.01)),
          note="txt2img's hires pass: UI 0.7, API 0.75 (A1111); img2img: 0.75 everywhere"),
    Param("restore_faces", bool | None, None, "base", file_option=parse_bool),  # None: the setting (A1111 1.6+)
    Param("tiling", bool | None, None, "base", file_option=parse_bool),
    Param("eta", float | None, None, "base", axis=Axis("Eta", float)),  # None: the settings' sampler knobs
    Param("s_churn", float | None, None, "base", axis=Axis("Sigma Churn", float)),
    Param("s_tmin", float | None, None, "base", axis=Axis("Sigma min", float)),
    Param("s_tmax", float | None, None, "base", axis=Axis("Sigma max", float)),
    Param("s_noise", float | None, None, "base", axis=Axis("Sigma noise", float)),
    # --- seed and its "Extra" variation controls
    Param("seed", int, -1, "seed", ui=Control("number", "Seed", -1, options=dict(precision=0, min_width=100)),
          infotext=(Infotext("Seed", read=_int, base=True),), axis=Axis("Seed", int), file_option=int),
    Param("subseed", int, -1, "seed",
          ui=Control("number", "Variation seed", -1, options=dict(precision=0, min_width=100)),
          infotext=(Infotext("Variation seed", skip=_no_variation, read=_int, base=True),), axis=Axis("Var. seed", int),
          file_option=int),
    Param("subseed_strength", float, 0.0, "seed", api_range=(0, 1),
          ui=_slider("Variation strength", 0.0, 0, 1, 0.01),
          infotext=(Infotext("Variation seed strength", skip=_no_variation, read=float, base=True),),
          axis=Axis("Var. strength", float), file_option=float),
    Param("seed_resize_from_w", int, -1, "seed", ui=_slider("Resize seed from width", 0, 0, 2048, 8),
          infotext=(Infotext("Seed resize from", part=1, skip=_both_nonzero("seed_resize_from_w", "seed_resize_from_h"),
                             read=_int, base=True),), file_option=int,
          note="API default -1, UI 0: both mean no resize (A1111)"),
    Param("seed_resize_from_h", int, -1, "seed", ui=_slider("Resize seed from height", 0, 0, 2048, 8),
          infotext=(Infotext("Seed resize from", part=2, read=_int, base=True),), file_option=int),
    # --- refiner
    Param("refiner_checkpoint", str | None, None, "refiner",
          ui=Control("dropdown", "Checkpoint", NO_REFINER, choices="refiners", none_choice=NO_REFINER),
          infotext=(Infotext("Refiner", read=None, base=True),)),  # pasted through the checkpoint finder
    Param("refiner_switch_at", float | None, None, "refiner", api_range=(0, 1),
          ui=_slider("Switch at", 0.8, 0.01, 1.0, 0.01),
          infotext=(Infotext("Refiner switch at", skip=lambda v: not v.get("refiner_checkpoint"), read=float,
                             base=True),), axis=Axis("Refiner switch at", float),
          note="UI 0.01-1 (A1111); the API also takes 0, the refiner from the first step (A1111's API has no limit)"),
    # --- hires fix (txt2img); infotext keys in A1111's order
    Param("enable_hr", bool, False, "hires", ui=Control("accordion", "Hires. fix", False, elem_id="{tab}_hr")),
    Param("hr_scale", float, 2.0, "hires", ui=_slider("Upscale by", 2.0, 1.0, 4.0, 0.05),
          infotext=(Infotext("Hires upscale", skip=lambda v: v.get("hr_resize_x") or v.get("hr_resize_y"),
                             read=float),)),
    Param("hr_resize_x", int, 0, "hires", ui=_slider("Resize width to", 0, 0, 2048, 8),
          infotext=(Infotext("Hires resize", part=1, skip=lambda v: not (v.get("hr_resize_x") or v.get("hr_resize_y")),
                             read=_int),)),
    Param("hr_resize_y", int, 0, "hires", ui=_slider("Resize height to", 0, 0, 2048, 8),
          infotext=(Infotext("Hires resize", part=2, read=_int),)),
    Param("hr_second_pass_steps", int, 0, "hires", ui=_slider("Hires steps", 0, 0, 150, 1, elem_id="{tab}_hires_steps"),
          infotext=(Infotext("Hires steps", skip=lambda v: not v.get("hr_second_pass_steps"), read=_int),),
          axis=Axis("Hires steps", int)),
    Param("hr_upscaler", str | None, None, "hires", ui=Control("dropdown", "Upscaler", None, choices="hires_upscalers"),
          infotext=(Infotext("Hires upscaler"),), axis=Axis("Hires upscaler", str),
          note="API null = Latent; the UI's default is the first choice, Latent (A1111)"),
    Param("hr_checkpoint_name", str | None, None, "hires",
          ui=Control("dropdown", "Hires checkpoint", SAME_CHECKPOINT, elem_id="{tab}_hr_checkpoint",
                     choices="hires_checkpoints", none_choice=SAME_CHECKPOINT),
          infotext=(Infotext("Hires checkpoint"),)),
    Param("hr_sampler_name", str | None, None, "hires",
          ui=Control("dropdown", "Hires sampling method", SAME_SAMPLER, elem_id="{tab}_hr_sampler",
                     choices="hires_samplers", none_choice=SAME_SAMPLER),
          infotext=(Infotext("Hires sampler"),), axis=Axis("Hires sampler", str)),
    Param("hr_scheduler", str | None, None, "hires",
          ui=Control("dropdown", "Hires schedule type", SAME_SCHEDULER, choices="hires_schedulers",
                     none_choice=SAME_SCHEDULER),
          infotext=(Infotext("Hires schedule type"),)),
    Param("hr_prompt", str, "", "hires", ui=Control("textbox", "Hires prompt", "", options=dict(
        lines=3, placeholder="Prompt for hires fix pass.\nLeave empty to use the same prompt as in first pass.")),
        infotext=(Infotext("Hires prompt"),)),
    Param("hr_negative_prompt", str, "", "hires", ui=Control("textbox", "Hires negative prompt", "", options=dict(
        lines=3, placeholder="Negative prompt for hires fix pass.\nLeave empty to use the same negative prompt as in "
                             "first pass.")),
        infotext=(Infotext("Hires negative prompt"),)),
    # --- img2img
    Param("resize_mode", int, 0, "img2img", api_range=(0, 3),
          ui=Control("radio", "Resize mode", RESIZE_MODES[0], elem_id="resize_mode", choices=RESIZE_MODES, index=True)),
    Param("image_cfg_scale", float | None, None, "img2img",
          infotext=(Infotext("Image CFG scale", read=float, base=True),)),  # instruct-pix2pix models only
    # --- inpaint (keys written only with a mask)
    Param("inpainting_mask_invert", int, 0, "inpaint", api_range=(0, 1),
          ui=Control("radio", "Mask mode", MASK_MODES[0], elem_id="{tab}_mask_mode", choices=MASK_MODES, index=True),
          infotext=(Infotext("Mask mode", skip=lambda v: not v.get("inpainting_mask_invert"),
                             show=lambda v: MASK_MODES[v], read=MASK_MODES.index),)),
    Param("mask_blur", int | None, None, "inpaint", api_range=(0, 64), ui=_slider("Mask blur", 4, 0, 64, 1),
          infotext=(Infotext("Mask blur", read=_int),), note="API: sets mask_blur_x and mask_blur_y"),
    Param("mask_blur_x", int, 4, "inpaint", api_range=(0, 64),
          infotext=(Infotext("Mask blur x", skip=lambda v: v.get("mask_blur") is not None, read=_int),)),
    Param("mask_blur_y", int, 4, "inpaint", api_range=(0, 64),
          infotext=(Infotext("Mask blur y", skip=lambda v: v.get("mask_blur") is not None, read=_int),)),
    Param("inpainting_fill", int, 0, "inpaint", api_range=(0, 3),
          ui=Control("radio", "Masked content", MASKED_CONTENT[1], choices=MASKED_CONTENT, index=True),
          infotext=(Infotext("Masked content", skip=lambda v: v.get("inpainting_fill") == 1,
                             show=lambda v: MASKED_CONTENT[v], read=MASKED_CONTENT.index),),
          note="API default 0 (fill), UI original (A1111)"),
    Param("inpaint_full_res", bool, True, "inpaint",
          ui=Control("radio", "Inpaint area", INPAINT_AREAS[0], choices=INPAINT_AREAS, index=True),
          infotext=(Infotext("Inpaint area", skip=lambda v: not v.get("inpaint_full_res"),
                             show=lambda v: INPAINT_AREAS[int(v)], read=lambda v: v == INPAINT_AREAS[1]),),
          note="API default True (Only masked), UI Whole picture (A1111)"),
    Param("inpaint_full_res_padding", int, 0, "inpaint", api_range=(0, 256),
          ui=_slider("Only masked padding, pixels", 32, 0, 256, 4),
          infotext=(Infotext("Masked area padding", skip=lambda v: not v.get("inpaint_full_res"), read=_int),),
          note="API default 0, UI 32 (A1111)"),
    # (img2img again: written after the inpaint keys, as A1111 does)
    Param("initial_noise_multiplier", float | None, None, "img2img",
          infotext=(Infotext("Noise multiplier", skip=lambda v: v.get("initial_noise_multiplier") in (None, 1.0),
                             read=None),),  # read back by the setting of the same infotext name
          axis=Axis("Initial noise multiplier", float)),
]

BY_NAME: dict[str, Param] = {p.name: p for p in PARAMETERS}


def params_for(tab: str, groups: Iterable[str] | None = None) -> list[Param]:
    """The tab's rows (with its own defaults), in table order; only those of `groups` when given."""
    return [p.for_tab(tab) for p in PARAMETERS if tab in p.tabs and (groups is None or p.group in groups)]


def default(name: str, tab: str = "txt2img"):
    return BY_NAME[name].for_tab(tab).default


def declare_fields(cls_name: str, tab: str | None = None):
    """Class decorator, under @dataclass: the processing class gets a field for each of its groups' rows (and the
    tab's own default of an inherited one), with the engine default."""

    def decorate(cls):
        annotations = cls.__dict__.get("__annotations__", {})
        cls.__annotations__ = annotations
        for p in PARAMETERS:
            row = p.for_tab(tab) if tab else p
            own = GROUPS[p.group] == cls_name
            if not own and not (tab and "default" in p.img2img and GROUPS[p.group] == "StableDiffusionProcessing"):
                continue
            annotations[p.name] = row.type
            value = row.default
            setattr(cls, p.name, field(default_factory=type(value)) if isinstance(value, (list, dict)) else value)
        return cls

    return decorate


# ---- infotext

def written_keys(tab: str, groups: Iterable[str] | None = None) -> list[tuple[Param, Infotext]]:
    return [(p, spec) for p in params_for(tab, groups) for spec in p.infotext if spec.written]


def infotext_params(values: dict, tab: str, groups: Iterable[str] | None = None, base: bool | None = None) -> dict:
    """{infotext key: value} of the parameters in `values` (by name), in table order; None values and skipped keys
    are left out; a pair is written once, as `WxH`. base: only the base block's keys (True) or only the others
    (False)."""
    out = {}
    for p, spec in written_keys(tab, groups):
        if (base is not None and spec.base != base) or p.name not in values or spec.part == 2:
            continue
        value = values[p.name]
        if value is None or (spec.skip is not None and spec.skip(values)):
            continue
        if spec.part == 1:
            second = next(q for q, s in written_keys(tab) if s.key == spec.key and s.part == 2)
            if values.get(second.name) is None:
                continue
            value = f"{value}x{values[second.name]}"
        out[spec.key] = spec.show(value) if spec.show else value
    return out


def paste_fields(tab: str) -> list[tuple[str, str, Callable]]:
    """(key the reader gives, attribute, read) for every key the tab pastes into a field."""
    return [(spec.read_key, p.name, spec.read) for p in params_for(tab) for spec in p.infotext if spec.read is not None]


# ---- the X/Y/Z plot and prompts from file

def axes(tab: str | None = None) -> list[Param]:
    return [p for p in PARAMETERS if p.axis is not None and (tab is None or tab in p.tabs)]


def file_options() -> dict[str, tuple[str, Callable]]:
    """Prompts from file: option -> (attribute, parser) for the rows that declare one."""
    return {p.name: (p.name, p.file_option) for p in PARAMETERS if p.file_option is not None}
