"""Infotext ("generation parameters"): the text stored with every image, in A1111's exact layout, written and read back.

The reader returns what A1111's `parse_generation_parameters` returns for the same text (reference §3.4): values are
strings as written, `WxH` values are split into `<Key>-1`/`<Key>-2`, missing keys get A1111's defaults. Turning that
dict into processing fields and setting overrides for the "Send to" buttons is `infotext_to_fields`.
"""
from __future__ import annotations

import json
import logging
import math
import re
from collections.abc import Callable
from dataclasses import dataclass, field

from packaging import version as packaging_version

from modules import generation_parameters, prompt_parser, script_callbacks

log = logging.getLogger(__name__)

# key: a word character, then word characters, spaces, "-" or "/"; value: a JSON string or text up to the next comma
_PARAM = re.compile(r'\s*(\w[\w \-/]+):\s*("(?:\\.|[^\\"])+"|[^,]*)(?:,|$)')
_IMAGE_SIZE = re.compile(r"^(\d+)x(\d+)$")
# the parameter line needs at least this many `Key: value` pairs, else it is prompt text
_MIN_PARAMS_ON_LAST_LINE = 3
_NEGATIVE_PREFIX = "Negative prompt:"

# A1111's defaults for keys an infotext does not name (older versions did not write them)
PARSE_DEFAULTS: dict[str, object] = {
    "Clip skip": "1",
    "Hires resize-1": 0,
    "Hires resize-2": 0,
    "Hires sampler": "Use same sampler",
    "Hires schedule type": "Use same scheduler",
    "Hires checkpoint": "Use same checkpoint",
    "Hires prompt": "",
    "Hires negative prompt": "",
    "Mask mode": "Inpaint masked",
    "Masked content": "original",
    "Inpaint area": "Whole picture",
    "Masked area padding": 32,
}
# applied after the old hires-fix conversion, as in A1111 (the conversion reads Hires resize, not these)
PARSE_DEFAULTS_LATE: dict[str, object] = {
    "RNG": "GPU",
    "Schedule type": "Automatic",
    "Schedule max sigma": 0,
    "Schedule min sigma": 0,
    "Schedule rho": 0,
    "VAE Encoder": "Full",
    "VAE Decoder": "Full",
    "FP8 weight": "Disable",
}

# A1111 versions at which behaviour changed (infotext_versions)
V160 = packaging_version.Version("1.6.0")
V170_TSNR = packaging_version.Version("1.7.0.post225")
V180 = packaging_version.Version("1.8.0")
V180_HR_STYLES = packaging_version.Version("1.8.0.post139")

infotext_to_setting_name_mapping: list[tuple[str, str]] = []
"""Extra (infotext key, setting name) pairs, kept for extensions; settings declare theirs with OptionInfo(infotext=...)."""


def quote(value) -> str:
    """Write a value as A1111 does: raw, or JSON-quoted when it would break the `Key: value, ...` line."""
    text = str(value)
    if "," not in text and ":" not in text and "\n" not in text:
        return text
    return json.dumps(text, ensure_ascii=False)


def unquote(text: str) -> str:
    """A JSON-quoted value decoded; anything that is not valid JSON stays as written."""
    if len(text) < 2 or text[0] != '"' or text[-1] != '"':
        return text
    try:
        return json.loads(text)
    except ValueError:
        return text


def create_infotext(prompt: str, negative_prompt: str, params: dict) -> str:
    """Join prompt, negative prompt and the already-ordered parameters into A1111's three-part layout."""
    pairs = ", ".join(key if key == value else f"{key}: {quote(value)}" for key, value in params.items() if value is not None)
    negative_line = f"\nNegative prompt: {negative_prompt}" if negative_prompt else ""
    return f"{prompt}{negative_line}\n{pairs}".strip()


def parse_version(text: str | None):
    """An infotext `Version` as a comparable version; `v1.7.0-225-gabcdef` keeps its commit count; None when unparsable."""
    if text is None:
        return None
    match = re.match(r"([^-]+-[^-]+)-.*", text)
    if match:
        text = match.group(1)
    try:
        return packaging_version.parse(text)
    except packaging_version.InvalidVersion:
        return None


def split_prompts(lines: list[str]) -> tuple[str, str]:
    """Lines before `Negative prompt:` are the prompt, the rest the negative prompt (A1111 strips that marker from
    every line that starts with it, and an empty first line leaves no leading newline)."""
    prompt = negative = ""
    in_negative = False
    for line in lines:
        line = line.strip()
        if line.startswith(_NEGATIVE_PREFIX):
            in_negative = True
            line = line[len(_NEGATIVE_PREFIX):].strip()
        if in_negative:
            negative = f"{negative}\n{line}" if negative else line
        else:
            prompt = f"{prompt}\n{line}" if prompt else line
    return prompt, negative


