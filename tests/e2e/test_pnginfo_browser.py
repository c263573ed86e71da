"""PNG Info in Chromium: drop a PNG with parameters, Send to txt2img, the txt2img controls hold the values."""
from __future__ import annotations

import pytest
from PIL import Image, PngImagePlugin

pytestmark = pytest.mark.e2e

INFOTEXT = ("a lighthouse at dusk\nNegative prompt: fog\n"
            "Steps: 17, Sampler: Euler a, Schedule type: Automatic, CFG scale: 6.5, Seed: 31337, Size: 128x96")


def number(page, elem_id: str) -> str:
    return page.locator(f"#{elem_id} input[type=number]").input_value()


def test_send_to_txt2img_fills_the_fields(page, tmp_path):
    path = tmp_path / "with-parameters.png"
    meta = PngImagePlugin.PngInfo()
    meta.add_text("parameters", INFOTEXT)
    Image.new("RGB", (64, 64), (10, 20, 30)).save(path, pnginfo=meta)

    page.locator("#tab_pnginfo-button").dispatch_event("click")
    page.locator("#pnginfo_image input[type=file]").set_input_files(str(path))
    page.wait_for_selector("#pnginfo_html_info:has-text('a lighthouse at dusk')")
    page.locator("#txt2img_tab").dispatch_event("click")  # the sticky tab bar covers the button after the upload
    page.wait_for_function("document.querySelector('#txt2img_prompt textarea').value === 'a lighthouse at dusk'")
    assert page.locator("#txt2img_prompt textarea").is_visible()  # the page switched to txt2img
    assert page.locator("#txt2img_neg_prompt textarea").input_value() == "fog"
    assert number(page, "txt2img_steps") == "17"
    assert number(page, "txt2img_cfg_scale") == "6.5"
    assert number(page, "txt2img_seed") == "31337"
    assert (number(page, "txt2img_width"), number(page, "txt2img_height")) == ("128", "96")
    assert page.locator("#txt2img_sampling input").input_value() == "Euler a"
    assert page.errors == []
