"""X/Y/Z plot (A1111's built-in script): one job per combination of up to three axes of values, drawn as a labelled
grid; every cell keeps its own image and infotext."""
import copy
import csv
import io
import itertools
import logging
import math
import os
import re
from collections.abc import Callable
from dataclasses import dataclass

import gradio as gr
from PIL import Image

from modules import (
    generation_parameters,
    images,
    infotext_utils,
    processing,
    scripts,
    sd_models,
    sd_samplers,
    sd_schedulers,
    sd_vae,
    styles,
    upscaler,
)
from modules.shared_options import opts
from modules.shared_state import state
from modules.ui_components import ToolButton

log = logging.getLogger(__name__)

TITLE = "X/Y/Z plot"
FILL_SYMBOL = "\U0001f4d2"  # 📒
SEED_AXES = ("Seed", "Var. seed")
NONE_VALUES = ("", "None", "none")

_INT = r"[+-]?\s*\d+"
_FLOAT = r"[+-]?\s*(?:\d+(?:\.\d*)?|\.\d+)"
# `a-b`, `a-b (+s)` / `a-b (-s)` (step) and `a-b [n]` (n evenly spaced values), for whole and real numbers
INT_RANGE = re.compile(rf"\s*({_INT})\s*-\s*({_INT})\s*(?:\(\s*({_INT})\s*\))?\s*")
INT_COUNT = re.compile(rf"\s*({_INT})\s*-\s*({_INT})\s*\[\s*(\d+)\s*\]\s*")
FLOAT_RANGE = re.compile(rf"\s*({_FLOAT})\s*-\s*({_FLOAT})\s*(?:\(\s*({_FLOAT})\s*\))?\s*")
FLOAT_COUNT = re.compile(rf"\s*({_FLOAT})\s*-\s*({_FLOAT})\s*\[\s*(\d+)\s*\]\s*")
SIZE = re.compile(r"\s*(\d+)\s*[x×]\s*(\d+)\s*", re.IGNORECASE)


# ---- value lists ------------------------------------------------------------------------------------------------

def split_values(text: str) -> list[str]:
    """Comma-separated values (CSV: quotes keep commas inside a value), stripped; empty items dropped. A list may be
    written in brackets, `[a, b]`."""
    text = (text or "").strip()
    if text.startswith("[") and text.endswith("]"):
        text = text[1:-1]
    rows = csv.reader(io.StringIO(text), skipinitialspace=True)
    return [value.strip() for value in itertools.chain.from_iterable(rows) if value.strip()]


def join_values(values) -> str:
    """The inverse of split_values: one CSV line."""
    with io.StringIO() as out:
        csv.writer(out).writerow(values)
        return out.getvalue().strip()


def _number(text: str, kind: type):
    return kind(text.replace(" ", ""))


def _stepped(start, end, step, kind: type) -> list:
    """start, start+step, ... up to end inclusive; without a step, 1 towards end."""
    if step is None:
        step = kind(1 if end >= start else -1)
    if step == 0 or (end - start) * step < 0:
        raise ValueError(f"the range {start}-{end} never reaches {end} in steps of {step}")
    count = math.floor((end - start) / step + 1e-9) + 1
    return [kind(round(start + i * step, 8)) for i in range(count)]


def _spaced(start, end, count: int, kind: type) -> list:
    """count values from start to end inclusive, evenly spaced (whole numbers are truncated, as A1111 does)."""
    if count < 1:
        raise ValueError(f"the range {start}-{end} [{count}] asks for no values")
    if count == 1:
        return [kind(start)]
    return [kind(round(start + (end - start) * i / (count - 1), 8)) for i in range(count)]


def expand_value(text: str, kind: type) -> list:
    """One item of an axis: a range of numbers expanded, or the single value converted to kind."""
    if kind in (int, float):
        step_pattern, count_pattern = (INT_RANGE, INT_COUNT) if kind is int else (FLOAT_RANGE, FLOAT_COUNT)
        match = step_pattern.fullmatch(text)
        if match:
            step = _number(match.group(3), kind) if match.group(3) else None
            return _stepped(_number(match.group(1), kind), _number(match.group(2), kind), step, kind)
        match = count_pattern.fullmatch(text)
        if match:
            return _spaced(_number(match.group(1), kind), _number(match.group(2), kind), int(match.group(3)), kind)
        try:
            return [kind(text)]
        except ValueError:
            raise ValueError(f"{text!r} is not {'a whole number' if kind is int else 'a number'}") from None
    return [kind(text)]


