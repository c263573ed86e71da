"""Scripts' arguments without Gradio: the API serves the built-in scripts' defaults and /sdapi/v1/scripts and
script-info from their args_spec declarations with no page built, exactly as a hidden page of their controls gives them;
a third-party script that declares nothing gets its defaults from a hidden page, built only for it."""
from __future__ import annotations

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient

from modules import call_queue, extensions, paths_internal, scripts, ui_scripts
from modules.api import models
from modules.api.api import Api
from modules.shared_options import opts
from tests.integration.test_scripts_engine import write_extension

UNDECLARED = '''
import gradio as gr
from modules import scripts


class Undeclared(scripts.Script):
    def title(self):
        return "Undeclared"

    def show(self, is_img2img):
        return scripts.AlwaysVisible

    def ui(self, is_img2img):
        return [gr.Slider(minimum=1, maximum=9, step=1, value=3, label="Strength"),
                gr.Dropdown(["soft", "hard"], value="hard", type="index", label="Mode")]
'''


def load(tmp_path, files: dict[str, str] | None = None) -> TestClient:
    """The built-in scripts (and an extension with `files`) loaded afresh, and the API over them; no page."""
    paths_internal.configure(str(tmp_path), str(tmp_path / "models"))
    if files:
        write_extension(tmp_path, "testext", files)
    opts.set("disabled_extensions", [])
    opts.set("disable_all_extensions", "none")
    extensions.list_extensions()
    scripts.load_scripts()
    app = FastAPI()
    Api(app, call_queue.queue_lock)
    return TestClient(app)


@pytest.fixture()
def hidden_pages(monkeypatch):
    """Records every script whose controls are built in a hidden page."""
    built = []
    original = ui_scripts.hidden_script_controls
    monkeypatch.setattr(ui_scripts, "hidden_script_controls", lambda script: built.append(script.name) or original(script))
    yield built
    extensions.extensions.clear()
    scripts.load_scripts()  # later tests see the built-in scripts only


def answers(client: TestClient) -> tuple:
    return (client.get("/sdapi/v1/scripts").json(), client.get("/sdapi/v1/script-info").json(),
            scripts.scripts_txt2img.default_args(), scripts.scripts_img2img.default_args())


def test_builtin_scripts_are_served_from_declarations_as_the_hidden_page_gives_them(tmp_path, hidden_pages):
    client = load(tmp_path)
    declared = answers(client)
    assert hidden_pages == []
    assert not scripts.scripts_txt2img.ui_created and not scripts.scripts_img2img.ui_created
    builtins = ["controlnet", "prompt matrix", "prompts from file or textbox", "x/y/z plot"]
    assert declared[0] == {"txt2img": builtins, "img2img": sorted([*builtins, "soft inpainting"])}
    xyz = scripts.scripts_txt2img.find("x/y/z plot")
    assert declared[2][xyz.args_from:xyz.args_from + 3] == [1, None, []]  # X type "Seed" is handed as its index

    scripts.load_scripts()
    for runner, is_img2img in ((scripts.scripts_txt2img, False), (scripts.scripts_img2img, True)):
        runner.initialize_scripts(is_img2img)
        runner.prepare_ui()
        for script in [*runner.unplaced_alwayson_scripts(), *runner.selectable_scripts]:
            runner.place_controls(script, ui_scripts.hidden_script_controls(script))  # today's way: ui() in a page
        runner.args_placed = True

    assert answers(client) == declared


def test_a_request_starts_from_the_declared_defaults(tmp_path, hidden_pages):
    load(tmp_path)
    req = models.StableDiffusionTxt2ImgProcessingAPI(prompt="x", script_name="Prompt matrix", script_args=[True])
    runner = Api.script_runner(req)
    args = Api.script_args(req, runner)
    matrix = runner.find("prompt matrix")
    assert args[0] == runner.selectable_scripts.index(matrix) + 1
    assert args[matrix.args_from:matrix.args_to] == [True, False, "positive", "comma", 0]
    assert hidden_pages == [] and not runner.ui_created


def test_a_script_without_a_declaration_gets_its_defaults_from_a_hidden_page(tmp_path, hidden_pages):
    client = load(tmp_path, {"scripts/undeclared.py": UNDECLARED})
    info = {(i["name"], i["is_img2img"]): i for i in client.get("/sdapi/v1/script-info").json()}
    assert hidden_pages == ["undeclared", "undeclared"]  # that script alone, once per tab
    assert info[("undeclared", False)] == {"name": "undeclared", "is_alwayson": True, "is_img2img": False, "args": [
        {"label": "Strength", "value": 3, "minimum": 1, "maximum": 9, "step": 1, "choices": None},
        {"label": "Mode", "value": "hard", "minimum": None, "maximum": None, "step": None, "choices": ["soft", "hard"]}]}
    runner = scripts.scripts_txt2img
    script = runner.find("undeclared")
    assert runner.default_args()[script.args_from:script.args_to] == [3, 1]
    assert not runner.ui_created
