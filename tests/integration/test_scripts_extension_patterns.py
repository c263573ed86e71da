"""Patterns real extensions use, through the app webui builds (shared per module: building the page is slow-ish):
a script file that re-exports the Script of a package at the extension's root (sd-dynamic-prompts), a Script whose
__init__ registers its settings and tab once for both tabs' instances (sd-dynamic-prompts' counter), routes, a router,
a static mount and a middleware added in on_app_started (tagcomplete, infinite-image-browsing, prompt-all-in-one)
answering ahead of Gradio and behind --gradio-auth / --api-auth, before and after Reload UI."""
from __future__ import annotations

import base64
import shutil
import sys

import pytest
from fastapi.testclient import TestClient

from modules import extensions, gradio_compat, processing, script_callbacks, scripts
from modules.shared_cmd_options import cmd_opts
from modules.shared_options import opts
from tests.integration.engine_helpers import start_engine
from tests.integration.test_scripts_engine import write_extension

SD1 = "tiny_sd1.safetensors"

PACKAGE_SCRIPT = '''
import gradio as gr
from modules import script_callbacks, scripts, shared

from patterns_pkg.settings import add_settings

instances = 0
PROCESSED = []


def make_tab():
    with gr.Blocks(analytics_enabled=False) as blocks:
        gr.Textbox(label="Patterns text", elem_id="patterns_tab_text")
    return [(blocks, "Patterns", "patterns_tab")]


class Script(scripts.Script):
    def __init__(self):
        # as sd-dynamic-prompts: A1111 makes one instance per tab, so every other instance registers the callbacks
        global instances
        instances += 1
        if instances % 2 == 0:
            return
        script_callbacks.on_ui_settings(add_settings)
        script_callbacks.on_ui_tabs(make_tab)

    def title(self):
        return "Patterns"

    def show(self, is_img2img):
        return scripts.AlwaysVisible

    def ui(self, is_img2img):
        return [gr.Checkbox(False, label="Patterns enabled", elem_id=self.elem_id("enabled"))]

    def process(self, p, enabled):
        if enabled:
            PROCESSED.append((p.prompt, shared.opts.patterns_suffix))
'''

PACKAGE_SETTINGS = '''
from modules import shared


def add_settings():
    shared.opts.add_option("patterns_suffix",
                           shared.OptionInfo("!", "Patterns suffix", section=("patterns", "Patterns")))
'''

PACKAGE_POSTPROCESS = '''
from modules import scripts_postprocessing


class PatternsPost(scripts_postprocessing.ScriptPostprocessing):
    name = "Patterns post"
'''

REEXPORT = '''
from patterns_pkg.script import Script

__all__ = ["Script"]
'''

REEXPORT_POST = "from patterns_pkg.postprocess import PatternsPost\n"

ROUTES = '''
import os

from fastapi import APIRouter, FastAPI, Request
from fastapi.staticfiles import StaticFiles
from modules import script_callbacks


class TagResponses:
    """A plain ASGI middleware, added with app.add_middleware."""

    def __init__(self, app):
        self.app = app

    async def __call__(self, scope, receive, send):
        async def tagged(message):
            if message["type"] == "http.response.start":
                message["headers"] = [*message.get("headers", []), (b"x-patterns", b"1")]
            await send(message)

        await self.app(scope, receive, tagged if scope["type"] == "http" else send)


def add_routes(demo, app: FastAPI):
    @app.get("/patterns/v1/hello")
    async def hello():
        return {"hello": "world", "page": demo is not None}

    @app.post("/patterns/v1/echo")
    async def echo(request: Request):
        return {"echo": await request.json()}

    router = APIRouter(prefix="/patterns/v1/router")

    @router.get("/ping")
    def ping():
        return {"pong": True}

    app.include_router(router)
    app.mount("/patterns/static", StaticFiles(directory=os.path.join(os.path.dirname(__file__), "..", "static")))
    app.add_middleware(TagResponses)


script_callbacks.on_app_started(add_routes)
'''

PAGE_LOGIN = ("alice", "wonder")
API_LOGIN = ("bot", "token")


@pytest.fixture(scope="module")
def ext_data(tiny_models_dir, tmp_path_factory):
    data = tmp_path_factory.mktemp("data")
    start_engine(tiny_models_dir, data)
    opts.set("sd_model_checkpoint", SD1)
    shutil.rmtree(data / "extensions", ignore_errors=True)
    write_extension(data, "patterns", {
        "patterns_pkg/__init__.py": "", "patterns_pkg/script.py": PACKAGE_SCRIPT,
        "patterns_pkg/settings.py": PACKAGE_SETTINGS, "patterns_pkg/postprocess.py": PACKAGE_POSTPROCESS, "scripts/patterns.py": REEXPORT,
        "scripts/patterns_post.py": REEXPORT_POST, "scripts/routes.py": ROUTES, "static/hello.txt": "static hello"})
    gradio_compat.install()
    extensions.list_extensions()
    yield data
    extensions.extensions.clear()
    scripts.load_scripts()
    opts.data_labels.pop("patterns_suffix", None)
    for name in [name for name in sys.modules if name == "patterns_pkg" or name.startswith("patterns_pkg.")]:
        del sys.modules[name]


