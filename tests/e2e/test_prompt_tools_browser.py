"""The prompt row's A1111 tools in Chromium: ↙️ paste (the prompt box, or the last generation's params.txt), 🗑️ clear,
the 🖌️ style editor, a PNG dropped on the prompt, and Generate forever from Generate's right-click menu."""
from __future__ import annotations

import base64
import csv
import io
import time

import pytest
from PIL import Image, PngImagePlugin

from tests.e2e.test_ui_browser import JOB_TIMEOUT, choose_checkpoint, small_job, wait_for_job

pytestmark = pytest.mark.e2e

INFOTEXT = ("a lighthouse at dusk\nNegative prompt: fog\n"
            "Steps: 17, Sampler: Euler a, Schedule type: Automatic, CFG scale: 6.5, Seed: 31337, Size: 128x96")


def number(page, elem_id: str) -> str:
    return page.locator(f"#{elem_id} input[type=number]").input_value()


def wait_for_value(page, selector: str, value: str) -> None:
    page.wait_for_function("([s, v]) => document.querySelector(s).value === v", arg=[selector, value])


def test_paste_fills_every_field_and_clear_empties_the_prompts(page, app):
    page.fill("#txt2img_prompt textarea", INFOTEXT)
    page.click("#tab_txt2img #paste")
    wait_for_value(page, "#txt2img_prompt textarea", "a lighthouse at dusk")
    assert page.locator("#txt2img_neg_prompt textarea").input_value() == "fog"
    assert (number(page, "txt2img_steps"), number(page, "txt2img_seed")) == ("17", "31337")
    assert (number(page, "txt2img_width"), number(page, "txt2img_height")) == ("128", "96")
    assert page.locator("#txt2img_sampling input").input_value() == "Euler a"

    page.once("dialog", lambda dialog: dialog.accept())
    page.click("#txt2img_clear_prompt")
    wait_for_value(page, "#txt2img_prompt textarea", "")
    assert page.locator("#txt2img_neg_prompt textarea").input_value() == ""

    # an empty prompt: the last generation's parameters (params.txt in the data dir)
    (app.data_dir / "params.txt").write_text("a quiet harbour\nSteps: 9, Sampler: Euler, CFG scale: 3, Seed: 77, "
                                             "Size: 64x72", encoding="utf8")
    page.click("#tab_txt2img #paste")
    wait_for_value(page, "#txt2img_prompt textarea", "a quiet harbour")
    assert (number(page, "txt2img_steps"), number(page, "txt2img_seed"), number(page, "txt2img_height")) == ("9", "77", "72")
    assert page.get_attribute("#tab_txt2img #paste", "title").startswith("Read generation parameters")
    assert page.errors == []


def test_style_editor_saves_applies_and_deletes_a_style(page, app):
    page.click("#txt2img_styles_edit_button")
    page.wait_for_selector("#txt2img_styles_dialog", state="visible")
    name_box = page.locator("#txt2img_styles_edit_select input")
    name_box.fill("noir")
    name_box.press("Enter")
    page.fill("#txt2img_edit_style_prompt textarea", "{prompt}, film noir")
    page.fill("#txt2img_edit_style_neg_prompt textarea", "color")
    page.click("#txt2img_edit_style_save")
    styles_csv = app.data_dir / "styles.csv"
    deadline = time.time() + 30
    while time.time() < deadline and not styles_csv.exists():
        time.sleep(0.2)
    with open(styles_csv, encoding="utf-8-sig", newline="") as file:
        assert [row for row in csv.DictReader(file)] == [
            {"name": "noir", "prompt": "{prompt}, film noir", "negative_prompt": "color"}]
    page.click("#txt2img_edit_style_close")
    page.wait_for_selector("#txt2img_styles_dialog", state="hidden")

    page.fill("#txt2img_prompt textarea", "a street")
    page.click("#txt2img_styles input")
    page.locator("#txt2img_styles [role=option]", has_text="noir").first.click()
    page.click("#txt2img_style_apply")
    wait_for_value(page, "#txt2img_prompt textarea", "a street, film noir")

    page.click("#txt2img_styles_edit_button")
    page.locator("#txt2img_styles_edit_select input").click()
    page.locator("#txt2img_styles_edit_select [role=option]", has_text="noir").first.click()
    wait_for_value(page, "#txt2img_edit_style_prompt textarea", "{prompt}, film noir")
    page.once("dialog", lambda dialog: dialog.accept())
    page.click("#txt2img_edit_style_delete")
    wait_for_value(page, "#txt2img_edit_style_prompt textarea", "")
    with open(styles_csv, encoding="utf-8-sig", newline="") as file:
        assert list(csv.DictReader(file)) == []
    assert page.errors == []


def test_a_png_dropped_on_the_prompt_fills_every_field(page):
    meta = PngImagePlugin.PngInfo()
    meta.add_text("parameters", INFOTEXT)
    buffer = io.BytesIO()
    Image.new("RGB", (32, 32), (10, 20, 30)).save(buffer, format="PNG", pnginfo=meta)
    page.locator("#tab_img2img-button").dispatch_event("click")
    page.wait_for_selector("#img2img_prompt textarea", state="visible")
    page.evaluate("""(data) => {
        const bytes = Uint8Array.from(atob(data), c => c.charCodeAt(0));
        const transfer = new DataTransfer();
        transfer.items.add(new File([bytes], "dropped.png", {type: "image/png"}));
        const textarea = gradioApp().querySelector("#img2img_prompt textarea");
        textarea.dispatchEvent(new DragEvent("drop", {bubbles: true, cancelable: true, composed: true, dataTransfer: transfer}));
    }""", base64.b64encode(buffer.getvalue()).decode("ascii"))
    wait_for_value(page, "#img2img_prompt textarea", "a lighthouse at dusk")
    assert page.locator("#img2img_neg_prompt textarea").input_value() == "fog"
    assert (number(page, "img2img_steps"), number(page, "img2img_cfg_scale")) == ("17", "6.5")
    assert number(page, "img2img_seed") == "31337"
    assert page.errors == []


def pngs(app) -> int:
    return len(list((app.data_dir / "outputs" / "txt2img-images").rglob("*.png")))


def test_generate_forever_until_cancelled(page, app):
    choose_checkpoint(page, "tiny_sd1.safetensors")
    small_job(page, "a green sphere")
    before = pngs(app)
    page.click("#txt2img_generate", button="right")
    page.locator("#context-menu li", has_text="Generate forever").first.click()
    deadline = time.time() + JOB_TIMEOUT / 1000 * 2
    while time.time() < deadline and pngs(app) < before + 2:
        time.sleep(0.5)
    assert pngs(app) >= before + 2  # a second job started by itself
    # a right-click on Generate or, while a job runs, Interrupt (both have the menu), whichever is shown at that moment
    page.evaluate("""() => {
        const button = ["#txt2img_interrupt", "#txt2img_generate"].map(s => gradioApp().querySelector(s))
            .find(b => b && b.offsetParent !== null);
        const box = button.getBoundingClientRect();
        button.dispatchEvent(new MouseEvent("contextmenu", {bubbles: true, cancelable: true, composed: true, button: 2,
                                                            clientX: box.x + 5, clientY: box.y + 5}));
    }""")
    page.locator("#context-menu li", has_text="Cancel generate forever").first.click()
    wait_for_job(page)
    settled = pngs(app)
    time.sleep(3)
    assert pngs(app) == settled and page.locator("#txt2img_interrupt").is_hidden()
    assert page.errors == []
