"""The Settings tab and the quicksettings row (A1111's modules.ui_settings): one control per option in `opts`.

Apply settings saves every changed value to config.json at once (atomically, through Options.save); a quicksetting
is saved as soon as it changes. Choosing a checkpoint loads it right away, so a bad file is reported at once.
Sections and the search box are switched in the browser (javascript/settings.js): every section is in the page.
"""
from __future__ import annotations

import html
import logging
import re
from dataclasses import dataclass, field

import gradio as gr

from modules import call_queue, script_callbacks, scripts, sd_models, ui_settings_pages
from modules.options import OptionHTML, OptionInfo, categories, options_section
from modules.shared_cmd_options import cmd_opts
from modules.shared_options import opts
from modules.shared_state import state
from modules.ui_components import FormRow, ToolButton

log = logging.getLogger(__name__)

refresh_symbol = "\U0001f504"  # 🔄
CHECKPOINT_KEY = "sd_model_checkpoint"


@dataclass
class Section:
    key: tuple  # (id, label) as the options declare it
    category: str
    keys: list[str] = field(default_factory=list)

    @property
    def label(self) -> str:
        return self.key[1]

    @property
    def elem_id(self) -> str:
        return "settings_section_" + re.sub(r"\W+", "_", self.label.lower()).strip("_")


def sections() -> list[Section]:
    """Visible sections in A1111's order: by category (registration order), then by section label."""
    found: dict[tuple, Section] = {}
    for key, info in opts.data_labels.items():
        if info.section is None or info.section[0] is None:
            continue
        if info.section not in found:
            category = categories.mapping.get(info.category_id)
            found[info.section] = Section(info.section, category.label if category else "Other")
        found[info.section].keys.append(key)
    order = {c.label: i for i, c in enumerate(categories.mapping.values())}
    return sorted(found.values(), key=lambda s: (order.get(s.category, len(order)), s.label.lower()))


PRIORITY_PREFIX = "prioritized_callbacks_"


def callback_order_options() -> dict[str, OptionInfo]:
    """Settings → Callbacks (A1111's keys): for each category that has callbacks now, `prioritized_callbacks_<category>`
    lists the callbacks to run first; the default order is shown under it. Script hooks are the categories
    `script_<hook>`, txt2img's scripts then img2img's."""
    found = {category: script_callbacks.ordered_callbacks(category, enable_user_sort=False)
             for category, _ in script_callbacks.enumerate_callbacks()}
    for method_name in scripts.ScriptRunner.callback_names:
        merged = {}
        for runner in (scripts.scripts_txt2img, scripts.scripts_img2img):
            for callback in runner.create_ordered_callbacks_list(method_name, enable_user_sort=False):
                merged.setdefault(callback.name, callback)
        found[f"script_{method_name}"] = list(merged.values())
    options: dict[str, OptionInfo] = {"callbacks_order_explanation": OptionHTML(
        "For categories below, callbacks added to dropdowns happen before others, in order listed.")}
    for category, listed in found.items():
        if not listed:
            continue
        names = [c.name for c in listed]
        options[PRIORITY_PREFIX + category] = OptionInfo(
            [], f"{category} callback priority", "Dropdown", {"choices": names, "multiselect": True},
        ).info(f"default order: {html.escape(', '.join(names))}")
    return options_section(("callbacks", "Callbacks", "system"), options)


def register_callback_order_options() -> None:
    """(Re)build the Callbacks section from the callbacks registered now: as late as possible, after every script
    registered its callbacks and the generation tabs' scripts exist."""
    for key in [k for k in opts.data_labels if k.startswith(PRIORITY_PREFIX)]:
        del opts.data_labels[key]
    opts.data_labels.update(callback_order_options())


def _component_args(info: OptionInfo) -> dict:
    args = info.component_args() if callable(info.component_args) else info.component_args
    return dict(args or {})


def _component_class(info: OptionInfo):
    if info.component is not None:
        return getattr(gr, info.component) if isinstance(info.component, str) else info.component
    default = info.default
    if isinstance(default, bool):
        return gr.Checkbox
    if isinstance(default, (int, float)):
        return gr.Number
    return gr.Textbox


def _plain(text: str) -> str:
    """An option's HTML comment as the plain text Gradio shows under a label."""
    return html.unescape(re.sub(r"<[^>]+>", "", text or "")).strip()


def coerce(key: str, value):
    """A value from the page in the type of the option's default (sliders and numbers give floats)."""
    default = opts.data_labels[key].default
    if isinstance(default, bool):
        return bool(value)
    if isinstance(default, int) and isinstance(value, float) and value.is_integer():
        return int(value)
    if isinstance(default, float) and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    if isinstance(default, str) and value is None:
        return ""
    return value


