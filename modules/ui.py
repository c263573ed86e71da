"""The web page: quicksettings row, the tabs in A1111's order (txt2img, img2img, Extras, PNG Info, Checkpoint Merger,
Train, then our History, the extensions' tabs, Settings, Extensions) and the "Send to" buttons between them, footer;
login and the page's CSS and JavaScript."""
from __future__ import annotations

import html
import json
import logging
import os
import platform

import gradio as gr
import numpy as np
import torch
from PIL import Image

from modules import (
    call_queue,
    gradio_compat,
    image_history,
    images,
    infotext_utils,
    model_families,
    paths_internal,
    processing,
    script_callbacks,
    scripts,
    sd_models,
    ui_checkpoint_merger,
    ui_common,
    ui_extensions,
    ui_history,
    ui_img2img,
    ui_loadsave,
    ui_pnginfo,
    ui_postprocessing,
    ui_settings,
    ui_train,
    ui_txt2img,
)
from modules.shared_cmd_options import cmd_opts
from modules.shared_options import GRADIO_THEMES, opts, tab_names
from modules.ui_common import create_refresh_button, plaintext_to_html  # noqa: F401  (A1111's names here)
from modules.ui_components import ToolButton  # noqa: F401  (A1111's extensions import it from modules.ui)

log = logging.getLogger(__name__)
CORE_SCRIPT = "ui.js"
SEND_TARGETS = ("txt2img", "img2img", "inpaint", "extras")
# before the extensions' tabs
CORE_TABS = ("txt2img", "img2img", "Extras", "PNG Info", "Checkpoint Merger", "Train", "History")


def gr_show(visible: bool = True):
    """A1111's: the update that shows (or hides) a component, for `.change(fn=gr_show, ...)` wiring."""
    return gr.update(visible=visible)


def create_output_panel(tabname: str, outdir: str, toprow=None) -> ui_common.OutputPanel:
    """A1111's: a gallery with its info and buttons (fields gallery, generation_info, infotext, html_log...);
    toprow is accepted for A1111 callers."""
    return ui_common.create_output_panel(tabname, outdir)


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
    """style.css (and the user's user.css), javascript/*.js, the gradio_theme setting's theme and the History tab's
    thumbnail folder (which the page may show): gr.mount_gradio_app's css, head, theme and allowed_paths."""
    css_files = [os.path.join(paths_internal.script_path, "style.css"), os.path.join(paths_internal.data_path, "user.css")]
    css = "\n".join(_read(path) for path in css_files if os.path.isfile(path))
    js_dir = os.path.join(paths_internal.script_path, "javascript")
    names = sorted(name for name in os.listdir(js_dir) if name.endswith(".js"))
    names.sort(key=lambda name: name != CORE_SCRIPT)  # the helpers the other scripts call come first
    scripts = [_read(os.path.join(js_dir, name)) for name in names]
    if cmd_opts.theme in ("light", "dark"):
        scripts.insert(0, f"window.atelierForcedTheme = {json.dumps(cmd_opts.theme)};")
    head = "".join(f"<script>\n{script}\n</script>" for script in scripts)
    extra = ui_extensions.extension_page_assets()  # the extensions' after ours, so theirs win
    theme = getattr(gr.themes, opts.gradio_theme, None) if opts.gradio_theme in GRADIO_THEMES else None
    return {"css": "\n".join(filter(None, (css, extra["css"]))), "head": head + extra["head"],
            "theme": theme() if theme is not None else gr.themes.Default(),
            "allowed_paths": [image_history.cache_dir()]}


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
    gradio_compat.install()
    infotext_utils.registered_param_bindings.clear()  # extensions register theirs again while the page is built
    scripts.begin_ui_build()  # the scripts exist and the extensions' settings are added before any tab is built
    extension_tabs = script_callbacks.ui_tabs_callback()
    tab_names[:] = [*CORE_TABS, *(title for _, title, _ in extension_tabs), "Settings", "Extensions"]
    loadsave = ui_loadsave.UiLoadsave(cmd_opts.ui_config_file)
    settings = ui_settings.UiSettings()

    def extra_option(tabname):
        return lambda key: ui_settings.create_setting_component(key, elem_id=f"{tabname}_setting_{key}")

    with gr.Blocks(title="Atelier", analytics_enabled=False) as demo:
        settings.add_quicksettings()
        with gr.Tabs(elem_id="tabs") as tabs:
            with gr.Tab("txt2img", id="txt2img", elem_id="tab_txt2img"):
                txt2img = ui_txt2img.create_ui(loadsave, extra_option("txt2img"))
            with gr.Tab("img2img", id="img2img", elem_id="tab_img2img"):
                img2img = ui_img2img.create_ui(loadsave, extra_option("img2img"))
            with gr.Tab("Extras", id="extras", elem_id="tab_extras"):
                extras = ui_postprocessing.create_ui()
            with gr.Tab("PNG Info", id="pnginfo", elem_id="tab_pnginfo"):
                pnginfo = ui_pnginfo.create_ui()
            with gr.Tab("Checkpoint Merger", id="modelmerger", elem_id="tab_modelmerger"):
                merger = ui_checkpoint_merger.create_ui()
            with gr.Tab("Train", id="train", elem_id="tab_train"):
                ui_train.create_ui(ui_train.txt2img_preview_params(txt2img))
            with gr.Tab("History", id="history", elem_id="tab_history") as history_tab:
                history = ui_history.create_ui(history_tab)
            for blocks, title, elem_id in extension_tabs:
                with gr.Tab(title, id=elem_id, elem_id=f"tab_{elem_id}"):
                    blocks.render()
            with gr.Tab("Settings", id="settings", elem_id="tab_settings"):
                settings.create_ui(loadsave)
            with gr.Tab("Extensions", id="extensions", elem_id="tab_extensions"):
                ui_extensions.create_ui()
        footer = gr.HTML(versions_html(), elem_id="footer")
        notification = os.path.join(paths_internal.script_path, "notification.mp3")
        if opts.notification_audio and os.path.isfile(notification):  # A1111: played by javascript/queue.js
            gr.Audio(value=notification, interactive=False, elem_id="audio_notification", elem_classes=["atelier-hidden"])
        settings.add_functionality(demo)
        loadsave.setup_ui()
        pages = Pages(tabs, txt2img, img2img, extras, settings.quicksettings.get(ui_settings.CHECKPOINT_KEY))
        _wire_send_buttons(pages, pnginfo, history)
        _wire_param_bindings(pages)
        _wire_prompt_paste(pages)
        _wire_checkpoint_views(demo, settings, txt2img, img2img, merger, footer)
    loadsave.dump_defaults()
    return demo


