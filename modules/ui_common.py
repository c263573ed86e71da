"""The output panel of txt2img and img2img: gallery, generation info, folder, save and "Send to" buttons, job
progress; and what a "Send to" fills in a generation tab."""
from __future__ import annotations

import base64
import csv
import dataclasses
import html
import io
import json
import os
import shutil
import subprocess
import sys
import threading
import time
import types
import zipfile
from dataclasses import dataclass

import gradio as gr
from PIL import Image
from tqdm import tqdm

from modules import call_queue, images, infotext_utils, progress, sd_models, upscaler
from modules.shared_cmd_options import cmd_opts
from modules.shared_options import opts
from modules.shared_state import state
from modules.ui_components import ToolButton

folder_symbol = "\U0001f4c2"  # 📂
save_symbol = "\U0001f4be"  # 💾
zip_symbol = "\U0001f5c3\ufe0f"  # 🗃️
upscale_symbol = "\u2728"  # ✨
refresh_symbol = "\U0001f504"  # 🔄
send_symbols = {"img2img": "\U0001f5bc\ufe0f", "inpaint": "\U0001f3a8\ufe0f", "extras": "\U0001f4d0"}  # 🖼️ 🎨️ 📐
LOG_CSV_FIELDS = ["prompt", "seed", "width", "height", "sampler", "cfgs", "steps", "filename", "negative_prompt",
                  "sd_model_name", "sd_model_hash"]


def plaintext_to_html(text: str, classname: str | None = None) -> str:
    content = "<br>\n".join(html.escape(line) for line in (text or "").split("\n"))
    return f"<p class='{classname}'>{content}</p>" if classname else f"<p>{content}</p>"


@dataclass
class OutputPanel:
    gallery: gr.Gallery
    generation_info: gr.Textbox
    infotext: gr.HTML
    html_log: gr.HTML
    progress: gr.HTML
    selected_index: gr.State
    button_open_folder: ToolButton
    button_save: ToolButton
    button_save_zip: ToolButton
    button_upscale: ToolButton | None  # txt2img's ✨
    download_files: gr.File
    send_buttons: dict  # "img2img", "inpaint", "extras" -> ToolButton; the page wires them


def create_refresh_button(refresh_component, refresh_method, refreshed_args, elem_id: str) -> ToolButton:
    """A1111's 🔄 button: calls refresh_method(), then sets the component(s) to refreshed_args (a dict of component
    properties such as {"choices": [...]}, or a function returning one)."""
    components = refresh_component if isinstance(refresh_component, list) else [refresh_component]

    def refresh():
        refresh_method()
        args = (refreshed_args() if callable(refreshed_args) else refreshed_args) or {}
        updates = [gr.update(**args) for _ in components]
        return updates if len(updates) > 1 else updates[0]

    button = ToolButton(refresh_symbol, elem_id=elem_id)
    button.click(fn=refresh, inputs=[], outputs=components, show_progress="hidden")
    return button


def resolve_path(path: str) -> str:
    """An output folder of the settings as images.save_image resolves it (relative to the working directory)."""
    return os.path.abspath(path)


