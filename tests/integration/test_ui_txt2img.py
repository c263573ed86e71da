"""The txt2img tab's functions on the tiny SD1 checkpoint, without a browser: job, errors, seeds, save, progress."""
from __future__ import annotations

import csv
import json
import shutil
import threading

import gradio as gr
import pytest
import torch
from PIL import Image, PngImagePlugin

from modules import call_queue, progress, ui_common, ui_toprow, ui_txt2img
from modules.shared_options import opts
from modules.shared_state import State, state
from tests.integration.engine_helpers import start_engine

SD1 = "tiny_sd1.safetensors"


@pytest.fixture()
def engine(tiny_models_dir, tmp_path):
    manager = start_engine(tiny_models_dir, tmp_path)
    opts.set("sd_model_checkpoint", SD1)
    opts.set("samples_save", False)
    return manager


def controls(**changes) -> dict:
    """The Generate inputs by name, with the tab's defaults except for a small, quick job."""
    values = dict(prompt="a red cube", negative_prompt="blurry", sampler_name="Euler", scheduler="Automatic", steps=3,
                  width=64, height=64, n_iter=1, batch_size=1, cfg_scale=7.0, seed=1234, seed_enable_extras=False,
                  subseed=-1, subseed_strength=0.0, seed_resize_from_w=0, seed_resize_from_h=0, enable_refiner=False,
                  refiner_checkpoint="None", refiner_switch_at=0.8)
    values.update(changes)
    return values


def run(values: dict, extra: dict | None = None):
    job = call_queue.wrap_gradio_gpu_call(ui_txt2img.txt2img, extra_outputs=[None, "", ""])
    return job(values, extra)


def text_of(info_html: str) -> str:
    return info_html.removeprefix("<p>").removesuffix("</p>").replace("<br>\n", "\n")


def test_generation_gives_images_whose_parameters_match_the_info_shown(engine):
    gallery, js, info_html, log_html = run(controls(batch_size=2))
    data = json.loads(js)
    assert data["all_seeds"] == [1234, 1235] and data["index_of_first_image"] == 1  # grid first
    assert len(gallery) == 3 and gallery[1].size == (64, 64)
    assert gallery[1].info["parameters"] == text_of(info_html) == data["infotexts"][1]
    assert text_of(info_html).startswith("a red cube\nNegative prompt: blurry\nSteps: 3, Sampler: Euler, ")
    assert "Seed: 1234, Size: 64x64, Model hash: " in text_of(info_html)
    assert "Time taken: " in log_html
    assert ui_txt2img.reuse_seed(js, None, is_subseed=False) == 1234  # nothing selected: the first image
    assert ui_txt2img.reuse_seed(js, 2, is_subseed=False) == 1235
    assert ui_txt2img.reuse_seed(js, 0, is_subseed=False) == 1234  # the grid: the first seed


def test_variation_controls_apply_only_with_extra(engine):
    _, off, _, _ = run(controls(seed_enable_extras=False, subseed=77, subseed_strength=0.5))
    _, on, info, _ = run(controls(seed_enable_extras=True, subseed=77, subseed_strength=0.5))
    assert json.loads(off)["subseed_strength"] == 0.0
    assert json.loads(on)["subseed_strength"] == 0.5 and json.loads(on)["subseed"] == 77
    assert "Variation seed: 77, Variation seed strength: 0.5" in text_of(info)
    assert ui_txt2img.reuse_seed(on, None, is_subseed=True) == 77


def test_settings_in_ui_override_the_job_only(engine):
    before = opts.CLIP_stop_at_last_layers
    _, _, info, _ = run(controls(), {"CLIP_stop_at_last_layers": 2.0})
    assert ", Clip skip: 2, " in text_of(info)
    assert opts.CLIP_stop_at_last_layers == before


@pytest.mark.parametrize("changes, message", [
    ({"width": 100}, "Width and height must be positive multiples of 8, got 100x64"),
    ({"sampler_name": "No such sampler"}, "Sampler not found: No such sampler; valid choices: "),
    ({"enable_refiner": True, "refiner_checkpoint": "refiners/tiny_sdxl_refiner.safetensors"},
     "(SDXL refiner) cannot continue a SD1 image"),
])
def test_impossible_requests_give_readable_errors_and_the_next_job_runs(engine, changes, message):
    result = run(controls(**changes))
    assert result[:3] == [None, "", ""]
    assert result[3].startswith("<div class='error'><b>Error:</b> ") and message in result[3]
    assert not call_queue.queue_lock.locked()
    assert len(run(controls())[0]) == 1


def test_refiner_checkbox_off_ignores_the_chosen_refiner(engine):
    _, js, info, _ = run(controls(enable_refiner=False, refiner_checkpoint="refiners/tiny_sdxl_refiner.safetensors"))
    assert "Refiner" not in text_of(info)