class Pages:
    """What a "Send to" button reaches: the page's tabs, the two generation tabs, Extras and the checkpoint choice."""

    def __init__(self, tabs, txt2img, img2img, extras, checkpoint):
        self.tabs, self.txt2img, self.img2img, self.extras, self.checkpoint = tabs, txt2img, img2img, extras, checkpoint

    def target(self, name: str):
        return self.txt2img if name == "txt2img" else self.img2img

    def outputs(self, name: str) -> list:
        """For a send to `name`: [image, tab fields..., override settings, checkpoint, report, page tabs, mode tabs,
        mode]; extras takes only [image, page tabs]."""
        if name == "extras":
            return [self.extras.image, self.tabs]
        image = {"img2img": self.img2img.init_img, "inpaint": self.img2img.inpaint}.get(name, self.img2img.init_img)
        target = self.target(name)
        checkpoint = [self.checkpoint] if self.checkpoint is not None else []
        return [image, *target.paste.components(), *checkpoint, target.output.html_log, self.tabs, self.img2img.mode_tabs_block,
                self.img2img.mode]


SEND_MODES = {"img2img": ("img2img", ui_img2img.IMG2IMG), "inpaint": ("inpaint", ui_img2img.INPAINT)}


def gallery_params(params: dict, target: str) -> dict:
    """What "Send to" under a gallery carries over (A1111): prompts, steps, and seed and size as the settings say
    (never the size to inpaint, which keeps the image's)."""
    keys = {"Prompt", "Negative prompt", "Steps"}
    if opts.send_seed:
        keys.add("Seed")
    if opts.send_size and target != "inpaint":
        keys |= {"Size-1", "Size-2"}
    return {key: value for key, value in params.items() if key in keys}


def send_values(pages: Pages, name: str, image, params: dict, has_checkpoint: bool) -> list:
    """The values for Pages.outputs(name): the image in the target's input, the pasted fields, the tab switch."""
    if name == "extras":
        return [image if image is not None else gr.skip(), gr.Tabs(selected="extras")]
    pasted = paste_values(pages.target(name), params, has_checkpoint)
    if name == "txt2img":
        return [gr.skip(), *pasted, gr.Tabs(selected="txt2img"), gr.skip(), gr.skip()]
    mode_tab, mode = SEND_MODES[name]
    image_update = gr.skip() if image is None else (
        {"background": image, "layers": [], "composite": image} if name == "inpaint" else image)
    return [image_update, *pasted, gr.Tabs(selected="img2img"), gr.Tabs(selected=mode_tab), mode]


