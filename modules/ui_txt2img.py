"""The txt2img tab: prompt row, generation controls and output panel, with A1111's element ids and labels. The
generation controls are made from the parameter table (modules/generation_parameters.py) and pass their values to
the Generate handler by name."""
from __future__ import annotations

import dataclasses
import functools
import json
import types
import typing
from dataclasses import dataclass

import gradio as gr

from modules import (
    call_queue,
    demo_model,
    first_start,
    generation_parameters,
    processing,
    progress,
    scripts,
    sd_models,
    sd_samplers,
    sd_schedulers,
    ui_common,
    ui_extra_networks,
    ui_queue,
    ui_scripts,
    ui_settings,
    ui_toprow,
)
from modules.infotext_utils import create_override_settings_dict
from modules.shared_cmd_options import cmd_opts
from modules.shared_options import opts
from modules.shared_state import state
from modules.ui_components import FormGroup, FormRow, InputAccordion, ResizeHandleRow, ToolButton

random_symbol = "\U0001f3b2\ufe0f"  # 🎲️
reuse_symbol = "\u267b\ufe0f"  # ♻️
switch_values_symbol = "\u21c5"  # ⇅
refresh_symbol = "\U0001f504"  # 🔄
SDXL_SIZES = ["1024x1024", "1152x896", "896x1152", "1216x832", "832x1216", "1344x768", "768x1344", "1536x640", "640x1536"]
NO_REFINER = generation_parameters.NO_REFINER
SAME_CHECKPOINT = generation_parameters.SAME_CHECKPOINT
SAME_SAMPLER = generation_parameters.SAME_SAMPLER
SAME_SCHEDULER = generation_parameters.SAME_SCHEDULER
slider_number = generation_parameters.slider_number  # its old home


@dataclass
class Txt2ImgUI:
    notice: gr.HTML
    download_row: gr.Row
    download_button: gr.Button
    download_progress: gr.HTML
    download_event: object  # the download's Dependency, for `.then(...)` on the checkpoint views
    toprow: ui_toprow.Toprow
    common: CommonControls
    hires: Hires
    extra_networks: ui_extra_networks.ExtraNetworksUi
    output: ui_common.OutputPanel
    paste: ui_common.PasteTarget  # what "Send to txt2img" fills
    controls: Controls  # every generation control by parameter name


def checkpoint_notice_html() -> str:
    """First start (no checkpoint) or the --demo checkpoint in use: what txt2img must say above everything else."""
    if not sd_models.checkpoint_registry.titles():
        return first_start.no_checkpoint_html()
    if demo_model.is_demo_checkpoint(ui_settings.current_checkpoint_title()):
        return f"<div class='demo-notice'>{demo_model.DEMO_NOTICE}</div>"
    return ""


def notice_updates():
    """Updates for the notice and the download row after the checkpoint list or the chosen checkpoint changed."""
    notice = checkpoint_notice_html()
    offer = not sd_models.checkpoint_registry.titles() and first_start.download_offered()
    return gr.update(value=notice, visible=bool(notice)), gr.update(visible=offer)


def refiner_choices() -> list[str]:
    return [NO_REFINER, *sd_models.checkpoint_registry.titles()]


def visible_samplers() -> list[str]:
    return [s.name for s in sd_samplers.all_samplers if s.name not in opts.hide_samplers]


def hires_upscalers() -> list[str]:
    return [*processing.LATENT_UPSCALE_MODES, *processing.image_upscaler_names()]


def scheduler_choices() -> list[str]:
    return [sd_samplers.AUTOMATIC, *(s.label for s in sd_schedulers.schedulers)]


# The lists a control of the table names as its choices, filled when the page is built.
CHOICES = {
    "samplers": visible_samplers,
    "schedulers": scheduler_choices,
    "refiners": refiner_choices,
    "hires_upscalers": hires_upscalers,
    "hires_checkpoints": lambda: [SAME_CHECKPOINT, *sd_models.checkpoint_registry.titles()],
    "hires_samplers": lambda: [SAME_SAMPLER, *visible_samplers()],
    "hires_schedulers": lambda: [SAME_SCHEDULER, *scheduler_choices()],
}


