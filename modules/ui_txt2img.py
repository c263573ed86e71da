"""The txt2img tab: prompt row, generation controls and output panel, with A1111's element ids and labels."""
from __future__ import annotations

import dataclasses
import functools
import json
from dataclasses import dataclass

import gradio as gr

from modules import (
    call_queue,
    demo_model,
    first_start,
    processing,
    scripts,
    sd_models,
    sd_samplers,
    sd_schedulers,
    ui_common,
    ui_extra_networks,
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
NO_REFINER = "None"
SAME_CHECKPOINT, SAME_SAMPLER, SAME_SCHEDULER = "Use same checkpoint", "Use same sampler", "Use same scheduler"


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



def slider_number(value) -> int | float:
    """Gradio 6 sliders give floats; A1111's page gave 7 for a whole number, and its infotext says `CFG scale: 7`."""
    value = float(value)
    return int(value) if value.is_integer() else value

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


@dataclass
class Hires:
    """The Hires. fix controls, in the order of txt2img()'s hires arguments."""

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

    def inputs(self) -> list:
        return list(vars(self).values())


def hires_upscalers() -> list[str]:
    return [*processing.LATENT_UPSCALE_MODES, *processing.image_upscaler_names()]


def scheduler_choices() -> list[str]:
    return [sd_samplers.AUTOMATIC, *(s.label for s in sd_schedulers.schedulers)]


def _same_or(value, same: str):
    return None if value in (None, "", same) else value


def override_settings(entries, extra_option_keys: tuple, extra_option_values) -> dict:
    """Pasted "Override settings" (`Clip skip: 2`, ...), then the "Settings in UI" controls."""
    overrides = create_override_settings_dict(list(entries or []))
    overrides.update({key: ui_settings.coerce(key, value) for key, value in zip(extra_option_keys, extra_option_values)})
    return overrides


def seed_fields(seed, seed_extras, subseed, subseed_strength, seed_resize_from_w, seed_resize_from_h) -> dict:
    # without "Extra" the variation controls keep their values in the page but do not apply (A1111)
    return dict(seed=-1 if seed is None else int(seed), subseed=-1 if subseed is None or not seed_extras else int(subseed),
                subseed_strength=float(subseed_strength) if seed_extras else 0.0,
                seed_resize_from_w=int(seed_resize_from_w) if seed_extras else 0,
                seed_resize_from_h=int(seed_resize_from_h) if seed_extras else 0, seed_enable_extras=bool(seed_extras))


def refiner_fields(enable_refiner, refiner_checkpoint, refiner_switch_at) -> dict:
    use_refiner = bool(enable_refiner) and refiner_checkpoint not in (None, "", NO_REFINER)
    return dict(refiner_checkpoint=refiner_checkpoint if use_refiner else None,
                refiner_switch_at=float(refiner_switch_at) if use_refiner else None)


def finish(p: processing.StableDiffusionProcessing):
    """Run a filled job (through the chosen script, if any): (gallery, generation info JSON, info HTML, log HTML)."""
    processed = processing.run_with_scripts(p)
    log_html = ui_common.plaintext_to_html(processed.comments, "comments") if processed.comments else ""
    model = p.sd_model or sd_models.model_manager.current  # a script may have run copies of p
    if model is not None and demo_model.is_demo_checkpoint(model.sd_checkpoint_info.filename):
        log_html += f"<div class='demo-notice'>{demo_model.DEMO_NOTICE}</div>"
    shown = [] if opts.do_not_show_images else processed.images
    return shown, processed.js(), ui_common.plaintext_to_html(processed.info), log_html


def hires_fields(enable_hr, hr_upscaler, hr_second_pass_steps, denoising_strength, hr_scale, hr_resize_x, hr_resize_y,
                 hr_checkpoint_name, hr_sampler_name, hr_scheduler, hr_prompt, hr_negative_prompt) -> dict:
    """The Hires. fix controls as processing fields; nothing when the accordion's checkbox is off."""
    if not enable_hr:
        return {}
    return dict(enable_hr=True, hr_upscaler=hr_upscaler, hr_second_pass_steps=int(hr_second_pass_steps),
                denoising_strength=float(denoising_strength), hr_scale=float(hr_scale), hr_resize_x=int(hr_resize_x),
                hr_resize_y=int(hr_resize_y), hr_checkpoint_name=_same_or(hr_checkpoint_name, SAME_CHECKPOINT),
                hr_sampler_name=_same_or(hr_sampler_name, SAME_SAMPLER),
                hr_scheduler=_same_or(hr_scheduler, SAME_SCHEDULER), hr_prompt=hr_prompt or "",
                hr_negative_prompt=hr_negative_prompt or "")


def txt2img(extra_option_keys: tuple, prompt, negative_prompt, sampler_name, scheduler, steps, width, height,
            batch_count, batch_size, cfg_scale, seed, seed_extras, subseed, subseed_strength, seed_resize_from_w,
            seed_resize_from_h, enable_refiner, refiner_checkpoint, refiner_switch_at, *extra_option_values,
            styles=(), hires: dict | None = None, override_entries=(), script_args=()):
    """Fill a txt2img job from the controls and run it: (gallery, generation info JSON, info HTML, log HTML).
    `hires`: hires_fields() of the Hires. fix controls; `override_entries`: the pasted "Override settings";
    `script_args`: the values of the Script dropdown and of every script's controls."""
    p = processing.StableDiffusionProcessingTxt2Img(
        prompt=prompt or "", negative_prompt=negative_prompt or "", styles=list(styles or []), sampler_name=sampler_name,
        scheduler=scheduler, steps=int(steps), width=int(width), height=int(height), n_iter=int(batch_count),
        batch_size=int(batch_size), cfg_scale=slider_number(cfg_scale),
        **seed_fields(seed, seed_extras, subseed, subseed_strength, seed_resize_from_w, seed_resize_from_h),
        **refiner_fields(enable_refiner, refiner_checkpoint, refiner_switch_at), **(hires or {}),
        override_settings=override_settings(override_entries, extra_option_keys, extra_option_values),
        scripts=scripts.scripts_txt2img, script_args=list(script_args),
    )
    return finish(p)


BASE_INPUTS = 19  # txt2img()'s positional controls before the "Settings in UI" values
HIRES_INPUTS = len(dataclasses.fields(Hires))


def generate(extra_option_keys: tuple, *values):
    """Generate's inputs: the base controls, the "Settings in UI" values, styles, the Hires. fix controls, the
    override settings and the scripts' values, in that order."""
    split = BASE_INPUTS + len(extra_option_keys)
    styles, *hires_values, override_entries = values[split:split + HIRES_INPUTS + 2]
    return txt2img(extra_option_keys, *values[:split], styles=styles, hires=hires_fields(*hires_values),
                   override_entries=override_entries, script_args=values[split + HIRES_INPUTS + 2:])


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


def interrupt() -> None:
    """Interrupt: with several images and `interrupt_after_current`, stop after the current image; else at once."""
    if opts.interrupt_after_current and state.job_count > 1:
        state.stop_generating()
    else:
        state.interrupt()


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


def create_seed_inputs(tabname: str):
    with FormRow(elem_id=f"{tabname}_seed_row"):
        seed = gr.Number(label="Seed", value=-1, precision=0, elem_id=f"{tabname}_seed", min_width=100)
        random_seed = ToolButton(random_symbol, elem_id=f"{tabname}_random_seed")
        reuse = ToolButton(reuse_symbol, elem_id=f"{tabname}_reuse_seed")
        seed_extras = gr.Checkbox(label="Extra", value=False, elem_id=f"{tabname}_subseed_show", min_width=80)
    with FormRow(visible=False, elem_id=f"{tabname}_subseed_row") as extra_row_1:
        subseed = gr.Number(label="Variation seed", value=-1, precision=0, elem_id=f"{tabname}_subseed", min_width=100)
        random_subseed = ToolButton(random_symbol, elem_id=f"{tabname}_random_subseed")
        reuse_subseed = ToolButton(reuse_symbol, elem_id=f"{tabname}_reuse_subseed")
        subseed_strength = gr.Slider(label="Variation strength", value=0.0, minimum=0, maximum=1, step=0.01,
                                     elem_id=f"{tabname}_subseed_strength")
    with FormRow(visible=False, elem_id=f"{tabname}_seed_extras_row") as extra_row_2:
        resize_w = gr.Slider(minimum=0, maximum=2048, step=8, label="Resize seed from width", value=0,
                             elem_id=f"{tabname}_seed_resize_from_w")
        resize_h = gr.Slider(minimum=0, maximum=2048, step=8, label="Resize seed from height", value=0,
                             elem_id=f"{tabname}_seed_resize_from_h")
    random_seed.click(fn=None, outputs=[seed], js="() => -1", show_progress="hidden")
    random_subseed.click(fn=None, outputs=[subseed], js="() => -1", show_progress="hidden")
    seed_extras.change(fn=lambda show: (gr.update(visible=show), gr.update(visible=show)), inputs=[seed_extras],
                       outputs=[extra_row_1, extra_row_2], show_progress="hidden", queue=False)
    return seed, reuse, seed_extras, subseed, reuse_subseed, subseed_strength, resize_w, resize_h


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

    def seed_inputs(self) -> list:
        return [self.seed, self.seed_extras, self.subseed, self.subseed_strength, self.seed_resize_from_w,
                self.seed_resize_from_h]

    def refiner_inputs(self) -> list:
        return [self.enable_refiner, self.refiner_checkpoint, self.refiner_switch_at]


def create_sampler_row(tabname: str):
    with FormRow(elem_id=f"sampler_selection_{tabname}"):
        samplers = visible_samplers()
        sampler_name = gr.Dropdown(label="Sampling method", elem_id=f"{tabname}_sampling", choices=samplers,
                                   value="DPM++ 2M" if "DPM++ 2M" in samplers else samplers[0])
        scheduler = gr.Dropdown(label="Schedule type", elem_id=f"{tabname}_scheduler", choices=scheduler_choices(),
                                value=sd_samplers.AUTOMATIC)
        steps = gr.Slider(minimum=1, maximum=150, step=1, value=20, label="Sampling steps", elem_id=f"{tabname}_steps")
    return sampler_name, scheduler, steps


def create_batch_column(tabname: str):
    with gr.Column(elem_id=f"{tabname}_column_batch", scale=2):
        batch_count = gr.Slider(minimum=1, maximum=100, step=1, value=1, label="Batch count",
                                elem_id=f"{tabname}_batch_count")
        batch_size = gr.Slider(minimum=1, maximum=8, step=1, value=1, label="Batch size", elem_id=f"{tabname}_batch_size")
    return batch_count, batch_size


def create_common_tail(tabname: str, sampler_row, batch) -> CommonControls:
    """CFG, seed and refiner controls under the size row; with the sampler row and batch sliders made earlier."""
    cfg_scale = gr.Slider(minimum=1.0, maximum=30.0, step=0.5, value=7.0, label="CFG Scale", elem_id=f"{tabname}_cfg_scale")
    seeds = create_seed_inputs(tabname)
    with InputAccordion(False, label="Refiner", elem_id=f"{tabname}_enable_refiner") as enable_refiner:
        with FormRow():
            refiner_checkpoint = gr.Dropdown(label="Checkpoint", choices=refiner_choices(), value=NO_REFINER,
                                             elem_id=f"{tabname}_refiner_checkpoint")
            refiner_refresh = ToolButton(refresh_symbol, elem_id=f"{tabname}_refiner_checkpoint_refresh")
            refiner_switch_at = gr.Slider(minimum=0.01, maximum=1.0, step=0.01, value=0.8, label="Switch at",
                                          elem_id=f"{tabname}_refiner_switch_at")
    return CommonControls(*sampler_row, *batch, cfg_scale, *seeds, enable_refiner, refiner_checkpoint, refiner_switch_at,
                          refiner_refresh)


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


def create_hires(tabname: str) -> Hires:
    upscalers = hires_upscalers()
    with InputAccordion(False, label="Hires. fix", elem_id=f"{tabname}_hr") as enable_hr:
        with FormRow(elem_id=f"{tabname}_hires_fix_row1"):
            hr_upscaler = gr.Dropdown(label="Upscaler", elem_id=f"{tabname}_hr_upscaler", choices=upscalers,
                                      value=upscalers[0])
            hr_second_pass_steps = gr.Slider(minimum=0, maximum=150, step=1, value=0, label="Hires steps",
                                             elem_id=f"{tabname}_hires_steps")
            denoising_strength = gr.Slider(minimum=0.0, maximum=1.0, step=0.01, value=0.7, label="Denoising strength",
                                           elem_id=f"{tabname}_denoising_strength")
        with FormRow(elem_id=f"{tabname}_hires_fix_row2"):
            hr_scale = gr.Slider(minimum=1.0, maximum=4.0, step=0.05, value=2.0, label="Upscale by",
                                 elem_id=f"{tabname}_hr_scale")
            hr_resize_x = gr.Slider(minimum=0, maximum=2048, step=8, value=0, label="Resize width to",
                                    elem_id=f"{tabname}_hr_resize_x")
            hr_resize_y = gr.Slider(minimum=0, maximum=2048, step=8, value=0, label="Resize height to",
                                    elem_id=f"{tabname}_hr_resize_y")
        with FormRow(elem_id=f"{tabname}_hires_fix_row3", visible=opts.hires_fix_show_sampler):
            hr_checkpoint_name = gr.Dropdown(label="Hires checkpoint", elem_id=f"{tabname}_hr_checkpoint",
                                             choices=[SAME_CHECKPOINT, *sd_models.checkpoint_registry.titles()],
                                             value=SAME_CHECKPOINT)
            hr_sampler_name = gr.Dropdown(label="Hires sampling method", elem_id=f"{tabname}_hr_sampler",
                                          choices=[SAME_SAMPLER, *visible_samplers()], value=SAME_SAMPLER)
            hr_scheduler = gr.Dropdown(label="Hires schedule type", elem_id=f"{tabname}_hr_scheduler",
                                       choices=[SAME_SCHEDULER, *scheduler_choices()], value=SAME_SCHEDULER)
        with FormRow(elem_id=f"{tabname}_hires_fix_row4", visible=opts.hires_fix_show_prompts):
            hr_prompt = gr.Textbox(label="Hires prompt", elem_id=f"{tabname}_hr_prompt", lines=3,
                                   placeholder="Prompt for hires fix pass.\nLeave empty to use the same prompt as in first pass.")
            hr_negative_prompt = gr.Textbox(label="Hires negative prompt", elem_id=f"{tabname}_hr_negative_prompt", lines=3,
                                            placeholder="Negative prompt for hires fix pass.\nLeave empty to use the "
                                                        "same negative prompt as in first pass.")
    return Hires(enable_hr, hr_upscaler, hr_second_pass_steps, denoising_strength, hr_scale, hr_resize_x, hr_resize_y,
                 hr_checkpoint_name, hr_sampler_name, hr_scheduler, hr_prompt, hr_negative_prompt)


def paste_fields(toprow: ui_toprow.Toprow, common: CommonControls, width, height) -> dict:
    """Processing field -> component, for "Send to" (infotext_utils.infotext_to_fields names the fields)."""
    return dict(prompt=toprow.prompt, negative_prompt=toprow.negative_prompt, styles=toprow.styles,
                sampler_name=common.sampler_name, scheduler=common.scheduler, steps=common.steps, width=width,
                height=height, batch_size=common.batch_size, cfg_scale=common.cfg_scale, seed=common.seed,
                seed_extras=common.seed_extras, subseed=common.subseed, subseed_strength=common.subseed_strength,
                seed_resize_from_w=common.seed_resize_from_w, seed_resize_from_h=common.seed_resize_from_h,
                enable_refiner=common.enable_refiner, refiner_checkpoint=common.refiner_checkpoint,
                refiner_switch_at=common.refiner_switch_at)


def run_job(job):
    """The Generate handler: the job's outputs, and its progress while it runs."""

    def run(*args):
        yield from ui_common.stream_job(job, args, n_outputs=4)

    return run


def busy_buttons() -> tuple:
    """Interrupt and Skip take Generate's place while a job runs (A1111)."""
    return gr.update(visible=True), gr.update(visible=True), gr.update(visible=False)


def idle_buttons() -> tuple:
    return gr.update(visible=False), gr.update(visible=False), gr.update(visible=True), None


def wire_generate(toprow: ui_toprow.Toprow, output: ui_common.OutputPanel, job, inputs: list) -> None:
    # The job's click has A1111's outputs (the output panel's four, then the progress): extensions find a tab's inputs
    # by it (supermerger's GenParamGetter takes the click with 4 or 5 outputs); the buttons change in events of their own.
    toprow.generate.click(fn=busy_buttons, outputs=[toprow.interrupt, toprow.skip, toprow.generate], queue=False,
                          show_progress="hidden", api_visibility="private")
    toprow.generate.click(fn=run_job(job), inputs=inputs, outputs=[output.gallery, output.generation_info, output.infotext,
                                                                   output.html_log, output.progress],
                          show_progress="hidden", concurrency_limit=None, api_visibility="private").then(
        fn=idle_buttons, outputs=[toprow.interrupt, toprow.skip, toprow.generate, output.selected_index], queue=False,
        show_progress="hidden", api_visibility="private")
    toprow.interrupt.click(fn=interrupt, queue=False, show_progress="hidden")
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
    notice_html = checkpoint_notice_html()
    notice = gr.HTML(notice_html, elem_id="txt2img_notice", visible=bool(notice_html))
    with gr.Row(elem_id="txt2img_first_start_download",
                visible=not sd_models.checkpoint_registry.titles() and first_start.download_offered()) as download_row:
        download_button = gr.Button(f"Download Stable Diffusion 1.5 ({first_start.SD15_SIZE})",
                                    elem_id="txt2img_download_sd15")
        download_progress = gr.HTML(elem_id="txt2img_download_progress")

    toprow = ui_toprow.create_toprow(tabname)
    with ResizeHandleRow(equal_height=False, elem_id="txt2img_main_row"):
        with gr.Column(variant="compact", elem_id="txt2img_settings_outer"):
            with gr.Tabs(elem_id="txt2img_generation_tabs"):
                with gr.Tab("Generation", id="txt2img_generation", elem_id="txt2img_generation_tab"):
                    with gr.Column(variant="compact", elem_id="txt2img_settings") as settings_column:
                        sampler_row = create_sampler_row(tabname)
                        runner.setup_ui_for_section("sampler")
                        with FormRow(elem_id="txt2img_dimensions_row"):
                            with gr.Column(elem_id="txt2img_column_size", scale=4):
                                width = gr.Slider(minimum=64, maximum=2048, step=8, value=512, label="Width",
                                                  elem_id="txt2img_width")
                                height = gr.Slider(minimum=64, maximum=2048, step=8, value=512, label="Height",
                                                   elem_id="txt2img_height")
                            with gr.Column(elem_id="txt2img_dimensions_tools", scale=1, min_width=120,
                                           elem_classes=["dimensions-tools"]):
                                res_switch_btn = ToolButton(switch_values_symbol, elem_id="txt2img_res_switch_btn")
                                size_picker = gr.Dropdown(label="SDXL size", choices=SDXL_SIZES, value=None,
                                                          elem_id="txt2img_size_picker")
                            batch = create_batch_column(tabname)
                        runner.setup_ui_for_section("dimensions")
                        common = create_common_tail(tabname, sampler_row, batch)
                        hires = create_hires(tabname)
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

    inputs = [toprow.prompt, toprow.negative_prompt, common.sampler_name, common.scheduler, common.steps, width, height,
              common.batch_count, common.batch_size, common.cfg_scale, *common.seed_inputs(), *common.refiner_inputs(),
              *extra_options, toprow.styles, *hires.inputs(), override, *script_inputs]
    job = call_queue.wrap_gradio_gpu_call(functools.partial(generate, extra_option_keys),
                                          extra_outputs=[gr.skip(), gr.skip(), gr.skip()])
    wire_generate(toprow, output, job, inputs)
    ui_toprow.wire_toprow(toprow, common.steps)
    wire_common(common, output)
    ui_extra_networks.setup_ui(extra_networks_ui, output.gallery, output.selected_index)
    res_switch_btn.click(fn=None, inputs=[width, height], outputs=[width, height], js="(w, h) => [h, w]",
                         show_progress="hidden")
    size_picker.change(fn=apply_size, inputs=[size_picker], outputs=[width, height, size_picker], show_progress="hidden",
                       queue=False)
    download_event = download_button.click(fn=download_sd15, outputs=[download_progress], show_progress="hidden")

    fields = paste_fields(toprow, common, width, height)
    fields.update({name: getattr(hires, name) for name in vars(hires)})
    paste = ui_common.PasteTarget(tabname, fields, override, radio_choices={}, script_fields=runner.infotext_fields)
    return Txt2ImgUI(notice, download_row, download_button, download_progress, download_event, toprow, common, hires,
                     extra_networks_ui, output, paste)
