"""Extensions in Chromium: an extension made on the fly as a git repository is installed through the Install from URL
form, the UI restarts through "Apply and restart UI", and everything the extension brings works: its tab, its
JavaScript and CSS, its Script's process() in a generation's infotext, its install.py (once), its setting, its
preload.py flag (after a fresh start). A broken extension is logged and the app serves; a disabled one is gone."""
from __future__ import annotations

import json
import textwrap

import pytest

from tests.e2e.test_ui_browser import (
    JOB_TIMEOUT,
    App,
    choose_checkpoint,
    open_page,
    opened_page,
    set_number,
    wait_for_page_loaded,
)
from tests.fixtures.extensions import make_extension_repo

pytestmark = pytest.mark.e2e
NAME = "atelier-e2e-ext"


def extension_files(install_marker) -> dict[str, str]:
    script = '''
        import gradio as gr

        from modules import script_callbacks, scripts, shared


        class AddsToThePrompt(scripts.Script):
            def title(self):
                return "E2E extension"

            def show(self, is_img2img):
                return scripts.AlwaysVisible

            def process(self, p):
                p.prompt += ", added by e2e ext"
                p.all_prompts = [prompt + ", added by e2e ext" for prompt in p.all_prompts]


        def tabs():
            flag = getattr(shared.cmd_opts, "e2e_ext_greeting", None)
            with gr.Blocks(analytics_enabled=False) as tab:
                gr.HTML(f"<p id='e2e_ext_content'>greeting={flag}</p>")
            return [(tab, "E2E Ext", "e2e_ext")]


        def settings():
            shared.opts.add_option("e2e_ext_option", shared.OptionInfo("a value", "E2E extension option",
                                                                       section=("e2e_ext", "E2E Ext")))


        script_callbacks.on_ui_tabs(tabs)
        script_callbacks.on_ui_settings(settings)
    '''
    return {
        "install.py": f"import launch\nassert launch.is_installed('pytest')\n"
                      f"with open({str(install_marker)!r}, 'a') as f:\n    f.write('ran\\n')\n",
        "preload.py": "def preload(parser):\n    parser.add_argument('--e2e-ext-greeting', default=None)\n",
        "scripts/e2e_ext.py": textwrap.dedent(script),
        "javascript/e2e_ext.js": "window.e2eExtLoaded = 'yes';\n",
        "style.css": "#e2e_ext_content { color: rgb(12, 34, 56); }\n",
    }


@pytest.fixture(scope="module")
def setup(tmp_path_factory, tiny_models_dir):
    root = tmp_path_factory.mktemp("e2e-ext")
    models = root / "models"
    for source in tiny_models_dir.rglob("*.safetensors"):
        target = models / source.relative_to(tiny_models_dir)
        target.parent.mkdir(parents=True, exist_ok=True)
        target.symlink_to(source)
    data = root / "data"
    broken = data / "extensions" / "broken-ext" / "scripts"
    broken.mkdir(parents=True)
    (broken / "broken_script.py").write_text("def oops(:\n")  # a syntax error: logged, the rest loads
    (data / "config.json").write_text(json.dumps({}))
    marker = root / "install-ran.txt"
    repo = make_extension_repo(root / "source" / f"{NAME}.git", extension_files(marker))
    app = App(data, models)
    app.start()
    yield app, repo, marker
    app.stop()


@pytest.fixture
def page(setup, browser):
    with opened_page(browser, setup[0]) as page:
        yield page


def open_extensions(page, subtab: str) -> None:
    page.click("#tab_extensions-button")
    page.get_by_role("tab", name=subtab).click()


def apply_and_restart(page) -> None:
    open_extensions(page, "Installed")
    page.click("#extensions_apply")
    page.wait_for_selector("#atelier_reloading")
    page.wait_for_selector("#atelier_reloading", state="detached", timeout=JOB_TIMEOUT)  # the new page loaded
    wait_for_page_loaded(page)