@pytest.fixture(scope="module")
def logins():
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(cmd_opts, "gradio_auth", ":".join(PAGE_LOGIN))
        patch.setattr(cmd_opts, "gradio_auth_path", None)
        patch.setattr(cmd_opts, "api_auth", ":".join(API_LOGIN))
        patch.setattr(cmd_opts, "api", False)
        patch.setattr(cmd_opts, "subpath", None)
        yield


@pytest.fixture(scope="module")
def served(ext_data, logins):
    """The app as `webui.serve` builds it, then again after Reload UI: [(app, demo) before, (app, demo) after]."""
    import webui
    from modules import shared

    webui.load_scripts()
    first = webui.create_app(with_ui=True), shared.demo
    webui.reload_scripts()
    second = webui.create_app(with_ui=True), shared.demo
    return [first, second]


def basic(login) -> dict:
    return {"Authorization": "Basic " + base64.b64encode(":".join(login).encode()).decode()}


def package_module():
    return sys.modules["patterns_pkg.script"]


def tab_ids(demo) -> list[str]:
    return [c["props"]["elem_id"] for c in demo.config["components"] if c["type"] == "tabitem"
            and (c["props"].get("elem_id") or "").startswith("tab_")]


def elem_ids(demo) -> set[str]:
    return {c["props"].get("elem_id") for c in demo.config["components"] if c.get("props", {}).get("elem_id")}


def test_a_script_reexported_from_the_extension_package_is_registered_once(served):
    [patterns] = [d for d in scripts.scripts_data if d.script_class.__module__ == "patterns_pkg.script"]
    assert patterns.path.endswith("scripts/patterns.py") and patterns.basedir.endswith("patterns")
    [post] = [d for d in scripts.postprocessing_scripts_data if d.script_class.__name__ == "PatternsPost"]
    assert post.path.endswith("scripts/patterns_post.py")
    assert [s.title() for s in scripts.scripts_txt2img.alwayson_scripts].count("Patterns") == 1
    assert "Patterns post" in [s.name for s in scripts.scripts_postproc.scripts]


def test_callbacks_registered_in_script_init_fire_once_per_ui_build(served):
    for _, demo in served:
        assert tab_ids(demo).count("tab_patterns_tab") == 1
        assert tab_ids(demo).index("tab_patterns_tab") == tab_ids(demo).index("tab_settings") - 1
        assert {"patterns_tab_text", "setting_patterns_suffix", "script_txt2img_patterns_enabled",
                "script_img2img_patterns_enabled"} <= elem_ids(demo)
    assert package_module().instances == 4  # txt2img and img2img, twice: the package module outlives Reload UI
    assert len(script_callbacks.callbacks("ui_tabs")) == 1 and opts.patterns_suffix == "!"


def test_the_reexported_script_runs_in_a_job(served):
    runner = scripts.scripts_txt2img
    script = runner.find("patterns")
    args = runner.default_args()
    args[script.args_from] = True
    p = processing.StableDiffusionProcessingTxt2Img(
        prompt="a red cube", steps=2, width=64, height=64, seed=1, sampler_name="Euler", do_not_save_samples=True,
        do_not_save_grid=True, scripts=runner, script_args=args)
    processing.process_images(p)
    assert package_module().PROCESSED[-1] == ("a red cube", "!")


@pytest.mark.parametrize("build", [0, 1], ids=["first build", "after Reload UI"])
def test_extension_routes_answer_ahead_of_gradio_for_page_users_and_api_clients(served, build):
    app, _ = served[build]
    client = TestClient(app)
    assert client.post("/login", data={"username": PAGE_LOGIN[0], "password": PAGE_LOGIN[1]}).status_code == 200
    robot = TestClient(app, headers=basic(API_LOGIN))
    for caller in (client, robot):
        response = caller.get("/patterns/v1/hello")
        assert response.status_code == 200 and response.json() == {"hello": "world", "page": True}
        assert response.headers["x-patterns"] == "1"
        assert caller.post("/patterns/v1/echo", json={"a": 1}).json() == {"echo": {"a": 1}}
        assert caller.get("/patterns/v1/router/ping").json() == {"pong": True}
        assert caller.get("/patterns/static/hello.txt").text == "static hello"


@pytest.mark.parametrize("build", [0, 1], ids=["first build", "after Reload UI"])
def test_extension_routes_refuse_anyone_else(served, build):
    app, _ = served[build]
    for headers in ({}, basic(("bot", "wrong")), basic(PAGE_LOGIN)):
        stranger = TestClient(app, headers=headers)
        for method, path in (("get", "/patterns/v1/hello"), ("post", "/patterns/v1/echo"),
                             ("get", "/patterns/v1/router/ping"), ("get", "/patterns/static/hello.txt")):
            assert getattr(stranger, method)(path).status_code == 401, (headers, path)
    assert TestClient(app).get("/internal/ping").status_code == 200  # the app's own routes are unchanged


def test_without_a_page_routes_follow_api_auth(served, monkeypatch):
    import webui

    api_only = TestClient(webui.create_app(with_ui=False))
    assert api_only.get("/patterns/v1/hello").status_code == 401
    assert api_only.get("/patterns/v1/hello", headers=basic(API_LOGIN)).json() == {"hello": "world", "page": False}
    monkeypatch.setattr(cmd_opts, "api_auth", None)
    assert TestClient(webui.create_app(with_ui=False)).get("/patterns/v1/router/ping").json() == {"pong": True}
