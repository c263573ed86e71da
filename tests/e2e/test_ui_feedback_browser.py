"""The page's feedback in Chromium: the Hires. fix / Refiner accordions are their own switch, Interrupt and Skip say
what they do, queued Generate presses, the queue panel and its cancel, toasts for errors."""
from __future__ import annotations

import pytest

from tests.e2e.test_ui_browser import (
    JOB_TIMEOUT,
    choose_checkpoint,
    generation_info,
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


def long_job(page, prompt: str, batch_count: int = 3) -> None:
    page.fill("#txt2img_prompt textarea", prompt)
    for elem_id, value in (("txt2img_width", 256), ("txt2img_height", 256), ("txt2img_steps", 150),
                           ("txt2img_batch_count", batch_count)):
        set_number(page, elem_id, value)


def test_interrupt_says_so_and_a_second_press_stops_at_once(page):
    choose_checkpoint(page, "tiny_sd1.safetensors")
    long_job(page, "three long images")
    page.click("#txt2img_generate")
    page.wait_for_function("document.querySelector('#txt2img_progress').innerText.includes('Image 1/3, step ')",
                           timeout=JOB_TIMEOUT)
    page.locator("body").press("Escape")  # A1111's key: the first press stops after this image
    page.wait_for_function("document.querySelector('#txt2img_interrupt').innerText.trim() === 'Interrupting...'")
    page.get_by_text("click again to stop immediately").wait_for()  # and a toast says what it does
    page.wait_for_function("document.querySelector('#txt2img_progress').innerText.includes('Stopping after this image...')")
    assert "Image 1/3" in page.inner_text("#txt2img_progress")
    page.locator("body").press("Escape")  # the second stops at once, in the first image
    wait_for_job(page)
    info = generation_info(page)
    assert len(info["all_seeds"]) == 3 and len(info.get("infotexts", [])) - info.get("index_of_first_image", 0) <= 1
    assert page.inner_text("#txt2img_interrupt").strip() == "Interrupt"  # ready for the next job

    set_number(page, "txt2img_batch_count", 2)
    page.click("#txt2img_generate")
    page.wait_for_function("document.querySelector('#txt2img_progress').innerText.includes('Image 1/2, step ')",
                           timeout=JOB_TIMEOUT)
    page.click("#txt2img_skip")  # Skip shows its state until the next image begins
    page.wait_for_function("document.querySelector('#txt2img_progress').innerText.includes('Skipping...')")
    page.wait_for_function("document.querySelector('#txt2img_progress').innerText.includes('Image 2/2')",
                           timeout=JOB_TIMEOUT)
    page.click("#txt2img_interrupt")  # the last image: at once
    wait_for_job(page)
    assert page.errors == []


def saved_images(app) -> set:
    return {path.name for path in (app.data_dir / "outputs").rglob("*.png")}


def test_generate_presses_queue_up_and_the_panel_lists_and_cancels_them(page, app):
    choose_checkpoint(page, "tiny_sd1.safetensors")
    small_job(page, "first of the queue")
    # long enough to queue two more behind it and look at the panel (a 64² job of 40 steps ends within seconds now)
    for elem_id, value in (("txt2img_steps", 150), ("txt2img_width", 256), ("txt2img_height", 256)):
        set_number(page, elem_id, value)
    before = saved_images(app)
    page.click("#txt2img_generate")
    page.wait_for_selector("#txt2img_interrupt", state="visible")
    for elem_id, value in (("txt2img_steps", 4), ("txt2img_width", 64), ("txt2img_height", 64)):
        set_number(page, elem_id, value)  # the queued ones are short
    for prompt in ("second of the queue", "third, cancelled"):
        page.fill("#txt2img_prompt textarea", prompt)
        page.click("#txt2img_generate")  # Generate stays: each press queues a job
    page.click("#txt2img_queue > button.label-wrap")
    page.wait_for_function("document.querySelectorAll('#txt2img_queue_list tr[data-task]').length === 3")
    rows = page.locator("#txt2img_queue_list tr[data-task]")
    statuses = [rows.nth(k).locator("td").first.inner_text() for k in range(3)]
    owners = {rows.nth(k).locator("td").nth(1).inner_text() for k in range(3)}
    assert statuses == ["running", "queued", "queued"] and len(owners) == 1 and owners.pop().startswith("page ")
    assert all(rows.nth(k).get_attribute("data-task").startswith("task(txt2img-") for k in range(3))
    cancelled = rows.nth(2).get_attribute("data-task")
    rows.nth(2).locator("button.queue-cancel").click()
    page.wait_for_function(f"!document.querySelector('#txt2img_queue_list tr[data-task=\"{cancelled}\"]')")
    page.wait_for_function("document.querySelector('#html_info_txt2img').innerText.startsWith('second of the queue')",
                           timeout=3 * JOB_TIMEOUT)  # two jobs, one after the other, on a slow shared CPU
    wait_for_job(page)
    page.wait_for_selector("#txt2img_queue_list .queue-empty")
    assert len(saved_images(app) - before) == 2  # both queued jobs ran, the cancelled one never did
    assert page.get_attribute("#txt2img_random_seed", "title").startswith("Random seed")  # the symbol buttons' hints
    assert page.errors == []