def paste_outputs(pages: Pages, target) -> list:
    """What pasting parameters into a generation tab sets: its fields, the checkpoint, the report under its gallery."""
    checkpoint = [pages.checkpoint] if pages.checkpoint is not None else []
    return [*target.paste.components(), *checkpoint, target.output.html_log]


def paste_values(target, params: dict, has_checkpoint: bool) -> list:
    """The values for paste_outputs: every field the parameters name (a checkpoint they name that is here is loaded)."""
    updates, checkpoint, report = ui_common.paste_updates(params, target.paste)
    checkpoint_update = []
    if has_checkpoint:
        checkpoint_update = [ui_settings.checkpoint_dropdown_update(_switch_checkpoint(checkpoint)) if checkpoint
                             else gr.skip()]
    return [*updates, *checkpoint_update, report]


def last_generation_text() -> str:
    """params.txt in the data dir: the last generation's infotext ('' when none, or when --hide-ui-dir-config or
    --no-prompt-history keep it private, as A1111)."""
    path = os.path.join(paths_internal.data_path, "params.txt")
    if cmd_opts.hide_ui_dir_config or cmd_opts.no_prompt_history or not os.path.isfile(path):
        return ""
    with open(path, encoding="utf8") as file:
        return file.read()


def prompt_paste_params(prompt: str) -> dict:
    """↙️: the prompt box read as an infotext, or the last generation's when the box is empty (A1111)."""
    text = prompt if (prompt or "").strip() else last_generation_text()
    if not text.strip():
        raise gr.Error("Nothing to paste: the prompt is empty and no image was generated yet")
    return infotext_utils.parse_generation_parameters(text)


def dropped_image_params(path: str | None) -> dict:
    """A PNG (or JPEG/WebP) dropped or pasted on the prompt: its infotext, parsed."""
    with Image.open(path) as image:
        text = images.read_info_from_image(image)[0]
    if not text:
        raise gr.Error(f"{os.path.basename(path)} holds no generation parameters")
    return infotext_utils.parse_generation_parameters(text)


def _wire_prompt_paste(pages: Pages) -> None:
    """The prompt row's ↙️ and an image dropped on the prompt fill every control of their tab (A1111's paste)."""
    has_checkpoint = pages.checkpoint is not None
    for target in (pages.txt2img, pages.img2img):
        outputs = paste_outputs(pages, target)
        toprow = target.toprow
        skips = [gr.skip()] * (len(outputs) - 1)  # on an error: the fields stay, the log says why
        toprow.paste.click(fn=call_queue.wrap_gradio_call(
            lambda prompt, target=target: paste_values(target, prompt_paste_params(prompt), has_checkpoint),
            extra_outputs=skips), inputs=[toprow.prompt], outputs=outputs, show_progress="hidden")

        def paste_image(path, target=target, skips=skips):
            if not path:
                return [*skips, gr.skip(), ""]
            *values, report = paste_values(target, dropped_image_params(path), has_checkpoint)
            return [*values, None, report]  # the file input empties, so the same file may be dropped again

        toprow.prompt_image.upload(fn=call_queue.wrap_gradio_call(paste_image, extra_outputs=[*skips, None]),
                                   inputs=[toprow.prompt_image], outputs=[*outputs[:-1], toprow.prompt_image, outputs[-1]],
                                   show_progress="hidden")


def _switch_checkpoint(title: str) -> str:
    """A pasted text names another checkpoint that is here: load it (one GPU job at a time) like the quicksetting."""
    return ui_settings.load_checkpoint(title)


