"""Extension scripts driving the engine: loading from an extension's scripts/, the hooks in A1111's order with each
script's own arguments, a selectable script's run(), and a broken script that is logged while the rest go on."""
from __future__ import annotations

import logging
import shutil
import textwrap
from pathlib import Path

import numpy as np
import pytest

from modules import (
    extensions,
    processing,
    script_callbacks,
    scripts,
    ui_scripts,  # noqa: F401  (builds the undeclared test scripts' controls in a hidden page)
)
from modules.shared_options import opts
from tests.integration.engine_helpers import pixels, start_engine

SD1 = "tiny_sd1.safetensors"

RECORDER = '''
import gradio as gr
import torch
from modules import processing, scripts

CALLS = []


class Recorder(scripts.Script):
    def title(self):
        return "Recorder"

    def show(self, is_img2img):
        return scripts.AlwaysVisible

    def ui(self, is_img2img):
        return [gr.Checkbox(value=False, label="Enabled"), gr.Textbox(value=", recorded", label="Suffix")]

    def setup(self, p, enabled, suffix):
        CALLS.append(("setup", enabled, suffix))

    def before_process(self, p, enabled, suffix):
        CALLS.append(("before_process", enabled, suffix, p.seed))

    def process(self, p, enabled, suffix):
        CALLS.append(("process", enabled, suffix, list(p.all_seeds)))
        if enabled:
            p.all_prompts = [prompt + suffix for prompt in p.all_prompts]
            p.extra_generation_params["Recorder"] = "on"

    def before_process_batch(self, p, enabled, suffix, batch_number, prompts, seeds, subseeds):
        CALLS.append(("before_process_batch", batch_number, list(prompts), list(seeds)))

    def after_extra_networks_activate(self, p, enabled, suffix, batch_number, prompts, seeds, subseeds,
                                      extra_network_data):
        CALLS.append(("after_extra_networks_activate", batch_number, list(prompts), sorted(extra_network_data)))

    def process_batch(self, p, enabled, suffix, batch_number, prompts, seeds, subseeds):
        CALLS.append(("process_batch", batch_number, list(prompts)))

    def post_sample(self, p, ps, enabled, suffix):
        CALLS.append(("post_sample", tuple(ps.samples.shape)))

    def postprocess_batch(self, p, enabled, suffix, images, batch_number):
        CALLS.append(("postprocess_batch", batch_number, tuple(images.shape)))

    def postprocess_batch_list(self, p, pp, enabled, suffix, batch_number):
        CALLS.append(("postprocess_batch_list", batch_number, len(pp.images)))

    def postprocess_image(self, p, pp, enabled, suffix):
        CALLS.append(("postprocess_image", p.batch_index, pp.image.size))

    def postprocess(self, p, processed, enabled, suffix):
        CALLS.append(("postprocess", len(processed.images), processed.infotexts[-1].splitlines()[0]))

    def before_hr(self, p, enabled, suffix):
        CALLS.append(("before_hr",))
'''

SELECTABLE = '''
import gradio as gr
from modules import processing, scripts


class TwoPrompts(scripts.Script):
    def title(self):
        return "Two prompts"

    def ui(self, is_img2img):
        return [gr.Textbox(value="a blue ball", label="Second prompt")]

    def run(self, p, second):
        first = processing.process_images(p)
        p.prompt = second
        other = processing.process_images(p)
        return processing.Processed(p, first.images + other.images, first.seed, first.info,
                                    infotexts=first.infotexts + other.infotexts)
'''

FAILING = '''
from modules import scripts


class Failing(scripts.Script):
    def title(self):
        return "Failing"

    def show(self, is_img2img):
        return scripts.AlwaysVisible

    def process(self, p):
        raise RuntimeError("the failing script failed")
'''

BROKEN = "from modules import scripts\n\nclass Broken(scripts.Script:\n    pass\n"


def write_extension(data_dir: Path, name: str, files: dict[str, str]) -> Path:
    root = data_dir / "extensions" / name
    for filename, text in files.items():
        (root / filename).parent.mkdir(parents=True, exist_ok=True)
        (root / filename).write_text(textwrap.dedent(text), encoding="utf8")
    return root


def load_extension_scripts(data_dir: Path, files: dict[str, str]) -> scripts.ScriptRunner:
    """An extension with `files` under extensions/, loaded; the txt2img runner with its controls built."""
    write_extension(data_dir, "testext", files)
    opts.set("disabled_extensions", [])
    opts.set("disable_all_extensions", "none")
    extensions.list_extensions()
    scripts.load_scripts()
    return scripts.scripts_txt2img.ensure_args(False)


def module_of(title: str):
    return next(d.module for d in scripts.scripts_data if d.script_class().title() == title)


