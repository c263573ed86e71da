"""A1111's page in Chromium has every control in the DOM from the start; extensions rely on it (Gradio 6 mounts a tab
or an accordion on first show, the page mounts them all before onUiLoaded). An extension's JavaScript finds, in
onUiLoaded, the prompts of both tabs by Gradio 3's shape (tagcomplete's `#img2img_prompt > label > textarea`) and the
checkbox in its closed accordion of the tab not shown (sd-dynamic-thresholding, also in onUiUpdate); its ui_tabs tab
talks to the server through a textbox and a button made with visible=False (sd-dynamic-prompts' wildcards tab). After
the load-time tab visits the page shows txt2img, and the img2img/extras mode numbers name the selected tabs, so an
img2img Generate runs img2img with "Resize to"."""
from __future__ import annotations

import json
import textwrap

import numpy as np
import pytest
from PIL import Image

from tests.e2e.test_ui_browser import (
    JOB_TIMEOUT,
    App,
    choose_checkpoint,
    opened_page,
    set_number,
)

pytestmark = pytest.mark.e2e
NAME = "mount-ext"

SCRIPT = '''
    import json

    import gradio as gr

    from modules import script_callbacks, scripts


    class MountScript(scripts.Script):
        def title(self):
            return "Mount ext"

        def show(self, is_img2img):
            return scripts.AlwaysVisible

        def ui(self, is_img2img):
            tab = "img2img" if is_img2img else "txt2img"
            with gr.Accordion("Mount ext", open=False, elem_id=f"{tab}_mountext_acc"):
                enabled = gr.Checkbox(False, label="Mount ext enabled", elem_id=f"{tab}_mountext_enabled")
            return [enabled]


    def answer(message):
        return json.dumps({"echo": json.loads(message)["say"], "from": "server"})


    def tabs():
        with gr.Blocks(analytics_enabled=False) as tab:
            gr.HTML("<p>Mount ext</p>")
            # hidden scratch textboxes and button, as sd-dynamic-prompts' wildcards tab talks to its server side
            c2s = gr.Textbox("", elem_id="mountext-c2s-message", visible=False)
            s2c = gr.Textbox("", elem_id="mountext-s2c-message", visible=False)
            action = gr.Button("Action", elem_id="mountext-c2s-action", visible=False)
            action.click(answer, inputs=[c2s], outputs=[s2c])
        return [(tab, "Mount Ext", "mountext")]


    script_callbacks.on_ui_tabs(tabs)
'''

JS = '''
    window.mountext = {loaded: null, updateFound: null};
    onUiLoaded(function() {
        const found = function(selector) { return gradioApp().querySelector(selector) !== null; };
        mountext.loaded = {
            txt2imgPrompt: found("#txt2img_prompt > label > textarea"),
            img2imgPrompt: found("#img2img_prompt > label > textarea"),
            txt2imgCheckbox: found("#txt2img_mountext_enabled input[type=checkbox]"),
            img2imgCheckbox: found("#img2img_mountext_enabled input[type=checkbox]"),
            c2s: found("#mountext-c2s-message textarea"),
            s2c: found("#mountext-s2c-message textarea"),
            action: found("#mountext-c2s-action"),
            tab: get_uiCurrentTab().textContent.trim(),
        };
    });
    onUiUpdate(function() {
        if (mountext.updateFound === null) {
            mountext.updateFound = gradioApp().querySelector("#img2img_mountext_enabled input[type=checkbox]") !== null;
        }
    });
'''


@pytest.fixture(scope="module")
def app(tmp_path_factory, tiny_models_dir):
    data = tmp_path_factory.mktemp("e2e-mount") / "data"
    ext = data / "extensions" / NAME
    for path, text in {"scripts/mountext.py": SCRIPT, "javascript/mountext.js": JS}.items():
        (ext / path).parent.mkdir(parents=True, exist_ok=True)
        (ext / path).write_text(textwrap.dedent(text))
    (data / "config.json").write_text(json.dumps({}))
    running = App(data, tiny_models_dir)
    running.start()
    yield running
    running.stop()


@pytest.fixture
def page(app, browser):
    with opened_page(browser, app) as page:
        page.wait_for_function("window.mountext.loaded !== null")
        yield page


def number_value(page, elem_id: str) -> str:
    return page.locator(f"#{elem_id} input[type=number]").input_value()


def test_every_tab_and_closed_accordion_is_in_the_page_at_load(page):
    assert page.evaluate("mountext.loaded") == {
        "txt2imgPrompt": True, "img2imgPrompt": True, "txt2imgCheckbox": True, "img2imgCheckbox": True,
        "c2s": True, "s2c": True, "action": True, "tab": "txt2img"}
    page.wait_for_function("mountext.updateFound !== null")
    assert page.evaluate("mountext.updateFound") is True
    # the visits leave the page as it opens: txt2img shown, the accordions closed, the first tabs selected
    assert page.is_visible("#txt2img_generate") and not page.is_visible("#img2img_generate")
    assert not page.is_visible("#txt2img_mountext_enabled")
    assert page.locator("#txt2img_mountext_acc button.label-wrap.open").count() == 0
    assert number_value(page, "img2img_selected_tab") == "0"
    assert number_value(page, "img2img_resize_by") == "0"
    assert number_value(page, "extras_selected_tab") == "0"
    assert page.errors == []


def test_hidden_textbox_and_button_round_trip_a_message(page):
    page.evaluate("""() => {
        const outbox = gradioApp().querySelector('#mountext-c2s-message textarea');
        outbox.value = JSON.stringify({say: 'hello'});
        updateInput(outbox);
        gradioApp().querySelector('#mountext-c2s-action').click();
    }""")
    page.wait_for_function("gradioApp().querySelector('#mountext-s2c-message textarea').value !== ''")
    assert json.loads(page.locator("#mountext-s2c-message textarea").input_value()) == {"echo": "hello", "from": "server"}
    assert page.errors == []


def test_img2img_generate_after_load_runs_img2img(page, tmp_path):
    path = tmp_path / "source.png"
    Image.fromarray(np.full((96, 96, 3), 128, np.uint8)).save(path)  # "Resize to" makes it 64x64
    choose_checkpoint(page, "tiny_sd1.safetensors")
    page.click("#tab_img2img-button")
    page.locator("#img2img_image input[type=file]").set_input_files(str(path))
    page.fill("#img2img_prompt textarea", "a red cube")
    for elem_id, value in (("img2img_width", 64), ("img2img_height", 64), ("img2img_steps", 2)):
        set_number(page, elem_id, value)
    page.click("#img2img_generate")
    page.wait_for_function("document.querySelector('#html_info_img2img').innerText.includes('Steps: 2')",
                           timeout=JOB_TIMEOUT)
    info = page.inner_text("#html_info_img2img")
    assert "Denoising strength" in info and "Mask blur" not in info  # img2img, not an inpaint mode
    assert "Size: 64x64" in info  # "Resize to", the selected resize tab (not "Resize by" 1.0: 96x96)
    assert number_value(page, "img2img_selected_tab") == "0"
    assert page.errors == []
