"""The scripts' controls in the page (the UI face of modules.scripts and modules.scripts_postprocessing): the tabs'
script areas, the always-on scripts' sections, the Script dropdown, the Extras scripts' rows, and the hidden page that
learns the arguments of a script that declares no args_spec. The runners' A1111 UI methods delegate here."""
from __future__ import annotations

import logging
import sys

import gradio as gr

from modules import scripts
from modules.scripts_postprocessing import ScriptPostprocessing, ScriptPostprocessingRunner, script_label

log = logging.getLogger(__name__)


def setup_ui_for_section(runner: scripts.ScriptRunner, section: str) -> None:
    """Build, where the tab is being built, the controls of the always-on scripts whose `section` is this one (A1111
    calls the tab's places sections: "sampler", "dimensions", "accordions", ...), by sorting_priority."""
    runner.placed_sections.add(section)
    for script in sorted((s for s in runner.alwayson_scripts if s.section == section), key=lambda s: s.sorting_priority):
        create_script_ui_in_group(runner, script, visible=True)


def setup_ui(runner: scripts.ScriptRunner) -> list:
    """Build the controls of the always-on scripts not placed in a section yet, the Script dropdown (elem_id
    script_list) and each selectable script's controls, shown only while it is chosen. Returns runner.inputs (with the
    controls already placed in sections), whose values become p.script_args."""
    for script in runner.unplaced_alwayson_scripts():
        create_script_ui_in_group(runner, script, visible=True)
    dropdown = gr.Dropdown(label="Script", elem_id="script_list", choices=["None", *runner.titles], value="None",
                           type="index")
    runner.inputs[0] = dropdown
    for script in runner.selectable_scripts:
        create_script_ui_in_group(runner, script, visible=False)

    def select_script(index):
        chosen = runner.selectable_scripts[index - 1] if index else None
        return [gr.update(visible=script is chosen) for script in runner.selectable_scripts]

    dropdown.change(fn=select_script, inputs=[dropdown], outputs=[s.group for s in runner.selectable_scripts],
                    show_progress="hidden", queue=False)
    runner.infotext_fields.append((dropdown, "Script"))
    runner.ui_created = True
    return runner.inputs


def create_script_ui_in_group(runner: scripts.ScriptRunner, script: scripts.Script, visible: bool) -> None:
    if not script.create_group:
        create_script_ui(runner, script)
        return
    with gr.Group(visible=visible) as group:
        create_script_ui(runner, script)
    script.group = group


def create_script_ui(runner: scripts.ScriptRunner, script: scripts.Script) -> None:
    """script.ui()'s components join runner.inputs; script.args_from/args_to mark them; a failing ui() gives none."""
    controls = scripts.wrap_call(script.ui, script.filename, "ui", script.is_img2img)
    runner.place_controls(script, controls)
    if not controls:
        return
    runner.infotext_fields += script.infotext_fields or []
    runner.paste_field_names += script.paste_field_names or []
    runner.inputs += controls


def hidden_script_controls(script: scripts.Script) -> list | None:
    """A script's ui() built in a page of its own that is never shown (as A1111's API does without a page): how the
    API learns the arguments of a script that declares no args_spec."""
    log.debug("Building the controls of %s in a hidden page to learn its arguments", script.filename)
    with gr.Blocks(analytics_enabled=False):
        return scripts.wrap_call(script.ui, script.filename, "ui", script.is_img2img)


def setup_postprocessing_ui(runner: ScriptPostprocessingRunner) -> list:
    """Build every Extras script's controls, each script in a row of its own (script.group); returns the components
    whose values run() receives, in order. A script whose ui() fails is logged and gets no controls (it does not run)."""
    inputs = []
    for script in runner.scripts_in_preferred_order():
        with gr.Row() as script.group:
            script.controls = postprocessing_controls(script)
        script.args_from = len(inputs)
        inputs += list((script.controls or {}).values())
        script.args_to = len(inputs)
    runner.ui_created = True
    return inputs


def postprocessing_controls(script: ScriptPostprocessing) -> dict | None:
    try:
        controls = script.ui() or {}
        if not isinstance(controls, dict):
            raise TypeError(f"ui() must return a dict of {{argument name: component}}, not {type(controls).__name__}")
        return controls
    except Exception:
        log.exception("Error creating the UI of postprocessing script %s", script_label(script))
        return None


def ensure_postprocessing_ui(runner: ScriptPostprocessingRunner) -> None:
    """Without the page (--nowebui) the Extras scripts' controls are built in a page of their own, as A1111 does, so
    that every script has its slots in the argument list."""
    with gr.Blocks(analytics_enabled=False):
        setup_postprocessing_ui(runner)


scripts.ui_builder = sys.modules[__name__]  # the runners' UI methods and the hidden-page fallbacks come here
