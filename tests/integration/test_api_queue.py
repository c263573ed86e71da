"""One queue for UI and API: jobs run one at a time in arrival order, /progress follows the running job, /interrupt
stops only it and returns the images done so far, and a failed job never poisons the next."""
from __future__ import annotations

import json
import re
import threading
import time

import pytest

from modules.call_queue import FIFOLock, queue_lock, wrap_gradio_gpu_call
from tests.integration.test_api import SD1, SMALL, encode, gradient, start_server


@pytest.fixture(scope="module")
def server(tmp_path_factory, tiny_models_dir):
    app = start_server(tmp_path_factory, tiny_models_dir)
    app.ok("POST", "/sdapi/v1/options", {"sd_model_checkpoint": SD1})
    yield app
    app.stop()


def job_lines(log: str) -> list[tuple[int, str]]:
    return [(int(n), what) for n, what in re.findall(r"API job (\d+) (begins|ends)", log)]


def test_three_clients_at_once_all_succeed_one_generation_at_a_time(server):
    results, progress, done = {}, [], threading.Event()

    def client(seed):
        results[seed] = server.post("/sdapi/v1/txt2img", {**SMALL, "steps": 6, "seed": seed})

    def poll():
        while not done.is_set():
            progress.append(server.ok("GET", "/sdapi/v1/progress?skip_current_image=true"))
            time.sleep(0.05)

    before = len(job_lines(server.log_text()))
    poller = threading.Thread(target=poll)
    assert server.post("/sdapi/v1/options", {"job_batch_window_ms": 0}).status_code == 200  # no batching: one by one
    try:
        poller.start()
        clients = [threading.Thread(target=client, args=(seed,)) for seed in (1, 2, 3)]
        for t in clients:
            t.start()
        for t in clients:
            t.join(300)
        done.set()
        poller.join(30)
    finally:
        server.post("/sdapi/v1/options", {"job_batch_window_ms": 200})
    assert sorted(results) == [1, 2, 3]
    for seed, response in results.items():
        assert response.status_code == 200, response.text
        assert json.loads(response.json()["info"])["seed"] == seed
    lines = job_lines(server.log_text())[before:]
    assert len(lines) == 6
    for begin, end in zip(lines[::2], lines[1::2]):  # every job ends before the next begins
        assert begin[0] == end[0] and (begin[1], end[1]) == ("begins", "ends")
    running = [p for p in progress if p["state"]["job"]]
    assert running, "the poller never saw a running job"
    for p in running:
        assert 0 < p["progress"] <= 1 and p["eta_relative"] >= 0 and p["current_image"] is None
        assert p["state"]["job"] == "txt2img" and p["state"]["job_count"] == 1
        assert 0 <= p["state"]["sampling_step"] <= p["state"]["sampling_steps"]
    assert any(p["state"]["sampling_steps"] == 6 and p["state"]["sampling_step"] > 0 for p in running)
    assert server.ok("GET", "/sdapi/v1/progress")["progress"] == 0


def test_interrupt_during_a_multi_image_job_returns_the_images_done_so_far(server):
    response = {}
    job = threading.Thread(target=lambda: response.setdefault(
        "r", server.post("/sdapi/v1/txt2img", {**SMALL, "steps": 8, "n_iter": 6})))
    job.start()
    deadline = time.time() + 120
    while time.time() < deadline:
        state = server.ok("GET", "/sdapi/v1/progress")["state"]
        if state["job"] == "txt2img" and state["job_no"] >= 1:
            break
        time.sleep(0.02)
    assert server.ok("POST", "/sdapi/v1/interrupt") == {}
    job.join(120)
    result = response["r"]
    assert result.status_code == 200, result.text
    info = json.loads(result.json()["info"])
    produced = len(result.json()["images"]) - info["index_of_first_image"]
    assert 1 <= produced < 6 and len(info["infotexts"]) == len(result.json()["images"])
    after = server.ok("POST", "/sdapi/v1/txt2img", {**SMALL, "n_iter": 2})  # the next job is not interrupted
    assert len(after["images"]) == 2  # both images (no grid without save_images, as A1111)


def test_a_failed_job_never_poisons_the_next(server):
    failed = server.post("/sdapi/v1/img2img", {**SMALL, "batch_size": 1, "init_images": [encode(gradient())] * 2})
    assert failed.status_code == 422 and failed.json()["detail"] == "Too many images passed: 2; expecting 1 or less"
    assert server.ok("POST", "/sdapi/v1/txt2img", SMALL)["images"]
    lines = job_lines(server.log_text())
    assert lines[-1][1] == "ends" and lines[-2][1] == "begins"


