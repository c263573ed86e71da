"""call_queue: one job at a time, failures become readable messages, the lock is always released."""
import threading
import time

import pytest
import torch

from modules import call_queue, progress


def test_success_passes_outputs_through():
    wrapped = call_queue.wrap_gradio_call(lambda a, b: (a + b, "log"), extra_outputs=[None])
    assert wrapped(2, 3) == (5, "log")


def test_error_becomes_extra_outputs_plus_escaped_message():
    def fails(width):
        raise ValueError(f"Width and height must be positive multiples of 8, got {width}x64 <b>")

    result = call_queue.wrap_gradio_call(fails, extra_outputs=["gallery", "info"])(100)
    assert result[:2] == ["gallery", "info"]
    assert result[2] == ("<div class='error'><b>Error:</b> Width and height must be positive multiples of 8, "
                         "got 100x64 &lt;b&gt;</div>")


@pytest.mark.parametrize("error, expected", [
    (RuntimeError("Could not read broken.safetensors: the file is corrupt"), "Could not read broken.safetensors: the file is corrupt"),
    (FileNotFoundError(2, "No such file or directory"), "[Errno 2] No such file or directory"),
    (KeyError("steps"), "KeyError: 'steps'"),
    (ZeroDivisionError(), "ZeroDivisionError"),
])
def test_error_message_is_the_errors_own_sentence(error, expected):
    assert call_queue.error_message(error) == expected


@pytest.mark.parametrize("error", [torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB"), MemoryError()])
def test_out_of_memory_says_what_to_change(error):
    message = call_queue.error_message(error)
    assert message.startswith(call_queue.OUT_OF_MEMORY_ADVICE)
    assert "--medvram" in message
    assert message.endswith("(CUDA out of memory. Tried to allocate 2.00 GiB)" if str(error) else "(MemoryError)")


def test_gpu_call_reports_time_and_releases_the_lock_after_an_error():
    def fails():
        assert call_queue.queue_lock.locked()
        raise RuntimeError("boom")

    result = call_queue.wrap_gradio_gpu_call(fails, extra_outputs=[None])()
    assert result == [None, "<div class='error'><b>Error:</b> boom</div>"]
    assert not call_queue.queue_lock.locked()
    ok = call_queue.wrap_gradio_gpu_call(lambda: ("image", "<p>done</p>"))()
    assert ok[0] == "image"
    assert ok[1].startswith("<p>done</p><div class='performance'><p class='time'>Time taken: ")
    assert ok[1].endswith(" sec.</p></div>")


def test_gpu_calls_never_overlap():
    order = []
    first_inside = threading.Event()
    release_first = threading.Event()

    def first():
        order.append("first in")
        first_inside.set()
        release_first.wait(5)
        order.append("first out")
        return ("a", "")

    def second():
        order.append("second in")
        return ("b", "")

    t1 = threading.Thread(target=call_queue.wrap_gradio_gpu_call(first))
    t1.start()
    assert first_inside.wait(5)
    t2 = threading.Thread(target=call_queue.wrap_gradio_gpu_call(second))
    t2.start()
    time.sleep(0.2)
    assert order == ["first in"]  # the second job waits for the lock
    release_first.set()
    t1.join(5)
    t2.join(5)
    assert order == ["first in", "first out", "second in"]


@pytest.mark.parametrize("seconds, text", [(0.04, "0.0 sec."), (12.34, "12.3 sec."), (125, "2 min. 5 sec."),
                                           (3725, "1 h. 2 min. 5 sec.")])
def test_format_duration(seconds, text):
    assert call_queue.format_duration(seconds) == text


def test_run_in_background_returns_result_and_exception():
    assert call_queue.run_in_background(lambda x: x * 2, 21).result(5) == 42
    future = call_queue.run_in_background(lambda: 1 / 0)
    with pytest.raises(ZeroDivisionError):
        future.result(5)


def test_a_user_error_is_its_sentence_in_one_log_line(caplog):
    import gradio as gr

    def fails():
        raise gr.Error("img2img: upload an image first")

    with caplog.at_level("INFO", logger="modules.call_queue"):
        result = call_queue.wrap_gradio_call(fails, extra_outputs=[None])()
    assert result[1] == "<div class='error'><b>Error:</b> img2img: upload an image first</div>"  # no stray quotes
    assert call_queue.error_in(result[1]) == "img2img: upload an image first"  # what the toast says
    assert [(r.levelname, r.getMessage(), r.exc_info) for r in caplog.records] == [
        ("WARNING", "Request not done: img2img: upload an image first", None)]
    caplog.clear()
    with caplog.at_level("INFO", logger="modules.call_queue"):
        call_queue.wrap_gradio_call(lambda: 1 / 0, extra_outputs=[None])()
    assert caplog.records[0].exc_info is not None  # a bug keeps its traceback
    assert call_queue.error_in("<p>done</p>") is None


def test_task_ids_queue_list_their_owner_and_a_cancelled_task_never_runs():
    from modules import progress

    ran = []
    job = call_queue.wrap_gradio_gpu_call(lambda id_task, x: (ran.append((id_task, x)) or x, "log"), extra_outputs=[None])
    first_inside, release = threading.Event(), threading.Event()

    def first(id_task):
        first_inside.set()
        release.wait(10)
        return "first", "log"

    running = threading.Thread(target=call_queue.wrap_gradio_gpu_call(first, extra_outputs=[None]), args=("task(a)",))
    progress.add_task_to_queue("task(a)", "page 1a2b3c4d")
    running.start()
    first_inside.wait(10)
    progress.add_task_to_queue("task(b)", "API 127.0.0.1")
    progress.add_task_to_queue("task(c)", "page 1a2b3c4d")
    waiting = [threading.Thread(target=job, args=(name, name[-2])) for name in ("task(b)", "task(c)")]
    for thread in waiting:
        thread.start()
    assert progress.queued_tasks() == [
        {"id_task": "task(a)", "owner": "page 1a2b3c4d", "status": "running"},
        {"id_task": "task(b)", "owner": "API 127.0.0.1", "status": "queued"},
        {"id_task": "task(c)", "owner": "page 1a2b3c4d", "status": "queued"}]
    assert progress.cancel_task("task(b)") == "cancelled"
    assert [task["id_task"] for task in progress.queued_tasks()] == ["task(a)", "task(c)"]
    release.set()
    for thread in (running, *waiting):
        thread.join(10)
    assert ran == [("task(c)", "c")]  # b was cancelled while it waited
    assert progress.queued_tasks() == [] and progress.cancel_task("task(b)") is None
    assert {"task(a)", "task(b)", "task(c)"} <= set(progress.finished_tasks)


def test_a_page_job_is_followed_by_internal_progress_under_its_task_id():
    """The page's Generate sends A1111's `task(...)` id first: the answer of /internal/progress (progress.task_progress)
    finds the job active while it runs and completed after."""
    task = progress.create_task_id("txt2img")
    during = []

    def page_job(id_task):
        during.append(progress.task_progress(id_task))
        return "<p></p>"

    call_queue.wrap_gradio_gpu_call(page_job)(task)
    after = progress.task_progress(task)
    assert during[0]["active"] and not during[0]["queued"] and not during[0]["completed"]
    assert after["completed"] and not after["active"]
