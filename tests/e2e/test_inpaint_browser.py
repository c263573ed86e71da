"""Inpaint in Chromium: upload an image, draw a mask stroke, Generate: the result differs only inside the mask."""
from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from tests.e2e.test_ui_browser import JOB_TIMEOUT, choose_checkpoint, set_number

pytestmark = pytest.mark.e2e


def test_inpaint_stroke_changes_only_the_masked_area(page, tmp_path):
    rng = np.random.default_rng(0)
    original = Image.fromarray(np.kron(rng.integers(0, 255, (8, 8, 3)), np.ones((8, 8, 1))).astype(np.uint8))
    path = tmp_path / "source.png"
    original.save(path)

    choose_checkpoint(page, "tiny_sd1.safetensors")
    page.locator("#tab_img2img-button").dispatch_event("click")
    page.locator("#img2img_inpaint_tab-button").dispatch_event("click")
    page.wait_for_selector("#img2img_mask_blur", state="visible")  # the inpaint controls show in Inpaint mode
    page.locator("#img2maskimg input[type=file]").set_input_files(str(path))
    canvas = page.locator("#img2maskimg canvas").first
    canvas.wait_for(state="visible")
    page.wait_for_timeout(1000)  # the editor draws the uploaded image before it takes strokes
    box = canvas.bounding_box()
    cx, cy = box["x"] + box["width"] / 2, box["y"] + box["height"] / 2
    page.mouse.move(cx - 10, cy)
    page.mouse.down()
    for dx in range(-10, 11, 2):
        page.mouse.move(cx + dx, cy, steps=2)
    page.mouse.up()

    page.fill("#img2img_prompt textarea", "a red cube")
    for elem_id, value in (("img2img_width", 64), ("img2img_height", 64), ("img2img_steps", 4),
                           ("img2img_denoising_strength", 0.9), ("img2img_mask_blur", 0)):
        set_number(page, elem_id, value)
    page.click("#img2img_generate")
    page.wait_for_selector("#img2img_gallery img", timeout=JOB_TIMEOUT)
    page.wait_for_selector("#img2img_generate", state="visible", timeout=JOB_TIMEOUT)
    assert "Mask blur: 0" in page.inner_text("#html_info_img2img")

    page.click("#img2img_gallery button[aria-label^='Thumbnail 1']")
    with page.expect_download() as download:
        page.click("#img2img_gallery button[aria-label=Download]")
    with Image.open(download.value.path()) as result:
        out = np.asarray(result.convert("RGB"), dtype=np.int16)
    orig = np.asarray(original, dtype=np.int16)
    changed = np.any(out != orig, axis=2)
    assert changed.any(), "the masked stroke was regenerated"
    ys, xs = np.nonzero(changed)
    # the brush paints a round blob around the short stroke in the middle: what changed is centred there, and
    # the corners, far from the stroke, are the original's pixels exactly (mask blur 0)
    assert abs(ys.mean() - 32) < 6 and abs(xs.mean() - 32) < 6
    assert changed.mean() < 0.75
    for corner in (changed[:6, :6], changed[:6, -6:], changed[-6:, :6], changed[-6:, -6:]):
        assert not corner.any()
    assert page.errors == []
