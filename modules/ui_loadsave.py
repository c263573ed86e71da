"""UI defaults in ui-config.json (A1111's modules.ui_loadsave): keys `<tab>/<label>/<field>`, applied when the UI is built.

Users edit the file to change a control's default value, limits or visibility; the Defaults page of Settings writes
the current values of the registered controls into it. A value that is not one of a control's choices is ignored.
"""
from __future__ import annotations

import html
import json
import logging
import os

import gradio as gr

from modules.ui_components import InputAccordion

log = logging.getLogger(__name__)

FIELDS = ("value", "visible", "minimum", "maximum", "step")
INPUT_TYPES = (gr.Textbox, gr.Number, gr.Slider, gr.Checkbox, gr.CheckboxGroup, gr.Radio, gr.Dropdown, gr.ColorPicker)


def _choice_values(component) -> list | None:
    choices = getattr(component, "choices", None)
    if choices is None:
        return None
    return [c[1] if isinstance(c, (tuple, list)) else c for c in choices]


def _is_valid_value(component, value) -> bool:
    choices = _choice_values(component)
    if choices is None:
        return True
    if isinstance(value, list):
        several = bool(getattr(component, "multiselect", False)) or isinstance(component, gr.CheckboxGroup)
        return several and all(v in choices for v in value)
    return value in choices


class UiLoadsave:
    def __init__(self, filename: str):
        self.filename = filename
        self.ui_settings: dict = {}
        self.component_mapping: dict[str, gr.components.Component] = {}
        self.error_loading = False
        self.ui_settings = self.read_from_file()
        self.ui_defaults_view = None
        self.ui_defaults_apply = None
        self.ui_defaults_review = None

    def read_from_file(self) -> dict:
        """The saved settings; a missing file is empty, an unreadable one too (and is then never overwritten by defaults)."""
        try:
            with open(self.filename, encoding="utf8") as file:
                data = json.load(file)
            if not isinstance(data, dict):
                raise ValueError(f"expected a JSON object, found {type(data).__name__}")
            return data
        except FileNotFoundError:
            return {}
        except (OSError, ValueError) as e:
            self.error_loading = True
            log.error("Could not read UI defaults from %s (%s); the file is left as it is and built-in defaults are used",
                      self.filename, e)
            return {}

    def write_to_file(self, current_ui_settings: dict) -> None:
        """Write through a temporary file in the same folder, so a failed write never truncates the old file."""
        folder = os.path.dirname(os.path.abspath(self.filename))
        os.makedirs(folder, exist_ok=True)
        temp_path = f"{self.filename}.{os.getpid()}.tmp"
        try:
            with open(temp_path, "w", encoding="utf8") as file:
                json.dump(current_ui_settings, file, indent=4, ensure_ascii=False)
            os.replace(temp_path, self.filename)
        except BaseException:
            if os.path.exists(temp_path):
                os.unlink(temp_path)
            raise

    def add_component(self, path: str, component) -> None:
        """Register `component` under `path` (`txt2img/Sampling steps`): apply saved fields, remember defaults."""
        if path in self.component_mapping:
            log.debug("UI defaults: %s is already registered; the later control keeps its built-in defaults", path)
            return
        for field in FIELDS:
            if not hasattr(component, field):
                continue
            key = f"{path}/{field}"
            saved = self.ui_settings.get(key)
            if saved is None:
                self.ui_settings[key] = getattr(component, field)
            elif field != "value" or _is_valid_value(component, saved):
                setattr(component, field, saved)
                if field == "value" and isinstance(component, InputAccordion):
                    component.accordion.open = bool(saved)
            else:
                log.warning("UI defaults: ignored %s = %r, not one of the control's choices", key, saved)
        self.component_mapping[path] = component

    def add_block(self, block, path: str, skip=()) -> None:
        """Register every labelled input inside `block` (recursively), except the components in `skip`."""
        for child in getattr(block, "children", []):
            if child in skip:
                continue
            if isinstance(child, INPUT_TYPES) and getattr(child, "label", None):
                self.add_component(f"{path}/{child.label}", child)
            self.add_block(child, path, skip)

    def dump_defaults(self) -> None:
        """Write the file with every control's defaults when there is none yet, so users can see what to edit."""
        if not self.error_loading and not os.path.exists(self.filename):
            self.write_to_file(self.ui_settings)

    def iter_changes(self, current_ui_settings: dict, values) -> list[tuple[str, object, object]]:
        """(key, saved value, current value) for every registered control whose value in the page differs."""
        changes = []
        for (path, _component), new_value in zip(self.component_mapping.items(), values):
            key = f"{path}/value"
            old_value = current_ui_settings.get(key)
            if new_value == old_value or (old_value is None and new_value in ("", [])):
                continue
            changes.append((key, old_value, new_value))
        return changes

    def ui_view(self, *values) -> str:
        changes = self.iter_changes(self.read_from_file(), values)
        if not changes:
            return "<p>No changes</p>"
        rows = "".join(f"<tr><td>{html.escape(key)}</td><td>{html.escape(repr(old))}</td><td>{html.escape(repr(new))}</td></tr>"
                       for key, old, new in changes)
        return f"<table id='ui_defaults_changes'><thead><tr><th>Path</th><th>Old value</th><th>New value</th></tr></thead><tbody>{rows}</tbody></table>"

    def ui_apply(self, *values) -> str:
        current = self.read_from_file()
        changes = self.iter_changes(current, values)
        if not changes:
            return "<p>No changes</p>"
        for key, _, new_value in changes:
            current[key] = new_value
        self.write_to_file(current)
        return f"<p>Wrote {len(changes)} change{'s' if len(changes) != 1 else ''} to {html.escape(self.filename)}; " \
               f"they apply at the next start or after Reload UI.</p>"

    def create_ui(self) -> None:
        """The Defaults page of Settings: view the changes against ui-config.json, and write them."""
        gr.HTML("<p>These buttons compare the current values of the txt2img controls with the saved UI defaults "
                f"(<code>{html.escape(self.filename)}</code>) and save them as the new defaults.</p>")
        with gr.Row():
            self.ui_defaults_view = gr.Button(value="View changes", elem_id="ui_defaults_view", variant="secondary")
            self.ui_defaults_apply = gr.Button(value="Apply", elem_id="ui_defaults_apply", variant="primary")
        self.ui_defaults_review = gr.HTML("", elem_id="ui_defaults_review")

    def setup_ui(self) -> None:
        inputs = list(self.component_mapping.values())
        self.ui_defaults_view.click(fn=self.ui_view, inputs=inputs, outputs=[self.ui_defaults_review], show_progress="hidden")
        self.ui_defaults_apply.click(fn=self.ui_apply, inputs=inputs, outputs=[self.ui_defaults_review], show_progress="hidden")
