"""The job API (/atelier/v1/jobs, /atelier/v1/queue) and /metrics in-process on the tiny checkpoints: submit -> poll
-> done with the synchronous route's pixels, cancel queued and running, a queued job surviving a restart of the app,
per-request checkpoint and VAE without touching the global setting, LoRA not leaking into the next job."""
from __future__ import annotations

import base64
import io
import json
import re
import time
from pathlib import Path

import numpy as np
import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient
from PIL import Image

from modules import call_queue, extensions, job_queue, scripts
from modules.api.api import Api
from modules.networks import networks
from modules.shared_cmd_options import cmd_opts
from modules.shared_options import opts
from tests.fixtures import networks as network_fixtures
from tests.integration.engine_helpers import start_engine

SMALL = {"prompt": "a red cube", "negative_prompt": "blurry", "steps": 3, "width": 64, "height": 64, "seed": 1234,
         "cfg_scale": 7.0, "sampler_name": "Euler"}
SD1, SDXL = "tiny_sd1.safetensors", "tiny_sdxl.safetensors"
REPO = Path(__file__).resolve().parents[2]


def build_client() -> TestClient:
    app = FastAPI()
    Api(app, call_queue.queue_lock)
    return TestClient(app)


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory):
    return tmp_path_factory.mktemp("jobs-data")


@pytest.fixture(scope="module")
def client(tiny_models_dir, data_dir, sd1_ckpt):
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
        opts.set("sd_model_checkpoint", SD1)
        yield build_client()
        job_queue.shutdown()


@pytest.fixture()
def queue(client):
    service = job_queue.service()
    yield service
    service.resume()


def pixels(b64: str) -> np.ndarray:
    return np.asarray(Image.open(io.BytesIO(base64.b64decode(b64))).convert("RGB"), dtype=np.int16)


def submit(client, body: dict, expect: int = 202) -> dict:
    response = client.post("/atelier/v1/jobs", json=body)
    assert response.status_code == expect, response.text
    return response.json()


def wait_for(client, job_id: str, states=("done", "failed", "cancelled"), timeout: float = 120) -> dict:
    deadline = time.time() + timeout
    while time.time() < deadline:
        answer = client.get(f"/atelier/v1/jobs/{job_id}").json()
        if answer["state"] in states:
            return answer
        time.sleep(0.02)
    pytest.fail(f"job {job_id} did not reach {states}: {answer}")


def test_submit_poll_done_gives_the_synchronous_routes_pixels(client, data_dir):
    job = submit(client, {"type": "txt2img", **SMALL, "n_iter": 2})
    assert job["state"] == "queued" and re.fullmatch(r"[0-9a-f]{32}", job["id"])
    done = wait_for(client, job["id"])
    assert done["state"] == "done", done
    sync = client.post("/sdapi/v1/txt2img", json={**SMALL, "n_iter": 2})
    assert sync.status_code == 200, sync.text
    assert len(done["images"]) == len(sync.json()["images"]) == 2
    for ours, theirs in zip(done["images"], sync.json()["images"]):
        assert np.array_equal(pixels(ours), pixels(theirs))
    assert done["parameters"]["seed"] == 1234 and json.loads(done["info"])["all_seeds"] == [1234, 1235]
    assert len(done["infotexts"]) == 2 and "Seed: 1235" in done["infotexts"][1]
    assert list((data_dir / "jobs" / "results").glob("*.json"))  # on disk before it said done
    progress = client.post("/internal/progress", json={"id_task": job["id"]}).json()
    assert progress["completed"] and not progress["active"]


def test_img2img_job_and_a_client_chosen_id(client):
    init = io.BytesIO()
    Image.new("RGB", (64, 64), (200, 30, 30)).save(init, format="PNG")
    body = {"type": "img2img", "id": "my-img2img.1", **SMALL, "denoising_strength": 0.5,
            "init_images": [base64.b64encode(init.getvalue()).decode()]}
    assert submit(client, body)["id"] == "my-img2img.1"
    done = wait_for(client, "my-img2img.1")
    assert done["state"] == "done" and done["type"] == "img2img" and len(done["images"]) == 1
    assert "Denoising strength: 0.5" in done["infotexts"][0]
    assert submit(client, body, expect=409)["detail"] == "A job with id my-img2img.1 already exists (done)"


