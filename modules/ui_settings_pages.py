"""Settings' pages that hold no settings (A1111's): Sysinfo (a JSON of the system for bug reports), Actions (checkpoint
load/unload, hashes, browser notifications) and Licenses."""
from __future__ import annotations

import html
import os
import tempfile

import gradio as gr

from modules import call_queue, sd_models, sysinfo, ui_common

PAGES = (("settings_section_sysinfo", "Sysinfo"), ("settings_section_actions", "Actions"),
         ("settings_section_licenses", "Licenses"))


def sysinfo_file() -> str:
    """The sysinfo JSON as a file to download (secrets redacted)."""
    folder = tempfile.mkdtemp(prefix="sysinfo-")
    path = os.path.join(folder, "sysinfo.json")
    with open(path, "w", encoding="utf8") as file:
        file.write(sysinfo.get())
    return path


def unload_checkpoints() -> str:
    with call_queue.queue_lock:
        sd_models.unload_model_weights()
    return ui_common.plaintext_to_html("Unloaded every checkpoint: the next generation loads its checkpoint again.")


def reload_checkpoint() -> str:
    with call_queue.queue_lock:
        model = sd_models.reload_model_weights()
    return ui_common.plaintext_to_html(f"Loaded {model.sd_checkpoint_info.title}")


def calculate_all_hashes() -> str:
    """Every checkpoint's sha256 (cached, A1111-compatible), so titles show their short hash."""
    infos = list(sd_models.checkpoints_list.values())
    for info in infos:
        info.calculate_shorthash()
    sd_models.list_models()
    return ui_common.plaintext_to_html(f"Hashes calculated for {len(infos)} checkpoint(s).")


def licenses_html() -> str:
    rows = "".join(f"<tr><td>{html.escape(name)}</td><td>{html.escape(text)}</td></tr>" for name, text in sysinfo.licenses())
    return ("<div class='licenses'><h3>Installed packages</h3><p>As each package's metadata declares its license.</p>"
            f"<table><tr><th>Package</th><th>License</th></tr>{rows}</table></div>")


def create_ui() -> None:
    """The three pages, at the end of the Settings tab's pages."""
    with gr.Column(elem_id="settings_section_sysinfo", elem_classes=["settings-section"]):
        gr.HTML("<h2>Sysinfo</h2><p>The system, packages, extensions and settings as JSON, for bug reports; logins, "
                "keys and tokens are hidden.</p>", elem_classes=["settings-section-title"])
        download = gr.Button("Download system info", elem_id="settings_sysinfo_download")
        sysinfo_out = gr.File(label="System info", visible=False, interactive=False, elem_id="settings_sysinfo_file")
    with gr.Column(elem_id="settings_section_actions", elem_classes=["settings-section"]):
        gr.HTML("<h2>Actions</h2>", elem_classes=["settings-section-title"])
        with gr.Row():
            notifications = gr.Button("Request browser notifications", elem_id="request_notifications")
            unload = gr.Button("Unload SD checkpoint to RAM", elem_id="sett_unload_sd_model")
            reload = gr.Button("Load SD checkpoint to VRAM from RAM", elem_id="sett_reload_sd_model")
            hashes = gr.Button("Calculate hash for all checkpoint", elem_id="calculate_all_checkpoint_hash")
        result = gr.HTML(elem_id="settings_actions_result")
    with gr.Column(elem_id="settings_section_licenses", elem_classes=["settings-section"]):
        gr.HTML("<h2>Licenses</h2>", elem_classes=["settings-section-title"])
        gr.HTML(licenses_html, elem_id="licenses")

    download.click(fn=lambda: gr.File(value=sysinfo_file(), visible=True), outputs=[sysinfo_out], show_progress="hidden")
    notifications.click(fn=None, js="() => { if ('Notification' in window) Notification.requestPermission(); }",
                        show_progress="hidden")
    for button, action in ((unload, unload_checkpoints), (reload, reload_checkpoint), (hashes, calculate_all_hashes)):
        button.click(fn=call_queue.wrap_gradio_call(action), outputs=[result], show_progress="hidden")
