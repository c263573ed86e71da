"""The History tab in Chromium: lists the output folders' images newest first, filters by prompt, model and day, shows
an image's parameters, sends them to txt2img, deletes into the trash."""
from __future__ import annotations

import datetime
import os
import shutil

import pytest
from PIL import Image, PngImagePlugin

pytestmark = pytest.mark.e2e

OLD = datetime.datetime(2024, 5, 17, 12, 0).timestamp()


def save(folder, name: str, prompt: str, model: str, when: float) -> str:
    folder.mkdir(parents=True, exist_ok=True)
    meta = PngImagePlugin.PngInfo()
    meta.add_text("parameters", f"{prompt}\nNegative prompt: fog\nSteps: 17, Sampler: Euler a, CFG scale: 6.5, "
                                f"Seed: 31337, Size: 64x64, Model: {model}")
    path = folder / name
    Image.new("RGB", (64, 64), (10, 20, 30)).save(path, pnginfo=meta)
    os.utime(path, (when, when))
    return str(path)


def count(page, text: str) -> None:
    page.wait_for_function(f"document.querySelector('#history_count').innerText.startsWith({text!r})")


def thumbnails(page) -> list[str]:
    return page.locator("#history_gallery .thumbnail-item .caption-label, #history_gallery figcaption").all_inner_texts()


@pytest.fixture
def empty_outputs(app):
    """The shared app's output folders, emptied for the test (what other tests made is put back after it)."""
    outputs, aside = app.data_dir / "outputs", app.data_dir / "outputs-aside"
    if outputs.exists():
        outputs.rename(aside)
    yield outputs
    shutil.rmtree(outputs, ignore_errors=True)
    if aside.exists():
        aside.rename(outputs)


def test_history_lists_filters_opens_sends_and_deletes(empty_outputs, page, app):
    outputs = empty_outputs
    trashed_before = set((app.data_dir / "trash").glob("*"))
    now = datetime.datetime.now().timestamp()
    save(outputs / "txt2img-images", "00001-1.png", "a lighthouse at dusk", "tiny_sd1", now - 60)
    save(outputs / "img2img-images", "00002-2.png", "a red fox", "other_model", now - 30)
    save(outputs / "txt2img-grids", "grid-0001.png", "a blue lighthouse", "tiny_sd1", OLD)

    page.locator("#tab_history-button").dispatch_event("click")
    count(page, "3 images")
    page.wait_for_function("document.querySelectorAll('#history_gallery img').length === 3")
    captions = page.locator("#history_gallery").inner_text()
    assert captions.index("a red fox") < captions.index("a lighthouse at dusk") < captions.index("a blue lighthouse")

    page.fill("#history_search textarea, #history_search input", "lighthouse")
    page.press("#history_search textarea, #history_search input", "Enter")
    count(page, "2 images")
    page.fill("#history_date textarea, #history_date input", "2024-05")
    page.press("#history_date textarea, #history_date input", "Enter")
    count(page, "1 image,")
    assert "a blue lighthouse" in page.locator("#history_gallery").inner_text()
    page.fill("#history_date textarea, #history_date input", "")
    page.fill("#history_search textarea, #history_search input", "")
    page.press("#history_search textarea, #history_search input", "Enter")
    count(page, "3 images")
    page.click("#history_model input")
    page.locator("#history_model [role=option]", has_text="other_model").click()
    count(page, "1 image,")
    page.click("#history_model input")
    page.locator("#history_model [role=option]", has_text="All models").click()
    count(page, "3 images")

    page.locator("#history_gallery img").nth(1).click()  # the second newest
    page.wait_for_selector("#history_html_info:has-text('a lighthouse at dusk')")
    assert "Steps: 17" in page.inner_text("#history_html_info")
    page.click("#history_send_to_txt2img")
    page.wait_for_function("document.querySelector('#txt2img_prompt textarea').value === 'a lighthouse at dusk'")
    assert page.locator("#txt2img_neg_prompt textarea").input_value() == "fog"
    assert page.locator("#txt2img_steps input[type=number]").input_value() == "17"

    page.locator("#tab_history-button").dispatch_event("click")
    page.locator("#history_gallery img").first.click()
    page.wait_for_selector("#history_html_info:has-text('a red fox')")
    page.click("#history_delete")
    count(page, "2 images")
    assert not (outputs / "img2img-images" / "00002-2.png").exists()
    trashed = set((app.data_dir / "trash").iterdir()) - trashed_before
    assert [p.name.endswith("-00002-2.png") for p in trashed] == [True]
    assert page.errors == []