def test_missing_checkpoint_file_is_reported(sd1_ckpt, tmp_path):
    models = tmp_path / "models" / "Stable-diffusion"
    models.mkdir(parents=True)
    shutil.copyfile(sd1_ckpt.path, models / "gone.safetensors")
    start_engine(tmp_path / "models", tmp_path)
    opts.set("samples_save", False)
    opts.set("sd_model_checkpoint", "gone.safetensors")
    (models / "gone.safetensors").unlink()  # deleted after the list was made
    result = run(controls())
    assert result[3].startswith("<div class='error'><b>Error:</b> Could not read gone.safetensors: ")
    opts.set("sd_model_checkpoint", "no_such.safetensors")
    assert "Checkpoint not found: no_such.safetensors. Available: gone.safetensors" in run(controls())[3]


def test_save_button_saves_the_selected_image_with_its_parameters_and_a_log_row(engine, tmp_path, monkeypatch):
    monkeypatch.setitem(opts.data, "outdir_save", str(tmp_path / "log" / "images"))
    gallery, js, _, _ = run(controls(batch_size=2))
    files = []
    for i, image in enumerate(gallery):  # the gallery hands functions the PNG files it served
        info = PngImagePlugin.PngInfo()
        if "parameters" in image.info:
            info.add_text("parameters", image.info["parameters"])
        path = tmp_path / f"served-{i}.png"
        image.save(path, pnginfo=info)
        files.append((str(path), None))
    update, message = ui_common.save_files(js, files, 2)
    saved = sorted((tmp_path / "log" / "images").rglob("*.png"))
    assert len(saved) == 1 and message == f"<p>Saved: {saved[0].name}</p>" and update.visible
    with Image.open(saved[0]) as image:
        assert image.info["parameters"] == json.loads(js)["infotexts"][2]
    with open(tmp_path / "log" / "images" / "log.csv", encoding="utf8") as file:
        rows = list(csv.reader(file))
    assert rows[0] == ui_common.LOG_CSV_FIELDS
    assert rows[1][:3] == ["a red cube", "1235", "64"]


def test_token_counter_counts_clip_tokens_in_75_token_chunks(engine):
    assert ui_toprow.token_count("") == (0, 75)
    assert ui_toprow.token_count("a red cube") == (3, 75)
    assert ui_toprow.token_count("cat " * 80) == (80, 150)
    assert ui_toprow.token_count("a BREAK b") == (2, 150)
    assert ui_toprow.token_count("a red cube <lora:style:0.8>") == (3, 75)  # tags are not text
    assert ui_toprow.token_count("a red cube\n# a comment that is not sent") == (3, 75)
    assert ui_toprow.token_count("a [red:very very very red:0.5] cube", steps=10) == (6, 75)  # the longer prompt
    assert ui_toprow.token_counter_html("a red cube") == "<span class='token-count'>3/75</span>"


def test_stream_job_shows_progress_and_preview_then_the_result(monkeypatch):
    monkeypatch.setitem(opts.data, "live_preview_refresh_period", 100)
    monkeypatch.setitem(opts.data, "live_previews_enable", True)
    monkeypatch.setattr(state, "preview_decoder", lambda latent: Image.new("RGB", (8, 8), (255, 0, 0)))
    halfway = threading.Event()

    def job():
        state.begin(job="txt2img")
        state.current_latent = torch.zeros(1, 4, 1, 1)
        state.job_count, state.job_no, state.sampling_steps, state.sampling_step = 2, 1, 10, 5
        halfway.wait(10)
        state.end()
        return ["image"], "{}", "<p>info</p>", "<p>log</p>"

    stream = ui_common.stream_job(job, (), n_outputs=4)
    seen = []
    for update in stream:
        seen.append(update)
        if "Image 2/2, step 5/10" in update[4]:
            halfway.set()
    assert seen[-1] == (["image"], "{}", "<p>info</p>", "<p>log</p>", "")
    progress = next(u[4] for u in seen if "step 5/10" in u[4])
    assert all(isinstance(u[0], type(gr.skip())) and len(u) == 5 for u in seen[:-1])
    assert "style='width:75%'" in progress and "75% ETA: " in progress
    assert "<div class='livePreview'><img src='data:image/png;base64," in progress


@pytest.mark.parametrize("job_no, job_count, step, steps, fraction", [
    (0, 1, 0, 20, 0.0), (0, 1, 10, 20, 0.5), (1, 4, 10, 20, 0.375), (3, 4, 20, 20, 1.0), (0, 0, 5, 20, 0.0),
])
def test_progress_fraction(job_no, job_count, step, steps, fraction):
    assert ui_common.progress_fraction(job_no, job_count, step, steps) == fraction


