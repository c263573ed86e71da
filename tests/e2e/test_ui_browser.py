"""The real app in a subprocess, driven through Debian's Chromium: generate, download, seeds, interrupt, errors,
settings that survive a restart, UI defaults and Reload UI. The shared app (conftest) serves the tests that leave
its settings alone; the module starts its own app for the ones that save settings and restart it."""
from __future__ import annotations

import contextlib
import json
import os
import re
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest
from PIL import Image

pytestmark = pytest.mark.e2e

REPO = Path(__file__).resolve().parents[2]
ARTIFACTS = REPO / "test-artifacts"
CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
                 "--no-first-run"]
START_TIMEOUT = 240
JOB_TIMEOUT = 120_000  # ms: this CPU is shared and slow


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class App:
    """`launch.py` in a subprocess on a free loopback port, with its own data dir and the tiny models."""

    def __init__(self, data_dir: Path, models_dir: Path):
        self.data_dir, self.models_dir = data_dir, models_dir
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}/"
        self.log = data_dir / "app.log"
        self.process = None

    def start(self) -> None:
        env = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_ENDPOINT": "http://127.0.0.1:9", "GRADIO_ANALYTICS_ENABLED": "False",
               "GRADIO_TEMP_DIR": str(self.data_dir / "gradio"), "PYTHONUNBUFFERED": "1", "NO_PROXY": "127.0.0.1,localhost"}
        command = [sys.executable, str(REPO / "launch.py"), "--skip-install", "--skip-torch-cuda-test", "--port", str(self.port),
                   "--data-dir", str(self.data_dir), "--models-dir", str(self.models_dir)]
        with open(self.log, "ab") as log:
            # the working directory is the data dir: relative output folders land there
            self.process = subprocess.Popen(command, cwd=self.data_dir, env=env, stdout=log, stderr=subprocess.STDOUT)
        deadline = time.time() + START_TIMEOUT
        while time.time() < deadline:
            if self.process.poll() is not None:
                pytest.fail(f"the app exited with {self.process.returncode}:\n{self.log_tail()}")
            try:
                with urllib.request.urlopen(self.url + "internal/ping", timeout=2) as response:
                    if response.status == 200:
                        return
            except OSError:
                time.sleep(0.5)
        self.stop()  # not left running after the test
        pytest.fail(f"the app did not answer within {START_TIMEOUT}s:\n{self.log_tail()}")

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(30)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(10)
        self.process = None

    def log_tail(self) -> str:
        return self.log.read_text(encoding="utf8", errors="replace")[-4000:]


def start_app(tmp_path_factory, tiny_models_dir) -> App:
    """The app on links to the session's tiny models (a test may add files without touching the originals)."""
    models = tmp_path_factory.mktemp("e2e-models")
    for source in tiny_models_dir.rglob("*.safetensors"):
        target = models / source.relative_to(tiny_models_dir)
        target.parent.mkdir(parents=True, exist_ok=True)
        target.symlink_to(source)
    data = tmp_path_factory.mktemp("e2e-data")
    # frequent progress and previews, so that a test sees a job while it runs even on a fast machine
    (data / "config.json").write_text(json.dumps({"live_preview_refresh_period": 250, "show_progress_every_n_steps": 5}))
    running = App(data, models)
    running.start()
    return running


@pytest.fixture(scope="module")
def own_app(tmp_path_factory, tiny_models_dir):
    """An app of this module's own, for the tests that change saved settings and restart it (conftest's shared
    server must keep its settings)."""
    running = start_app(tmp_path_factory, tiny_models_dir)
    yield running
    running.stop()


@pytest.fixture
def own_page(own_app, browser):
    with opened_page(browser, own_app) as page:
        yield page


@contextlib.contextmanager
def opened_page(browser, app, **context_options):
    """A fresh browser context's page on the app, loaded, collecting the page's errors in `page.errors`."""
    context = browser.new_context(viewport={"width": 1400, "height": 1000}, **context_options)
    page = context.new_page()
    page.set_default_timeout(60_000)
    page.errors = []
    page.on("pageerror", lambda error: page.errors.append(str(error)))
    open_page(page, app)
    try:
        yield page
    finally:
        context.close()


def open_page(page, app) -> None:
    page.goto(app.url)
    wait_for_page_loaded(page)


