"""Each job runs in its own context: two jobs at once on two model managers see their own settings, checkpoint and
progress, and code running for a job (an extension's callback) sees that job's settings through `shared.opts`."""
from __future__ import annotations

import threading

import numpy as np
import pytest

from modules import job_context, processing, script_callbacks, sd_models, shared, shared_state
from modules.shared_options import opts
from tests.integration.engine_helpers import CPU, pixels, start_engine

SD1 = "tiny_sd1.safetensors"
SDXL = "tiny_sdxl.safetensors"
# Two jobs whose settings differ where it changes the pixels after sampling starts: the checkpoint, CLIP skip, and
# for an ancestral sampler its noise (eta, s_noise, ENSD, which is read again for the second batch).
JOBS = {
    "sd1": {"sd_model_checkpoint": SD1, "CLIP_stop_at_last_layers": 2, "eta_noise_seed_delta": 31337,
            "eta_ancestral": 0.7},
    "sdxl": {"sd_model_checkpoint": SDXL, "s_noise": 0.9, "eta_noise_seed_delta": 5},
}


@pytest.fixture(scope="module")
def engine(tiny_models_dir, tmp_path_factory):
    return start_engine(tiny_models_dir, tmp_path_factory.mktemp("data"))


@pytest.fixture(scope="module")
def managers(engine, tmp_path_factory):
    cache = tmp_path_factory.mktemp("cache")
    return {name: sd_models.ModelManager(CPU, cache, limit=1) for name in JOBS}


@pytest.fixture(autouse=True)
def no_callbacks():
    script_callbacks.clear_callbacks()
    yield
    script_callbacks.clear_callbacks()


def job(name, manager, **kwargs):
    p = processing.StableDiffusionProcessingTxt2Img(
        prompt="a red cube", negative_prompt="blurry", steps=3, width=64, height=64, seed=77, n_iter=2,
        sampler_name="Euler a", do_not_save_samples=True, do_not_save_grid=True, override_settings=dict(JOBS[name]),
        model_manager=manager, **kwargs)
    return processing.process_images(p)


def run_at_once(work: dict) -> dict:
    """Run each callable of `work` in a thread of its own; their results (or the exception one raised)."""
    results = {}

    def run(name, fn):
        try:
            results[name] = fn()
        except BaseException as e:  # noqa: BLE001 (handed to the test)
            results[name] = e

    threads = [threading.Thread(target=run, args=item) for item in work.items()]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=600)
    for name, result in results.items():
        if isinstance(result, BaseException):
            raise AssertionError(f"job {name} failed") from result
    return results


def test_two_jobs_at_once_each_make_the_image_they_make_alone(managers):
    saved = dict(opts.data)
    keys = {key for overrides in JOBS.values() for key in overrides}
    values = {key: getattr(opts, key) for key in keys}
    alone = {name: job(name, managers[name]) for name in JOBS}
    assert {key: getattr(opts, key) for key in keys} == values
    both_sampling = threading.Barrier(len(JOBS), timeout=120)

    def meet_at_first_step(params):  # both jobs are inside sampling, their settings applied, before either goes on
        if params.sampling_step == 0 and job_context.current().parent is None and not hasattr(params.denoiser, "met"):
            params.denoiser.met = True
            both_sampling.wait()

    script_callbacks.on_cfg_denoiser(meet_at_first_step)
    together = run_at_once({name: (lambda name=name: job(name, managers[name])) for name in JOBS})
    for name in JOBS:
        assert len(together[name].images) == 2
        for solo, concurrent in zip(alone[name].images, together[name].images):
            assert np.array_equal(pixels(solo), pixels(concurrent)), name
        assert together[name].infotexts == alone[name].infotexts
    assert "ENSD: 31337" in together["sd1"].infotexts[0] and "Clip skip: 2" in together["sd1"].infotexts[0]
    assert "ENSD: 5" in together["sdxl"].infotexts[0]
    assert managers["sd1"].current.sd_checkpoint_info.filename.endswith(SD1)
    assert managers["sdxl"].current.sd_checkpoint_info.filename.endswith(SDXL)
    assert dict(opts.data) == saved and {key: getattr(opts, key) for key in keys} == values
    assert shared_state.process_state.job == "" and job_context.running() == []


