"""Page-side settings in Chromium, each shown to take effect: progress in the title, screen kept awake, Ctrl+Up/Down
weights and Alt+Left/Right moves in the prompt, hidden tabs and tab order, the full page image viewer. Settings reach
the page through atelierOptionsReceived, the function the server's settings JSON goes through."""
from __future__ import annotations

import re

import pytest

from tests.e2e.test_ui_browser import (
    JOB_TIMEOUT,
    choose_checkpoint,
    opened_page,
    set_number,
    small_job,
    wait_for_job,
    wait_for_page_loaded,
)

pytestmark = pytest.mark.e2e

# records every window title and the wake locks the page takes and releases
SPY = """
window.__titles = [];
setInterval(() => window.__titles.push(document.title), 20);
window.__locks = {requested: 0, released: 0};
Object.defineProperty(navigator, "wakeLock", {value: {request: async () => {
    window.__locks.requested++;
    return {release: async () => { window.__locks.released++; }};
}}});
"""


def set_opts(page, **values) -> None:
    page.evaluate("values => atelierOptionsReceived(JSON.stringify(Object.assign({}, opts, values)))", values)


def long_job(page, prompt: str) -> None:
    small_job(page, prompt)
    for elem_id, value in (("txt2img_width", 128), ("txt2img_height", 128), ("txt2img_steps", 60)):
        set_number(page, elem_id, value)
    page.evaluate("window.__titles = []")
    page.click("#txt2img_generate")
    page.wait_for_selector("#txt2img_interrupt", state="visible", timeout=JOB_TIMEOUT)
    wait_for_job(page)
    page.wait_for_timeout(700)  # the page's half-second check after the job's end


def test_progress_in_the_title_and_the_screen_kept_awake_while_a_job_runs(browser, app):
    with opened_page(browser, app) as page:
        page.add_init_script(SPY)
        page.reload()
        wait_for_page_loaded(page)
        choose_checkpoint(page, "tiny_sd1.safetensors")
        title = page.title()
        long_job(page, "watched in the title")
        titles = page.evaluate("window.__titles")
        assert any(re.fullmatch(r"\[\d+%( ETA: .+)?\] " + re.escape(title), seen) for seen in titles), set(titles)
        assert page.title() == title
        assert page.evaluate("window.__locks") == {"requested": 1, "released": 1}

        set_opts(page, show_progress_in_title=False, prevent_screen_sleep_during_generation=False)
        long_job(page, "not in the title")
        assert set(page.evaluate("window.__titles")) == {title}
        assert page.evaluate("window.__locks") == {"requested": 1, "released": 1}
        assert page.errors == []


def edit(page, text: str, caret: int | tuple[int, int], key: str) -> str:
    box = page.locator("#txt2img_prompt textarea")
    box.fill(text)
    start, end = caret if isinstance(caret, tuple) else (caret, caret)
    box.evaluate("(box, range) => box.setSelectionRange(range[0], range[1])", [start, end])
    box.press(key)
    return box.input_value()


def test_ctrl_up_down_weigh_the_prompt_as_the_keyedit_settings_say(browser, app):
    with opened_page(browser, app) as page:
        assert edit(page, "a red cube", 3, "Control+ArrowUp") == "a (red:1.1) cube"
        selected = "box => box.value.slice(box.selectionStart, box.selectionEnd)"
        assert page.locator("#txt2img_prompt textarea").evaluate(selected) == "red"
        page.locator("#txt2img_prompt textarea").press("Control+ArrowUp")
        assert page.locator("#txt2img_prompt textarea").input_value() == "a (red:1.2) cube"
        assert edit(page, "a (red:1.1) cube", 5, "Control+ArrowDown") == "a red cube"  # weight 1: no parentheses
        assert edit(page, "x <lora:ink:0.8>", 8, "Control+ArrowUp") == "x <lora:ink:0.85>"
        assert edit(page, "a red cube", (0, 5), "Control+ArrowDown") == "(a red:0.9) cube"  # the selection

        set_opts(page, keyedit_precision_attention=0.05, keyedit_precision_extra=0.2)
        assert edit(page, "a red cube", 3, "Control+ArrowUp") == "a (red:1.05) cube"
        assert edit(page, "x <lora:ink:0.8>", 8, "Control+ArrowUp") == "x <lora:ink:1.0>"
        set_opts(page, keyedit_delimiters=",", keyedit_delimiters_whitespace=[])
        assert edit(page, "a red cube, sky", 3, "Control+ArrowUp") == "(a red cube:1.05), sky"
        set_opts(page, keyedit_delimiters=" ,", keyedit_delimiters_whitespace=["Line Feed"])
        assert edit(page, "sky\nred", 5, "Control+ArrowUp") == "sky\n(red:1.05)"
        # Gradio holds the edited value: it is what Generate would send
        page.locator("#txt2img_prompt textarea").evaluate("box => box.blur()")
        assert page.locator("#txt2img_prompt textarea").input_value() == "sky\n(red:1.05)"
        assert page.errors == []


