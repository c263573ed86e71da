"""The page's small feedback: 📂 leaves no zombie, the first progress text of a job nobody waits for."""
from __future__ import annotations

import os
import time

import gradio as gr

from modules import call_queue, ui_common


def test_open_folder_reaps_the_file_manager(tmp_path, monkeypatch):
    opener = tmp_path / "bin" / "xdg-open"
    opener.parent.mkdir()
    opener.write_text("#!/bin/sh\necho \"$1\" > \"$(dirname \"$0\")/opened\"\n")
    opener.chmod(0o755)
    monkeypatch.setenv("PATH", f"{opener.parent}{os.pathsep}{os.environ['PATH']}")
    started = []
    real_popen = ui_common.subprocess.Popen
    monkeypatch.setattr(ui_common.subprocess, "Popen", lambda *a, **k: started.append(real_popen(*a, **k)) or started[-1])
    folder = tmp_path / "outputs"
    folder.mkdir()
    assert "Opened" in ui_common.open_folder(str(folder))
    deadline = time.time() + 10
    while started[0].returncode is None and time.time() < deadline:
        time.sleep(0.05)
    assert started[0].returncode == 0  # waited for: no <defunct> child stays behind
    assert (opener.parent / "opened").read_text().strip() == str(folder)


def test_a_job_holding_the_lock_is_preparing_not_waiting():
    watcher = ui_common.JobWatcher(time.time() + 60)  # its job has not begun
    with call_queue.queue_lock:  # held by the job's own thread, nobody else in line
        assert "Preparing..." in watcher.poll()


def test_reload_ui_logs_no_traceback_for_the_connections_it_cancels():
    import asyncio
    import logging
    import sys

    import webui

    def record(error):
        try:
            raise error
        except BaseException:
            return logging.LogRecord("uvicorn.error", logging.ERROR, __file__, 1, "Exception in ASGI application", None,
                                     sys.exc_info())

    assert not webui.drop_cancelled_connections(record(asyncio.CancelledError()))
    assert webui.drop_cancelled_connections(record(RuntimeError("a real error")))


def test_a_queued_task_waits_only_behind_a_running_one(monkeypatch):
    from modules import progress

    monkeypatch.setattr(progress, "pending_tasks", {"task(mine)": 0.0})
    monkeypatch.setattr(progress, "owners", {"task(mine)": "page a", "task(other)": "API 127.0.0.1"})
    watcher = ui_common.JobWatcher(time.time(), "task(mine)")
    monkeypatch.setattr(progress, "current_task", None)
    assert "Preparing..." in watcher.poll("page a")  # nothing runs: no "waiting"
    monkeypatch.setattr(progress, "current_task", "task(other)")
    assert "In queue: 1/1: waiting for the running job to finish..." in watcher.poll("page a")
    monkeypatch.setattr(progress, "owners", {"task(mine)": "page a", "task(other)": "page a"})
    assert watcher.poll("page a") == gr.skip()  # the page's own running job keeps showing its progress
