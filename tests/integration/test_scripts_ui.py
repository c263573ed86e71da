"""An extension's scripts and callbacks in the built page (no browser) and in the API: its tab, its setting, its
always-on controls, the Script dropdown, the component hooks; script_name / alwayson_scripts through /sdapi/v1; and
the Gradio 3 shims."""
from __future__ import annotations

import json
import shutil

import gradio as gr
import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient

from modules import call_queue, extensions, gradio_compat, script_callbacks, scripts, ui
from modules.api.api import Api
from modules.shared_options import opts
from tests.integration.engine_helpers import start_engine
from tests.integration.test_scripts_engine import RECORDER, SELECTABLE, write_extension

SD1 = "tiny_sd1.safetensors"
SMALL = {"prompt": "a red cube", "negative_prompt": "blurry", "steps": 2, "width": 64, "height": 64, "seed": 1234,
         "sampler_name": "Euler"}

PAGE = '''
import gradio as gr
from modules import script_callbacks, scripts, shared

SEEN = []


def make_tab():
    with gr.Blocks(analytics_enabled=False) as blocks:
        gr.Textbox(label="Extension text", elem_id="testext_text")
    return [(blocks, "Test Extension", "testext_tab")]


def add_settings():
    shared.opts.add_option("testext_strength", shared.OptionInfo(
        0.5, "Test extension strength", gr.Slider, {"minimum": 0, "maximum": 1, "step": 0.1},
        section=("testext", "Test Extension")))


script_callbacks.on_ui_tabs(make_tab)
script_callbacks.on_ui_settings(add_settings)
script_callbacks.on_after_component(lambda component, **kwargs: SEEN.append(("callback", kwargs.get("elem_id"))))


class Panel(scripts.Script):
    def __init__(self):
        self.on_after_component(lambda on: SEEN.append(("targeted", on.component.elem_id)), elem_id="txt2img_steps")

    def title(self):
        return "Test panel"

    def show(self, is_img2img):
        return scripts.AlwaysVisible

    def ui(self, is_img2img):
        with gr.Accordion("Test panel", open=False):
            enabled = gr.Checkbox(False, label="Test panel enabled", elem_id=self.elem_id("enabled"))
            mode = gr.Dropdown(["soft", "hard"], value="hard", label="Test panel mode", type="index")
        return [enabled, mode]

    def before_component(self, component, **kwargs):
        if kwargs.get("elem_id") == "txt2img_cfg_scale":
            SEEN.append(("before", self.tabname, kwargs.get("label")))
'''


@pytest.fixture(scope="module")
def page(tiny_models_dir, tmp_path_factory):
    data = tmp_path_factory.mktemp("data")
    start_engine(tiny_models_dir, data)
    opts.set("sd_model_checkpoint", SD1)
    shutil.rmtree(data / "extensions", ignore_errors=True)
    write_extension(data, "testext", {"scripts/page.py": PAGE, "scripts/recorder.py": RECORDER,
                                      "scripts/two.py": SELECTABLE})
    gradio_compat.install()
    extensions.list_extensions()
    scripts.load_scripts()
    script_callbacks.before_ui_callback()
    demo = ui.create_ui()
    module = next(d.module for d in scripts.scripts_data if d.path.endswith("page.py"))
    yield demo, module
    extensions.extensions.clear()
    scripts.load_scripts()
    opts.data_labels.pop("testext_strength", None)


def components(demo) -> dict:
    return {c["props"].get("elem_id"): c for c in demo.config["components"] if c.get("props", {}).get("elem_id")}


def test_extension_tab_comes_after_the_built_in_tabs_and_before_settings(page):
    demo, _ = page
    tabs = [c["props"]["elem_id"] for c in demo.config["components"] if c["type"] == "tabitem"
            and (c["props"].get("elem_id") or "").startswith("tab_")]
    assert tabs.index("tab_testext_tab") == tabs.index("tab_settings") - 1
    assert tabs.index("tab_testext_tab") > tabs.index("tab_modelmerger")
    assert "testext_text" in components(demo)


def test_extension_setting_appears_in_settings(page):
    demo, _ = page
    setting = components(demo)["setting_testext_strength"]
    assert setting["props"]["label"] == "Test extension strength" and setting["props"]["value"] == 0.5
    assert opts.testext_strength == 0.5