def open_folder(path: str) -> str:
    """Open an output folder in the file manager of the computer running Atelier; the page shows which folder."""
    path = resolve_path(path)
    if not os.path.isdir(path):
        return plaintext_to_html(f"The folder {path} does not exist yet: it is made when the first image is saved.", "error")
    if sys.platform == "win32":
        os.startfile(path)
        return plaintext_to_html(f"Opened {path}")
    opener = "open" if sys.platform == "darwin" else "xdg-open"
    if shutil.which(opener) is None:
        return plaintext_to_html(f"Images are saved in {path} (no file manager to open it with on this computer).")
    opened = subprocess.Popen([opener, path], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    threading.Thread(target=opened.wait, name="reap file manager", daemon=True).start()  # no zombie left behind
    return plaintext_to_html(f"Opened {path}")


def gallery_image(item) -> Image.Image:
    """A gallery entry as Gradio hands it to a function: (file path, caption), or a path."""
    image = Image.open(item[0] if isinstance(item, (list, tuple)) else item)
    image.load()  # reads the pixels and closes the file
    return image


def _nth(values, index: int, default=None):
    """values[index], the last value when the list is shorter (one seed for a whole batch), or `default`."""
    return values[min(index, len(values) - 1)] if values else default


def save_files(js_data: str, gallery: list, index: int | None, make_zip: bool = False):
    """The 💾 button: save the shown images (only the selected one with `save_selected_only`) to `outdir_save`,
    list them in its log.csv, and offer them for download; 🗃️ (make_zip) offers them as one zip archive, named by
    `grid_zip_filename_pattern` (A1111)."""
    data = json.loads(js_data or "{}")
    if not gallery or not data:
        return gr.File(visible=False), plaintext_to_html("Nothing to save: generate images first.", "error")
    first = data.get("index_of_first_image", 0)
    selected = index is not None and index >= first and opts.save_selected_only
    folder = resolve_path(opts.outdir_save)
    p = types.SimpleNamespace(**data)  # what filename patterns read
    saved, rows = [], []
    for i in ([index] if selected else range(len(gallery))):
        k = max(i - first, 0)
        p.batch_index = k
        seed, prompt = _nth(data.get("all_seeds"), k, data.get("seed")), _nth(data.get("all_prompts"), k, data.get("prompt"))
        fullfn, txt_fullfn = images.save_image(
            gallery_image(gallery[i]), folder, "", seed=seed, prompt=prompt, extension=opts.samples_format,
            info=_nth(data.get("infotexts"), i), grid=i < first, p=p, save_to_dirs=opts.use_save_to_dirs_for_ui)
        saved += [fullfn] + ([txt_fullfn] if txt_fullfn else [])
        rows.append([prompt, seed, data.get("width"), data.get("height"), data.get("sampler_name"), data.get("cfg_scale"),
                     data.get("steps"), os.path.basename(fullfn), data.get("negative_prompt"), data.get("sd_model_name"),
                     data.get("sd_model_hash")])
    if opts.save_write_log_csv:
        append_log_csv(os.path.join(folder, "log.csv"), rows)
    if make_zip:
        name = images.FilenameGenerator(p, data.get("seed"), data.get("prompt"), None).apply(
            opts.grid_zip_filename_pattern or "[datetime]_[[model_name]]_[seed]-[seed_last]")
        saved.insert(0, write_zip(os.path.join(folder, f"{name}.zip"), saved))
    return gr.File(value=saved, visible=True), plaintext_to_html(f"Saved: {os.path.basename(saved[0])}")


def write_zip(path: str, files: list[str]) -> str:
    """The files, by their names, in one archive (written beside, then moved into place)."""
    tmp = f"{path}.tmp"
    with zipfile.ZipFile(tmp, "w") as archive:
        for file in files:
            archive.write(file, os.path.basename(file))
    os.replace(tmp, path)
    return path


def upscale_selected(js_data: str, gallery: list, index: int | None, outdir: str):
    """✨: the selected image enlarged by the upscaler and scale the settings choose (`upscale_button_upscaler`,
    `upscale_button_scale`), saved beside the tab's images with its infotext, in the selected image's place."""
    image = selected_image(gallery, index)
    if image is None:
        raise gr.Error("Generate an image first: ✨ upscales the image selected in the gallery")
    name, scale = opts.upscale_button_upscaler or "Lanczos", float(opts.upscale_button_scale)
    width, height = int(image.width * scale), int(image.height * scale)
    upscaled = upscaler.upscale_to(image.convert("RGB"), width, height, name)
    data = json.loads(js_data or "{}")
    position = min(max(index or 0, 0), len(gallery) - 1)
    k = max(position - data.get("index_of_first_image", 0), 0)
    info = _nth(data.get("infotexts"), position, "") or ""
    info = f"{info}, Postprocess upscale by: {scale:g}, Postprocess upscaler: {name}" if info else ""
    if opts.samples_save:
        p = types.SimpleNamespace(**data)
        images.save_image(upscaled, resolve_path(opts.outdir_samples or outdir), "",
                          seed=_nth(data.get("all_seeds"), k, data.get("seed")),
                          prompt=_nth(data.get("all_prompts"), k, data.get("prompt")), extension=opts.samples_format,
                          info=info or None, p=p, suffix="-upscaled")
    shown = [item[0] if isinstance(item, (list, tuple)) else item for item in gallery]
    shown[position] = upscaled
    return shown, plaintext_to_html(f"Upscaled to {width}x{height} with {name}")


def append_log_csv(path: str, rows: list[list]) -> None:
    new = not os.path.exists(path)
    with open(path, "a", encoding="utf8", newline="") as file:
        writer = csv.writer(file)
        if new:
            writer.writerow(LOG_CSV_FIELDS)
        writer.writerows(rows)


def infotext_for(js_data: str, index: int | None) -> str:
    """The generation info of the image selected in the gallery (the grid shows the first image's)."""
    data = json.loads(js_data or "{}")
    infotexts = data.get("infotexts") or []
    if not infotexts:
        return ""
    index = 0 if index is None else min(max(index, 0), len(infotexts) - 1)
    return plaintext_to_html(infotexts[index])


def create_output_panel(tabname: str, outdir: str) -> OutputPanel:
    """Gallery and info on the right of a generation tab (A1111's element ids)."""
    with gr.Column(elem_id=f"{tabname}_results"):
        progress = gr.HTML("", elem_id=f"{tabname}_progress", elem_classes=["progress-panel"])
        gallery = gr.Gallery(label="Output", show_label=False, elem_id=f"{tabname}_gallery", columns=4, format="png",
                             preview=True, height=opts.gallery_height or None, interactive=False,
                             buttons=["download", "fullscreen"])
        with gr.Row(elem_id=f"image_buttons_{tabname}", elem_classes=["image-buttons"]):
            button_open_folder = ToolButton(folder_symbol, elem_id=f"{tabname}_open_folder",
                                            visible=not cmd_opts.hide_ui_dir_config)
            button_save = ToolButton(save_symbol, elem_id=f"save_{tabname}")
            button_save_zip = ToolButton(zip_symbol, elem_id=f"save_zip_{tabname}")
            send_buttons = {target: ToolButton(symbol, elem_id=f"{tabname}_send_to_{target}")
                            for target, symbol in send_symbols.items()}
            button_upscale = ToolButton(upscale_symbol, elem_id=f"{tabname}_upscale") if tabname == "txt2img" else None
        download_files = gr.File(None, file_count="multiple", interactive=False, show_label=False, visible=False,
                                 elem_id=f"download_files_{tabname}")
        generation_info = gr.Textbox(visible="hidden", elem_id=f"generation_info_{tabname}")
        infotext = gr.HTML(elem_id=f"html_info_{tabname}", elem_classes=["infotext"])
        html_log = gr.HTML(elem_id=f"html_log_{tabname}", elem_classes=["html-log"])
        selected_index = gr.State(None)

    gallery.select(fn=_selected, inputs=[generation_info], outputs=[selected_index, infotext], show_progress="hidden")
    button_open_folder.click(fn=lambda: open_folder(opts.outdir_samples or outdir), outputs=[html_log],
                             show_progress="hidden")
    button_save.click(fn=call_queue.wrap_gradio_call(save_files, extra_outputs=[gr.File(visible=False)]),
                      inputs=[generation_info, gallery, selected_index], outputs=[download_files, html_log],
                      show_progress="hidden")
    button_save_zip.click(fn=call_queue.wrap_gradio_call(lambda *args: save_files(*args, make_zip=True),
                                                         extra_outputs=[gr.File(visible=False)]),
                          inputs=[generation_info, gallery, selected_index], outputs=[download_files, html_log],
                          show_progress="hidden")
    if button_upscale is not None:
        button_upscale.click(fn=call_queue.wrap_gradio_gpu_call(lambda *args: upscale_selected(*args, outdir),
                                                                extra_outputs=[gr.skip()]),
                             inputs=[generation_info, gallery, selected_index], outputs=[gallery, html_log],
                             show_progress="hidden")
    return OutputPanel(gallery, generation_info, infotext, html_log, progress, selected_index, button_open_folder,
                       button_save, button_save_zip, button_upscale, download_files, send_buttons)


def selected_image(gallery: list | None, index: int | None) -> Image.Image | None:
    """The gallery's selected image, the first one when none is selected, None for an empty gallery."""
    if not gallery:
        return None
    return gallery_image(gallery[min(max(index or 0, 0), len(gallery) - 1)])


def find_checkpoint(name: str) -> str | None:
    """A checkpoint's title from the name or hash an infotext gives, None when no such file is here."""
    info = sd_models.get_closet_checkpoint_match(name)
    return info.title if info is not None else None


@dataclass
class PasteTarget:
    """A generation tab's controls that a "Send to" fills: processing field name -> component, with the toggles
    that must open for a field to apply, and the "Override settings" control for settings named in the text."""

    tabname: str
    fields: dict
    override_settings: gr.Dropdown
    radio_choices: dict  # field -> choices of an index radio (the value pasted is the index)
    script_fields: list = dataclasses.field(default_factory=list)  # scripts' (component, infotext key or function)

    def components(self) -> list:
        return [*self.fields.values(), *(component for component, _ in self.script_fields), self.override_settings]


def pasted_fields(params: dict, tabname: str) -> infotext_utils.PastedFields:
    tab = "txt2img" if tabname == "txt2img" else "img2img"
    return infotext_utils.infotext_to_fields(params, tab, find_checkpoint=find_checkpoint, find_refiner=find_checkpoint)


def paste_updates(params: dict, target: PasteTarget) -> tuple[list, str | None, str]:
    """(updates for target.components(), checkpoint title to switch to or None, HTML naming what was not used)."""
    pasted = pasted_fields(params, target.tabname)
    values = dict(pasted.fields)
    if values.get("subseed_strength") or values.get("seed_resize_from_w", 0) > 0:
        values["seed_enable_extras"] = True
    if values.get("refiner_checkpoint"):
        values["enable_refiner"] = True
    updates = []
    for name in target.fields:
        value = values.get(name)
        if value is None:
            updates.append(gr.skip())
        elif name in target.radio_choices:
            updates.append(gr.update(value=target.radio_choices[name][int(value)]))
        else:
            updates.append(gr.update(value=value))
    updates += [script_field_update(params, key) for _, key in target.script_fields]
    checkpoint = pasted.override_settings.pop("sd_model_checkpoint", None)
    overrides = [f"{key}: {value}" for key, setting, value in infotext_utils.get_override_settings(params)
                 if setting in pasted.override_settings]
    updates.append(gr.update(choices=overrides, value=overrides, visible=bool(overrides)))
    return updates, checkpoint, paste_report_html(pasted)


def script_field_update(params: dict, key):
    """A script's infotext field: a function of the parsed infotext gives the value (or an update) itself; a key
    copies that item when the text has it."""
    if callable(key):
        return key(params)
    return gr.update(value=params[key]) if key in params else gr.skip()


def paste_report_html(pasted: infotext_utils.PastedFields) -> str:
    lines = []
    if pasted.missing_checkpoint:
        lines.append(f"Checkpoint not found: {pasted.missing_checkpoint}")
    if pasted.unknown:
        lines.append("Not used by Atelier: " + ", ".join(f"{key}: {value}" for key, value in pasted.unknown.items()))
    return plaintext_to_html("\n".join(lines), "paste-report") if lines else ""


def parameters_of(js_data: str, index: int | None) -> dict:
    """The parsed infotext of the gallery's selected image (the first image's for the grid or no selection)."""
    data = json.loads(js_data or "{}")
    infotexts = data.get("infotexts") or []
    if not infotexts:
        return {}
    infotext = infotexts[min(max(index or 0, 0), len(infotexts) - 1)]
    return infotext_utils.parse_generation_parameters(infotext)


def _selected(js_data: str, evt: gr.SelectData):
    return evt.index, infotext_for(js_data, evt.index)


def format_eta(seconds: float) -> str:
    seconds = int(round(max(seconds, 0)))
    if seconds < 60:
        return f"{seconds}s"
    minutes, seconds = divmod(seconds, 60)
    if minutes < 60:
        return f"{minutes}m {seconds:02d}s"
    hours, minutes = divmod(minutes, 60)
    return f"{hours}h {minutes:02d}m"


def data_uri(image: Image.Image, image_format: str) -> str:
    buffer = io.BytesIO()
    if image_format == "jpeg" and image.mode not in ("RGB", "L"):
        image = image.convert("RGB")
    image.save(buffer, format=image_format.upper())
    return f"data:image/{image_format};base64,{base64.b64encode(buffer.getvalue()).decode('ascii')}"


def progress_fraction(job_no: int, job_count: int, step: int, steps: int) -> float:
    """Share of the job done: finished images plus the share of the current image's steps."""
    if job_count <= 0:
        return 0.0
    done = job_no / job_count
    if steps > 0:
        done += step / steps / job_count
    return min(max(done, 0.0), 1.0)


def progress_html(fraction: float | None, text: str, eta: float | None = None, preview: str | None = None,
                  id_task: str | None = None) -> str:
    """The bar (percent and ETA) and the live preview shown above the gallery while a job runs; the task's id is
    there for the page to remember (🌀 takes the job back after a reload)."""
    parts = []
    if fraction is not None and opts.show_progressbar:
        percent = int(fraction * 100)
        eta_text = f" ETA: {format_eta(eta)}" if eta is not None else ""
        parts.append(f"<div class='progressDiv'><div class='progress' style='width:{percent}%'>"
                     f"<span class='progress-label'>{percent}%{eta_text}</span></div></div>")
    parts.append(f"<div class='progress-text'>{html.escape(text)}</div>")
    if preview:
        parts.append(f"<div class='livePreview'><img src='{preview}' alt='Live preview'></div>")
    task = f" data-id-task='{html.escape(id_task, quote=True)}'" if id_task else ""
    return f"<div class='progress-panel-inner'{task}>{''.join(parts)}</div>"


def request_text() -> str:
    """What the user asked of the running job, shown until it takes effect (A1111's "Interrupting...")."""
    if state.interrupted:
        return " - Interrupting..."
    if state.stopping_generation:
        return " - Stopping after this image..."
    if state.skipped:
        return " - Skipping..."
    return ""


class JobWatcher:
    """Reads `state` while a job runs: percent, ETA and new live previews for the page, and a console tqdm bar."""

    def __init__(self, started: float, id_task: str | None = None):
        self.started = started
        self.id_task = id_task
        self.last_latent = None
        self.preview = None
        self.bar = None

    def job_started(self) -> bool:
        if self.id_task is not None and progress.current_task != self.id_task:
            return False
        return state.time_start is not None and state.time_start >= self.started and bool(state.job)

    def poll(self, owner: str | None = None):
        """The progress HTML; gr.skip() while the job waits behind another of the same owner, whose progress shows."""
        if not self.job_started():
            running = progress.current_task
            if self.id_task is not None and self.id_task in progress.pending_tasks and running is not None:
                if progress.owners.get(running) == owner:
                    return gr.skip()
                place = progress.task_progress(self.id_task, live_preview=False)["textinfo"]
                return progress_html(None, f"{place}: waiting for the running job to finish...", id_task=self.id_task)
            # the lock held by this job's own thread is no reason to wait: only a job ahead of it in the queue is
            busy = call_queue.queue_lock.waiting() > 0
            return progress_html(None, "Waiting for the running job to finish..." if busy else "Preparing...",
                                 id_task=self.id_task)
        job_count, job_no = state.job_count, state.job_no
        steps, step = state.sampling_steps, state.sampling_step
        if job_count <= 0 or steps <= 0:
            return progress_html(0.0, "Loading model and preparing...", id_task=self.id_task)
        fraction = progress_fraction(job_no, job_count, step, steps)
        elapsed = time.time() - state.time_start
        eta = elapsed / fraction - elapsed if fraction > 0 else None
        self._update_preview()
        self._update_console(job_no * steps + step, job_count * steps)
        image_text = f"Image {min(job_no + 1, job_count)}/{job_count}, " if job_count > 1 else ""
        return progress_html(fraction, f"{image_text}step {step}/{steps}{request_text()}", eta, self.preview,
                             id_task=self.id_task)

    def _update_preview(self) -> None:
        latent = state.current_latent
        if not opts.live_previews_enable or latent is None or latent is self.last_latent:
            return
        self.last_latent = latent
        state.do_set_current_image()
        if state.current_image is not None:
            self.preview = data_uri(state.current_image, opts.live_previews_image_format)

    def _update_console(self, done: int, total: int) -> None:
        if cmd_opts.disable_console_progressbars:
            return
        if self.bar is None:
            self.bar = tqdm(total=total, desc="Total progress", unit="it", dynamic_ncols=True, file=sys.stderr)
        self.bar.total = total
        self.bar.n = min(done, total)
        self.bar.refresh()

    def close(self) -> None:
        """The console bar ends at the steps done (a job quicker than one poll still gets its line)."""
        job_ran = state.time_start is not None and state.time_start >= self.started
        if job_ran and state.sampling_steps > 0:
            done = state.job_no * state.sampling_steps + state.sampling_step
            self._update_console(done, self.bar.total if self.bar is not None else done)
        if self.bar is not None:
            self.bar.close()


def refresh_period() -> float:
    return max(int(opts.live_preview_refresh_period), 100) / 1000


def stream_job(func, args, n_outputs: int, id_task: str | None = None, owner: str | None = None):
    """Run `func(*args)` (a wrap_gradio_gpu_call function with `n_outputs` outputs) in a worker thread; with an
    `id_task`, as that task of `owner`'s (func gets the id first, as A1111's page sends it), so it waits its turn in
    the queue, shows its place there and can be cancelled.

    Yields, for the outputs [func's outputs..., progress HTML]: progress while the job runs (func's outputs untouched),
    then func's outputs and an empty progress. While it waits behind another job of the same owner, that job's
    progress stays shown.
    """
    watcher = JobWatcher(time.time(), id_task)
    skip = [gr.skip()] * n_outputs
    if id_task is not None:
        progress.add_task_to_queue(id_task, owner)
        args = (id_task, *args)
    future = call_queue.run_in_background(func, *args)
    try:
        yield (*skip, watcher.poll(owner))
        while not future.done():
            try:
                future.exception(timeout=refresh_period())
            except TimeoutError:
                yield (*skip, watcher.poll(owner))
        result = future.result()
    finally:
        watcher.close()
    message = call_queue.error_in(result[-1]) if result else None
    if message is not None:
        gr.Warning(message)  # a toast, besides the message under the gallery
    yield (*result, "")


def restore_job(id_task: str, n_outputs: int):
    """🌀 after a page reload (A1111's restore_progress): follow task `id_task` of an earlier page while it waits
    and runs, then yield its outputs, kept by the queue, as its own Generate would have. Yields, like stream_job,
    for [the job's outputs..., progress HTML]."""
    skip = [gr.skip()] * n_outputs
    if not call_queue.is_task_id(id_task):
        yield (*skip, "")
        return
    watcher = JobWatcher(0.0, id_task)  # the job began before this page did
    try:
        yield (*skip, watcher.poll())  # its id first: the page forgets it once the outputs come
        while progress.is_waiting_or_running(id_task):
            time.sleep(refresh_period())
            yield (*skip, watcher.poll())
    finally:
        watcher.close()
    result = progress.recorded_result(id_task)
    if result is None:
        message = f"Couldn't restore progress for {id_task}: results either have been discarded or never were obtained"
        yield (*skip[:-1], call_queue.error_html(message), "")
        return
    yield (*result, "")