def parse_parameter_line(line: str) -> dict:
    """`Key: value, ...` pairs in order (a repeated key: the last wins); `WxH` values split into -1/-2."""
    res: dict = {}
    for key, value in _PARAM.findall(line):
        if not value:
            continue  # A1111 drops a key with an empty value
        value = unquote(value)
        size = _IMAGE_SIZE.match(value)
        if size:
            res[f"{key}-1"], res[f"{key}-2"] = size.group(1), size.group(2)
        else:
            res[key] = value
    return res


def old_hires_fix_first_pass_dimensions(width: int, height: int) -> tuple[int, int]:
    """The first-pass size the pre-1.0 hires fix chose: about 512x512 pixels, each side rounded up to 64."""
    scale = math.sqrt(512 * 512 / (width * height))
    return math.ceil(scale * width / 64) * 64, math.ceil(scale * height / 64) * 64


def restore_old_hires_fix_params(res: dict, use_old_hires_fix_width_height: bool = False) -> None:
    """Legacy `First pass size` becomes Size (the first pass) + Hires resize (the final size)."""
    if use_old_hires_fix_width_height:
        hires_width, hires_height = int(res.get("Hires resize-1", 0)), int(res.get("Hires resize-2", 0))
        if hires_width and hires_height:
            res["Size-1"], res["Size-2"] = hires_width, hires_height
            return
    first_width, first_height = res.get("First pass size-1"), res.get("First pass size-2")
    if first_width is None or first_height is None:
        return
    first_width, first_height = int(first_width), int(first_height)
    width, height = int(res.get("Size-1", 512)), int(res.get("Size-2", 512))
    if first_width == 0 or first_height == 0:
        first_width, first_height = old_hires_fix_first_pass_dimensions(width, height)
    res["Size-1"], res["Size-2"] = first_width, first_height
    res["Hires resize-1"], res["Hires resize-2"] = width, height


def backcompat(res: dict) -> None:
    """Switch on the compatibility options that the infotext's program version implies (opts.auto_backcompat)."""
    ver = parse_version(res.get("Version"))
    if ver is None:
        return
    if ver < V160 and "[" in res.get("Prompt", ""):
        res["Old prompt editing timelines"] = True
    if ver < V160 and res.get("Sampler", "") in ("DDIM", "PLMS"):
        res["Pad conds v0"] = True
    if ver < V170_TSNR:
        res["Downcast alphas_cumprod"] = True
    if ver < V180 and res.get("Refiner"):
        res["Refiner switch by sampling steps"] = True


def uses_emphasis(*prompts: str) -> bool:
    return any(weight != 1.0 and text != "BREAK" for p in prompts for text, weight in prompt_parser.parse_prompt_attention(p))


def extract_styles(res: dict, prompt: str, negative_prompt: str, styles, mode: str) -> tuple[str, str]:
    """Remove the text of styles found in the prompts and name them in `Styles array` (opts.infotext_styles)."""
    found, prompt_no_styles, negative_no_styles = styles.extract_styles_from_prompt(prompt, negative_prompt)
    ver = parse_version(res.get("Version"))
    hires_styled = "Hires prompt" in res or "Hires negative prompt" in res
    if hires_styled and (ver is None or ver > V180_HR_STYLES):
        hr_prompt, hr_negative = res.get("Hires prompt", prompt), res.get("Hires negative prompt", negative_prompt)
        hr_found, hr_prompt_no_styles, hr_negative_no_styles = styles.extract_styles_from_prompt(hr_prompt, hr_negative)
        if found != hr_found:
            return prompt, negative_prompt  # hires prompts styled differently: keep every prompt as written
        res["Hires prompt"] = "" if hr_prompt_no_styles == prompt_no_styles else hr_prompt_no_styles
        res["Hires negative prompt"] = "" if hr_negative_no_styles == negative_no_styles else hr_negative_no_styles
    if mode == "Apply" or (mode == "Apply if any" and found):
        res["Styles array"] = found
    return prompt_no_styles, negative_no_styles


