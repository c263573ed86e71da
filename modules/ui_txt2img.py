"""The txt2img tab: prompt row, generation controls and output panel, with A1111's element ids and labels."""
from __future__ import annotations

import functools
import json
from dataclasses import dataclass
from pathlib import Path

import gradio as gr

from modules import call_queue, clip_tokenizer, demo_model, extra_networks, first_start, initialize, processing, \
    prompt_parser, sd_models, sd_samplers, sd_schedulers, ui_common, ui_settings
from modules.prompt_encoding import CHUNK, tokenize_weighted
from modules.shared_cmd_options import cmd_opts
from modules.shared_options import opts
from modules.shared_state import state
from modules.ui_components import FormRow, InputAccordion, ResizeHandleRow, ToolButton

random_symbol = "\U0001f3b2\ufe0f"  # 🎲️
reuse_symbol = "\u267b\ufe0f"  # ♻️
switch_values_symbol = "\u21c5"  # ⇅
refresh_symbol = "\U0001f504"  # 🔄
SDXL_SIZES = ["1024x1024", "1152x896", "896x1152", "1216x832", "832x1216", "1344x768", "768x1344", "1536x640", "640x1536"]
PROMPT_HINT = "(Press Ctrl+Enter to generate, Alt+Enter to skip, Esc to interrupt)"
NO_REFINER = "None"


@dataclass
class Txt2ImgUI:
    notice: gr.HTML
    download_row: gr.Row
    download_button: gr.Button
    download_progress: gr.HTML
    download_event: object  # the download's Dependency, for `.then(...)` on the checkpoint views
    prompt: gr.Textbox
    negative_prompt: gr.Textbox
    generate: gr.Button
    interrupt: gr.Button
    skip: gr.Button
    refiner_checkpoint: gr.Dropdown
    output: ui_common.OutputPanel


@functools.lru_cache(maxsize=1)
def counting_tokenizer():
    """CLIP-L's tokenizer (A1111 counts with the first text encoder's); built offline once, no model needed."""
    return clip_tokenizer.load_tokenizer(Path(initialize.cache_dir()), clip_tokenizer.PAD_CLIP_L)


def _count(text: str) -> tuple[int, int]:
    tokenizer = counting_tokenizer()
    chunks = tokenize_weighted(tokenizer, text)
    count = sum(1 for chunk in chunks for token in chunk.ids if token != tokenizer.pad_token_id)
    return count, max(len(chunks), 1) * CHUNK


def token_count(text: str, steps: int = 20) -> tuple[int, int]:
    """(tokens, tokens its 75-token chunks hold), as A1111's counter shows them (`3/75`): without comments and
    extra-network tags, for the longest prompt that prompt editing makes over `steps` steps."""
    text = text or ""
    if opts.enable_prompt_comments:
        text = prompt_parser.strip_comments(text)
    text, _ = extra_networks.parse_prompt(text)
    schedule = prompt_parser.get_learned_conditioning_prompt_schedules([text], max(int(steps or 1), 1))[0]
    return max((_count(prompt) for _, prompt in schedule), key=lambda counted: counted[0])


def token_counter_html(text: str, steps: int = 20) -> str:
    if opts.disable_token_counters:
        return ""
    count, limit = token_count(text, steps)
    return f"<span class='token-count'>{count}/{limit}</span>"


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


def txt2img(extra_option_keys: tuple, prompt, negative_prompt, sampler_name, scheduler, steps, width, height,
            batch_count, batch_size, cfg_scale, seed, seed_extras, subseed, subseed_strength, seed_resize_from_w,
            seed_resize_from_h, enable_refiner, refiner_checkpoint, refiner_switch_at, *extra_option_values):
    """Fill a txt2img job from the controls and run it: (gallery, generation info JSON, info HTML, log HTML)."""
    use_refiner = bool(enable_refiner) and refiner_checkpoint not in (None, "", NO_REFINER)
    p = processing.StableDiffusionProcessingTxt2Img(
        prompt=prompt or "", negative_prompt=negative_prompt or "", sampler_name=sampler_name, scheduler=scheduler,
        steps=int(steps), width=int(width), height=int(height), n_iter=int(batch_count), batch_size=int(batch_size),
        cfg_scale=float(cfg_scale), seed=-1 if seed is None else int(seed),
        # without "Extra" the variation controls keep their values in the page but do not apply (A1111)
        subseed=-1 if subseed is None or not seed_extras else int(subseed),
        subseed_strength=float(subseed_strength) if seed_extras else 0.0,
        seed_resize_from_w=int(seed_resize_from_w) if seed_extras else 0,
        seed_resize_from_h=int(seed_resize_from_h) if seed_extras else 0,
        seed_enable_extras=bool(seed_extras),
        refiner_checkpoint=refiner_checkpoint if use_refiner else None,
        refiner_switch_at=float(refiner_switch_at) if use_refiner else None,
        override_settings={key: ui_settings.coerce(key, value) for key, value in zip(extra_option_keys, extra_option_values)},
    )
    processed = processing.process_images(p)
    log_html = ui_common.plaintext_to_html(processed.comments, "comments") if processed.comments else ""
    if demo_model.is_demo_checkpoint(p.sd_model.sd_checkpoint_info.filename):
        log_html += f"<div class='demo-notice'>{demo_model.DEMO_NOTICE}</div>"
    shown = [] if opts.do_not_show_images else processed.images
    return shown, processed.js(), ui_common.plaintext_to_html(processed.info), log_html


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