def make_control(row: generation_parameters.Param, tabname: str, kind: str | None = None, **changes):
    """The gradio component of a table row's control (A1111's elem_id and label); `kind` replaces the row's control
    kind (a setting's alternative, as samplers as a radio), `changes` adjust it in place."""
    spec = dataclasses.replace(row.ui, kind=kind) if kind else row.ui
    elem_id = spec.elem_id.format(tab=tabname, name=row.name)
    common = dict(label=spec.label, elem_id=elem_id, **spec.options)
    choices = CHOICES[spec.choices]() if isinstance(spec.choices, str) else list(spec.choices or [])
    value = spec.value
    if spec.kind in ("dropdown", "radio") and not spec.index and value not in choices:
        value = choices[0] if choices else None  # e.g. DPM++ 2M hidden by the settings: the first sampler shown
    common.update(changes)
    if spec.kind == "slider":
        return gr.Slider(minimum=spec.minimum, maximum=spec.maximum, step=spec.step, value=value, **common)
    if spec.kind == "number":
        return gr.Number(value=value, **common)
    if spec.kind == "dropdown":
        return gr.Dropdown(choices=choices, value=value, **common)
    if spec.kind == "radio":
        return gr.Radio(choices, value=value, type="index" if spec.index else "value", **common)
    if spec.kind == "textbox":
        return gr.Textbox(value=value, **common)
    if spec.kind == "checkbox":
        return gr.Checkbox(value=value, **common)
    if spec.kind == "accordion":
        return InputAccordion(value, **common)
    raise ValueError(f"Unknown control kind {spec.kind!r} of parameter {row.name}")


class Controls(dict):
    """A tab's generation controls by parameter name: made where the layout places them, and any row of the table
    the layout does not place, at the end of its group's section."""

    def __init__(self, tabname: str):
        super().__init__()
        self.tabname = tabname
        self.rows = {row.name: row for row in generation_parameters.params_for(tabname)}

    def make(self, name: str, kind: str | None = None, **changes):
        self[name] = make_control(self.rows[name], self.tabname, kind, **changes)
        return self[name]

    def make_remaining(self, *groups: str) -> list:
        return [self.make(row.name) for row in self.rows.values()
                if row.group in groups and row.ui is not None and row.name not in self]

    def radio_choices(self) -> dict:
        """Index radios: the choice shown for each index (what pasting an index sets)."""
        return {name: list(row.ui.choices) for name, row in self.rows.items() if name in self and row.ui.index}


@dataclass
class Hires:
    """The Hires. fix controls."""

    enable_hr: InputAccordion
    hr_upscaler: gr.Dropdown
    hr_second_pass_steps: gr.Slider
    denoising_strength: gr.Slider
    hr_scale: gr.Slider
    hr_resize_x: gr.Slider
    hr_resize_y: gr.Slider
    hr_checkpoint_name: gr.Dropdown
    hr_sampler_name: gr.Dropdown
    hr_scheduler: gr.Dropdown
    hr_prompt: gr.Textbox
    hr_negative_prompt: gr.Textbox


def override_settings(entries, extra_option_keys: tuple, extra_option_values) -> dict:
    """Pasted "Override settings" (`Clip skip: 2`, ...), then the "Settings in UI" controls."""
    overrides = create_override_settings_dict(list(entries or []))
    overrides.update({key: ui_settings.coerce(key, value) for key, value in zip(extra_option_keys, extra_option_values)})
    return overrides


# A section's switch, by name, and the groups of parameters it gates: off, they keep their values in the page but do
# not apply (A1111). enable_refiner is a control only; enable_hr is a parameter too.
TOGGLES = {"seed_enable_extras": ("seed",), "enable_refiner": ("refiner",), "enable_hr": ("hires",)}
UNGATED = ("seed",)  # the seed itself is in the seed group but always applies


def _scalar_type(annotation):
    if typing.get_origin(annotation) in (types.UnionType, typing.Union):
        annotation = next(t for t in typing.get_args(annotation) if t is not type(None))
    return typing.get_origin(annotation) or annotation


def to_engine(row: generation_parameters.Param, value):
    """A control's value as the processing field wants it: its choice meaning "none" becomes None, sliders give whole
    numbers as ints (slider_number), index radios their index."""
    none_choice = row.ui.none_choice if row.ui is not None else None
    if none_choice is not None and value in (None, "", none_choice):
        return None
    if value is None:
        return row.default
    kind = _scalar_type(row.type)
    if kind is float:
        return slider_number(value)
    if kind in (int, bool, list):
        return kind(value)
    return value