def job(runner: scripts.ScriptRunner, script_args: list, **kwargs) -> processing.StableDiffusionProcessingTxt2Img:
    fields = {"prompt": "a red cube", "negative_prompt": "blurry", "steps": 2, "width": 64, "height": 64, "seed": 1234,
              "sampler_name": "Euler", "cfg_scale": 7.0, "do_not_save_samples": True, "do_not_save_grid": True}
    fields.update(kwargs)
    return processing.StableDiffusionProcessingTxt2Img(**fields, scripts=runner, script_args=script_args)


def args_for(runner: scripts.ScriptRunner, title: str, *values) -> list:
    args = runner.default_args()
    script = runner.find(title)
    args[script.args_from:script.args_from + len(values)] = values
    return args


@pytest.fixture(scope="module")
def data_dir(tiny_models_dir, tmp_path_factory):
    data = tmp_path_factory.mktemp("data")
    start_engine(tiny_models_dir, data)  # one model manager: the checkpoint loads once for the whole file
    yield data
    extensions.extensions.clear()
    scripts.load_scripts()  # later tests see the built-in scripts only


@pytest.fixture()
def engine(data_dir):
    shutil.rmtree(data_dir / "extensions", ignore_errors=True)
    opts.set("sd_model_checkpoint", SD1)
    return data_dir


def test_always_on_script_changes_the_prompt_and_the_infotext_shows_it(engine):
    runner = load_extension_scripts(engine, {"scripts/recorder.py": RECORDER})
    recorder = runner.find("recorder")
    assert recorder.alwayson and recorder in runner.alwayson_scripts and recorder.filename.endswith("recorder.py")
    assert runner.default_args()[recorder.args_from:recorder.args_to] == [False, ", recorded"]
    processed = processing.run_with_scripts(job(runner, args_for(runner, "Recorder", True, ", by a script")))
    assert processed.infotexts[0].startswith("a red cube, by a script\nNegative prompt: blurry\n")
    assert "Recorder: on" in processed.infotexts[0]
    off = processing.run_with_scripts(job(runner, args_for(runner, "Recorder", False)))
    assert off.infotexts[0].startswith("a red cube\n") and "Recorder" not in off.infotexts[0]


def test_hooks_run_in_a1111_order_with_the_scripts_own_arguments(engine, tmp_path):
    runner = load_extension_scripts(engine, {"scripts/recorder.py": RECORDER})
    calls = module_of("Recorder").CALLS
    opts.set("return_grid", True)
    processed = processing.run_with_scripts(job(runner, args_for(runner, "Recorder", True, "!"), batch_size=2,
                                                prompt="a red cube <lora:nothing:1>", do_not_save_grid=False,
                                                outpath_grids=str(tmp_path)))
    assert processed.all_seeds == [1234, 1235]
    assert calls == [
        ("setup", True, "!"),
        ("before_process", True, "!", 1234),
        ("process", True, "!", [1234, 1235]),
        ("before_process_batch", 0, ["a red cube <lora:nothing:1>!"] * 2, [1234, 1235]),
        ("after_extra_networks_activate", 0, ["a red cube !"] * 2, ["lora"]),
        ("process_batch", 0, ["a red cube !"] * 2),
        ("post_sample", (2, 4, 8, 8)),
        ("postprocess_batch", 0, (2, 3, 64, 64)),
        ("postprocess_batch_list", 0, 2),
        ("postprocess_image", 0, (64, 64)),
        ("postprocess_image", 1, (64, 64)),
        ("postprocess", 3, "a red cube <lora:nothing:1>!"),  # the grid and the two images
    ]


def test_before_hr_runs_before_the_hires_pass(engine):
    runner = load_extension_scripts(engine, {"scripts/recorder.py": RECORDER})
    calls = module_of("Recorder").CALLS
    processing.run_with_scripts(job(runner, runner.default_args(), enable_hr=True, hr_scale=1.5, denoising_strength=0.5,
                                    hr_upscaler="Latent"))
    names = [c[0] for c in calls]
    assert names.index("process_batch") < names.index("before_hr") < names.index("post_sample")
    assert names.count("before_hr") == 1


def test_selectable_script_run_replaces_processing(engine):
    runner = load_extension_scripts(engine, {"scripts/two.py": SELECTABLE})
    script = runner.find("two prompts")
    assert not script.alwayson and runner.selectable_scripts.index(script) == runner.titles.index("Two prompts")
    args = args_for(runner, "Two prompts", "a green cone")
    args[0] = runner.selectable_scripts.index(script) + 1
    processed = processing.run_with_scripts(job(runner, args))
    assert [text.splitlines()[0] for text in processed.infotexts] == ["a red cube", "a green cone"]
    assert len(processed.images) == 2
    assert not np.array_equal(pixels(processed.images[0]), pixels(processed.images[1]))
    alone = processing.run_with_scripts(job(runner, runner.default_args()))  # "None" chosen: one plain job
    assert len(alone.images) == 1 and np.array_equal(pixels(alone.images[0]), pixels(processed.images[0]))


