"""Error answers of the live server: NaN, Infinity and 1e400 are a 422 naming the field, every error answer is valid
JSON, and one keep-alive connection (as webuiapi and other clients reuse) keeps working after any error."""
from __future__ import annotations

import http.client
import json

import pytest

from tests.integration.test_api import Server

BOOM_SCRIPT = '''
from modules import script_callbacks


def add_routes(demo, app):
    def boom():
        raise RuntimeError("the extension's route failed")

    app.add_api_route("/boom", boom, methods=["GET"])


script_callbacks.on_app_started(add_routes)
'''

# (method, path, raw JSON body, status, the field the detail names)
NON_FINITE = [
    ("POST", "/sdapi/v1/txt2img", '{"prompt": "a", "cfg_scale": NaN}', ["body", "cfg_scale"]),
    ("POST", "/sdapi/v1/txt2img", '{"steps": Infinity}', ["body", "steps"]),
    ("POST", "/sdapi/v1/txt2img", '{"width": 1e400}', ["body", "width"]),
    ("POST", "/sdapi/v1/txt2img", '{"seed": -Infinity}', ["body", "seed"]),
    ("POST", "/sdapi/v1/txt2img", '{"override_settings": {"CLIP_stop_at_last_layers": NaN}}',
     ["body", "override_settings", "CLIP_stop_at_last_layers"]),
    ("POST", "/sdapi/v1/txt2img", '{"alwayson_scripts": {"x": {"args": [1, 2e999]}}}',
     ["body", "alwayson_scripts", "x", "args", 1]),
    ("POST", "/sdapi/v1/img2img", '{"init_images": ["x"], "denoising_strength": NaN}', ["body", "denoising_strength"]),
    ("POST", "/sdapi/v1/extra-single-image", '{"image": "x", "upscaling_resize": Infinity}', ["body", "upscaling_resize"]),
    ("POST", "/sdapi/v1/options", '{"jpeg_quality": NaN}', ["body", "jpeg_quality"]),
    ("POST", "/sdapi/v1/create/embedding", '{"name": "e", "num_vectors_per_token": 1e400}',
     ["body", "num_vectors_per_token"]),
]


@pytest.fixture(scope="module")
def server(tmp_path_factory, tiny_models_dir):
    data_dir = tmp_path_factory.mktemp("api-errors")
    script = data_dir / "extensions" / "boom" / "scripts" / "boom.py"
    script.parent.mkdir(parents=True)
    script.write_text(BOOM_SCRIPT, encoding="utf8")
    app = Server(data_dir, tiny_models_dir, "--nowebui", "--skip-load-model-at-start").start()
    yield app
    app.stop()


class Connection:
    """One http.client connection; `request` fails the test if the server closed it."""

    def __init__(self, server):
        self.conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=60)
        self.conn.connect()
        self.socket = self.conn.sock

    def request(self, method, path, body=None):
        headers = {"Content-Type": "application/json"} if body is not None else {}
        self.conn.request(method, path, body=body, headers=headers)
        response = self.conn.getresponse()
        data = response.read()
        assert self.conn.sock is self.socket, f"the server closed the connection after {method} {path}"
        assert response.getheader("Connection", "").lower() != "close"
        return response.status, json.loads(data)  # strict JSON: NaN would not parse back in other clients either


@pytest.mark.parametrize("method, path, body, field", NON_FINITE, ids=[str(i) for i in range(len(NON_FINITE))])
def test_non_finite_numbers_are_a_422_naming_the_field(server, method, path, body, field):
    conn = Connection(server)
    status, answer = conn.request(method, path, body)
    assert status == 422, answer
    [error] = answer["detail"]
    assert error["loc"] == field and error["msg"] == "Input should be a finite number"
    status, samplers = conn.request("GET", "/sdapi/v1/samplers")
    assert status == 200 and samplers[0]["name"] == "DPM++ 2M"


def test_one_connection_survives_every_kind_of_error(server):
    conn = Connection(server)
    status, answer = conn.request("GET", "/boom")
    assert status == 500 and answer["error"] == "RuntimeError" and answer["detail"] == "the extension's route failed"
    for method, path, body, expected in [
        ("GET", "/sdapi/v1/progress", None, 200),
        ("POST", "/sdapi/v1/txt2img", '{"steps": "many"}', 422),
        ("POST", "/sdapi/v1/txt2img", "{not json", 422),
        ("GET", "/boom", None, 500),
        ("GET", "/sdapi/v1/nothing-here", None, 404),
        ("POST", "/sdapi/v1/options", '{"no_such_option": 1}', 422),
        ("POST", "/sdapi/v1/txt2img", '{"cfg_scale": NaN}', 422),
        ("GET", "/sdapi/v1/samplers", None, 200),
    ]:
        status, answer = conn.request(method, path, body)
        assert status == expected, (method, path, answer)