def test_installed_extension_works_after_apply_and_restart(page, setup):
    app, repo, marker = setup
    assert page.locator("#tab_e2e_ext-button").count() == 0
    assert "Error loading script" in app.log_tail() and "broken_script.py" in app.log_tail()

    open_extensions(page, "Install from URL")
    page.fill("#extensions_install_url input", repo.url)
    page.click("#extensions_install_button")
    page.wait_for_function("document.querySelector('#extension_install_result').innerText.includes('Installed into')",
                           timeout=JOB_TIMEOUT)
    assert (app.data_dir / "extensions" / NAME / "scripts" / "e2e_ext.py").is_file()
    assert page.locator(f"#extensions tr[data-extension='{NAME}']").count() == 1

    apply_and_restart(page)
    page.click("#tab_e2e_ext-button")
    page.wait_for_selector("#e2e_ext_content", state="visible")
    assert page.inner_text("#e2e_ext_content") == "greeting=None"  # preload.py runs at a process start: not yet
    assert page.evaluate("window.e2eExtLoaded") == "yes"
    assert page.evaluate("getComputedStyle(document.querySelector('#e2e_ext_content')).color") == "rgb(12, 34, 56)"
    assert marker.read_text() == "ran\n"  # once: at install, not again at the restart

    page.click("#tab_settings-button")
    assert page.locator("#setting_e2e_ext_option").count() == 1

    page.click("#tab_txt2img-button")
    choose_checkpoint(page, "tiny_sd1.safetensors")
    page.fill("#txt2img_prompt textarea", "a red cube")
    for elem_id, value in (("txt2img_width", 64), ("txt2img_height", 64), ("txt2img_steps", 2)):
        set_number(page, elem_id, value)
    page.click("#txt2img_generate")
    page.wait_for_function("document.querySelector('#html_info_txt2img').innerText.includes('Steps: 2')",
                           timeout=JOB_TIMEOUT)
    assert page.inner_text("#html_info_txt2img").startswith("a red cube, added by e2e ext\n")
    assert page.errors == []


def test_a_fresh_start_parses_the_extension_flag(setup, browser, monkeypatch):
    app, _, marker = setup
    app.stop()
    monkeypatch.setenv("COMMANDLINE_ARGS", "--e2e-ext-greeting hi")  # fails to start unless preload.py added it
    app.start()
    page = browser.new_page()
    open_page(page, app)
    page.click("#tab_e2e_ext-button")
    assert page.inner_text("#e2e_ext_content") == "greeting=hi"
    assert marker.read_text() == "ran\n"  # the app runs with --skip-install
    page.close()


def test_disabled_extension_is_gone_after_restart(page, setup):
    app = setup[0]
    open_extensions(page, "Installed")
    page.uncheck(f"#extensions input[name='enable_{NAME}']")
    apply_and_restart(page)
    assert json.loads((app.data_dir / "config.json").read_text())["disabled_extensions"] == [NAME]
    assert page.locator("#tab_e2e_ext-button").count() == 0
    assert page.evaluate("window.e2eExtLoaded") is None
    open_extensions(page, "Installed")
    assert not page.is_checked(f"#extensions input[name='enable_{NAME}']")
    assert page.errors == []


def test_install_from_the_available_index(page, setup, tmp_path):
    """A local index file in A1111's format: Load from: lists it, Install on its row clones it, and the installed
    extension then hides with the default tags."""
    app = setup[0]
    repo = make_extension_repo(tmp_path / "index-ext.git", {"scripts/nothing.py": "# an extension from the index\n"})
    index = tmp_path / "index.json"
    index.write_text(json.dumps({"tags": {"script": "a script", "ads": "advertising"}, "extensions": [
        {"name": "Index Ext", "url": repo.url, "description": "from the index", "tags": ["script"], "added": "2024-01-02"},
        {"name": "An Advert", "url": "https://example.invalid/ad.git", "description": "hidden", "tags": ["ads"]}]}))
    open_extensions(page, "Available")
    page.fill("#extensions_index_url input", str(index))
    page.click("#extensions_load_available")
    page.wait_for_function("document.querySelector('#available_extensions_html').innerText.includes('Index Ext')",
                           timeout=JOB_TIMEOUT)
    assert "An Advert" not in page.inner_text("#available_extensions_html")  # the ads tag is hidden by default
    assert "Extension hidden: 1" in page.inner_text("#available_extensions_html")
    page.click("#available_extensions_html button.extension-install")
    page.wait_for_function("document.querySelector('#extensions_available_result').innerText.includes('Installed into')",
                           timeout=JOB_TIMEOUT)
    assert "Extension hidden: 2" in page.inner_text("#available_extensions_html")  # now tagged installed: hidden too
    assert (app.data_dir / "extensions" / "index-ext" / "scripts" / "nothing.py").is_file()
    assert page.errors == []