def parse_generation_parameters(x: str, skip_fields: list[str] | None = None, *, styles=None, opts=None) -> dict:
    """The infotext `x` as A1111's dict: `Prompt`, `Negative prompt` and every `Key: value` of the last line.

    skip_fields: keys to drop (default: opts.infotext_skip_pasting). styles: a prompt-styles database with
    `extract_styles_from_prompt(prompt, negative)`; without one no styles are recognised (like an empty styles.csv).
    """
    opts = _live_opts(opts)
    if skip_fields is None:
        skip_fields = opts.infotext_skip_pasting
    *lines, last_line = x.strip().split("\n")
    if len(_PARAM.findall(last_line)) < _MIN_PARAMS_ON_LAST_LINE:
        lines.append(last_line)
        last_line = ""
    prompt, negative_prompt = split_prompts(lines)
    res = parse_parameter_line(last_line)

    if styles is not None and opts.infotext_styles != "Ignore":
        prompt, negative_prompt = extract_styles(res, prompt, negative_prompt, styles, opts.infotext_styles)
    res["Prompt"], res["Negative prompt"] = prompt, negative_prompt

    for key, value in PARSE_DEFAULTS.items():
        res.setdefault(key, value)
    if "Hypernet" in res:
        res["Prompt"] += f"<hypernet:{res['Hypernet']}:{res.get('Hypernet strength', '1.0')}>"
    restore_old_hires_fix_params(res, opts.use_old_hires_fix_width_height)
    for key, value in PARSE_DEFAULTS_LATE.items():
        res.setdefault(key, value)
    if res["FP8 weight"] != "Disable":
        res.setdefault("Cache FP16 weight for LoRA", False)
    if "Emphasis" not in res and uses_emphasis(prompt, negative_prompt):
        res["Emphasis"] = "Original"
    res.setdefault("Refiner switch by sampling steps", False)
    if opts.auto_backcompat:
        backcompat(res)
    script_callbacks.infotext_pasted_callback(x, res)  # extensions may read or change what is pasted (A1111)
    for key in skip_fields:
        res.pop(key, None)
    return res


def _live_opts(opts):
    if opts is not None:
        return opts
    from modules import job_context

    return job_context.settings()


# ---- pasting: infotext dict -> processing fields and setting overrides (what "Send to txt2img/img2img" fills) ----

@dataclass(frozen=True)
class PasteField:
    """One infotext key and the processing/API field it fills (A1111 attribute names)."""

    key: str
    field: str
    convert: Callable[[object], object] = str


def paste_fields(tab: str) -> tuple[PasteField, ...]:
    """The keys a tab pastes into fields, from the parameter table as it is now."""
    return tuple(PasteField(key, name, read) for key, name, read in generation_parameters.paste_fields(tab))


# keys that describe the image but fill no field of their own: never reported as unknown
INFORMATIONAL_KEYS = frozenset({
    "Model", "Model hash", "VAE", "VAE hash", "Version", "User", "Lora hashes", "TI hashes", "Hashes", "Init image hash",
    "Sampler", "Schedule type", "Refiner", "Hypernet", "Hypernet strength", "First pass size-1", "First pass size-2",
    "Hires refiner", "Script",
})
# keys the parser adds itself (version back-compat, defaults for options Atelier does not have): never named by the text
_ADDED_BY_PARSER = frozenset({"Cache FP16 weight for LoRA", "Pad conds v0", "Downcast alphas_cumprod"})


@dataclass
class PastedFields:
    """What a "Send to" button fills: processing fields, setting overrides, and what the text names that we cannot use."""

    fields: dict = field(default_factory=dict)
    override_settings: dict = field(default_factory=dict)
    unknown: dict = field(default_factory=dict)
    missing_checkpoint: str | None = None


def get_override_settings(params: dict, *, skip_fields=None, opts=None, find_checkpoint=None) -> list[tuple[str, str, object]]:
    """(infotext key, setting, value) for every setting the infotext names with a value unlike the current one.

    `Model hash` (or else `Model`) switches the checkpoint only when find_checkpoint (hash or name -> title, None
    when absent) finds it and opts.disable_weights_auto_swap is off, as in A1111.
    """
    opts = _live_opts(opts)
    mapping = [(info.infotext, key) for key, info in opts.data_labels.items() if info.infotext]
    res = []
    for param_name, setting_name in mapping + infotext_to_setting_name_mapping:
        value = params.get(param_name)
        if value is None or param_name in (skip_fields or ()):
            continue
        if setting_name == "sd_model_checkpoint":
            if opts.disable_weights_auto_swap or find_checkpoint is None:
                continue
            value = _find_model(params, find_checkpoint)
            if value is None:
                continue
        else:
            try:
                value = opts.cast_value(setting_name, value)
            except (TypeError, ValueError):
                log.warning("Infotext value %r of %s is not valid for setting %s", value, param_name, setting_name)
                continue
        if value != getattr(opts, setting_name, None):
            res.append((param_name, setting_name, value))
    return res