def test_an_interrupt_reaches_every_running_job_and_progress_shows_the_first(managers):
    at_first_step = threading.Barrier(len(JOBS) + 1, timeout=120)
    interrupted = threading.Barrier(len(JOBS) + 1, timeout=120)
    states, steps = {}, {name: [] for name in JOBS}

    def hold_at_first_step(params):
        name = "sd1" if shared.opts.sd_model_checkpoint == SD1 else "sdxl"
        steps[name].append(params.sampling_step)
        if params.sampling_step == 0 and name not in states:
            states[name] = shared.state._target()
            at_first_step.wait()
            interrupted.wait()

    script_callbacks.on_cfg_denoiser(hold_at_first_step)
    threads = threading.Thread(target=lambda: run_at_once({name: (lambda name=name: job(name, managers[name]))
                                                           for name in JOBS}))
    threads.start()
    at_first_step.wait()
    assert states["sd1"] is not states["sdxl"]  # each job has its progress; the page shows the first one's
    assert shared.state.job == "txt2img" and shared.state._target() is shared_state.process_state
    assert any(state is shared_state.process_state for state in states.values())
    shared.state.interrupt()  # what the page's and the API's interrupt do
    interrupted.wait()
    threads.join(timeout=600)
    assert steps == {"sd1": [0], "sdxl": [0]}  # neither job took another step
    assert shared_state.process_state.job == "" and job_context.running() == []


def test_an_extension_reads_and_writes_the_settings_of_the_job_it_runs_for(engine):
    seen = []

    def hook(params):
        seen.append((shared.opts.CLIP_stop_at_last_layers, shared.opts.samples_format, opts.data.get("samples_format"),
                     shared.sd_model is sd_models.model_manager.current))
        shared.opts.samples_format = "jpg"  # an extension changing a setting while the job runs: the job's view only

    script_callbacks.on_cfg_denoiser(hook)
    opts.set("sd_model_checkpoint", SD1)
    processing.process_images(processing.StableDiffusionProcessingTxt2Img(
        prompt="x", steps=2, width=64, height=64, seed=1, sampler_name="Euler", do_not_save_samples=True,
        override_settings={"CLIP_stop_at_last_layers": 2}))
    assert seen == [(2, "png", None, True), (2, "jpg", "jpg", True)]  # start_engine left only a few keys saved
    assert (shared.opts.CLIP_stop_at_last_layers, shared.opts.samples_format) == (1, "png")
    assert "samples_format" not in opts.data


def test_a_job_started_while_training_holds_the_progress_keeps_its_own(engine):
    """A training preview: its steps never show in the training's progress bar, and an interrupt still reaches it."""
    process = shared_state.process_state
    process.begin(job="train-embedding")
    process.sampling_steps, process.sampling_step = 100, 40
    seen = []
    try:
        with job_context.progress_held():
            p = processing.StableDiffusionProcessingTxt2Img(prompt="preview", steps=3, width=64, height=64,
                                                            do_not_save_samples=True, do_not_save_grid=True,
                                                            override_settings={"sd_model_checkpoint": SD1})
            script_callbacks.on_cfg_denoiser(lambda params: seen.append((shared.state.sampling_steps,
                                                                          process.sampling_steps, process.sampling_step)))
            processing.process_images(p)
    finally:
        process.end()
    assert seen and all(steps == 3 for steps, _, _ in seen)  # the preview's own state counts its steps
    assert {(total, done) for _, total, done in seen} == {(100, 40)}  # the training's bar is untouched
    assert job_context.running() == []