def wait_for_page_loaded(page) -> None:
    """onUiLoaded's moment: the page has shown every tab once (ui.js) and is back on txt2img; a click before races it."""
    page.wait_for_selector("#txt2img_generate")
    page.wait_for_function("typeof atelierLoaded !== 'undefined' && atelierLoaded")


def set_number(page, elem_id: str, value) -> None:
    box = page.locator(f"#{elem_id} input[type=number]")
    box.fill(str(value))
    box.press("Enter")


def choose(page, elem_id: str, option: str) -> None:
    page.click(f"#{elem_id} input")
    page.locator(f"#{elem_id} [role=option]", has_text=option).first.click()


def choose_checkpoint(page, name: str) -> None:
    choose(page, "setting_sd_model_checkpoint", name)
    page.wait_for_function(f"document.querySelector('#setting_sd_model_checkpoint input').value.startsWith({name!r} + ' [')",
                           timeout=JOB_TIMEOUT)


def generation_info(page) -> dict:
    return json.loads(page.locator("#generation_info_txt2img textarea").input_value() or "{}")


def wait_for_job(page) -> None:
    """After Generate: the job's end shows Generate again."""
    page.wait_for_selector("#txt2img_interrupt", state="hidden", timeout=JOB_TIMEOUT)  # in the page, hidden
    page.wait_for_selector("#txt2img_generate", state="visible", timeout=JOB_TIMEOUT)


def small_job(page, prompt: str = "a red cube") -> None:
    page.fill("#txt2img_prompt textarea", prompt)
    for elem_id, value in (("txt2img_width", 64), ("txt2img_height", 64), ("txt2img_steps", 4), ("txt2img_batch_count", 1)):
        set_number(page, elem_id, value)


def test_generate_download_the_png_and_reuse_its_seed(page):
    choose_checkpoint(page, "tiny_sd1.safetensors")
    small_job(page)
    page.wait_for_function("document.querySelector('#txt2img_token_counter').innerText.trim() === '3/75'")
    page.click("#txt2img_generate")
    page.wait_for_selector("#txt2img_gallery img", timeout=JOB_TIMEOUT)
    wait_for_job(page)
    shown = page.inner_text("#html_info_txt2img").strip()
    assert shown.startswith("a red cube\nSteps: 4, Sampler: DPM++ 2M, Schedule type: Karras, CFG scale: 7")
    assert "Size: 64x64" in shown and "Model: tiny_sd1" in shown

    page.click("#txt2img_gallery button[aria-label^='Thumbnail 1']")
    with page.expect_download() as download:
        page.click("#txt2img_gallery button[aria-label=Download]")
    with Image.open(download.value.path()) as image:
        assert image.format == "PNG" and image.size == (64, 64)
        assert image.info["parameters"] == shown

    seed = int(re.search(r"Seed: (\d+)", shown).group(1))
    assert page.input_value("#txt2img_seed input") == "-1"
    page.click("#txt2img_reuse_seed")
    page.wait_for_function(f"document.querySelector('#txt2img_seed input').value === '{seed}'")
    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / "txt2img.png"), full_page=True)
    assert page.errors == []


def test_interrupt_ends_a_long_job_with_the_images_done(page):
    choose_checkpoint(page, "tiny_sd1.safetensors")
    page.fill("#txt2img_prompt textarea", "a long job")
    for elem_id, value in (("txt2img_width", 128), ("txt2img_height", 128), ("txt2img_steps", 150),
                           ("txt2img_batch_count", 3)):
        set_number(page, elem_id, value)
    page.click("#txt2img_generate")
    page.wait_for_selector("#txt2img_progress .livePreview img", timeout=JOB_TIMEOUT)  # early in the first image
    assert re.search(r"\d+% ETA: \d+", page.inner_text("#txt2img_progress"))
    assert "Image 1/3, step " in page.inner_text("#txt2img_progress")
    page.click("#txt2img_interrupt")
    wait_for_job(page)
    info = generation_info(page)
    done = len(info["infotexts"]) - info["index_of_first_image"]
    # "Don't Interrupt in the middle" (the default): the image being made is finished, the next ones never start
    assert done in (1, 2) and len(info["all_seeds"]) == 3
    thumbnails = page.locator("#txt2img_gallery button[aria-label^=Thumbnail]").count()
    assert thumbnails == (done + 1 if done > 1 else done)  # a grid comes first when there are several
    assert page.inner_text("#txt2img_progress").strip() == ""
    assert page.locator("#txt2img_skip").is_hidden()  # in the page, hidden, as Interrupt
    small_job(page, "after the interrupt")  # ready for the next job
    page.click("#txt2img_generate")
    page.wait_for_function("document.querySelector('#html_info_txt2img').innerText.startsWith('after the interrupt')",
                           timeout=JOB_TIMEOUT)
    assert page.errors == []