def create_ui(loadsave, extra_option_component) -> Txt2ImgUI:
    """The txt2img tab's contents; `extra_option_component(key)` builds a "Settings in UI" control."""
    tabname = "txt2img"
    notice_html = checkpoint_notice_html()
    notice = gr.HTML(notice_html, elem_id="txt2img_notice", visible=bool(notice_html))
    with gr.Row(elem_id="txt2img_first_start_download",
                visible=not sd_models.checkpoint_registry.titles() and first_start.download_offered()) as download_row:
        download_button = gr.Button(f"Download Stable Diffusion 1.5 ({first_start.SD15_SIZE})",
                                    elem_id="txt2img_download_sd15")
        download_progress = gr.HTML(elem_id="txt2img_download_progress")

    with gr.Row(elem_id="txt2img_toprow", elem_classes=["toprow"]):
        with gr.Column(scale=6, elem_id="txt2img_prompt_container"):
            with gr.Row(elem_id="txt2img_prompt_row", elem_classes=["prompt-row"]):
                prompt = gr.Textbox(label="Prompt", show_label=False, lines=3, elem_id="txt2img_prompt",
                                    elem_classes=["prompt"], placeholder=f"Prompt\n{PROMPT_HINT}")
                token_counter = gr.HTML(f"<span class='token-count'>0/{CHUNK}</span>", elem_id="txt2img_token_counter",
                                        elem_classes=["token-counter"])
            with gr.Row(elem_id="txt2img_neg_prompt_row", elem_classes=["prompt-row"]):
                negative_prompt = gr.Textbox(label="Negative prompt", show_label=False, lines=3,
                                             elem_id="txt2img_neg_prompt", elem_classes=["prompt"],
                                             placeholder=f"Negative prompt\n{PROMPT_HINT}")
                negative_token_counter = gr.HTML(f"<span class='token-count'>0/{CHUNK}</span>",
                                                 elem_id="txt2img_negative_token_counter", elem_classes=["token-counter"])
        with gr.Column(scale=1, elem_id="txt2img_actions_column", min_width=160):
            with gr.Row(elem_id="txt2img_generate_box", elem_classes=["generate-box"]):
                interrupt_button = gr.Button("Interrupt", elem_id="txt2img_interrupt", visible=False, variant="stop")
                skip_button = gr.Button("Skip", elem_id="txt2img_skip", visible=False)
                generate = gr.Button("Generate", elem_id="txt2img_generate", variant="primary")

    with ResizeHandleRow(equal_height=False, elem_id="txt2img_main_row"):
        with gr.Column(variant="compact", elem_id="txt2img_settings") as settings_column:
            with FormRow(elem_id="sampler_selection_txt2img"):
                samplers = visible_samplers()
                sampler_name = gr.Dropdown(label="Sampling method", elem_id="txt2img_sampling", choices=samplers,
                                           value="DPM++ 2M" if "DPM++ 2M" in samplers else samplers[0])
                scheduler = gr.Dropdown(label="Schedule type", elem_id="txt2img_scheduler",
                                        choices=[sd_samplers.AUTOMATIC, *(s.label for s in sd_schedulers.schedulers)],
                                        value=sd_samplers.AUTOMATIC)
                steps = gr.Slider(minimum=1, maximum=150, step=1, value=20, label="Sampling steps",
                                  elem_id="txt2img_steps")
            with FormRow(elem_id="txt2img_dimensions_row"):
                with gr.Column(elem_id="txt2img_column_size", scale=4):
                    width = gr.Slider(minimum=64, maximum=2048, step=8, value=512, label="Width", elem_id="txt2img_width")
                    height = gr.Slider(minimum=64, maximum=2048, step=8, value=512, label="Height",
                                       elem_id="txt2img_height")
                with gr.Column(elem_id="txt2img_dimensions_tools", scale=1, min_width=120, elem_classes=["dimensions-tools"]):
                    res_switch_btn = ToolButton(switch_values_symbol, elem_id="txt2img_res_switch_btn")
                    size_picker = gr.Dropdown(label="SDXL size", choices=SDXL_SIZES, value=None,
                                              elem_id="txt2img_size_picker")
                with gr.Column(elem_id="txt2img_column_batch", scale=2):
                    batch_count = gr.Slider(minimum=1, maximum=100, step=1, value=1, label="Batch count",
                                            elem_id="txt2img_batch_count")
                    batch_size = gr.Slider(minimum=1, maximum=8, step=1, value=1, label="Batch size",
                                           elem_id="txt2img_batch_size")
            cfg_scale = gr.Slider(minimum=1.0, maximum=30.0, step=0.5, value=7.0, label="CFG Scale",
                                  elem_id="txt2img_cfg_scale")
            seed, reuse, seed_extras, subseed, reuse_subseed, subseed_strength, resize_w, resize_h = \
                create_seed_inputs(tabname)
            with InputAccordion(False, label="Refiner", elem_id="txt2img_enable_refiner") as enable_refiner:
                with FormRow():
                    refiner_checkpoint = gr.Dropdown(label="Checkpoint", choices=refiner_choices(), value=NO_REFINER,
                                                     elem_id="txt2img_refiner_checkpoint")
                    refiner_refresh = ToolButton(refresh_symbol, elem_id="txt2img_refiner_checkpoint_refresh")
                    refiner_switch_at = gr.Slider(minimum=0.01, maximum=1.0, step=0.01, value=0.8, label="Switch at",
                                                  elem_id="txt2img_refiner_switch_at")
            extra_option_keys = tuple(k for k in opts.extra_options_txt2img if k in opts.data_labels)
            extra_options = []
            if extra_option_keys:
                with gr.Accordion("Options", open=True, elem_id="txt2img_extra_options"):
                    extra_options = [extra_option_component(k) for k in extra_option_keys]
        output = ui_common.create_output_panel(tabname, opts.outdir_txt2img_samples)

    loadsave.add_block(settings_column, tabname, skip=[size_picker, *extra_options])
    loadsave.add_component(f"{tabname}/Prompt", prompt)
    loadsave.add_component(f"{tabname}/Negative prompt", negative_prompt)

    inputs = [prompt, negative_prompt, sampler_name, scheduler, steps, width, height, batch_count, batch_size, cfg_scale,
              seed, seed_extras, subseed, subseed_strength, resize_w, resize_h, enable_refiner, refiner_checkpoint,
              refiner_switch_at, *extra_options]
    job = call_queue.wrap_gradio_gpu_call(functools.partial(txt2img, extra_option_keys),
                                          extra_outputs=[gr.skip(), gr.skip(), gr.skip()])

    def run(*args):
        # while a job runs, Interrupt and Skip take Generate's place (A1111)
        yield from ui_common.stream_job(
            job, args, n_outputs=4,
            busy=(gr.update(visible=True), gr.update(visible=True), gr.update(visible=False), gr.skip()),
            idle=(gr.update(visible=False), gr.update(visible=False), gr.update(visible=True), None))

    outputs = [output.gallery, output.generation_info, output.infotext, output.html_log, output.progress,
               interrupt_button, skip_button, generate, output.selected_index]
    generate.click(fn=run, inputs=inputs, outputs=outputs, show_progress="hidden", concurrency_limit=None,
                   api_visibility="private")
    interrupt_button.click(fn=interrupt, queue=False, show_progress="hidden")
    skip_button.click(fn=skip, queue=False, show_progress="hidden")

    for box, counter in ((prompt, token_counter), (negative_prompt, negative_token_counter)):
        box.change(fn=token_counter_html, inputs=[box, steps], outputs=[counter], show_progress="hidden",
                   trigger_mode="always_last", queue=False)
    res_switch_btn.click(fn=None, inputs=[width, height], outputs=[width, height], js="(w, h) => [h, w]",
                         show_progress="hidden")
    size_picker.change(fn=apply_size, inputs=[size_picker], outputs=[width, height, size_picker], show_progress="hidden",
                       queue=False)
    reuse.click(fn=functools.partial(reuse_seed, is_subseed=False), inputs=[output.generation_info, output.selected_index],
                outputs=[seed], show_progress="hidden", queue=False)
    reuse_subseed.click(fn=functools.partial(reuse_seed, is_subseed=True),
                        inputs=[output.generation_info, output.selected_index], outputs=[subseed], show_progress="hidden",
                        queue=False)
    refiner_refresh.click(fn=lambda: gr.update(choices=refiner_choices()), outputs=[refiner_checkpoint],
                          show_progress="hidden")
    download_event = download_button.click(fn=download_sd15, outputs=[download_progress], show_progress="hidden")

    return Txt2ImgUI(notice, download_row, download_button, download_progress, download_event, prompt, negative_prompt,
                     generate, interrupt_button, skip_button, refiner_checkpoint, output)
