"""Extras-tab scripts: the runner orders them, slices the flat argument list by their controls, runs the first pass
before any process(), and logs a failing script while the others run."""
from __future__ import annotations

import logging
from types import SimpleNamespace

import gradio as gr
from PIL import Image

from modules import scripts_postprocessing as spp, ui_scripts


class Tint(spp.ScriptPostprocessing):
    name = "Tint"
    order = 20

    def ui(self):
        return {"red": gr.Slider(0, 255, value=10, label="Red"), "label": gr.Textbox(value="tinted", label="Label")}

    def process_firstpass(self, pp, red, label):
        pp.shared.target_width = 16

    def process(self, pp, red, label):
        pp.image = Image.new("RGB", (pp.shared.target_width, 8), (int(red), 0, 0))
        pp.info["Tint"] = label
        pp.nametags.append(label)


class Broken(spp.ScriptPostprocessing):
    name = "Broken"
    order = 10

    def ui(self):
        return {}

    def process(self, pp):
        raise RuntimeError("broken postprocessing")


def runner() -> spp.ScriptPostprocessingRunner:
    r = spp.ScriptPostprocessingRunner()
    r.initialize_scripts([SimpleNamespace(script_class=Tint, path="tint.py"), SimpleNamespace(script_class=Broken, path="broken.py")])
    with gr.Blocks():
        inputs = ui_scripts.setup_postprocessing_ui(r)
    assert [c.label for c in inputs] == ["Red", "Label"]
    return r


def test_runner_runs_scripts_in_order_with_their_own_arguments(caplog):
    r = runner()
    assert [s.name for s in r.scripts_in_preferred_order()] == ["Broken", "Tint"]
    pp = spp.PostprocessedImage(Image.new("RGB", (4, 4)))
    with caplog.at_level(logging.ERROR, logger="modules.scripts_postprocessing"):
        r.run(pp, [200, "warm"])
    assert pp.image.size == (16, 8) and pp.image.getpixel((0, 0)) == (200, 0, 0)
    assert pp.info == {"Tint": "warm"} and pp.get_suffix() == "-warm"
    assert "Error running process of postprocessing script broken.py" in caplog.text


def test_args_from_the_api_form_keep_defaults_for_what_is_not_given():
    r = runner()
    assert r.create_args_for_run({"Tint": {"label": "cool"}}) == [10, "cool"]


def test_copies_keep_info_and_numbered_suffixes():
    pp = spp.PostprocessedImage(Image.new("RGB", (2, 2)))
    pp.info["a"] = 1
    copy = pp.create_copy(Image.new("RGB", (3, 3)), nametags=["x"], disable_processing=True)
    assert copy.info == {"a": 1} and copy.info is not pp.info and copy.shared is pp.shared and copy.disable_processing
    used = {}
    assert [copy.get_suffix(used), copy.get_suffix(used), pp.get_suffix(used)] == ["-x", "-x-1", ""]