def test_script_dropdown_lists_selectable_scripts_and_always_on_controls_are_shown(page):
    demo, _ = page
    ids = components(demo)
    dropdown = ids["script_list"]
    assert dropdown["props"]["label"] == "Script"
    titles = [choice[0] for choice in dropdown["props"]["choices"]]
    assert titles[0] == "None" and "Two prompts" in titles and "Test panel" not in titles
    assert ids["script_txt2img_test_panel_enabled"]["props"]["label"] == "Test panel enabled"
    assert ids["script_img2img_test_panel_enabled"]["props"]["visible"] is True
    runner = scripts.scripts_txt2img
    two = runner.find("two prompts")
    # a selectable script's group waits hidden in the page until chosen (Gradio 3's visible=False)
    assert two.group.visible == "hidden" and runner.find("test panel").group.visible is True
    assert runner.inputs[0].elem_id == "script_list"
    assert runner.inputs[two.args_from:two.args_to] == two.controls


def test_component_hooks_fire_for_the_core_controls(page):
    _, module = page
    assert ("callback", "txt2img_prompt") in module.SEEN and ("callback", "img2img_denoising_strength") in module.SEEN
    assert ("targeted", "txt2img_steps") in module.SEEN
    assert ("targeted", "img2img_steps") not in module.SEEN
    assert ("before", "txt2img", "CFG Scale") in module.SEEN


@pytest.fixture(scope="module")
def api(page):
    app = FastAPI()
    Api(app, call_queue.queue_lock)
    return TestClient(app)


def test_api_lists_scripts_and_their_arguments(api):
    listed = api.get("/sdapi/v1/scripts").json()
    assert {"test panel", "recorder", "two prompts"} <= set(listed["txt2img"]) & set(listed["img2img"])
    info = {(i["name"], i["is_img2img"]): i for i in api.get("/sdapi/v1/script-info").json()}
    panel = info[("test panel", False)]
    assert panel["is_alwayson"] is True
    assert panel["args"] == [
        {"label": "Test panel enabled", "value": False, "minimum": None, "maximum": None, "step": None, "choices": None},
        {"label": "Test panel mode", "value": "hard", "minimum": None, "maximum": None, "step": None,
         "choices": ["soft", "hard"]}]
    assert info[("two prompts", True)]["is_alwayson"] is False


def test_api_runs_the_named_scripts(api):
    response = api.post("/sdapi/v1/txt2img", json={**SMALL, "alwayson_scripts": {"Recorder": {"args": [True, " via api"]}}})
    assert response.status_code == 200, response.text
    info = response.json()["info"]
    assert '"a red cube via api\\nNegative prompt: blurry' in info and "Recorder: on" in info
    response = api.post("/sdapi/v1/txt2img", json={**SMALL, "script_name": "two prompts", "script_args": ["a green cone"]})
    assert response.status_code == 200, response.text
    body = response.json()
    assert len(body["images"]) == 2
    infotexts = json.loads(body["info"])["infotexts"]
    assert [text.splitlines()[0] for text in infotexts] == ["a red cube", "a green cone"]


@pytest.mark.parametrize(("body", "detail"), [
    ({"script_name": "no such script"}, "Script not found: no such script. Available scripts: "),
    ({"script_name": "recorder"}, "Script not found: recorder. Available scripts: "),
    ({"alwayson_scripts": {"ADetailer": {"args": []}}}, "Always-on script not found: ADetailer. Available always-on scripts: "),
    ({"alwayson_scripts": {"Two prompts": {"args": []}}}, "Cannot have a selectable script in the always on scripts params"),
])
def test_api_refuses_unknown_scripts_with_422(api, body, detail):
    response = api.post("/sdapi/v1/txt2img", json={**SMALL, **body})
    assert response.status_code == 422
    assert response.json()["detail"].startswith(detail)
    if "Available" in detail:
        assert ("two prompts" in response.json()["detail"]) == ("script_name" in body)


def test_gradio3_shims_work_in_a_tiny_page():
    gradio_compat.install()
    with gr.Blocks() as demo:
        with gr.Box() as box:
            button = gr.Button("Go").style(full_width=True)
            text = gr.Textbox(elem_id="shim_text").style(show_copy_button=True, container=False)
        button.click(fn=None, inputs=[text], outputs=[text], _js="(x) => x + '!'")
    assert isinstance(box, gr.Group) and isinstance(button, gr.Button) and text.elem_id == "shim_text"
    [dependency] = [d for d in demo.config["dependencies"] if d["targets"][0][0] == button._id]
    assert dependency["js"] == "(x) => x + '!'"
