"""The page's layout in Chromium at phone and desktop widths: on a phone the results go under the controls and
Generate brings them into view; on a desktop they sit beside the controls."""
from __future__ import annotations

import pytest

from tests.e2e.test_ui_browser import ARTIFACTS, JOB_TIMEOUT, choose_checkpoint, opened_page, small_job, wait_for_job

pytestmark = pytest.mark.e2e


def box(page, selector: str) -> dict:
    return page.locator(selector).bounding_box()


def test_phone_shows_the_gallery_under_the_controls_after_generating(browser, app):
    with opened_page(browser, app) as page:
        page.set_viewport_size({"width": 390, "height": 844})
        choose_checkpoint(page, "tiny_sd1.safetensors")
        small_job(page, "a phone-sized cube")
        page.click("#txt2img_generate")
        page.wait_for_selector("#txt2img_gallery img", timeout=JOB_TIMEOUT)
        wait_for_job(page)
        gallery, settings = box(page, "#txt2img_gallery"), box(page, "#txt2img_settings")
        assert gallery["y"] >= settings["y"] + settings["height"] - 1  # under the controls
        assert gallery["x"] >= 0 and gallery["x"] + gallery["width"] <= 390  # within the screen's width
        assert gallery["y"] < 844 and gallery["y"] + min(gallery["height"], 200) > 0  # scrolled into view
        assert page.evaluate("document.documentElement.scrollWidth") <= 390  # nothing pushes the page sideways
        ARTIFACTS.mkdir(exist_ok=True)
        page.screenshot(path=str(ARTIFACTS / "layout-phone.png"))
        assert page.errors == []


@pytest.mark.parametrize("width, height", [(1280, 800), (820, 1180)], ids=["desktop", "tablet"])
def test_wide_screens_show_the_results_beside_the_controls(browser, app, width, height):
    with opened_page(browser, app) as page:
        page.set_viewport_size({"width": width, "height": height})
        results, settings = box(page, "#txt2img_results"), box(page, "#txt2img_settings")
        assert results["x"] >= settings["x"] + settings["width"]
        assert abs(results["y"] - settings["y"]) < 200  # the same row
        assert results["x"] + results["width"] <= width
        assert page.evaluate("document.documentElement.scrollWidth") <= width
        ARTIFACTS.mkdir(exist_ok=True)
        page.screenshot(path=str(ARTIFACTS / f"layout-{width}.png"))
        assert page.errors == []
