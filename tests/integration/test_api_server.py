"""Server flags against a live server: --api-auth on every route of /openapi.json (so a new route cannot be left open),
secrets masked in /cmd-flags, --cors-allow-origins(-regex) with preflight answers, --api-server-stop's routes."""
from __future__ import annotations

import json
import time

import pytest
import requests

from tests.integration.test_api import SD1, SMALL, start_server

LOGIN = ("alice", "s3cret")
PUBLIC = {("GET", "/internal/ping")}  # answers before anything is loaded: the start-up probe


@pytest.fixture(scope="module")
def server(tmp_path_factory, tiny_models_dir):
    app = start_server(tmp_path_factory, tiny_models_dir, "--api-auth", "alice:s3cret", "--gradio-auth", "carol:hidden",
                       "--cors-allow-origins", "http://example.com, http://localhost:3000",
                       "--cors-allow-origins-regex", r"https://.*\.example\.org", "--api-server-stop",
                       "--skip-load-model-at-start", auth=LOGIN)
    yield app
    app.stop()


def schema_routes(server) -> list[tuple[str, str]]:
    paths = server.ok("GET", "/openapi.json")["paths"]
    return sorted((method.upper(), path.replace("{", "").replace("}", "")) for path, item in paths.items() for method in item)


def test_every_route_of_the_schema_refuses_without_credentials(server):
    routes = schema_routes(server)
    assert {("POST", "/sdapi/v1/server-stop"), ("GET", "/sdapi/v1/sd-modules"), ("POST", "/sdapi/v1/txt2img")} <= set(routes)
    checked = 0
    for method, path in [*routes, ("GET", "/openapi.json"), ("GET", "/docs")]:
        if (method, path) in PUBLIC:
            continue
        for credentials in (None, ("alice", "wrong"), ("mallory", "s3cret")):
            response = requests.request(method, server.url + path, auth=credentials, json={}, timeout=30)
            assert response.status_code == 401, (method, path, credentials, response.text)
        checked += 1
    assert checked >= 45
    assert server.process.poll() is None  # server-kill / server-stop refused too


def test_cmd_flags_mask_the_passwords(server):
    flags = server.ok("GET", "/sdapi/v1/cmd-flags")
    assert flags["api_auth"] == "********" and flags["gradio_auth"] == "********"
    assert "s3cret" not in json.dumps(flags) and "hidden" not in json.dumps(flags)
    assert flags["api_server_stop"] is True and flags["cors_allow_origins"] == "http://example.com, http://localhost:3000"


@pytest.mark.parametrize("origin, allowed", [("http://example.com", True), ("http://localhost:3000", True),
                                             ("https://app.example.org", True), ("http://evil.test", False),
                                             ("https://example.org.evil.test", False)])
def test_cors_preflight_and_answers(server, origin, allowed):
    preflight = requests.options(server.url + "/sdapi/v1/txt2img", timeout=30, headers={
        "Origin": origin, "Access-Control-Request-Method": "POST", "Access-Control-Request-Headers": "authorization, content-type"})
    assert preflight.status_code == (200 if allowed else 400), preflight.text
    assert preflight.headers.get("access-control-allow-origin") == (origin if allowed else None)
    answer = requests.get(server.url + "/sdapi/v1/samplers", auth=LOGIN, headers={"Origin": origin}, timeout=30)
    assert answer.status_code == 200 and answer.headers.get("access-control-allow-origin") == (origin if allowed else None)
    refused = requests.get(server.url + "/sdapi/v1/samplers", headers={"Origin": origin}, timeout=30)
    assert refused.status_code == 401  # a page may read why it was refused, but it still needs the login
    assert refused.headers.get("access-control-allow-origin") == (origin if allowed else None)


def test_scheduler_automatic_as_webuiapi_sends_it(server):
    result = server.ok("POST", "/sdapi/v1/txt2img", {**SMALL, "sampler_name": "DPM++ 2M", "scheduler": "automatic",
                                                     "override_settings": {"sd_model_checkpoint": SD1}})
    assert "Schedule type: Karras" in json.loads(result["info"])["infotexts"][0]  # DPM++ 2M's own default


def test_server_stop_ends_the_process(server):
    response = server.post("/sdapi/v1/server-stop")
    assert response.status_code == 200 and response.text == "Stopping."
    deadline = time.time() + 30
    while server.process.poll() is None and time.time() < deadline:
        time.sleep(0.2)
    assert server.process.poll() == 0