def _wire_send_buttons(pages: Pages, pnginfo, history) -> None:
    has_checkpoint = pages.checkpoint is not None
    for source in (pages.txt2img, pages.img2img):
        output = source.output
        for name, button in output.send_buttons.items():
            def send(gallery, index, js_data, name=name):
                image = ui_common.selected_image(gallery, index)
                if image is None:
                    raise gr.Error("Generate an image first: Send to uses the image selected in the gallery")
                return send_values(pages, name, image, gallery_params(ui_common.parameters_of(js_data, index), name),
                                   has_checkpoint)

            button.click(fn=call_queue.wrap_gradio_call(send), inputs=[output.gallery, output.selected_index,
                                                                        output.generation_info],
                         outputs=pages.outputs(name), show_progress="hidden")
    for source in (pnginfo, history):  # an image file and its parsed infotext
        for name, button in source.send_buttons.items():
            def send_file(path, params, name=name):
                image = ui_common.gallery_image(path) if path and name in ("img2img", "inpaint", "extras") else None
                return send_values(pages, name, image, params or {}, has_checkpoint)

            button.click(fn=send_file, inputs=[source.image, source.parameters], outputs=pages.outputs(name),
                         show_progress="hidden")


def _as_image(value) -> Image.Image | None:
    """An image component's value, whatever its type= (PIL, numpy, file path), as a PIL image."""
    if value is None or isinstance(value, Image.Image):
        return value
    return Image.fromarray(value) if isinstance(value, np.ndarray) else ui_common.gallery_image(value)


def _wire_param_bindings(pages: Pages) -> None:
    """Extensions' registered paste buttons send their image and its parameters as "Send to" does."""
    has_checkpoint = pages.checkpoint is not None
    for binding in infotext_utils.registered_param_bindings:
        if binding.tabname not in SEND_TARGETS:
            log.warning("A paste button sends to tab %r, which is none of %s: not wired", binding.tabname, SEND_TARGETS)
            continue
        sources = [c for c in (binding.source_image_component, binding.source_text_component) if c is not None]

        def send(*values, binding=binding):
            values = list(values)
            image = _as_image(values.pop(0)) if binding.source_image_component is not None else None
            text = values.pop(0) if binding.source_text_component is not None else None
            if text is None and image is not None:
                text = images.read_info_from_image(image)[0]
            params = infotext_utils.parse_generation_parameters(text) if text else {}
            return send_values(pages, binding.tabname, image, params, has_checkpoint)

        binding.paste_button.click(fn=call_queue.wrap_gradio_call(send), inputs=sources,
                                   outputs=pages.outputs(binding.tabname), show_progress="hidden")


def _wire_checkpoint_views(demo, settings, txt2img, img2img, merger, footer) -> None:
    """Everything that shows the checkpoint list or the chosen checkpoint follows it: on page load, when the
    choice changes, after the first-start download and after a merge."""
    checkpoint = settings.quicksettings.get(ui_settings.CHECKPOINT_KEY)
    views = [txt2img.notice, txt2img.download_row, txt2img.common.refiner_checkpoint, img2img.common.refiner_checkpoint,
             footer]

    def refresh_views():
        refiners = gr.update(choices=ui_txt2img.refiner_choices())
        return (*ui_txt2img.notice_updates(), refiners, refiners, versions_html())

    demo.load(fn=refresh_views, outputs=views, show_progress="hidden")
    for event in (txt2img.download_event, merger.merge_event, merger.load_event):
        event.then(fn=refresh_views, outputs=views, show_progress="hidden")
        if checkpoint is not None:
            event.then(fn=ui_settings.checkpoint_dropdown_update, outputs=[checkpoint], show_progress="hidden")
    if checkpoint is not None:
        demo.load(fn=ui_settings.checkpoint_dropdown_update, outputs=[checkpoint], show_progress="hidden")
        checkpoint.change(fn=refresh_views, outputs=views, show_progress="hidden")
    cfg_sliders = [txt2img.common.cfg_scale, img2img.common.cfg_scale]
    for event in (demo.load, *((checkpoint.change,) if checkpoint is not None else ())):
        event(fn=cfg_scale_updates, inputs=cfg_sliders, outputs=cfg_sliders, show_progress="hidden")


def cfg_scale_updates(*values: float) -> list:
    """The CFG Scale sliders follow the checkpoint's family default (Flux.1: 1, as Forge's Flux preset; else 7) while
    they show a family default; a value the user chose stays."""
    title = ui_settings.current_checkpoint_title()
    info = sd_models.get_closet_checkpoint_match(title) if title else None
    family = model_families.family_of_file(info.filename) if info is not None else None
    target = model_families.default_cfg_scale(family)
    defaults = {model_families.DEFAULT_CFG_SCALE, model_families.default_cfg_scale(model_families.flux.FluxFamily())}
    return [gr.update(value=target) if value in defaults and value != target else gr.skip() for value in values]
