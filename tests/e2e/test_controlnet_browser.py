"""ControlNet in Chromium: enable a unit, upload an image, preview its canny map, pick the model, generate; the
image's infotext carries the unit."""
from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from tests.e2e.test_ui_browser import (
    ARTIFACTS,
    JOB_TIMEOUT,
    choose,
    choose_checkpoint,
    generation_info,
    opened_page,
    small_job,
    wait_for_job,
)
from tests.fixtures.controlnets import write_controlnet

pytestmark = pytest.mark.e2e
UNIT = "#txt2img_controlnet_ControlNet-0"

# the preview <img> drawn on a canvas: (width, height, white pixels, centre pixel, corner pixel)
READ_PREVIEW = """(img) => {
    const canvas = document.createElement('canvas');
    canvas.width = img.naturalWidth; canvas.height = img.naturalHeight;
    const context = canvas.getContext('2d');
    context.drawImage(img, 0, 0);
    const data = context.getImageData(0, 0, canvas.width, canvas.height).data;
    let white = 0;
    for (let i = 0; i < data.length; i += 4) if (data[i] > 128) white++;
    const at = (x, y) => data[(y * canvas.width + x) * 4];
    return [canvas.width, canvas.height, white, at(canvas.width >> 1, canvas.height >> 1), at(2, 2)];
}"""


def test_enable_upload_preview_canny_generate_and_the_infotext_has_the_unit(browser, app, tmp_path):
    write_controlnet(app.models_dir / "ControlNet" / "cn_tiny_sd15_canny.safetensors", "v1")
    square = np.zeros((64, 64, 3), dtype=np.uint8)
    square[16:48, 16:48] = 255
    Image.fromarray(square).save(tmp_path / "square.png")
    with opened_page(browser, app) as page:
        choose_checkpoint(page, "tiny_sd1.safetensors")
        small_job(page, "a controlled cube")
        page.locator("#txt2img_controlnet").get_by_text("ControlNet", exact=True).first.click()
        page.set_input_files(f"{UNIT}_input_image input[type=file]", str(tmp_path / "square.png"))
        page.check(f"{UNIT}_enable_checkbox input")
        page.check(f"{UNIT}_preprocessor_preview input")
        choose(page, "txt2img_controlnet_ControlNet-0_preprocessor_dropdown", "canny")
        page.click(f"{UNIT}_refresh_models")
        choose(page, "txt2img_controlnet_ControlNet-0_model_dropdown", "cn_tiny_sd15_canny")
        page.click(f"{UNIT}_trigger_preprocessor")
        preview = page.wait_for_selector(f"{UNIT}_generated_image img", timeout=JOB_TIMEOUT)
        page.wait_for_function("(img) => img.complete && img.naturalWidth > 0", arg=preview)
        width, height, white, centre, corner = preview.evaluate(READ_PREVIEW)
        assert (width, height) == (512, 512)  # the preprocessor resolution: 512 by default
        assert white > 0 and centre < 128 and corner < 128  # edges at the square's sides, none inside or outside

        page.click("#txt2img_generate")
        page.wait_for_selector("#txt2img_gallery img", timeout=JOB_TIMEOUT)
        wait_for_job(page)
        infotext = generation_info(page)["infotexts"][0]
        assert 'ControlNet 0: "Module: canny, Model: cn_tiny_sd15_canny [' in infotext
        assert "Weight: 1.0" in infotext and "Control Mode: Balanced" in infotext
        ARTIFACTS.mkdir(exist_ok=True)
        page.screenshot(path=str(ARTIFACTS / "controlnet-unit.png"))
        assert page.errors == []