def create_setting_component(key: str, elem_id: str | None = None):
    """The control of option `key`, showing its current value; options with a refresh function get a 🔄 button."""
    info = opts.data_labels[key]
    component_class = _component_class(info)
    args = _component_args(info)
    elem_id = elem_id or f"setting_{key}"
    if component_class is gr.HTML:
        return gr.HTML(value=info.default, elem_id=elem_id, elem_classes=["settings-comment"])
    value = current_checkpoint_title() if key == CHECKPOINT_KEY else getattr(opts, key)
    kwargs = {"label": info.label, "value": value, "elem_id": elem_id, **args}
    comment = _plain(info.comment_before + " " + info.comment_after)
    if comment:
        kwargs.setdefault("info", comment)
    if component_class is gr.Number and isinstance(info.default, int) and not isinstance(info.default, bool):
        kwargs.setdefault("precision", 0)
    if info.refresh is None:
        return component_class(**kwargs)
    with FormRow(elem_id=f"{elem_id}_row"):
        component = component_class(**kwargs)
        refresh = ToolButton(refresh_symbol, elem_id=f"refresh_{key}")

    def refresh_choices():
        info.refresh()
        # a first checkpoint found by 🔄 becomes the chosen one, so the page stops saying there is none
        return checkpoint_dropdown_update() if key == CHECKPOINT_KEY else gr.update(**_component_args(info))

    refresh.click(fn=refresh_choices, outputs=[component], show_progress="hidden")
    return component


def load_checkpoint(title: str) -> str:
    """Make `title` the current checkpoint (loading it, one GPU job at a time) and save the choice; its new title."""
    info = sd_models.get_closet_checkpoint_match(title) if title else None
    if info is None:
        raise ValueError(f"Checkpoint not found: {title}. Available: {', '.join(sd_models.checkpoint_registry.titles()) or 'none'}")
    manager = sd_models.model_manager
    if manager is not None and not cmd_opts.ui_debug_mode:
        with call_queue.queue_lock:
            info = manager.get(info).sd_checkpoint_info
    opts.set(CHECKPOINT_KEY, info.title)
    return info.title


def current_checkpoint_title() -> str | None:
    """The checkpoint in use or about to be: the chosen one if it exists, else the first (what start-up loads)."""
    manager = sd_models.model_manager
    if manager is not None and manager.current is not None:
        return manager.current.sd_checkpoint_info.title
    info = sd_models.get_closet_checkpoint_match(opts.sd_model_checkpoint) if opts.sd_model_checkpoint else None
    titles = sd_models.checkpoint_registry.titles()
    return info.title if info is not None else (titles[0] if titles else None)


def checkpoint_dropdown_update(value=None):
    return gr.update(choices=sd_models.checkpoint_registry.titles(), value=value or current_checkpoint_title())


