"""The web page: quicksettings row, the txt2img and Settings tabs, footer; login and the page's CSS and JavaScript."""
from __future__ import annotations

import html
import json
import os
import platform

import gradio as gr
import torch

from modules import paths_internal, processing, sd_models, ui_loadsave, ui_settings, ui_txt2img
from modules.shared_cmd_options import cmd_opts

CORE_SCRIPT = "ui.js"


def gradio_auth() -> list[tuple[str, str]] | None:
    """UI logins from --gradio-auth "user:pass,user2:pass2" and the lines of --gradio-auth-path."""
    entries = []
    if cmd_opts.gradio_auth:
        entries += cmd_opts.gradio_auth.split(",")
    if cmd_opts.gradio_auth_path:
        with open(cmd_opts.gradio_auth_path, encoding="utf8") as file:
            for line in file:
                entries += line.strip().split(",")
    logins = [tuple(entry.strip().split(":", 1)) for entry in entries if entry.strip()]
    bad = [login[0] for login in logins if len(login) != 2]
    if bad:
        raise ValueError(f"UI logins must be written user:password; got {', '.join(bad)}")
    return logins or None


def page_assets() -> dict:
    """style.css (and the user's user.css) and javascript/*.js, for gr.mount_gradio_app(css=..., head=...)."""
    css_files = [os.path.join(paths_internal.script_path, "style.css"), os.path.join(paths_internal.data_path, "user.css")]
    css = "\n".join(_read(path) for path in css_files if os.path.isfile(path))
    js_dir = os.path.join(paths_internal.script_path, "javascript")
    names = sorted(name for name in os.listdir(js_dir) if name.endswith(".js"))
    names.sort(key=lambda name: name != CORE_SCRIPT)  # the helpers the other scripts call come first
    scripts = [_read(os.path.join(js_dir, name)) for name in names]
    if cmd_opts.theme in ("light", "dark"):
        scripts.insert(0, f"window.atelierForcedTheme = {json.dumps(cmd_opts.theme)};")
    head = "".join(f"<script>\n{script}\n</script>" for script in scripts)
    return {"css": css, "head": head}


def _read(path: str) -> str:
    with open(path, encoding="utf8") as file:
        return file.read()


def versions_html() -> str:
    manager = sd_models.model_manager
    current = manager.current if manager is not None else None
    checkpoint = current.sd_checkpoint_info.shorthash if current is not None else None
    api = "<a href='/docs'>API</a> • " if cmd_opts.api else ""
    return (f"<div class='versions'>{api}version: {html.escape(processing.VERSION)} • python: {platform.python_version()} • "
            f"torch: {html.escape(torch.__version__)} • gradio: {html.escape(gr.__version__)} • "
            f"checkpoint: {html.escape(checkpoint or 'none')}</div>")


def create_ui() -> gr.Blocks:
    loadsave = ui_loadsave.UiLoadsave(cmd_opts.ui_config_file)
    settings = ui_settings.UiSettings()

    def extra_option(key):
        return ui_settings.create_setting_component(key, elem_id=f"txt2img_setting_{key}")

    with gr.Blocks(title="Atelier", analytics_enabled=False) as demo:
        settings.add_quicksettings()
        with gr.Tabs(elem_id="tabs"):
            with gr.Tab("txt2img", id="txt2img", elem_id="tab_txt2img"):
                txt2img = ui_txt2img.create_ui(loadsave, extra_option)
            with gr.Tab("Settings", id="settings", elem_id="tab_settings"):
                settings.create_ui(loadsave)
        footer = gr.HTML(versions_html(), elem_id="footer")
        settings.add_functionality()
        loadsave.setup_ui()
        _wire_checkpoint_views(demo, settings, txt2img, footer)
    loadsave.dump_defaults()
    return demo


def _wire_checkpoint_views(demo, settings, txt2img, footer) -> None:
    """Everything that shows the checkpoint list or the chosen checkpoint follows it: on page load, when the
    choice changes, and after the first-start download."""
    checkpoint = settings.quicksettings.get(ui_settings.CHECKPOINT_KEY)
    views = [txt2img.notice, txt2img.download_row, txt2img.refiner_checkpoint, footer]

    def refresh_views():
        return (*ui_txt2img.notice_updates(), gr.update(choices=ui_txt2img.refiner_choices()), versions_html())

    demo.load(fn=refresh_views, outputs=views, show_progress="hidden")
    txt2img.download_event.then(fn=refresh_views, outputs=views, show_progress="hidden")
    if checkpoint is not None:
        demo.load(fn=ui_settings.checkpoint_dropdown_update, outputs=[checkpoint], show_progress="hidden")
        txt2img.download_event.then(fn=ui_settings.checkpoint_dropdown_update, outputs=[checkpoint], show_progress="hidden")
        checkpoint.change(fn=refresh_views, outputs=views, show_progress="hidden")