def test_alt_left_right_move_prompt_elements_unless_keyedit_move_is_off(browser, app):
    with opened_page(browser, app) as page:
        assert edit(page, "a cat, red hat, sky", 9, "Alt+ArrowRight") == "a cat, sky, red hat"
        assert edit(page, "a cat, red hat, sky", 9, "Alt+ArrowLeft") == "red hat, a cat, sky"
        assert edit(page, "a cat, red hat", 1, "Alt+ArrowLeft") == "a cat, red hat"  # already first
        set_opts(page, keyedit_move=False)
        assert edit(page, "a cat, red hat, sky", 9, "Alt+ArrowRight") == "a cat, red hat, sky"
        assert page.errors == []


def tab_x(page, label: str) -> float:
    return page.locator("#tabs button[role=tab]", has_text=re.compile(f"^{re.escape(label)}$")).first.bounding_box()["x"]


def test_hidden_tabs_and_tab_order(browser, app):
    with opened_page(browser, app) as page:
        assert tab_x(page, "txt2img") < tab_x(page, "img2img") < tab_x(page, "PNG Info")
        page.click("#tab_settings-button")
        page.click("#settings_nav a[data-section=settings_section_user_interface]")
        page.click("#setting_hidden_tabs input")  # the settings offer the page's tabs
        assert page.locator("#setting_hidden_tabs [role=option]", has_text="Checkpoint Merger").count() == 1
        page.keyboard.press("Escape")

        set_opts(page, hidden_tabs=["Train"], ui_tab_order=["PNG Info", "txt2img"])
        assert page.locator("#tab_train-button").is_hidden()
        assert tab_x(page, "PNG Info") < tab_x(page, "txt2img") < tab_x(page, "img2img")
        set_opts(page, hidden_tabs=[], ui_tab_order=[])
        assert page.locator("#tab_train-button").is_visible()
        assert tab_x(page, "txt2img") < tab_x(page, "PNG Info")
        page.click("#tab_txt2img-button")
        set_opts(page, hidden_tabs=["txt2img"])  # the shown tab is hidden: the first other one is shown
        page.wait_for_selector("#tab_img2img-button[aria-selected=true]")
        assert page.locator("#img2img_prompt textarea").is_visible()
        assert page.errors == []


def test_gallery_image_opens_in_the_full_page_viewer(browser, app):
    with opened_page(browser, app) as page:
        choose_checkpoint(page, "tiny_sd1.safetensors")
        small_job(page, "in the viewer")
        set_number(page, "txt2img_batch_count", 2)
        page.click("#txt2img_generate")
        wait_for_job(page)
        page.click("#txt2img_gallery button[aria-label^='Thumbnail 2']")
        large = page.locator("#txt2img_gallery img:not(.thumbnail-item img)").first
        source = large.get_attribute("src")

        large.click()
        page.wait_for_selector("#lightboxModal", state="visible")
        assert page.locator("#modalImage").get_attribute("src") == source
        assert "modalImageZoomed" in page.locator("#modalImage").get_attribute("class")  # initially zoomed: on
        page.keyboard.press("ArrowRight")
        assert page.locator("#modalImage").get_attribute("src") != source
        page.keyboard.press("Escape")
        page.wait_for_selector("#lightboxModal", state="hidden")

        set_opts(page, js_modal_lightbox_initially_zoomed=False)
        large.click()
        page.wait_for_selector("#lightboxModal", state="visible")
        assert "modalImageZoomed" not in (page.locator("#modalImage").get_attribute("class") or "")
        page.keyboard.press("Escape")

        set_opts(page, js_modal_lightbox=False)
        large.click()
        page.wait_for_timeout(300)
        assert page.locator("#lightboxModal").is_hidden()
        assert page.errors == []