class UiSettings:
    def __init__(self):
        self.components: dict[str, gr.components.Component] = {}
        self.quicksettings: dict[str, gr.components.Component] = {}
        self.quicksettings_result: gr.HTML | None = None
        self.result: gr.HTML | None = None
        self.submit: gr.Button | None = None
        self.reload_ui: gr.Button | None = None
        self.search: gr.Textbox | None = None
        self.settings_json: gr.Textbox | None = None

    def quicksettings_keys(self) -> list[str]:
        return [key for key in opts.quicksettings_list if key in opts.data_labels]

    def add_quicksettings(self) -> None:
        """The row of chosen settings at the top of the page (`quicksettings_list`)."""
        with gr.Row(elem_id="quicksettings", elem_classes=["quicksettings"]):
            for key in self.quicksettings_keys():
                self.quicksettings[key] = create_setting_component(key)
            self.quicksettings_result = gr.HTML("", elem_id="quicksettings_result")

    def create_ui(self, loadsave) -> None:
        """The Settings tab: Apply / Reload UI, search, the section list on the left, every section's controls."""
        register_callback_order_options()
        with gr.Row(elem_id="settings_top"):
            self.submit = gr.Button(value="Apply settings", variant="primary", elem_id="settings_submit")
            self.reload_ui = gr.Button(value="Reload UI", variant="secondary", elem_id="settings_restart_gradio")
        self.result = gr.HTML(elem_id="settings_result")
        # A1111's hidden settings_json: the options as JSON for the page's `opts` (javascript/ui.js)
        self.settings_json = gr.Textbox(value="{}", visible=False, elem_id="settings_json")
        self.search = gr.Textbox(label="Search", show_label=False, placeholder="Search...", elem_id="settings_search",
                                 max_lines=1)
        page = sections()
        with gr.Row(elem_id="settings"):
            gr.HTML(self._nav_html(page), elem_id="settings_nav")
            with gr.Column(elem_id="settings_pages", scale=4):
                for section in page:
                    with gr.Column(elem_id=section.elem_id, elem_classes=["settings-section"]):
                        gr.HTML(f"<h2>{html.escape(section.label)}</h2>", elem_classes=["settings-section-title"])
                        for key in section.keys:
                            if key in self.quicksettings:
                                continue  # shown (and saved) at the top of the page
                            component = create_setting_component(key)
                            if not opts.data_labels[key].do_not_save:
                                self.components[key] = component
                with gr.Column(elem_id="settings_section_defaults", elem_classes=["settings-section"]):
                    gr.HTML("<h2>Defaults</h2>", elem_classes=["settings-section-title"])
                    loadsave.create_ui()
                ui_settings_pages.create_ui()

    @staticmethod
    def _nav_html(page: list[Section]) -> str:
        items, category = [], None
        for section in page:
            if section.category != category:
                category = section.category
                items.append(f"<div class='settings-category'>{html.escape(category)}</div>")
            items.append(f"<a href='#' data-section='{section.elem_id}'>{html.escape(section.label)}</a>")
        items.append("<div class='settings-category'>Other</div>"
                     "<a href='#' data-section='settings_section_defaults'>Defaults</a>"
                     + "".join(f"<a href='#' data-section='{elem_id}'>{label}</a>"
                               for elem_id, label in ui_settings_pages.PAGES)
                     +
                     "<a href='#' data-section='*' class='settings-show-all'>Show all pages</a>")
        return "<nav class='settings-nav'>" + "".join(items) + "</nav>"

    def run_settings(self, *values):
        """Apply settings: set every changed value, save config.json once; refused changes are named."""
        changed, refused, errors = [], [], []
        for key, value in zip(self.components, values):
            value = coerce(key, value)
            if value == getattr(opts, key):
                continue
            if key == CHECKPOINT_KEY:
                try:
                    load_checkpoint(value)
                    changed.append(key)
                except Exception as e:
                    log.exception("Could not load checkpoint %s", value)
                    errors.append(call_queue.error_message(e))
                continue
            (changed if opts.set(key, value) else refused).append(key)
        if changed:
            opts.save(cmd_opts.ui_settings_file)
        message = f"{len(changed)} setting{'s' if len(changed) != 1 else ''} changed" + (f": {', '.join(changed)}." if changed else ".")
        if refused:
            message += f" Not changed (frozen, restricted or of the wrong type; the console says why): {', '.join(refused)}."
        result = html.escape(message) + "".join(call_queue.error_html(e) for e in errors)
        return [*(gr.update(value=getattr(opts, key)) for key in self.components), result]

    def run_settings_single(self, value, key: str):
        """A quicksetting changed: apply and save it now (a refused value is put back in the control)."""
        value = coerce(key, value)
        if key == CHECKPOINT_KEY:
            return self._change_checkpoint(value)
        if value != getattr(opts, key) and opts.set(key, value):
            opts.save(cmd_opts.ui_settings_file)
        return gr.update(value=getattr(opts, key)), ""

    def _change_checkpoint(self, title):
        if not title or title == opts.sd_model_checkpoint:
            return gr.skip(), ""
        try:
            new_title = load_checkpoint(title)
            opts.save(cmd_opts.ui_settings_file)
        except Exception as e:
            log.exception("Could not change the checkpoint to %s", title)
            return checkpoint_dropdown_update(), call_queue.error_html(call_queue.error_message(e))
        return checkpoint_dropdown_update(new_title), ""

    def add_functionality(self, demo: gr.Blocks) -> None:
        changes = [self.submit.click(fn=call_queue.wrap_gradio_call(self.run_settings, extra_outputs=[gr.skip()] * len(self.components)),
                                     inputs=list(self.components.values()), outputs=[*self.components.values(), self.result],
                                     show_progress="hidden")]
        for key, component in self.quicksettings.items():
            if isinstance(component, gr.HTML):
                continue
            event = quicksetting_event(component)
            changes.append(event(fn=lambda value, k=key: self.run_settings_single(value, k), inputs=[component],
                                 outputs=[component, self.quicksettings_result], show_progress="minimal"))
        self.reload_ui.click(fn=request_reload_ui, js="atelierReloadUI", show_progress="hidden")
        # at page load and after every change the page's `opts` gets the options (never waiting behind a generation)
        send = {"fn": opts.dumpjson, "outputs": [self.settings_json], "show_progress": "hidden", "concurrency_limit": None}
        for sent in (demo.load(**send), *(event.then(**send) for event in changes)):
            sent.then(fn=None, inputs=[self.settings_json], js="atelierOptionsReceived", show_progress="hidden")


def quicksetting_event(component):
    """The event of a user's own change: a slider when released, a choice when picked (a dropdown's `input` also
    fires again after the server renamed the choice), anything else on input; never an update from the server."""
    if isinstance(component, gr.Slider):
        return component.release
    if isinstance(component, gr.Dropdown) and component.multiselect:
        return component.input  # `select` reports the picked choice, not the list now chosen
    if isinstance(component, (gr.Dropdown, gr.Radio)):
        return component.select
    return component.input


def request_reload_ui() -> None:
    """Rebuild the page from the current settings and ui-config.json; the serving loop does it (webui.py)."""
    state.request_restart()
