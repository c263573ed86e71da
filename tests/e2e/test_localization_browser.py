"""Page translation in Chromium: with a localizations/xx.json chosen in the `localization` setting, the page's button
text, labels and placeholders show the translations, and so do nodes added later (a tab's content when it opens); numbers, prompts and text without
an entry stay as they are, and an empty localization changes nothing."""
from __future__ import annotations

import json
import os
import shlex

import pytest

from tests.e2e.test_ui_browser import CHROMIUM, CHROMIUM_ARGS, App, open_page

pytestmark = pytest.mark.e2e

TRANSLATIONS = {"Generate": "Erzeugen", "Sampling steps": "Schritte", "Search...": "Suchen...", "20": "zwanzig",
                "a red cube": "ein roter Würfel", "rtl": False}


@pytest.fixture(scope="module")
def app(tmp_path_factory):
    """The app without models, its localizations dir holding xx.json, and config.json choosing it."""
    root = tmp_path_factory.mktemp("e2e-l10n")
    localizations, data, models = root / "localizations", root / "data", root / "models"
    for folder in (localizations, data, models):
        folder.mkdir()
    (localizations / "xx.json").write_text(json.dumps(TRANSLATIONS), encoding="utf8")
    (data / "config.json").write_text(json.dumps({"localization": "xx"}))
    running = App(data, models)
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("COMMANDLINE_ARGS", f"--localizations-dir {shlex.quote(str(localizations))}")
        running.start()
    yield running
    running.stop()


@pytest.fixture(scope="module")
def page(app):
    playwright_api = pytest.importorskip("playwright.sync_api")
    if not os.access(CHROMIUM, os.X_OK):
        pytest.skip(f"{CHROMIUM} is missing (apt-get install chromium)")
    with playwright_api.sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS)
        page = browser.new_page(viewport={"width": 1400, "height": 1000})
        page.set_default_timeout(30_000)
        page.errors = []
        page.on("pageerror", lambda error: page.errors.append(str(error)))
        open_page(page, app)
        yield page
        browser.close()


def test_buttons_labels_and_placeholders_are_translated(page):
    page.wait_for_function("document.querySelector('#txt2img_generate').textContent.trim() === 'Erzeugen'")
    assert "Schritte" in page.inner_text("#txt2img_steps") and "Sampling steps" not in page.inner_text("#txt2img_steps")
    assert page.input_value("#txt2img_steps input[type=number]") == "20"  # a value, not text
    # a tab's content is put in the page when the tab is opened: translated as it comes
    page.click("#tab_extras-button")
    page.wait_for_function("document.querySelector('#extras_generate').textContent.trim() === 'Erzeugen'")
    page.click("#tab_settings-button")
    page.wait_for_function("document.querySelector('#settings_search textarea, #settings_search input')"
                           "?.placeholder === 'Suchen...'")
    page.click("#tab_txt2img-button")
    assert page.errors == []


def test_nodes_added_later_are_translated_and_text_without_an_entry_is_kept(page):
    page.wait_for_function("document.querySelector('#txt2img_generate').textContent.trim() === 'Erzeugen'")
    page.evaluate("""() => {
        const added = document.createElement('div');
        added.id = 'l10n_added';
        added.innerHTML = "<button title='Generate'> Generate </button><span>Not in the map</span><span>20</span>"
            + "<textarea>a red cube</textarea><span>rtl</span>";
        gradioApp().querySelector('#tabs').appendChild(added);
    }""")
    page.wait_for_function("document.querySelector('#l10n_added button').textContent === 'Erzeugen'")
    assert page.get_attribute("#l10n_added button", "title") == "Erzeugen"
    spans = page.eval_on_selector_all("#l10n_added span", "nodes => nodes.map(n => n.textContent)")
    assert spans == ["Not in the map", "20", "rtl"]  # numbers and entries that are no strings are never replaced
    assert page.input_value("#l10n_added textarea") == "a red cube"  # what the user typed stays
    assert page.errors == []


def test_an_empty_localization_changes_nothing(page):
    page.evaluate("""() => {
        window.localization = {};
        const added = document.createElement('button');
        added.id = 'l10n_untouched';
        added.textContent = 'Generate';
        gradioApp().querySelector('#tabs').appendChild(added);
    }""")
    page.wait_for_selector("#l10n_untouched")
    page.evaluate("() => new Promise(resolve => setTimeout(resolve, 300))")  # the observer has run by then
    assert page.inner_text("#l10n_untouched") == "Generate"
    assert page.errors == []