def job_fields(tab: str, values: dict) -> dict:
    """The processing fields of a job from the tab's control values by name (table parameters and section switches)."""
    gated = {group for toggle, groups in TOGGLES.items() if toggle in values and not values[toggle] for group in groups}
    fields = {}
    for row in generation_parameters.params_for(tab):
        if row.name not in values or (row.group in gated and row.name not in UNGATED):
            continue
        if tab == "txt2img" and row.name == "denoising_strength" and not values.get("enable_hr"):
            continue  # on txt2img it is the hires pass's
        fields[row.name] = to_engine(row, values[row.name])
    if "seed_enable_extras" in values:
        fields["seed_enable_extras"] = bool(values["seed_enable_extras"])
    if fields.get("refiner_checkpoint") is None:
        fields.pop("refiner_switch_at", None)
    return fields


def finish(p: processing.StableDiffusionProcessing):
    """Run a filled job (through the chosen script, if any): (gallery, generation info JSON, info HTML, log HTML)."""
    processed = processing.run_with_scripts(p)
    log_html = ui_common.plaintext_to_html(processed.comments, "comments") if processed.comments else ""
    model = p.sd_model or sd_models.model_manager.current  # a script may have run copies of p
    if model is not None and demo_model.is_demo_checkpoint(model.sd_checkpoint_info.filename):
        log_html += f"<div class='demo-notice'>{demo_model.DEMO_NOTICE}</div>"
    shown = [] if opts.do_not_show_images else processed.images
    return shown, processed.js(), ui_common.plaintext_to_html(processed.info), log_html


def txt2img(values: dict, extra_options: dict | None = None, script_args=()):
    """Fill a txt2img job from the controls' values by name and run it: (gallery, generation info JSON, info HTML,
    log HTML). values["override_settings"]: the pasted "Override settings" entries; `extra_options`: the "Settings in
    UI" values by setting; `script_args`: the values of the Script dropdown and of every script's controls."""
    extra_options = extra_options or {}
    p = processing.StableDiffusionProcessingTxt2Img(
        **job_fields("txt2img", values),
        override_settings=override_settings(values.get("override_settings"), tuple(extra_options), extra_options.values()),
        scripts=scripts.scripts_txt2img, script_args=list(script_args))
    return finish(p)


def named_values(names: tuple, extra_option_keys: tuple, values: tuple) -> tuple[dict, dict, tuple]:
    """Generate's inputs (the named controls, the "Settings in UI" values, then the scripts' values) split by name."""
    named = dict(zip(names, values))
    extra = dict(zip(extra_option_keys, values[len(names):len(names) + len(extra_option_keys)]))
    return named, extra, values[len(names) + len(extra_option_keys):]


def generate(names: tuple, extra_option_keys: tuple, id_task: str, *values):
    named, extra, script_args = named_values(names, extra_option_keys, values)
    return txt2img(named, extra, script_args)


def reuse_seed(js_data: str, index: int | None, is_subseed: bool) -> int:
    """♻️: the seed of the image selected in the gallery (the first image's when the grid or nothing is selected)."""
    data = json.loads(js_data or "{}")
    seeds = data.get("all_subseeds" if is_subseed else "all_seeds") or []
    position = (index if index is not None else 0) - data.get("index_of_first_image", 0)
    if 0 <= position < len(seeds):
        return int(seeds[position])
    fallback = data.get("subseed" if is_subseed else "seed")
    return int(fallback) if fallback is not None else -1


def apply_size(choice: str | None):
    """The SDXL size picker: set width and height, then clear the picker (it is an action, not a setting)."""
    if not choice:
        return gr.skip(), gr.skip(), gr.skip()
    width, height = (int(v) for v in choice.split("x"))
    return width, height, None


INTERRUPTING = "Interrupting..."


def interrupt():
    """Interrupt (A1111): with several images and `interrupt_after_current`, the first press stops after the current
    image; a second press, or one during the last image, stops at once. The button says it is interrupting."""
    images_left = state.job_no + 1 < state.job_count
    if opts.interrupt_after_current and images_left and not state.stopping_generation:
        state.stop_generating()
        gr.Info("Generation will stop after finishing this image, click again to stop immediately.")
    else:
        state.interrupt()
    return gr.update(value=INTERRUPTING)