@pytest.mark.parametrize("seconds, text", [(4.4, "4s"), (65, "1m 05s"), (3700, "1h 01m")])
def test_format_eta(seconds, text):
    assert ui_common.format_eta(seconds) == text


@pytest.mark.parametrize("job_count, after_current, stops, interrupted", [
    (3, True, True, False), (1, True, False, True), (3, False, False, True),
])
def test_interrupt_stops_after_the_current_image_when_there_are_several(monkeypatch, job_count, after_current, stops,
                                                                           interrupted):
    monkeypatch.setitem(opts.data, "interrupt_after_current", after_current)
    job = State()  # the buttons act on the shared state; a private one keeps other tests' flags clean
    monkeypatch.setattr(ui_txt2img, "state", job)
    job.begin(job="txt2img")
    job.job_count = job_count
    ui_txt2img.interrupt()
    assert (job.stopping_generation, job.interrupted, job.skipped) == (stops, interrupted, False)
    ui_txt2img.skip()
    assert job.skipped


def test_a_second_interrupt_or_one_in_the_last_image_stops_at_once(monkeypatch):
    monkeypatch.setitem(opts.data, "interrupt_after_current", True)
    job = State()
    monkeypatch.setattr(ui_txt2img, "state", job)
    job.begin(job="txt2img")
    job.job_count = 3
    assert ui_txt2img.interrupt()["value"] == "Interrupting..."
    assert (job.stopping_generation, job.interrupted) == (True, False)
    ui_txt2img.interrupt()
    assert job.interrupted
    job.begin(job="txt2img")
    job.job_count, job.job_no = 3, 2  # the last image: stopping after it would change nothing
    ui_txt2img.interrupt()
    assert job.interrupted


def test_whole_number_cfg_is_written_as_a1111_writes_it():
    from modules.ui_txt2img import slider_number

    assert slider_number(7.0) == 7 and isinstance(slider_number(7.0), int)
    assert slider_number(6.5) == 6.5


def test_generate_click_has_a1111s_outputs():
    """supermerger's GenParamGetter finds txt2img's inputs by Generate's click with A1111's 4 (or 5) outputs: the
    output panel's gallery, generation info, infotext and log (here then the progress)."""
    from modules import ui

    demo = ui.create_ui()
    config = demo.get_config_file()
    labels = {c["id"]: c["props"].get("elem_id") for c in config["components"]}
    generate = next(i for i, elem_id in labels.items() if elem_id == "txt2img_generate")
    clicks = [d for d in config["dependencies"] if [generate, "click"] in [list(t) for t in d["targets"]]]
    job = [d for d in clicks if len(d["outputs"]) in (4, 5)]
    assert len(job) == 1 and len(job[0]["inputs"]) > 10
    assert [labels[i] for i in job[0]["outputs"][:4]] == ["txt2img_gallery", "generation_info_txt2img",
                                                         "html_info_txt2img", "html_log_txt2img"]


def test_a_page_that_reloads_takes_its_running_job_back_with_restore(monkeypatch):
    """🌀: the page's stream of a task ends (reload) while the job runs on; restore_job follows the same task id, with
    its id in the progress HTML, then yields the job's outputs as they were (time taken included)."""
    monkeypatch.setitem(opts.data, "live_preview_refresh_period", 100)
    release = threading.Event()

    def page_job(id_task, prompt):
        state.begin(job="txt2img")
        state.job_count, state.sampling_steps, state.sampling_step = 1, 10, 3
        release.wait(10)
        state.end()
        return [f"image of {prompt}"], "{}", "<p>info</p>", "<p>log</p>"

    job = call_queue.wrap_gradio_gpu_call(page_job, extra_outputs=[gr.skip(), gr.skip(), gr.skip()])
    task = progress.create_task_id("txt2img")
    stream = ui_common.stream_job(job, ("a cube",), n_outputs=4, id_task=task, owner="page a")
    first = next(stream)
    assert f"data-id-task='{task}'" in first[4]
    stream.close()  # the page reloaded: Gradio drops its stream, the job runs on

    restored = ui_common.restore_job(task, n_outputs=4)
    following = next(restored)
    assert f"data-id-task='{task}'" in following[4] and isinstance(following[0], type(gr.skip()))
    release.set()
    *_, last = restored
    assert last[:3] == (["image of a cube"], "{}", "<p>info</p>") and last[4] == ""
    assert last[3].startswith("<p>log</p><div class='performance'><p class='time'>Time taken:")
    assert progress.recorded_result(task) == last[:4]

    *_, unknown = ui_common.restore_job("task(txt2img-unknown)", n_outputs=4)
    assert unknown[3] == call_queue.error_html("Couldn't restore progress for task(txt2img-unknown): results either "
                                               "have been discarded or never were obtained")
    assert unknown[4] == ""