def parse_values(items: list[str], kind: type) -> list:
    values = []
    for item in items:
        values += expand_value(item, kind)
    return values


# ---- what each axis does to a job ---------------------------------------------------------------------------------

def apply_field(name: str):
    def apply(p, value, values):
        setattr(p, name, value)
    return apply


def apply_override(key: str, convert: Callable = lambda value: value):
    """Settings go through override_settings, so process_images puts the old values back after each job."""
    def apply(p, value, values):
        p.override_settings[key] = convert(value)
    return apply


def apply_prompt_sr(p, value, values):
    p.prompt = p.prompt.replace(values[0], value)
    p.negative_prompt = p.negative_prompt.replace(values[0], value)


def confirm_prompt_sr(p, values):
    if values[0] not in p.prompt and values[0] not in (p.negative_prompt or ""):
        raise ValueError(f"Prompt S/R did not find {values[0]!r} in the prompt or the negative prompt")


def confirm_samplers(p, values):
    for value in values:
        sd_samplers.resolve_sampler_scheduler(value, None)


def confirm_schedulers(p, values):
    for value in values:
        if value.lower() != "automatic" and sd_schedulers.find_scheduler(value) is None:
            labels = ", ".join(["Automatic", *(s.label for s in sd_schedulers.schedulers)])
            raise ValueError(f"Unknown schedule type: {value}; valid choices: {labels}")


def find_checkpoint(name: str) -> sd_models.CheckpointInfo:
    info = sd_models.get_closet_checkpoint_match(name)
    if info is None:
        raise ValueError(f"Unknown checkpoint: {name}. Available: {', '.join(sd_models.checkpoint_registry.titles()) or 'none'}")
    return info


def apply_checkpoint(p, value, values):
    p.override_settings["sd_model_checkpoint"] = find_checkpoint(value).title
    p.sd_model = None  # a model already chosen for the job would win over the setting


def confirm_checkpoints(p, values):
    for value in values:
        find_checkpoint(value)


def apply_refiner(p, value, values):
    p.refiner_checkpoint = None if value in NONE_VALUES else find_checkpoint(value).title


def confirm_refiners(p, values):
    for value in values:
        if value not in NONE_VALUES:
            find_checkpoint(value)


def find_vae(name: str) -> str:
    """The sd_vae setting for name: Automatic, None, or a VAE file name (exact, else the shortest one containing it)."""
    for special in ("Automatic", "None"):
        if name.lower() == special.lower():
            return special
    if name in sd_vae.vae_dict:
        return name
    found = sorted((key for key in sd_vae.vae_dict if name.lower() in key.lower()), key=len)
    if not found:
        raise ValueError(f"Unknown VAE: {name}. Available: Automatic, None, {', '.join(sorted(sd_vae.vae_dict))}")
    return found[0]


def confirm_vaes(p, values):
    for value in values:
        find_vae(value)


def confirm_upscalers(p, values):
    for value in values:
        if value not in processing.LATENT_UPSCALE_MODES:
            upscaler.find_upscaler(value)


def apply_styles(p, value, values):
    p.styles = [*p.styles, *(name.strip() for name in value.split(",") if name.strip())]


def parse_size(value: str) -> tuple[int, int]:
    match = SIZE.fullmatch(value)
    if not match or int(match.group(1)) % 8 or int(match.group(2)) % 8 or not int(match.group(1)) or not int(match.group(2)):
        raise ValueError(f"Size {value!r} must be WIDTHxHEIGHT in positive multiples of 8, e.g. 512x768")
    return int(match.group(1)), int(match.group(2))


def apply_size(p, value, values):
    p.width, p.height = parse_size(value)


def confirm_sizes(p, values):
    for value in values:
        parse_size(value)


def apply_uni_pc_order(p, value, values):
    p.override_settings["uni_pc_order"] = min(value, p.steps - 1)  # UniPC needs an order below the step count


def confirm_choices(choices: list[str]):
    def confirm(p, values):
        for value in values:
            if value not in choices:
                raise ValueError(f"Unknown value: {value}; valid choices: {', '.join(choices)}")
    return confirm


# ---- the axis table -------------------------------------------------------------------------------------------------

def format_label_value(option, value):
    return f"{option.label}: {round(value, 8) if isinstance(value, float) else value}"