def test_failing_script_is_logged_and_the_job_goes_on(engine, caplog):
    runner = load_extension_scripts(engine, {"scripts/failing.py": FAILING, "scripts/recorder.py": RECORDER})
    with caplog.at_level(logging.ERROR, logger="modules.scripts"):
        processed = processing.run_with_scripts(job(runner, args_for(runner, "Recorder", True, " and more")))
    failure = next(r for r in caplog.records if "Error running process" in r.getMessage())
    assert failure.getMessage().endswith("failing.py") and "the failing script failed" in failure.exc_text
    assert len(processed.images) == 1 and processed.infotexts[0].startswith("a red cube and more\n")


def test_script_with_a_syntax_error_is_logged_by_name_and_the_others_load(engine, caplog):
    with caplog.at_level(logging.ERROR, logger="modules.scripts"):
        runner = load_extension_scripts(engine, {"scripts/broken.py": BROKEN, "scripts/recorder.py": RECORDER})
    record = next(r for r in caplog.records if "Error loading script" in r.getMessage())
    assert record.getMessage().endswith(str(engine / "extensions" / "testext" / "scripts" / "broken.py"))
    assert "SyntaxError" in record.exc_text
    assert runner.find("recorder") is not None
    assert {d.path for d in scripts.scripts_data} >= {str(engine / "extensions" / "testext" / "scripts" / "recorder.py")}
    assert scripts.basedir() == str(Path(scripts.paths_internal.script_path))



def test_script_needing_ldm_model_code_gets_one_line_naming_extension_and_piece(engine, caplog):
    """multidiffusion imports k_diffusion.external and ldm.modules...; controlnet's hook.py imports ldm: one line says
    which extension, which file and what is missing, and the extension's other scripts load."""
    ldm_script = "from ldm.modules.diffusionmodules.model import AttnBlock\n"
    with caplog.at_level(logging.ERROR, logger="modules.scripts"):
        runner = load_extension_scripts(engine, {"scripts/tiled.py": ldm_script, "scripts/recorder.py": RECORDER})
    lines = [r for r in caplog.records if "tiled.py" in r.getMessage()]
    assert [r.getMessage() for r in lines] == [
        "Extension testext: tiled.py needs ldm (the LDM model classes), which Atelier's diffusers engine does not "
        "have; the script is not loaded and the rest of the app is unaffected"]
    assert lines[0].exc_info is None and runner.find("recorder") is not None


RELOADING = '''
import os
from modules import script_callbacks

LOG = os.path.join(os.path.dirname(os.path.dirname(__file__)), "log.txt")


def note(text):
    with open(LOG, "a", encoding="utf8") as file:
        file.write(text + "\\n")


note("loaded")
script_callbacks.on_before_reload(lambda: note("before reload"))
script_callbacks.on_script_unloaded(lambda: note("unloaded"))
'''


def test_reload_ui_tells_the_scripts_then_loads_them_afresh(tmp_path, monkeypatch):
    import webui

    root = write_extension(tmp_path, "reloading", {"scripts/reloading.py": RELOADING})
    monkeypatch.setattr(scripts.paths_internal, "extensions_dir", str(tmp_path / "extensions"))
    monkeypatch.setitem(opts.data, "disabled_extensions", [])
    monkeypatch.setitem(opts.data, "disable_all_extensions", "none")
    try:
        webui.load_scripts()
        first_runner = scripts.scripts_txt2img
        webui.reload_scripts()
        assert (root / "log.txt").read_text(encoding="utf8").split() == ["loaded", "before", "reload", "unloaded", "loaded"]
        assert len(script_callbacks.callbacks("script_unloaded")) == 1  # the old module's callbacks are gone
        assert scripts.scripts_txt2img is not first_runner
    finally:
        monkeypatch.undo()
        extensions.extensions.clear()
        scripts.load_scripts()


def test_metadata_ini_orders_the_scripts_of_extensions(engine):
    """aaa's script would load first by folder name; its metadata.ini asks for it to load after zzz's."""
    titled = "from modules import scripts\n\nclass S(scripts.Script):\n    def title(self):\n        return {!r}\n"
    write_extension(engine, "zzz", {"scripts/late.py": titled.format("zzz late")})
    load_extension_scripts(engine, {"scripts/early.py": titled.format("testext early"),
                                    "metadata.ini": "[scripts/early.py]\nAfter = zzz/late.py\n"})
    titles = [d.script_class().title() for d in scripts.scripts_data]
    assert titles.index("zzz late") < titles.index("testext early")