def create_override_settings_dict(text_pairs: list[str], *, opts=None) -> dict:
    """The "Override settings" entries (`Clip skip: 2`, ...) as {setting: value}; labels that no setting has are ignored."""
    opts = _live_opts(opts)
    params = {}
    for pair in text_pairs:
        key, _, value = pair.partition(":")
        params[key.strip()] = value.strip()
    mapping = [(info.infotext, key) for key, info in opts.data_labels.items() if info.infotext]
    return {setting: opts.cast_value(setting, params[label])
            for label, setting in mapping + infotext_to_setting_name_mapping if label in params}


def _find_model(params: dict, find_checkpoint) -> str | None:
    for key in ("Model hash", "Model"):
        title = find_checkpoint(params[key]) if params.get(key) else None
        if title is not None:
            return title
    return None


def sampler_and_scheduler(params: dict) -> tuple[str | None, str]:
    """(sampler, schedule type) for pasting: an old combined name is split, and a schedule equal to the sampler's
    default becomes Automatic (A1111's get_sampler_and_scheduler); unknown names are passed on as written."""
    from modules import sd_samplers

    name, scheduler = params.get("Sampler"), params.get("Schedule type", sd_samplers.AUTOMATIC)
    if not name:
        return None, scheduler
    try:
        name, scheduler = sd_samplers.resolve_sampler_scheduler(name, scheduler)
    except ValueError:
        return name, scheduler
    sampler = sd_samplers.find_sampler(name)
    if scheduler != sd_samplers.AUTOMATIC and sd_samplers.effective_scheduler(sampler, scheduler).name == sampler.default_scheduler:
        scheduler = sd_samplers.AUTOMATIC
    return name, scheduler


def module_keys(params: dict) -> list[str]:
    """Forge's `Module N` keys of an infotext, in N order."""
    keys = [key for key in params if key.startswith("Module ") and key[7:].isdigit()]
    return sorted(keys, key=lambda key: int(key[7:]))


def infotext_to_fields(params: dict, tab: str = "txt2img", *, opts=None, find_checkpoint=None,
                       find_refiner=None) -> PastedFields:
    """A parsed infotext as the fields of a txt2img or img2img job (A1111 names), setting overrides and unknown keys.

    find_checkpoint / find_refiner: name or hash -> checkpoint title, or None when no such file is present.
    """
    opts = _live_opts(opts)
    out = PastedFields()
    for entry in paste_fields(tab):
        if entry.key in params:
            try:
                out.fields[entry.field] = entry.convert(params[entry.key])
            except (TypeError, ValueError):
                out.unknown[entry.key] = params[entry.key]
    out.fields["sampler_name"], out.fields["scheduler"] = sampler_and_scheduler(params)
    if tab == "txt2img" and "Denoising strength" in params:
        hires_named = "Hires upscale" in params or "Hires upscaler" in params
        out.fields["enable_hr"] = hires_named or out.fields.get("hr_resize_x", 0) > 0
    if params.get("Refiner"):
        out.fields["refiner_checkpoint"] = (find_refiner(params["Refiner"]) if find_refiner else None) or params["Refiner"]
    overrides = get_override_settings(params, opts=opts, find_checkpoint=find_checkpoint)
    out.override_settings = {setting: value for _, setting, value in overrides}
    modules = module_keys(params)
    if modules:  # Forge's "Module 1: ae, Module 2: clip_l, ...": the separate parts the image was made with
        out.override_settings["forge_additional_modules"] = [params[key] for key in modules]
    if find_checkpoint is not None and (params.get("Model hash") or params.get("Model")) and _find_model(params, find_checkpoint) is None:
        out.missing_checkpoint = params.get("Model") or params["Model hash"]
    understood = {f.key for t in generation_parameters.TABS for f in paste_fields(t)} | INFORMATIONAL_KEYS | _ADDED_BY_PARSER
    understood |= {info.infotext for info in opts.data_labels.values() if info.infotext}
    understood |= {key for key, _ in infotext_to_setting_name_mapping}
    understood |= set(modules)
    defaults = {**PARSE_DEFAULTS, **PARSE_DEFAULTS_LATE}
    for key, value in params.items():
        if key not in understood and key not in out.unknown and not (key in defaults and defaults[key] == value):
            out.unknown[key] = value
    return out


@dataclass
class ParamBinding:
    """A1111's: a button that sends an image and its infotext to a tab (txt2img, img2img, inpaint or extras), as the
    page's own "Send to" buttons do. The components are the UI's; the page wires every registered binding."""

    paste_button: object
    tabname: str
    source_text_component: object = None  # its value: an infotext, or None to read the image's own
    source_image_component: object = None
    source_tabname: str | None = None
    override_settings_component: object = None
    paste_field_names: list[str] = field(default_factory=list)


registered_param_bindings: list[ParamBinding] = []


def register_paste_params_button(binding: ParamBinding) -> None:
    registered_param_bindings.append(binding)
