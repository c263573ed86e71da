"""Batching compatible queued jobs (issue 23, point 3) on the tiny SD1 checkpoint: compatible jobs run as one sampling
batch whose images equal each job run alone, each with its own infotexts; incompatible jobs and a window of 0 do not
batch; cancelling one job of a batch drops only its images."""
from __future__ import annotations

import json
import time

import numpy as np
import pytest

from modules import job_queue
from modules.shared_options import opts
from tests.fixtures import networks as network_fixtures
from tests.integration.test_job_api import SMALL, build_client, pixels, submit, wait_for

TOLERANCE = 1  # most any pixel of a batched image may differ from its solo run, in 0..255 (batched CPU arithmetic)


@pytest.fixture(scope="module")
def client(tiny_models_dir, tmp_path_factory, sd1_ckpt):
    from modules import call_queue, extensions, scripts  # noqa: F401
    from modules.networks import networks
    from modules.shared_cmd_options import cmd_opts
    from tests.integration.engine_helpers import start_engine

    data_dir = tmp_path_factory.mktemp("batching-data")
    lora_dir = data_dir / "Lora"
    lora_dir.mkdir()
    network_fixtures.write_network(lora_dir / "tiny_lora.safetensors", sd1_ckpt, "lora")
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(cmd_opts, "lora_dir", str(lora_dir))
        start_engine(tiny_models_dir, data_dir)
        opts.set("disabled_extensions", [])
        extensions.list_extensions()
        scripts.load_scripts()
        networks.list_available_networks()
        opts.set("sd_model_checkpoint", "tiny_sd1.safetensors")
        yield build_client()
        job_queue.shutdown()


@pytest.fixture()
def batches(client):
    """The ids of the jobs of each executor call (a batch), while the queue runs them."""
    queue, seen = job_queue.service(), []
    real = queue.executor

    class Recorder:
        def run(self, jobs):
            seen.append([job.id for job in jobs])
            return real.run(jobs)

    queue.executor = Recorder()
    yield seen
    queue.executor = real
    queue.resume()
    opts.set("job_batch_window_ms", 200)


def run_together(client, bodies: dict[str, dict]) -> dict[str, dict]:
    """Submit `bodies` (id -> request) while the queue is paused, then let it run them; id -> finished job."""
    queue = job_queue.service()
    queue.pause()
    for job_id, body in bodies.items():
        submit(client, {**body, "id": job_id})
    queue.resume()
    return {job_id: wait_for(client, job_id) for job_id in bodies}


def alone(client, body: dict) -> dict:
    answer = client.post("/sdapi/v1/txt2img", json=body)
    assert answer.status_code == 200, answer.text
    return answer.json()


def test_compatible_jobs_run_as_one_batch_and_match_their_solo_runs(client, batches):
    bodies = {"b-first": {**SMALL, "prompt": "a red cube", "seed": 11, "cfg_scale": 7.0, "batch_size": 2},
              "b-second": {**SMALL, "prompt": "a blue ball", "negative_prompt": "dark", "seed": 500, "cfg_scale": 4.5}}
    done = run_together(client, bodies)
    assert batches == [["b-first", "b-second"]]
    worst = 0
    for job_id, body in bodies.items():
        job, solo = done[job_id], alone(client, body)
        assert job["state"] == "done" and len(job["images"]) == len(solo["images"]) == body.get("batch_size", 1)
        for ours, theirs in zip(job["images"], solo["images"]):
            worst = max(worst, int(np.abs(pixels(ours) - pixels(theirs)).max()))
        assert job["infotexts"] == json.loads(solo["info"])["infotexts"]  # its own prompt, seed and CFG scale
        info = json.loads(job["info"])
        assert (info["prompt"], info["all_seeds"], info["cfg_scale"]) == \
            (body["prompt"], [body["seed"] + i for i in range(body.get("batch_size", 1))], body["cfg_scale"])
    assert "CFG scale: 4.5" in done["b-second"]["infotexts"][0] and "Seed: 500" in done["b-second"]["infotexts"][0]
    assert worst <= TOLERANCE, worst
    print(f"max abs pixel difference batched vs alone: {worst}/255")


@pytest.mark.parametrize("change", [{"steps": 4}, {"width": 72}, {"prompt": "a red cube <lora:tiny_lora:1>"},
                                    {"sampler_name": "DDIM"}])
def test_incompatible_jobs_do_not_batch(client, batches, change):
    one, two = (f"i-{name}-{next(iter(change))}" for name in ("one", "two"))
    done = run_together(client, {one: SMALL, two: {**SMALL, **change}})
    assert batches == [[one], [two]]
    assert all(job["state"] == "done" for job in done.values())


def test_a_window_of_0_turns_batching_off(client, batches):
    opts.set("job_batch_window_ms", 0)
    run_together(client, {"w-one": SMALL, "w-two": {**SMALL, "seed": 9}})
    assert batches == [["w-one"], ["w-two"]]


def test_cancelling_one_job_of_a_running_batch_drops_only_its_images(client, batches):
    slow = {**SMALL, "steps": 40}
    queue = job_queue.service()
    queue.pause()
    submit(client, {**slow, "id": "c-kept"})
    submit(client, {**slow, "id": "c-dropped", "seed": 99})
    queue.resume()
    deadline = time.time() + 60
    while client.get("/atelier/v1/jobs/c-dropped").json().get("step", 0) < 1 and time.time() < deadline:
        time.sleep(0.01)
    assert client.delete("/atelier/v1/jobs/c-dropped").json() == {"id": "c-dropped", "state": "interrupting"}
    kept, dropped = wait_for(client, "c-kept"), wait_for(client, "c-dropped")
    assert batches == [["c-kept", "c-dropped"]]
    assert dropped["state"] == "cancelled" and "images" not in dropped
    assert kept["state"] == "done" and len(kept["images"]) == 1
    solo = alone(client, slow)
    assert int(np.abs(pixels(kept["images"][0]) - pixels(solo["images"][0])).max()) <= TOLERANCE