@pytest.mark.parametrize("body, status, detail", [
    ({"type": "upscale", **SMALL}, 422, "Unknown job type: 'upscale'; use \"txt2img\" or \"img2img\""),
    ({**SMALL, "id": "a/b"}, 422, "id must be 1 to 128 letters, digits or ._:()- characters"),
    ({**SMALL, "sampler_name": "No such sampler"}, 422, None),
    ({**SMALL, "override_settings": {"sd_model_checkpoint": "missing.safetensors"}}, 422,
     "Checkpoint not found: missing.safetensors"),
    ({**SMALL, "steps": "many"}, 422, None),
])
def test_bad_requests_are_refused_at_once_with_a_detail(client, body, status, detail):
    answer = submit(client, body, expect=status)
    assert answer["detail"]
    if detail:
        assert str(answer["detail"]).startswith(detail)
    assert client.get("/atelier/v1/queue").json() == {"jobs": []}


def test_unknown_ids_are_404(client):
    for method in ("GET", "DELETE"):
        response = client.request(method, "/atelier/v1/jobs/nope")
        assert response.status_code == 404 and response.json() == {"detail": "Job not found: nope"}


def test_cancel_a_queued_job_and_interrupt_a_running_one(client, queue):
    queue.pause()
    long_job = submit(client, {**SMALL, "steps": 30, "n_iter": 4, "id": "long"})
    submit(client, {**SMALL, "id": "waiting"})
    listing = client.get("/atelier/v1/queue").json()["jobs"]
    assert [(j["id"], j["state"], j["position"], j["owner"]) for j in listing] == [
        ("long", "queued", 1, "anonymous"), ("waiting", "queued", 2, "anonymous")]
    assert client.get("/atelier/v1/jobs/waiting").json()["position"] == 2
    assert client.delete("/atelier/v1/jobs/waiting").json() == {"id": "waiting", "state": "cancelled"}
    assert client.get("/atelier/v1/jobs/waiting").json()["state"] == "cancelled"
    assert client.post("/internal/progress", json={"id_task": "waiting"}).json()["completed"]
    queue.resume()
    running = wait_for(client, long_job["id"], states=("running",))
    deadline = time.time() + 60
    while running.get("step", 0) < 1 and time.time() < deadline:
        running = client.get("/atelier/v1/jobs/long").json()
    assert running["state"] == "running" and running["total"] == 30 and 0 < running["progress"] < 1
    assert client.get("/atelier/v1/queue").json()["jobs"][0] | {"eta": None} == {
        "id": "long", "kind": "txt2img", "owner": "anonymous", "client": "API testclient testclient", "state": "running",
        "position": 0, "eta": None}
    assert client.delete("/atelier/v1/jobs/long").json() == {"id": "long", "state": "interrupting"}
    ended = wait_for(client, "long")
    assert ended["state"] == "cancelled" and len(ended["images"]) < 4  # the images done before it stopped
    assert client.get("/atelier/v1/queue").json() == {"jobs": []}
    assert client.delete("/atelier/v1/jobs/long").json() == {"id": "long", "state": "deleted"}
    assert client.get("/atelier/v1/jobs/long").status_code == 404


def test_a_queued_job_survives_a_restart_of_the_app(client, queue, data_dir):
    queue.pause()
    submit(client, {**SMALL, "id": "persisted", "seed": 77})
    job_queue.shutdown()  # the server goes away with the job still queued
    restarted = build_client()  # the same data folder: the queue is read back and runs
    done = wait_for(restarted, "persisted")
    assert done["state"] == "done" and done["parameters"]["seed"] == 77
    assert job_queue.service() is not queue


def model_of(answer: dict) -> str:
    return re.search(r"Model: ([^,]+)", answer["infotexts"][0] if "infotexts" in answer
                     else json.loads(answer["info"])["infotexts"][0]).group(1)


def test_per_request_checkpoint_and_vae_leave_the_global_setting(client):
    plain = client.post("/sdapi/v1/txt2img", json=SMALL).json()
    other = client.post("/sdapi/v1/txt2img", json={**SMALL, "override_settings": {
        "sd_model_checkpoint": SDXL, "sd_vae": "tiny_vae.safetensors"}}).json()
    job = wait_for(client, submit(client, {**SMALL, "override_settings": {"sd_model_checkpoint": SDXL}})["id"])
    again = client.post("/sdapi/v1/txt2img", json=SMALL).json()
    assert (model_of(plain), model_of(other), model_of(job), model_of(again)) == ("tiny_sd1", "tiny_sdxl", "tiny_sdxl", "tiny_sd1")
    assert "VAE: tiny_vae.safetensors" in json.loads(other["info"])["infotexts"][0]
    assert "VAE:" not in json.loads(again["info"])["infotexts"][0]
    assert np.array_equal(pixels(plain["images"][0]), pixels(again["images"][0]))
    assert client.get("/sdapi/v1/options").json()["sd_model_checkpoint"] == SD1
    assert client.get("/sdapi/v1/options").json()["sd_vae"] == "Automatic"