def skip() -> None:
    state.skip()


def download_sd15():
    """The first-start download, streamed: a progress bar while it runs, then the result."""
    progress = {"done": 0, "total": None}

    def report(done, total):
        progress.update(done=done, total=total)

    future = call_queue.run_in_background(first_start.download_sd15, None, report)
    while not future.done():
        try:
            future.exception(timeout=0.5)
        except TimeoutError:
            done, total = progress["done"], progress["total"]
            fraction = done / total if total else None
            yield ui_common.progress_html(fraction, f"Downloading {first_start.SD15_FILENAME}: {done / 1e9:.2f} GB"
                                          + (f" of {total / 1e9:.2f} GB" if total else ""))
    error = future.exception()
    if error is not None:
        yield call_queue.error_html(call_queue.error_message(error))
        return
    sd_models.list_models(cmd_opts)
    yield ui_common.plaintext_to_html(f"Downloaded {future.result()}. Choose it in the checkpoint list at the top.")


def create_seed_inputs(controls: Controls):
    tabname = controls.tabname
    with FormRow(elem_id=f"{tabname}_seed_row"):
        seed = controls.make("seed")
        random_seed = ToolButton(random_symbol, elem_id=f"{tabname}_random_seed")
        reuse = ToolButton(reuse_symbol, elem_id=f"{tabname}_reuse_seed")
        seed_extras = gr.Checkbox(label="Extra", value=False, elem_id=f"{tabname}_subseed_show", min_width=80)
    with FormRow(visible=False, elem_id=f"{tabname}_subseed_row") as extra_row_1:
        subseed = controls.make("subseed")
        random_subseed = ToolButton(random_symbol, elem_id=f"{tabname}_random_subseed")
        reuse_subseed = ToolButton(reuse_symbol, elem_id=f"{tabname}_reuse_subseed")
        controls.make("subseed_strength")
    with FormRow(visible=False, elem_id=f"{tabname}_seed_extras_row") as extra_row_2:
        controls.make("seed_resize_from_w")
        controls.make("seed_resize_from_h")
        controls.make_remaining("seed")
    random_seed.click(fn=None, outputs=[seed], js="() => -1", show_progress="hidden")
    random_subseed.click(fn=None, outputs=[subseed], js="() => -1", show_progress="hidden")
    seed_extras.change(fn=lambda show: (gr.update(visible=show), gr.update(visible=show)), inputs=[seed_extras],
                       outputs=[extra_row_1, extra_row_2], show_progress="hidden", queue=False)
    return reuse, seed_extras, reuse_subseed


@dataclass
class CommonControls:
    """The generation controls txt2img and img2img share (A1111's ids with the tab's prefix)."""

    sampler_name: gr.Dropdown
    scheduler: gr.Dropdown
    steps: gr.Slider
    batch_count: gr.Slider
    batch_size: gr.Slider
    cfg_scale: gr.Slider
    seed: gr.Number
    reuse_seed: ToolButton
    seed_extras: gr.Checkbox
    subseed: gr.Number
    reuse_subseed: ToolButton
    subseed_strength: gr.Slider
    seed_resize_from_w: gr.Slider
    seed_resize_from_h: gr.Slider
    enable_refiner: InputAccordion
    refiner_checkpoint: gr.Dropdown
    refiner_switch_at: gr.Slider
    refiner_refresh: ToolButton

    def named(self) -> dict:
        """The section switches by the name the Generate handler reads."""
        return {"seed_enable_extras": self.seed_extras, "enable_refiner": self.enable_refiner}


def create_sampler_row(controls: Controls):
    """Sampler, schedule type and steps in a row; with `samplers_in_dropdown` off, steps above the samplers as a radio
    group (A1111)."""
    if opts.samplers_in_dropdown:
        with FormRow(elem_id=f"sampler_selection_{controls.tabname}"):
            controls.make("sampler_name")
            controls.make("scheduler")
            controls.make("steps")
        return
    with FormGroup(elem_id=f"sampler_selection_{controls.tabname}"):
        controls.make("steps")
        controls.make("sampler_name", kind="radio")
        controls.make("scheduler")


