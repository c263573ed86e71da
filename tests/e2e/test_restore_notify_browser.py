"""In Chromium: 🌀 takes a running job back after a page reload (A1111's restore progress), and a browser notification
with the job's image when a job finishes while the page is not in front."""
from __future__ import annotations

import pytest

from tests.e2e.test_ui_browser import JOB_TIMEOUT, choose_checkpoint, set_number, small_job, wait_for_job

pytestmark = pytest.mark.e2e

# window.Notification stubbed (permission granted) and the page not in front: the notifications made are recorded
NOTIFICATION_STUB = """
window.madeNotifications = [];
window.Notification = class {
    constructor(title, options) { window.madeNotifications.push({title: title, ...options}); }
    close() {}
};
window.Notification.permission = "granted";
window.Notification.requestPermission = async () => "granted";
document.hasFocus = () => false;
"""


def test_restore_progress_after_a_reload_brings_the_running_jobs_images(page):
    choose_checkpoint(page, "tiny_sd1.safetensors")
    small_job(page, "a slow job the page leaves")
    for elem_id, value in (("txt2img_steps", 150), ("txt2img_width", 256), ("txt2img_height", 256)):
        set_number(page, elem_id, value)  # still running when the page is back
    assert not page.locator("#txt2img_restore_progress").is_visible()  # nothing to restore yet
    page.click("#txt2img_generate")
    page.wait_for_function("document.querySelector('#txt2img_progress').innerText.includes('step ')",
                           timeout=JOB_TIMEOUT)
    task = page.evaluate("localStorage.getItem('txt2img_task_id')")
    assert task.startswith("task(txt2img-")

    page.reload()  # the job runs on; it may end before the page is back, its outputs are kept for 🌀 then
    page.wait_for_function("typeof atelierLoaded !== 'undefined' && atelierLoaded", timeout=2 * JOB_TIMEOUT)
    page.wait_for_selector("#txt2img_restore_progress", state="visible")
    page.click("#txt2img_restore_progress")
    page.wait_for_selector("#txt2img_restore_progress", state="hidden")
    page.wait_for_function("document.querySelector('#html_info_txt2img').innerText.startsWith('a slow job the page leaves')",
                           timeout=JOB_TIMEOUT)
    wait_for_job(page)
    assert page.locator("#txt2img_gallery img").count() >= 1
    assert "Steps: 150" in page.inner_text("#html_info_txt2img") and "Size: 256x256" in page.inner_text("#html_info_txt2img")
    page.wait_for_function("localStorage.getItem('txt2img_task_id') === null")  # done: nothing left to restore
    assert not page.locator("#txt2img_restore_progress").is_visible()
    assert page.errors == []


def test_a_finished_job_makes_a_browser_notification_with_its_image(page):
    page.evaluate(NOTIFICATION_STUB)
    choose_checkpoint(page, "tiny_sd1.safetensors")
    small_job(page, "notify me")
    page.click("#txt2img_generate")
    wait_for_job(page)
    page.wait_for_function("window.madeNotifications.length === 1")
    made = page.evaluate("window.madeNotifications[0]")
    shown = page.evaluate("[...document.querySelectorAll('#txt2img_gallery img')].map(img => img.src)")
    assert made["title"] == "Atelier" and made["body"] == "Generated 1 image"
    assert made["image"] == made["icon"] == shown[0]

    page.evaluate("opts.notification_browser = false")  # the setting turns it off
    page.click("#txt2img_generate")
    wait_for_job(page)
    page.wait_for_timeout(1500)
    assert page.evaluate("window.madeNotifications.length") == 1
    assert page.errors == []