@pytest.fixture
def broken_checkpoint(app):
    """A corrupt file among the shared app's checkpoints, for this test only."""
    path = app.models_dir / "Stable-diffusion" / "broken.safetensors"
    path.write_bytes(b"\x00not a checkpoint" * 64)
    yield path
    path.unlink()


def test_impossible_requests_show_the_error_and_the_app_keeps_serving(page, broken_checkpoint):
    choose_checkpoint(page, "tiny_sd1.safetensors")  # whatever the tests before chose
    page.click("#refresh_sd_model_checkpoint")
    choose(page, "setting_sd_model_checkpoint", "broken.safetensors")
    page.wait_for_selector("#quicksettings_result .error", timeout=JOB_TIMEOUT)
    assert page.inner_text("#quicksettings_result").startswith(
        "Error: Could not read broken.safetensors: the file is corrupt, truncated or not a checkpoint")
    page.wait_for_function("document.querySelector('#setting_sd_model_checkpoint input').value.startsWith('tiny_sd1')")

    small_job(page, "odd width")
    set_number(page, "txt2img_width", 100)
    page.click("#txt2img_generate")
    page.wait_for_selector("#html_log_txt2img .error", timeout=JOB_TIMEOUT)
    assert page.inner_text("#html_log_txt2img").strip() == "Error: Width and height must be positive multiples of 8, got 100x64"

    set_number(page, "txt2img_width", 64)
    page.fill("#txt2img_prompt textarea", "still serving")
    page.press("#txt2img_prompt textarea", "Control+Enter")  # A1111's shortcut for Generate
    page.wait_for_function("document.querySelector('#html_info_txt2img').innerText.startsWith('still serving')",
                           timeout=JOB_TIMEOUT)
    assert page.locator("#html_log_txt2img .error").count() == 0
    assert page.errors == []


def open_settings(page) -> None:
    page.click("#tab_settings-button")
    page.wait_for_selector("#settings_nav a[data-section]")


def test_settings_search_apply_and_restart(own_page, own_app):
    page, app = own_page, own_app
    open_settings(page)
    page.fill("#settings_search input, #settings_search textarea", "file format for images")
    page.wait_for_selector("#setting_samples_format", state="visible")
    assert page.locator("#setting_jpeg_quality").is_hidden()
    page.fill("#setting_samples_format input, #setting_samples_format textarea", "jpg")  # a dropdown of image types
    page.get_by_role("option", name="jpg", exact=True).click()
    page.click("#settings_submit")
    page.wait_for_function("document.querySelector('#settings_result').innerText.includes('changed')")
    assert page.inner_text("#settings_result").strip() == "1 setting changed: samples_format."
    assert json.loads((app.data_dir / "config.json").read_text(encoding="utf8"))["samples_format"] == "jpg"

    app.stop()
    app.start()
    open_page(page, app)
    open_settings(page)
    page.click("#settings_nav a[data-section=settings_section_saving_images_grids]")
    assert page.input_value("#setting_samples_format input, #setting_samples_format textarea") == "jpg"
    assert page.errors == []


def test_defaults_page_saves_the_txt2img_controls_for_reload_ui(own_page, own_app):
    page, app = own_page, own_app
    set_number(page, "txt2img_steps", 33)
    open_settings(page)
    page.click("#settings_nav a[data-section=settings_section_defaults]")
    page.click("#ui_defaults_apply")
    page.wait_for_function("document.querySelector('#ui_defaults_review').innerText.startsWith('Wrote')")
    assert json.loads((app.data_dir / "ui-config.json").read_text(encoding="utf8"))["txt2img/Sampling steps/value"] == 33
    errors_before_reload = list(page.errors)
    page.click("#settings_restart_gradio")
    page.wait_for_selector("#atelier_reloading")
    page.wait_for_selector("#atelier_reloading", state="detached", timeout=JOB_TIMEOUT)  # the page loaded again
    page.wait_for_selector("#txt2img_steps input[type=number]")
    assert page.input_value("#txt2img_steps input[type=number]") == "33"
    assert errors_before_reload == []
