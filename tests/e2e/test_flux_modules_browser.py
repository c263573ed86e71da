"""Forge's "VAE / Text Encoder" in the quicksettings row, in Chromium: choose a tiny Flux.1 checkpoint (the CFG Scale
slider moves to Flux's 1) and its modules there, generate, and the infotext names the chosen modules (`Module N`)."""
from __future__ import annotations

import json
import shutil

import pytest

from tests.e2e.test_ui_browser import (
    JOB_TIMEOUT,
    App,
    choose_checkpoint,
    opened_page,
    set_number,
    wait_for_job,
)
from tests.fixtures import flux as tiny_flux

pytestmark = pytest.mark.e2e
CHECKPOINT = "flux1-tiny"


@pytest.fixture(scope="module")
def app(tmp_path_factory):
    models = tmp_path_factory.mktemp("e2e-flux-models")
    tiny = tiny_flux.make(seed=7)
    tiny_flux.write_transformer_only(models / "Stable-diffusion" / f"{CHECKPOINT}.safetensors", tiny)
    tiny_flux.write_parts(models, tiny)
    # second copies the user can choose instead of the first files of each kind (the default)
    shutil.copyfile(models / "text_encoder" / "t5xxl_fp16.safetensors", models / "text_encoder" / "t5xxl_other.safetensors")
    shutil.copyfile(models / "VAE" / "ae.safetensors", models / "VAE" / "ae_alt.safetensors")
    data = tmp_path_factory.mktemp("e2e-flux-data")
    (data / "config.json").write_text(json.dumps({"show_progress_every_n_steps": 0}))
    running = App(data, models)
    running.start()
    yield running
    running.stop()


def test_choose_the_checkpoint_and_its_modules_in_the_quicksettings_row(browser, app):
    with opened_page(browser, app) as page:
        assert page.locator("#quicksettings #setting_forge_additional_modules").is_visible()
        choose_checkpoint(page, f"{CHECKPOINT}.safetensors")
        page.wait_for_function("document.querySelector('#txt2img_cfg_scale input[type=number]').value === '1'",
                               timeout=JOB_TIMEOUT)
        modules = page.locator("#setting_forge_additional_modules input")
        for module in ("t5xxl_other.safetensors", "ae_alt.safetensors"):
            modules.click()
            page.locator("#setting_forge_additional_modules [role=option]", has_text=module).first.click()
            page.wait_for_function(f"document.querySelector('#setting_forge_additional_modules').innerText"
                                   f".includes({module!r})")
        page.wait_for_function("typeof opts !== 'undefined' && (opts.forge_additional_modules || []).length === 2",
                               timeout=JOB_TIMEOUT)
        page.fill("#txt2img_prompt textarea", "a red cube")
        for elem_id, value in (("txt2img_width", 64), ("txt2img_height", 64), ("txt2img_steps", 2)):
            set_number(page, elem_id, value)
        page.click("#txt2img_generate")
        page.wait_for_function("document.querySelector('#html_info_txt2img').innerText.includes('Module 1')",
                               timeout=JOB_TIMEOUT)
        wait_for_job(page)
        shown = page.inner_text("#html_info_txt2img")
        assert "Module 1: clip_l, Module 2: t5xxl_other, Module 3: ae_alt" in shown
        assert "CFG scale: 1" in shown and "Distilled CFG Scale: 3.5" in shown and f"Model: {CHECKPOINT}" in shown
        assert page.errors == []
