"""The page's feedback in Chromium: the Hires. fix / Refiner accordions are their own switch, Interrupt and Skip say
what they do, queued Generate presses, the queue panel and its cancel, toasts for errors."""
from __future__ import annotations

import pytest

from tests.e2e.test_ui_browser import (  # noqa: F401 - the shared app and browser fixtures
    JOB_TIMEOUT,
    app,
    browser,
    choose_checkpoint,
    page,
    set_number,
    small_job,
    wait_for_job,
)

pytestmark = pytest.mark.e2e


def generate_and_read_infotext(page, prompt: str) -> str:
    page.fill("#txt2img_prompt textarea", prompt)
    page.click("#txt2img_generate")
    page.wait_for_function(f"document.querySelector('#html_info_txt2img').innerText.startsWith({prompt!r})",
                           timeout=JOB_TIMEOUT)
    wait_for_job(page)
    return page.inner_text("#html_info_txt2img")


def test_opening_the_hires_accordion_enables_it_and_closing_disables_it(page):
    choose_checkpoint(page, "tiny_sd1.safetensors")
    small_job(page)
    checkbox = page.locator("#txt2img_hr-checkbox input[type=checkbox]")
    assert not checkbox.is_checked()
    page.click("#txt2img_hr > button.label-wrap")
    page.wait_for_function("document.querySelector('#txt2img_hr-checkbox input').checked")
    assert "Hires upscale: 2" in generate_and_read_infotext(page, "hires by the header")

    page.click("#txt2img_hr > button.label-wrap")
    page.wait_for_function("!document.querySelector('#txt2img_hr-checkbox input').checked")
    assert "Hires" not in generate_and_read_infotext(page, "no hires after closing")

    page.click("#txt2img_enable_refiner > button.label-wrap")  # the refiner's accordion likewise
    page.wait_for_function("document.querySelector('#txt2img_enable_refiner-checkbox input').checked")
    page.click("#txt2img_enable_refiner-checkbox input")  # and the box closes its accordion
    page.wait_for_function("!document.querySelector('#txt2img_enable_refiner > button.label-wrap').classList.contains('open')")
    assert page.errors == []