def create_batch_column(controls: Controls, together: bool = True):
    """Batch count and size: a column in the size row, or with `dimensions_and_batch_together` off a row of their own
    under the seed (A1111's "batch" place); `together` says which call this is."""
    if together != bool(opts.dimensions_and_batch_together):
        return
    elem_id = f"{controls.tabname}_column_batch"
    with gr.Column(elem_id=elem_id, scale=2) if together else FormRow(elem_id=elem_id):
        controls.make("n_iter")
        controls.make("batch_size")


def create_common_tail(controls: Controls) -> CommonControls:
    """CFG, seed and refiner controls under the size row; with the sampler row and batch sliders made earlier."""
    tabname = controls.tabname
    controls.make("distilled_cfg_scale")  # Forge places it above CFG Scale
    controls.make("cfg_scale")
    reuse, seed_extras, reuse_subseed = create_seed_inputs(controls)
    create_batch_column(controls, together=False)
    with InputAccordion(False, label="Refiner", elem_id=f"{tabname}_enable_refiner") as enable_refiner:
        with FormRow():
            controls.make("refiner_checkpoint")
            refiner_refresh = ToolButton(refresh_symbol, elem_id=f"{tabname}_refiner_checkpoint_refresh")
            controls.make("refiner_switch_at")
            controls.make_remaining("refiner")
    c = controls
    return CommonControls(c["sampler_name"], c["scheduler"], c["steps"], c["n_iter"], c["batch_size"], c["cfg_scale"],
                          c["seed"], reuse, seed_extras, c["subseed"], reuse_subseed, c["subseed_strength"],
                          c["seed_resize_from_w"], c["seed_resize_from_h"], enable_refiner, c["refiner_checkpoint"],
                          c["refiner_switch_at"], refiner_refresh)


def wire_common(common: CommonControls, output: ui_common.OutputPanel) -> None:
    common.reuse_seed.click(fn=functools.partial(reuse_seed, is_subseed=False),
                            inputs=[output.generation_info, output.selected_index], outputs=[common.seed],
                            show_progress="hidden", queue=False)
    common.reuse_subseed.click(fn=functools.partial(reuse_seed, is_subseed=True),
                               inputs=[output.generation_info, output.selected_index], outputs=[common.subseed],
                               show_progress="hidden", queue=False)
    common.refiner_refresh.click(fn=lambda: gr.update(choices=refiner_choices()), outputs=[common.refiner_checkpoint],
                                 show_progress="hidden")


def create_override_settings(tabname: str) -> gr.Dropdown:
    """Settings a pasted infotext names (`Clip skip: 2`): shown, applied to this tab's jobs until removed (A1111)."""
    return gr.Dropdown(label="Override settings", value=[], choices=[], multiselect=True, visible=False,
                       elem_id=f"{tabname}_override_settings")


def create_hires(controls: Controls) -> Hires:
    tabname = controls.tabname
    with controls.make("enable_hr"):
        with FormRow(elem_id=f"{tabname}_hires_fix_row1"):
            controls.make("hr_upscaler")
            controls.make("hr_second_pass_steps")
            controls.make("denoising_strength")
        with FormRow(elem_id=f"{tabname}_hires_fix_row2"):
            controls.make("hr_scale")
            controls.make("hr_resize_x")
            controls.make("hr_resize_y")
        with FormRow(elem_id=f"{tabname}_hires_fix_row3", visible=opts.hires_fix_show_sampler):
            controls.make("hr_checkpoint_name")
            controls.make("hr_sampler_name")
            controls.make("hr_scheduler")
        with FormRow(elem_id=f"{tabname}_hires_fix_row4", visible=opts.hires_fix_show_prompts):
            controls.make("hr_prompt")
            controls.make("hr_negative_prompt")
        controls.make_remaining("hires")
    return Hires(*(controls[name] for name in Hires.__dataclass_fields__))


def named_inputs(toprow: ui_toprow.Toprow, common: CommonControls, controls: Controls, override) -> dict:
    """Name -> component of everything Generate reads by name (and "Send to" fills): the prompt row, the table's
    controls, the section switches and the override settings."""
    return dict(prompt=toprow.prompt, negative_prompt=toprow.negative_prompt, styles=toprow.styles, **controls,
                **common.named(), override_settings=override)


def paste_target(tabname: str, named: dict, runner: scripts.ScriptRunner, controls: Controls) -> ui_common.PasteTarget:
    fields = {name: component for name, component in named.items() if name != "override_settings"}
    return ui_common.PasteTarget(tabname, fields, named["override_settings"], radio_choices=controls.radio_choices(),
                                 script_fields=runner.infotext_fields)