def test_with_no_checkpoint_setting_a_job_after_an_override_gets_the_default_again(client):
    opts.set("sd_model_checkpoint", None)
    try:
        before = client.post("/sdapi/v1/txt2img", json=SMALL).json()
        other = client.post("/sdapi/v1/txt2img", json={**SMALL, "override_settings": {"sd_model_checkpoint": SDXL}}).json()
        after = client.post("/sdapi/v1/txt2img", json=SMALL).json()
    finally:
        opts.set("sd_model_checkpoint", SD1)
    assert model_of(other) == "tiny_sdxl" and model_of(after) == model_of(before) != "tiny_sdxl"
    assert np.array_equal(pixels(before["images"][0]), pixels(after["images"][0]))


def test_a_lora_applies_to_its_job_only(client):
    plain = client.post("/sdapi/v1/txt2img", json=SMALL).json()
    lora = wait_for(client, submit(client, {**SMALL, "prompt": "a red cube <lora:tiny_lora:1>"})["id"])
    after = wait_for(client, submit(client, SMALL)["id"])
    assert "Lora hashes" in lora["infotexts"][0] and "Lora hashes" not in after["infotexts"][0]
    assert not np.array_equal(pixels(plain["images"][0]), pixels(lora["images"][0]))
    assert np.array_equal(pixels(plain["images"][0]), pixels(after["images"][0]))


def metric(text: str, name: str, **labels) -> float:
    for line in text.splitlines():
        if line.startswith("#"):
            continue
        found = re.fullmatch(rf"{re.escape(name)}(?:\{{(.*)\}})? (\S+)", line)
        if found and all(f'{k}="{v}"' in (found.group(1) or "") for k, v in labels.items()):
            return float(found.group(2))
    return 0.0


def test_metrics_move_with_the_jobs(client):
    before = client.get("/metrics")
    assert before.status_code == 200 and before.headers["content-type"].startswith("text/plain")
    wait_for(client, submit(client, {**SMALL, "batch_size": 2})["id"])
    after = client.get("/metrics").text
    for name, labels, step in (("atelier_jobs_submitted_total", {"kind": "txt2img"}, 1),
                               ("atelier_jobs_finished_total", {"kind": "txt2img", "state": "done"}, 1),
                               ("atelier_images_generated_total", {}, 2),
                               ("atelier_job_latency_seconds_count", {"kind": "txt2img"}, 1),
                               ("atelier_job_queue_seconds_count", {"kind": "txt2img"}, 1),
                               ("atelier_batch_size_count", {"replica": "local"}, 1),
                               ("atelier_jobs", {"state": "done"}, 1)):
        assert metric(after, name, **labels) == metric(before.text, name, **labels) + step, name
    # the job ran alone: a batch of one job (earlier tests of this module may have batched several)
    assert metric(after, "atelier_batch_size_bucket", le="1.0") == metric(before.text, "atelier_batch_size_bucket", le="1.0") + 1
    assert metric(after, "atelier_queue_length") == 0
    assert metric(after, "atelier_loaded_checkpoints", replica="local") >= 1
    assert re.search(r'atelier_checkpoint_loaded\{checkpoint="tiny_sd1[^"]*",replica="local"\} 1\.0', after)
    assert "atelier_gpu_memory_bytes{" not in after  # no CUDA here


def test_the_grafana_dashboard_reads_only_metrics_we_serve(client):
    served = set(re.findall(r"^# TYPE (\S+) ", client.get("/metrics").text, re.M))
    dashboard = json.loads((REPO / "docs" / "grafana-dashboard.json").read_text(encoding="utf8"))
    used = {re.sub(r"_(bucket|sum|count)$", "", name) for panel in dashboard["panels"]
            for target in panel["targets"] for name in re.findall(r"atelier_\w+", target["expr"])}
    assert len(used) >= 9 and used <= served | {name + "_total" for name in served}, used - served