def format_value(option, value):
    return str(value)


def format_nothing(option, value):
    return ""


def format_file_name(option, value):
    return os.path.basename(value)


@dataclass(frozen=True)
class AxisOption:
    label: str
    type: type  # how each value is parsed: int and float accept ranges
    apply: Callable  # apply(p, value, all values of the axis)
    format_value: Callable = format_label_value  # the value's label in the grid
    confirm: Callable | None = None  # confirm(p, values) raises before any image for a value that cannot work
    cost: float = 0.0  # switching cost: costlier axes are iterated outermost
    choices: Callable | None = None  # the known values, for the dropdown
    is_img2img: bool | None = None  # None: both tabs


def _sampler_names():
    return [s.name for s in sd_samplers.all_samplers if s.name not in opts.hide_samplers]


def _schedule_labels():
    return ["Automatic", *(s.label for s in sd_schedulers.schedulers)]


def _checkpoint_titles():
    return sorted(sd_models.checkpoints_list, key=str.casefold)


def _upscaler_names():
    return [*processing.LATENT_UPSCALE_MODES, *(d.name for d in upscaler.sd_upscalers)]


RNG_SOURCES = ["GPU", "CPU", "NV"]


def table_axis(name: str, **changes) -> AxisOption:
    """The axis of a parameter of the table: its label and value type; a hires parameter only on txt2img, an img2img
    one only on img2img."""
    row = generation_parameters.BY_NAME[name]
    tabs = row.tabs
    return AxisOption(row.axis.label, row.axis.type, apply_field(name),
                      is_img2img=None if len(tabs) == 2 else tabs == ("img2img",), **changes)


def build_axis_options() -> list[AxisOption]:
    """A1111's axes in A1111's order; an axis the table declares that this list does not place comes last."""
    options = [
        AxisOption("Nothing", str, lambda p, value, values: None, format_value=format_nothing),
        table_axis("seed"),
        table_axis("subseed"),
        table_axis("subseed_strength"),
        table_axis("steps"),
        table_axis("hr_second_pass_steps"),
        table_axis("cfg_scale"),
        AxisOption("Prompt S/R", str, apply_prompt_sr, format_value=format_value, confirm=confirm_prompt_sr),
        table_axis("sampler_name", format_value=format_value, confirm=confirm_samplers, choices=_sampler_names),
        table_axis("hr_sampler_name", confirm=confirm_samplers, choices=_sampler_names),
        AxisOption("Checkpoint name", str, apply_checkpoint, format_value=format_file_name, confirm=confirm_checkpoints,
                   cost=1.0, choices=_checkpoint_titles),
        table_axis("s_churn"),
        table_axis("s_tmin"),
        table_axis("s_tmax"),
        table_axis("s_noise"),
        table_axis("scheduler", confirm=confirm_schedulers, choices=_schedule_labels),
        AxisOption("Schedule min sigma", float, apply_override("sigma_min")),
        AxisOption("Schedule max sigma", float, apply_override("sigma_max")),
        AxisOption("Schedule rho", float, apply_override("rho")),
        table_axis("eta"),
        AxisOption("Clip skip", int, apply_override("CLIP_stop_at_last_layers")),
        table_axis("denoising_strength"),
        table_axis("initial_noise_multiplier"),
        table_axis("hr_upscaler", confirm=confirm_upscalers, choices=_upscaler_names),
        AxisOption("VAE", str, apply_override("sd_vae", find_vae), confirm=confirm_vaes, cost=0.7,
                   choices=lambda: ["Automatic", "None", *sorted(sd_vae.vae_dict)]),
        AxisOption("Styles", str, apply_styles, choices=lambda: list(styles.prompt_styles().styles)),
        AxisOption("UniPC Order", int, apply_uni_pc_order, cost=0.5),
        AxisOption("Refiner checkpoint", str, apply_refiner, format_value=format_file_name, confirm=confirm_refiners,
                   cost=1.0, choices=lambda: ["None", *_checkpoint_titles()]),
        table_axis("refiner_switch_at"),
        AxisOption("RNG source", str, apply_override("randn_source"), confirm=confirm_choices(RNG_SOURCES),
                   choices=lambda: RNG_SOURCES),
        AxisOption("Size", str, apply_size, format_value=format_value, confirm=confirm_sizes),
    ]
    placed = {option.label for option in options}
    return options + [table_axis(row.name) for row in generation_parameters.axes() if row.axis.label not in placed]