def run_job(job, tabname: str):
    """The Generate handler: a task of this page in the queue; the job's outputs, and its progress while it runs."""

    def run(request: gr.Request, *args):
        owner = ui_queue.page_owner(request)
        yield from ui_common.stream_job(job, args, n_outputs=4, id_task=progress.create_task_id(tabname), owner=owner)

    return run


def restore_job():
    """🌀: the outputs (and meanwhile the progress) of the task the page ran before it was reloaded."""

    def restore(id_task: str):
        yield from ui_common.restore_job(id_task, n_outputs=4)

    return restore


def busy_buttons() -> tuple:
    """Interrupt and Skip come beside Generate while the page's jobs run; Generate stays to queue more."""
    return gr.update(visible=True, value="Interrupt"), gr.update(visible=True), gr.update(visible=True)


def idle_buttons(request: gr.Request) -> tuple:
    """After a job: Interrupt and Skip go once none of the page's jobs is queued or running."""
    if ui_queue.has_tasks(ui_queue.page_owner(request)):
        return gr.update(value="Interrupt"), gr.skip(), gr.skip(), None
    return gr.update(visible=False, value="Interrupt"), gr.update(visible=False), gr.update(visible=True), None


def wire_generate(tabname: str, toprow: ui_toprow.Toprow, output: ui_common.OutputPanel, job, inputs: list) -> None:
    # The job's click has A1111's outputs (the output panel's four, then the progress): extensions find a tab's inputs
    # by it (supermerger's GenParamGetter takes the click with 4 or 5 outputs); the buttons change in events of their own.
    toprow.generate.click(fn=busy_buttons, outputs=[toprow.interrupt, toprow.skip, toprow.generate], queue=False,
                          show_progress="hidden", api_visibility="private")
    # several presses queue several jobs (trigger_mode), each a task in modules.progress
    toprow.generate.click(fn=run_job(job, tabname), inputs=inputs,
                          outputs=[output.gallery, output.generation_info, output.infotext, output.html_log, output.progress],
                          show_progress="hidden", concurrency_limit=None, trigger_mode="multiple",
                          api_visibility="private").then(
        fn=idle_buttons, outputs=[toprow.interrupt, toprow.skip, toprow.generate, output.selected_index], queue=False,
        show_progress="hidden", api_visibility="private")
    restored_task = gr.Textbox(visible=False, elem_id=f"{tabname}_restored_task")  # filled by the page's script
    toprow.restore_progress.click(fn=busy_buttons, outputs=[toprow.interrupt, toprow.skip, toprow.generate], queue=False,
                                  show_progress="hidden", api_visibility="private")
    toprow.restore_progress.click(fn=restore_job(), inputs=[restored_task],
                                  outputs=[output.gallery, output.generation_info, output.infotext, output.html_log,
                                           output.progress],
                                  js=f"() => restoreProgress{tabname.capitalize()}()", show_progress="hidden", concurrency_limit=None,
                                  api_visibility="private").then(
        fn=idle_buttons, outputs=[toprow.interrupt, toprow.skip, toprow.generate, output.selected_index], queue=False,
        show_progress="hidden", api_visibility="private")
    toprow.interrupt.click(fn=interrupt, outputs=[toprow.interrupt], concurrency_limit=None, show_progress="hidden")  # queued: its toast
    toprow.skip.click(fn=skip, queue=False, show_progress="hidden")


def create_ui(loadsave, extra_option_component) -> Txt2ImgUI:
    """The txt2img tab's contents; `extra_option_component(key)` builds a "Settings in UI" control. The scripts'
    component hooks see every component made here."""
    with scripts.building_ui(scripts.scripts_txt2img, is_img2img=False) as runner:
        return build_ui(loadsave, extra_option_component, runner)


def create_script_ui(tabname: str, runner: scripts.ScriptRunner) -> list:
    """The always-on scripts' controls and the Script dropdown, under the other settings (A1111's place)."""
    with FormGroup(elem_id=f"{tabname}_script_container"):
        return ui_scripts.setup_ui(runner)