def test_queue_lock_serves_waiters_in_arrival_order_ui_and_api_alike():
    order, started = [], []
    lock = FIFOLock()
    lock.acquire()

    def waiter(name):
        started.append(name)
        with lock:
            order.append(name)

    threads = []
    for name in "abcde":
        t = threading.Thread(target=waiter, args=(name,))
        t.start()
        threads.append(t)
        while lock.waiting() < len(threads):  # each arrives only after the one before is queued
            time.sleep(0.001)
    assert order == [] and lock.locked()
    lock.release()
    for t in threads:
        t.join(5)
    assert order == list("abcde") and not lock.locked() and lock.waiting() == 0
    assert lock.acquire(blocking=False) and not lock.acquire(blocking=False)
    lock.release()


def test_the_ui_wrapper_queues_on_the_same_lock():
    inside = []
    assert wrap_gradio_gpu_call(lambda: (inside.append(queue_lock.locked()), "<p></p>"))()[1].startswith("<p></p>")
    assert inside == [True] and isinstance(queue_lock, FIFOLock) and not queue_lock.locked()


def test_force_task_id_is_followed_by_internal_progress_queued_then_active_then_completed(server):
    """A1111's UI and polling clients: a job sent with force_task_id is found by that id in /internal/progress."""
    task = "task(client-test-1)"
    assert server.ok("POST", "/internal/progress", {"id_task": task}) == {
        "active": False, "queued": False, "completed": False, "progress": None, "eta": None, "live_preview": None,
        "id_live_preview": -1, "textinfo": "Waiting..."}
    results, seen, done = {}, [], threading.Event()
    blocker = threading.Thread(target=lambda: results.setdefault(
        "blocker", server.post("/sdapi/v1/txt2img", {**SMALL, "steps": 10})))
    blocker.start()
    deadline = time.time() + 120
    while not server.ok("GET", "/sdapi/v1/progress?skip_current_image=true")["state"]["job"] and time.time() < deadline:
        time.sleep(0.02)
    tracked = threading.Thread(target=lambda: results.setdefault(
        "tracked", server.post("/sdapi/v1/txt2img", {**SMALL, "steps": 10, "force_task_id": task})))

    def poll():
        while not done.is_set():
            seen.append(server.ok("POST", "/internal/progress", {"id_task": task, "id_live_preview": -1,
                                                                 "live_preview": False}))
            time.sleep(0.02)

    poller = threading.Thread(target=poll)
    poller.start()
    tracked.start()
    blocker.join(300)
    tracked.join(300)
    done.set()
    poller.join(30)
    seen.append(server.ok("POST", "/internal/progress", {"id_task": task}))  # after the answer came back
    assert results["blocker"].status_code == 200 and results["tracked"].status_code == 200
    phases = [("queued" if p["queued"] else "active" if p["active"] else "completed" if p["completed"] else "unknown")
              for p in seen]
    order = [phase for i, phase in enumerate(phases) if i == 0 or phases[i - 1] != phase]
    assert order[-3:] == ["queued", "active", "completed"] and "unknown" not in order[1:], order
    queued = [p for p in seen if p["queued"]]
    assert queued[0]["textinfo"] == "In queue: 1/1" and queued[0]["progress"] is None
    active = [p for p in seen if p["active"]]
    assert all(p["progress"] is not None and 0 <= p["progress"] <= 1 and p["live_preview"] is None for p in active)
    assert any(0 < p["progress"] < 1 and p["eta"] is not None and p["eta"] >= 0 for p in active)
    assert seen[-1]["completed"] and not seen[-1]["active"] and not seen[-1]["queued"]


def test_internal_queue_lists_the_running_and_queued_api_jobs_with_their_client(server):
    results, seen, done = {}, [], threading.Event()
    blocker = threading.Thread(target=lambda: results.setdefault(
        "blocker", server.post("/sdapi/v1/txt2img", {**SMALL, "steps": 10, "force_task_id": "task(queue-blocker)"})))
    blocker.start()
    deadline = time.time() + 120
    while not server.ok("GET", "/sdapi/v1/progress?skip_current_image=true")["state"]["job"] and time.time() < deadline:
        time.sleep(0.02)
    waiting = threading.Thread(target=lambda: results.setdefault(
        "waiting", server.post("/sdapi/v1/txt2img", {**SMALL, "steps": 2, "force_task_id": "task(queue-waiting)"})))
    waiting.start()
    while not done.is_set() and time.time() < deadline:
        listing = server.ok("GET", "/internal/queue")
        seen.append(listing)
        if len(listing) == 2 or not blocker.is_alive():
            done.set()
        time.sleep(0.02)
    blocker.join(300)
    waiting.join(300)
    assert results["blocker"].status_code == 200 and results["waiting"].status_code == 200
    both = next(listing for listing in seen if len(listing) == 2)
    assert [(t["id_task"], t["status"]) for t in both] == [("task(queue-blocker)", "running"), ("task(queue-waiting)", "queued")]
    assert all(t["owner"].startswith("API 127.0.0.1") for t in both)
    assert server.ok("GET", "/internal/queue") == []