axis_options = build_axis_options()


def options_for(is_img2img: bool) -> list[AxisOption]:
    return [option for option in axis_options if option.is_img2img in (None, is_img2img)]


def find_option(options: list[AxisOption], chosen) -> AxisOption:
    """The dropdown gives an index; the API may also name the axis."""
    if isinstance(chosen, str) and not chosen.isdigit():
        for option in options:
            if option.label.lower() == chosen.lower():
                return option
        raise ValueError(f"Unknown X/Y/Z axis type: {chosen}; valid choices: {', '.join(o.label for o in options)}")
    index = int(chosen or 0)
    if not 0 <= index < len(options):
        raise ValueError(f"X/Y/Z axis type index {index} is out of range (0-{len(options) - 1})")
    return options[index]


# ---- running the grid ---------------------------------------------------------------------------------------------

@dataclass
class Axis:
    letter: str
    option: AxisOption
    values: list
    text: str  # the values as given, for the infotext

    @property
    def labels(self) -> list[str]:
        return [self.option.format_value(self.option, value) for value in self.values]

    def infotext_params(self, fixed_seeds: bool) -> dict:
        if self.option.label == "Nothing":
            return {}
        params = {f"{self.letter} Type": self.option.label, f"{self.letter} Values": self.text}
        if fixed_seeds and self.option.label in SEED_AXES:
            params[f"Fixed {self.letter} Values"] = ", ".join(str(value) for value in self.values)
        return params


def build_axis(p, letter: str, option: AxisOption, text: str, dropdown, csv_mode: bool, fix_seeds: bool) -> Axis:
    """The axis's values parsed, ranges expanded and checked, -1 seeds fixed: every error comes before any image."""
    if option.label == "Nothing":
        return Axis(letter, option, [None], "")
    if option.choices is not None and not csv_mode and (dropdown or not text):
        items, text = list(dropdown or []), join_values(dropdown or [])
    else:  # text mode, or an API call that typed the values although the axis has a dropdown
        items = split_values(text)
    try:
        values = parse_values(items, option.type)
    except ValueError as error:
        raise ValueError(f"{letter} values for {option.label}: {error}") from None
    if not values:
        raise ValueError(f"{letter} values for {option.label} are empty")
    if option.confirm is not None:
        option.confirm(p, values)
    if fix_seeds and option.label in SEED_AXES:
        values = [processing.get_fixed_seed(value) for value in values]
    return Axis(letter, option, values, text)


def with_params(infotext: str, params: dict) -> str:
    """infotext with params added where extra keys go: at the end of the last line, before `Version`."""
    pairs = ", ".join(f"{key}: {infotext_utils.quote(value)}" for key, value in params.items())
    if not infotext:
        return pairs
    head, newline, last = infotext.rpartition("\n")
    version_at = last.rfind(", Version: ")
    last = f"{last[:version_at]}, {pairs}{last[version_at:]}" if version_at >= 0 else f"{last}, {pairs}"
    return f"{head}{newline}{last}"


@dataclass
class Cell:
    image: Image.Image
    infotext: str
    processed: processing.Processed
    job: processing.StableDiffusionProcessing


def cell_job(p, axes: list[Axis], indices: tuple[int, int, int], vary: tuple[bool, bool, bool]):
    """A copy of p with this cell's values; lists and dicts are copied so cells never share edits."""
    pc = copy.copy(p)
    pc.styles = list(p.styles)
    pc.override_settings = dict(p.override_settings)
    pc.extra_generation_params = dict(p.extra_generation_params)
    pc.comments = dict(p.comments)
    pc.do_not_save_grid = True  # a cell's own batch grid would only clutter the grids folder
    for axis, index in zip(axes, indices):
        axis.option.apply(pc, axis.values[index], axis.values)
    x, y = axes[0], axes[1]
    ix, iy, iz = indices
    offsets = (ix, iy * len(x.values), iz * len(x.values) * len(y.values))
    if pc.seed != -1:  # "Vary seeds": each cell of the varied axis gets its own seed
        pc.seed += sum(offset for offset, on in zip(offsets, vary) if on)
    return pc