def build_ui(loadsave, extra_option_component, runner: scripts.ScriptRunner) -> Txt2ImgUI:
    tabname = "txt2img"
    controls = Controls(tabname)
    notice_html = checkpoint_notice_html()
    notice = gr.HTML(notice_html, elem_id="txt2img_notice", visible=bool(notice_html))
    with gr.Row(elem_id="txt2img_first_start_download",
                visible=not sd_models.checkpoint_registry.titles() and first_start.download_offered()) as download_row:
        download_button = gr.Button(f"Download Stable Diffusion 1.5 ({first_start.SD15_SIZE})",
                                    elem_id="txt2img_download_sd15")
        download_progress = gr.HTML(elem_id="txt2img_download_progress")

    toprow = ui_toprow.create_toprow(tabname)
    ui_queue.create_queue_panel(tabname)
    with ResizeHandleRow(equal_height=False, elem_id="txt2img_main_row"):
        with gr.Column(variant="compact", elem_id="txt2img_settings_outer"):
            with gr.Tabs(elem_id="txt2img_generation_tabs"):
                with gr.Tab("Generation", id="txt2img_generation", elem_id="txt2img_generation_tab"):
                    toprow.render_inline_prompts()
                    with gr.Column(variant="compact", elem_id="txt2img_settings") as settings_column:
                        create_sampler_row(controls)
                        runner.setup_ui_for_section("sampler")
                        with FormRow(elem_id="txt2img_dimensions_row"):
                            with gr.Column(elem_id="txt2img_column_size", scale=4):
                                width, height = controls.make("width"), controls.make("height")
                            with gr.Column(elem_id="txt2img_dimensions_tools", scale=1, min_width=120,
                                           elem_classes=["dimensions-tools"]):
                                res_switch_btn = ToolButton(switch_values_symbol, elem_id="txt2img_res_switch_btn")
                                size_picker = gr.Dropdown(label="SDXL size", choices=SDXL_SIZES, value=None,
                                                          elem_id="txt2img_size_picker")
                            create_batch_column(controls)
                        runner.setup_ui_for_section("dimensions")
                        common = create_common_tail(controls)
                        controls.make_remaining("base")
                        hires = create_hires(controls)
                        runner.setup_ui_for_section("accordions")
                        override = create_override_settings(tabname)
                        runner.setup_ui_for_section("override_settings")
                        extra_option_keys = tuple(k for k in opts.extra_options_txt2img if k in opts.data_labels)
                        extra_options = []
                        if extra_option_keys:
                            with gr.Accordion("Options", open=True, elem_id="txt2img_extra_options"):
                                extra_options = [extra_option_component(k) for k in extra_option_keys]
                        script_inputs = create_script_ui(tabname, runner)
                with gr.Tab("Extra Networks", id="txt2img_extra_networks", elem_id="txt2img_extra_networks_tab"):
                    extra_networks_ui = ui_extra_networks.create_ui(tabname)
        output = ui_common.create_output_panel(tabname, opts.outdir_txt2img_samples)

    loadsave.add_block(settings_column, tabname, skip=[size_picker, override, *extra_options, *script_inputs])
    loadsave.add_component(f"{tabname}/Prompt", toprow.prompt)
    loadsave.add_component(f"{tabname}/Negative prompt", toprow.negative_prompt)

    named = named_inputs(toprow, common, controls, override)
    inputs = [*named.values(), *extra_options, *script_inputs]
    job = call_queue.wrap_gradio_gpu_call(functools.partial(generate, tuple(named), extra_option_keys),
                                          extra_outputs=[gr.skip(), gr.skip(), gr.skip()])
    wire_generate(tabname, toprow, output, job, inputs)
    ui_toprow.wire_toprow(toprow, common.steps)
    wire_common(common, output)
    ui_extra_networks.setup_ui(extra_networks_ui, output.gallery, output.selected_index)
    res_switch_btn.click(fn=None, inputs=[width, height], outputs=[width, height], js="(w, h) => [h, w]",
                         show_progress="hidden")
    size_picker.change(fn=apply_size, inputs=[size_picker], outputs=[width, height, size_picker], show_progress="hidden",
                       queue=False)
    download_event = download_button.click(fn=download_sd15, outputs=[download_progress], show_progress="hidden")

    paste = paste_target(tabname, named, runner, controls)
    return Txt2ImgUI(notice, download_row, download_button, download_progress, download_event, toprow, common, hires,
                     extra_networks_ui, output, paste, controls)
