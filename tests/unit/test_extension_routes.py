"""Who may use the routes extensions add in on_app_started: open where the page is open (or there is neither a page nor
--api-auth), else page users with a session and --api-auth clients only. The full app is tested in
tests/integration/test_scripts_extension_patterns.py."""
from __future__ import annotations

import base64
from types import SimpleNamespace

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient

from modules import extension_routes

PAGE = SimpleNamespace(cookie_id="abc", tokens={"t0k3n": "alice"})  # what a mounted Gradio app keeps of its logins


@pytest.mark.parametrize(("page", "page_logins", "api_logins", "is_open"), [
    (PAGE, None, None, True),
    (PAGE, None, "bot:token", True),  # anyone may use the page, so its extensions' routes too
    (None, None, None, True),
    (PAGE, [("alice", "wonder")], None, False),
    (PAGE, [("alice", "wonder")], "bot:token", False),
    (None, None, "bot:token", False),
])
def test_doors_are_open_only_where_page_and_api_are(page, page_logins, api_logins, is_open):
    assert extension_routes.Doors(page, page_logins, api_logins).open is is_open


def app_with_extension_routes(doors: extension_routes.Doors) -> FastAPI:
    app = FastAPI()
    app.add_api_route("/ours", lambda: "ours")
    ours = list(app.router.routes)
    app.add_api_route("/ext", lambda: "ext")
    app.mount("/ext-sub", FastAPI())
    extension_routes.guard(extension_routes.added_routes(app, ours), doors)
    return app


def test_page_session_cookie_or_api_credentials_pass():
    client = TestClient(app_with_extension_routes(extension_routes.Doors(PAGE, [("alice", "wonder")], "bot:token")))
    assert client.get("/ours").status_code == 200
    response = client.get("/ext")
    assert response.status_code == 401 and response.headers["www-authenticate"] == "Basic"
    assert client.get("/ext", cookies={"access-token-unsecure-abc": "t0k3n"}).json() == "ext"
    assert client.get("/ext", cookies={"access-token-abc": "stale"}).status_code == 401
    token = base64.b64encode(b"bot:token").decode()
    assert client.get("/ext", headers={"Authorization": f"Basic {token}"}).json() == "ext"
    assert client.get("/ext", headers={"Authorization": "Basic bm90OmJhc2U2NA=="}).status_code == 401
    assert client.get("/ext", headers={"Authorization": "Basic %%%"}).status_code == 401
    assert client.get("/ext-sub/anything").status_code == 401


def test_open_doors_leave_the_routes_as_they_are():
    client = TestClient(app_with_extension_routes(extension_routes.Doors(PAGE, None, None)))
    assert client.get("/ext").json() == "ext"