def run_cells(p, axes: list[Axis], vary) -> dict[tuple[int, int, int], Cell]:
    """Every cell's job, costly axes (checkpoints, VAE) outermost so they switch as rarely as possible."""
    order = sorted(range(3), key=lambda i: (-axes[i].option.cost, -i))  # ties: Z outermost, X innermost
    cells = {}
    for ordered in itertools.product(*(range(len(axes[i].values)) for i in order)):
        indices = tuple(ordered[order.index(i)] for i in range(3))
        job = cell_job(p, axes, indices, vary)
        processed = processing.process_images(job)
        if processed.images:  # a skipped or interrupted cell has none and stays black in the grid
            cells[indices] = Cell(processed.images[0], processed.infotexts[0], processed, job)
        if state.interrupted:
            break
    return cells


def annotated_grid(cells: list[Image.Image], rows: int, col_labels, row_labels, draw_legend, margin):
    grid = images.image_grid(cells, rows=rows)
    width, height = max(c.width for c in cells), max(c.height for c in cells)

    def texts(labels):
        return [[images.GridAnnotation(label if draw_legend else "")] for label in labels]

    return images.draw_grid_annotations(grid, width, height, texts(col_labels), texts(row_labels), margin)


def draw_xyz_grid(p, axes: list[Axis], draw_legend, include_lone_images, include_sub_grids, no_fixed_seeds, vary, margin):
    x, y, z = axes
    cells = run_cells(p, axes, vary)
    if not cells:
        return processing.Processed(p, [])
    first = next(iter(cells.values()))
    blank = Image.new("RGB", first.image.size)
    ordered = [cells.get((ix, iy, iz)) for iz in range(len(z.values)) for iy in range(len(y.values)) for ix in range(len(x.values))]
    per_grid = len(x.values) * len(y.values)

    xy_params = {"Script": TITLE, **x.infotext_params(not no_fixed_seeds), **y.infotext_params(not no_fixed_seeds)}
    sub_grids, sub_infotexts = [], []
    for iz in range(len(z.values)):
        chunk = ordered[iz * per_grid:(iz + 1) * per_grid]
        sub_grids.append(annotated_grid([c.image if c else blank for c in chunk], len(y.values), x.labels, y.labels,
                                        draw_legend, margin))
        sub_infotexts.append(with_params(chunk[0].infotext if chunk[0] else "", xy_params))

    main_infotext = with_params(first.infotext, {**xy_params, **z.infotext_params(not no_fixed_seeds)})
    if len(z.values) > 1:
        main = annotated_grid(sub_grids, 1, z.labels, [""], draw_legend, margin)
        grids = [main, *sub_grids] if include_sub_grids else [main]
        grid_infotexts = [main_infotext, *sub_infotexts] if include_sub_grids else [main_infotext]
    else:
        grids, grid_infotexts = sub_grids, [main_infotext]

    if opts.grid_save and not p.do_not_save_grid:
        for grid, infotext in zip(grids, grid_infotexts):
            images.save_image(grid, first.job.outpath_grids, "xyz_grid", first.job.all_seeds[0], first.job.all_prompts[0],
                              opts.grid_format, info=infotext, short_filename=not opts.grid_extended_filename,
                              p=first.job, grid=True)
    return collect(first, grids, grid_infotexts, [c for c in ordered if c is not None], include_lone_images)


def collect(first: Cell, grids, grid_infotexts, done: list[Cell], include_lone_images) -> processing.Processed:
    """One Processed for the plot: the grids first, then (if asked) every cell's image with its own infotext."""
    result = copy.copy(first.processed)
    result.images = [*grids, *(c.image for c in done)] if include_lone_images else grids
    result.infotexts = [*grid_infotexts, *(c.infotext for c in done)] if include_lone_images else grid_infotexts
    result.info = grid_infotexts[0]
    result.index_of_first_image = len(grids)
    result.all_prompts = [c.job.all_prompts[0] for c in done]
    result.all_negative_prompts = [c.job.all_negative_prompts[0] for c in done]
    result.all_seeds = [c.job.all_seeds[0] for c in done]
    result.all_subseeds = [c.job.all_subseeds[0] for c in done]
    return result


