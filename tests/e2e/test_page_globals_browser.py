"""A1111's page globals in Chromium, used by an extension as tagcomplete, dynamic-prompts and the image browser use
them: `opts` (filled before onUiLoaded, refreshed with onOptionsChanged after Settings → Apply), `gradioApp()`,
`onUiLoaded`/`onUiUpdate`/`onUiTabChange`, `get_uiCurrentTab()`, `updateInput()`, `file=` URLs of its own folder
(anything outside the allowed folders refused); its Script's ui() uses a ToolButton and an InputAccordion subclass."""
from __future__ import annotations

import json
import textwrap

import pytest

from tests.e2e.test_ui_browser import App, opened_page

pytestmark = pytest.mark.e2e
NAME = "pagejs-ext"

SCRIPT = '''
    import gradio as gr

    from modules import script_callbacks, scripts, shared
    from modules.ui_components import InputAccordion, ToolButton


    class ResButton(ToolButton):
        def __init__(self, res=(512, 512), **kwargs):
            super().__init__(**kwargs)
            self.w, self.h = res


    class PageAccordion(InputAccordion):
        pass


    class PageScript(scripts.Script):
        def title(self):
            return "Page globals"

        def show(self, is_img2img):
            return scripts.AlwaysVisible if not is_img2img else False

        def ui(self, is_img2img):
            with PageAccordion(False, label="Page globals", elem_id="pagejs_acc") as enabled:
                word = gr.Textbox(label="Word", elem_id="pagejs_word")
                echo = ResButton(res=(640, 480), value="Echo", elem_id="pagejs_echo")
                out = gr.HTML(elem_id="pagejs_out")
            echo.click(fn=lambda text: f"<p>{text} {echo.w}x{echo.h}</p>", inputs=[word], outputs=[out])
            return [enabled]


    def settings():
        shared.opts.add_option("pagejs_fruit", shared.OptionInfo("apple", "Page globals fruit",
                                                                 section=("pagejs", "Page globals")))


    script_callbacks.on_ui_settings(settings)
'''

JS = '''
    window.pagejs = {atLoad: null, changes: [], updates: 0, tabChanges: 0, tab: null, prompt: false};
    onUiLoaded(function() {
        pagejs.atLoad = opts.pagejs_fruit;
        pagejs.tab = get_uiCurrentTab().textContent.trim();
        pagejs.prompt = gradioApp().querySelector("#txt2img_prompt textarea") !== null;
    });
    onUiUpdate(function() { pagejs.updates += 1; });
    onUiTabChange(function() { pagejs.tabChanges += 1; });
    onOptionsChanged(function() { pagejs.changes.push(opts.pagejs_fruit); });
'''


@pytest.fixture(scope="module")
def app(tmp_path_factory, tiny_models_dir):
    root = tmp_path_factory.mktemp("e2e-pagejs")
    data = root / "data"
    ext = data / "extensions" / NAME
    for path, text in {"scripts/pagejs.py": SCRIPT, "javascript/pagejs.js": JS, "tags/words.csv": "red,0\n"}.items():
        (ext / path).parent.mkdir(parents=True, exist_ok=True)
        (ext / path).write_text(textwrap.dedent(text))
    (data / "config.json").write_text(json.dumps({}))
    (root / "secret.txt").write_text("secret")
    running = App(data, tiny_models_dir)
    running.start()
    yield running
    running.stop()


@pytest.fixture
def page(app, browser):
    with opened_page(browser, app) as page:
        page.wait_for_function("window.pagejs.atLoad !== null")
        yield page


def test_opts_are_there_at_load_and_follow_apply_settings(page):
    assert page.evaluate("pagejs.atLoad") == "apple"
    assert page.evaluate("pagejs.tab") == "txt2img" and page.evaluate("pagejs.prompt") is True
    assert page.evaluate("pagejs.changes") == ["apple"]
    assert page.evaluate("pagejs.updates") > 0

    page.click("#tab_settings-button")
    page.wait_for_function("pagejs.tabChanges === 1 && get_uiCurrentTab().textContent.trim() === 'Settings'")
    page.fill("#settings_search input, #settings_search textarea", "Page globals fruit")
    page.fill("#setting_pagejs_fruit input, #setting_pagejs_fruit textarea", "banana")
    page.click("#settings_submit")
    page.wait_for_function("opts.pagejs_fruit === 'banana'")
    assert page.evaluate("pagejs.changes") == ["apple", "banana"]
    assert page.errors == []


def test_update_input_reaches_the_server_through_subclassed_components(page):
    page.click("#pagejs_acc")  # the InputAccordion subclass: its header opens it
    page.wait_for_selector("#pagejs_word textarea, #pagejs_word input", state="visible")
    page.evaluate("""() => {
        const box = gradioApp().querySelector('#pagejs_word textarea, #pagejs_word input');
        box.value = 'typed by a script';
        updateInput(box);
    }""")
    page.click("#pagejs_echo")  # the ToolButton subclass
    page.wait_for_function("document.querySelector('#pagejs_out').innerText.includes('typed')")
    assert page.inner_text("#pagejs_out").strip() == "typed by a script 640x480"
    assert page.locator("#pagejs_acc-checkbox input[type=checkbox]").count() == 1
    assert page.errors == []


def test_file_urls_serve_the_extension_folder_only(page, app):
    fetch = "async (path) => { const r = await fetch('file=' + path); return [r.status, await r.text()]; }"
    assert page.evaluate(fetch, f"extensions/{NAME}/tags/words.csv?123") == [200, "red,0\n"]
    absolute = app.data_dir / "extensions" / NAME / "tags" / "words.csv"
    assert page.evaluate(fetch, str(absolute)) == [200, "red,0\n"]
    assert page.evaluate(fetch, "config.json")[0] == 404
    assert page.evaluate(fetch, str(app.data_dir.parent / "secret.txt"))[0] == 404
