"""The browser tests' shared fixtures: one app server for the whole session (the tiny models, started once: every
module that needs no special launch uses it), one Chromium per module, a fresh page per test. A test on the shared
server leaves its settings as it found them (checked after each test), so no test depends on which ran before it."""
from __future__ import annotations

import json
import os

import pytest

from tests.e2e.test_ui_browser import CHROMIUM, CHROMIUM_ARGS, opened_page, start_app

# written by the page whenever a checkpoint is chosen: every test that generates chooses its own
PER_TEST_SETTINGS = {"sd_model_checkpoint", "sd_checkpoint_hash"}


@pytest.fixture(scope="session")
def shared_app(tmp_path_factory, tiny_models_dir):
    running = start_app(tmp_path_factory, tiny_models_dir)
    yield running
    running.stop()


def saved_settings(app) -> dict:
    found = {}
    for name in ("config.json", "ui-config.json"):
        path = app.data_dir / name
        values = json.loads(path.read_text(encoding="utf8")) if path.exists() else {}
        found[name] = {key: value for key, value in values.items() if key not in PER_TEST_SETTINGS}
    return found


@pytest.fixture
def app(shared_app):
    """The shared server; a test that changes its saved settings (or UI defaults) fails: it would change the tests
    after it. Such a test starts an app of its own (see test_ui_browser's own_app). The app's first save writes every
    option, so only the ones the files held before the test are compared."""
    before = saved_settings(shared_app)
    yield shared_app
    after = saved_settings(shared_app)
    for name, values in before.items():
        changed = {key for key, value in values.items() if after[name].get(key, value) != value}
        assert not changed, f"the test left the shared app's {name} changed: {sorted(changed)}"


@pytest.fixture(scope="module")
def browser():
    playwright_api = pytest.importorskip("playwright.sync_api")
    if not os.access(CHROMIUM, os.X_OK):
        pytest.skip(f"{CHROMIUM} is missing (apt-get install chromium)")
    with playwright_api.sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS)
        yield browser
        browser.close()


@pytest.fixture
def page(app, browser):
    with opened_page(browser, app, accept_downloads=True) as page:
        yield page