class Script(scripts.Script):
    def title(self):
        return TITLE

    def args_spec(self, is_img2img):
        labels = [option.label for option in options_for(is_img2img)]

        def axis(letter, default):
            name = letter.lower()
            return [scripts.ScriptArgSpec(f"{name}_type", f"{letter} type", default, choices=labels, index=True),
                    scripts.ScriptArgSpec(f"{name}_values", f"{letter} values"),
                    scripts.ScriptArgSpec(f"{name}_values_dropdown", f"{letter} values", [], choices=[])]

        def checkbox(name, label, value=False):
            return scripts.ScriptArgSpec(name, label, value)

        return [*axis("X", "Seed"), *axis("Y", "Nothing"), *axis("Z", "Nothing"),
                checkbox("draw_legend", "Draw legend", True), checkbox("include_lone_images", "Include Sub Images"),
                checkbox("include_sub_grids", "Include Sub Grids"), checkbox("no_fixed_seeds", "Keep -1 for seeds"),
                checkbox("vary_seeds_x", "Vary seeds for X"), checkbox("vary_seeds_y", "Vary seeds for Y"),
                checkbox("vary_seeds_z", "Vary seeds for Z"),
                scripts.ScriptArgSpec("margin_size", "Grid margins (px)", 0, minimum=0, maximum=500, step=2),
                checkbox("csv_mode", "Use text inputs instead of dropdowns")]

    def ui(self, is_img2img):
        options = options_for(is_img2img)
        labels = [option.label for option in options]

        def axis_row(letter, default):
            with gr.Row():
                kind = gr.Dropdown(label=f"{letter} type", choices=labels, value=default, type="index",
                                   elem_id=self.elem_id(f"{letter.lower()}_type"))
                values = gr.Textbox(label=f"{letter} values", lines=1, elem_id=self.elem_id(f"{letter.lower()}_values"))
                values_dropdown = gr.Dropdown(label=f"{letter} values", visible=False, multiselect=True, interactive=True,
                                              elem_id=self.elem_id(f"{letter.lower()}_values_dropdown"))
                fill = ToolButton(value=FILL_SYMBOL, elem_id=f"xyz_grid_fill_{letter.lower()}_tool_button", visible=False)
            return kind, values, values_dropdown, fill

        with gr.Column():
            x_type, x_values, x_values_dropdown, fill_x = axis_row("X", "Seed")
            y_type, y_values, y_values_dropdown, fill_y = axis_row("Y", "Nothing")
            z_type, z_values, z_values_dropdown, fill_z = axis_row("Z", "Nothing")

        with gr.Row(variant="compact", elem_id="axis_options"):
            with gr.Column():
                draw_legend = gr.Checkbox(label="Draw legend", value=True, elem_id=self.elem_id("draw_legend"))
                no_fixed_seeds = gr.Checkbox(label="Keep -1 for seeds", value=False, elem_id=self.elem_id("no_fixed_seeds"))
                with gr.Row():
                    vary_seeds_x = gr.Checkbox(label="Vary seeds for X", value=False, min_width=80,
                                               elem_id=self.elem_id("vary_seeds_x"))
                    vary_seeds_y = gr.Checkbox(label="Vary seeds for Y", value=False, min_width=80,
                                               elem_id=self.elem_id("vary_seeds_y"))
                    vary_seeds_z = gr.Checkbox(label="Vary seeds for Z", value=False, min_width=80,
                                               elem_id=self.elem_id("vary_seeds_z"))
            with gr.Column():
                include_lone_images = gr.Checkbox(label="Include Sub Images", value=False,
                                                  elem_id=self.elem_id("include_lone_images"))
                include_sub_grids = gr.Checkbox(label="Include Sub Grids", value=False, elem_id=self.elem_id("include_sub_grids"))
                csv_mode = gr.Checkbox(label="Use text inputs instead of dropdowns", value=False, elem_id=self.elem_id("csv_mode"))
            with gr.Column():
                margin_size = gr.Slider(label="Grid margins (px)", minimum=0, maximum=500, value=0, step=2,
                                        elem_id=self.elem_id("margin_size"))

        with gr.Row(variant="compact", elem_id="swap_axes"):
            swap_xy = gr.Button(value="Swap X/Y axes", elem_id="xy_grid_swap_axes_button")
            swap_yz = gr.Button(value="Swap Y/Z axes", elem_id="yz_grid_swap_axes_button")
            swap_xz = gr.Button(value="Swap X/Z axes", elem_id="xz_grid_swap_axes_button")

        def swap(type1, values1, dropdown1, type2, values2, dropdown2):
            return labels[type2], values2, dropdown2, labels[type1], values1, dropdown1

        for button, first, second in ((swap_xy, "x", "y"), (swap_yz, "y", "z"), (swap_xz, "x", "z")):
            rows = {"x": [x_type, x_values, x_values_dropdown], "y": [y_type, y_values, y_values_dropdown],
                    "z": [z_type, z_values, z_values_dropdown]}
            button.click(swap, inputs=rows[first] + rows[second], outputs=rows[first] + rows[second])

        def fill(axis_type, use_text):
            option = options[axis_type]
            if option.choices is None:
                return gr.update(), gr.update()
            return (join_values(option.choices()), gr.update()) if use_text else (gr.update(), option.choices())

        def select_axis(axis_type, text, chosen, use_text):
            """Axes with known values get a dropdown (or their values kept as text in text mode)."""
            option = options[axis_type]
            if option.choices is None:
                return gr.update(visible=False), gr.update(visible=True, value=text), gr.update(visible=False)
            choices = option.choices()
            if use_text:
                text = join_values([v for v in chosen or [] if v in choices]) if chosen else text
                return gr.update(visible=True), gr.update(visible=True, value=text), gr.update(visible=False, choices=choices)
            chosen = [v for v in split_values(text) if v in choices] if text else [v for v in chosen or [] if v in choices]
            return gr.update(visible=True), gr.update(visible=False, value=""), gr.update(visible=True, choices=choices, value=chosen)

        axes = ((x_type, x_values, x_values_dropdown, fill_x), (y_type, y_values, y_values_dropdown, fill_y),
                (z_type, z_values, z_values_dropdown, fill_z))
        for kind, values, values_dropdown, fill_button in axes:
            fill_button.click(fill, inputs=[kind, csv_mode], outputs=[values, values_dropdown])
            kind.change(select_axis, inputs=[kind, values, values_dropdown, csv_mode], outputs=[fill_button, values, values_dropdown])
            csv_mode.change(select_axis, inputs=[kind, values, values_dropdown, csv_mode],
                            outputs=[fill_button, values, values_dropdown])

        def dropdown_from_params(letter):
            return lambda params: gr.update(value=split_values(params.get(f"{letter} Values", "")))

        self.infotext_fields = [
            (x_type, "X Type"), (x_values, "X Values"), (x_values_dropdown, dropdown_from_params("X")),
            (y_type, "Y Type"), (y_values, "Y Values"), (y_values_dropdown, dropdown_from_params("Y")),
            (z_type, "Z Type"), (z_values, "Z Values"), (z_values_dropdown, dropdown_from_params("Z")),
        ]
        return [x_type, x_values, x_values_dropdown, y_type, y_values, y_values_dropdown, z_type, z_values, z_values_dropdown,
                draw_legend, include_lone_images, include_sub_grids, no_fixed_seeds, vary_seeds_x, vary_seeds_y, vary_seeds_z,
                margin_size, csv_mode]

    def run(self, p, x_type, x_values, x_values_dropdown, y_type, y_values, y_values_dropdown, z_type, z_values,
            z_values_dropdown, draw_legend, include_lone_images, include_sub_grids, no_fixed_seeds, vary_seeds_x, vary_seeds_y,
            vary_seeds_z, margin_size, csv_mode):
        if not no_fixed_seeds:
            processing.fix_seed(p)
        if not opts.return_grid:
            p.batch_size = 1  # a cell shows one image; without batch grids only the first would be seen
        options = options_for(isinstance(p, processing.StableDiffusionProcessingImg2Img))
        axes = [build_axis(p, letter, find_option(options, kind), text, dropdown, csv_mode, not no_fixed_seeds)
                for letter, kind, text, dropdown in (("X", x_type, x_values, x_values_dropdown),
                                                     ("Y", y_type, y_values, y_values_dropdown),
                                                     ("Z", z_type, z_values, z_values_dropdown))]
        cell_count = math.prod(len(axis.values) for axis in axes)
        megapixels = cell_count * p.width * p.height / 1_000_000
        if megapixels > opts.img_max_size_mp:
            raise ValueError(f"The grid would be too large: {round(megapixels)} megapixels "
                             f"(the maximum is {opts.img_max_size_mp}, setting img_max_size_mp)")
        log.info("X/Y/Z plot will create %d images on %d %dx%d grid(s)", cell_count * p.n_iter * p.batch_size,
                 len(axes[2].values), len(axes[0].values), len(axes[1].values))
        return draw_xyz_grid(p, axes, draw_legend, include_lone_images, include_sub_grids, no_fixed_seeds,
                             (vary_seeds_x, vary_seeds_y, vary_seeds_z), int(margin_size or 0))
