"""Per-task progress (A1111's modules.progress): which task id is queued, running or finished, and how far the
running one is. A face registers a task when it queues a job (the page's Generate and the API alike, with who asked);
/internal/progress and the page's queue panel read these by id, and a queued task can be cancelled."""
from __future__ import annotations

import collections
import random
import string
import threading
import time

from modules.shared_state import state

FINISHED_KEPT = 16  # as A1111: a client polling long after its task ended sees "completed" for the last 16 tasks
RESULTS_KEPT = 4  # finished tasks whose outputs a reloaded page can still take back (🌀); A1111 keeps 2

_lock = threading.Lock()
current_task: str | None = None
pending_tasks: dict[str, float] = {}  # id -> time queued; insertion order is the queue's order
finished_tasks: collections.deque[str] = collections.deque(maxlen=FINISHED_KEPT)
owners: dict[str, str] = {}  # id -> who queued it ("page 1a2b3c4d", "API 127.0.0.1"), while queued or running
cancelled_tasks: set[str] = set()  # taken out of the queue before they ran: their turn does nothing
recorded_results: collections.deque[tuple[str, tuple]] = collections.deque(maxlen=RESULTS_KEPT)  # (id, outputs)


def create_task_id(task_type: str) -> str:
    """A1111's `task(<random>)` shape; the type names the tab, as A1111's UI does."""
    suffix = "".join(random.choices(string.ascii_letters + string.digits, k=15))
    return f"task({task_type}-{suffix})"


def add_task_to_queue(id_task: str, owner: str | None = None) -> None:
    """Queue `id_task`; registering it again (a face first, then the queue's wrapper) keeps its place and owner."""
    with _lock:
        pending_tasks.setdefault(id_task, time.time())
        if owner is not None or id_task not in owners:
            owners[id_task] = owner or "unknown"


def start_task(id_task: str) -> None:
    global current_task
    with _lock:
        current_task = id_task
        pending_tasks.pop(id_task, None)


def finish_task(id_task: str) -> None:
    global current_task
    with _lock:
        if current_task == id_task:
            current_task = None
        pending_tasks.pop(id_task, None)  # a job refused before it ran is finished too
        owners.pop(id_task, None)
        finished_tasks.append(id_task)


def record_results(id_task: str, result) -> None:
    """Keep a finished task's outputs for a page that reloaded while it ran (A1111's restore_progress)."""
    with _lock:
        recorded_results.append((id_task, tuple(result)))


def recorded_result(id_task: str) -> tuple | None:
    with _lock:
        return next((result for task, result in reversed(recorded_results) if task == id_task), None)


def is_waiting_or_running(id_task: str) -> bool:
    with _lock:
        return id_task == current_task or id_task in pending_tasks


def queued_tasks() -> list[dict]:
    """The running task, then the queued ones in their order: id, owner and status."""
    with _lock:
        running = [current_task] if current_task is not None else []
        return [{"id_task": task, "owner": owners.get(task, "unknown"), "status": status}
                for status, tasks in (("running", running), ("queued", list(pending_tasks))) for task in tasks]


def cancel_task(id_task: str) -> str | None:
    """Take a queued task out of the queue ("cancelled"), or interrupt the running one ("interrupted"); None when
    the task is neither."""
    with _lock:
        if id_task in pending_tasks:
            pending_tasks.pop(id_task)
            cancelled_tasks.add(id_task)
            return "cancelled"
        running = id_task == current_task
    if running:
        state.interrupt()
        return "interrupted"
    return None


def take_cancelled(id_task: str) -> bool:
    """Whether `id_task` was cancelled while it waited (asked once, when its turn comes)."""
    with _lock:
        if id_task in cancelled_tasks:
            cancelled_tasks.discard(id_task)
            owners.pop(id_task, None)
            finished_tasks.append(id_task)
            return True
        return False


def fraction_done() -> float:
    """How much of the running job is done, 0..1: finished images plus the running image's steps."""
    snapshot = state.dict()
    job_count, job_no = snapshot["job_count"], snapshot["job_no"]
    steps, step = snapshot["sampling_steps"], snapshot["sampling_step"]
    if job_count <= 0:
        return 0.0
    done = job_no / job_count
    if steps > 0:
        done += step / steps / job_count
    return min(done, 1.0)


def task_progress(id_task: str | None, id_live_preview: int = -1, live_preview: bool = True) -> dict:
    """The /internal/progress answer for one task: its place (queued with its position, active, completed) and,
    while it runs, progress, eta and a live preview newer than `id_live_preview`."""
    with _lock:
        active = id_task is not None and id_task == current_task
        queued = id_task in pending_tasks
        completed = id_task in finished_tasks
        position = list(pending_tasks).index(id_task) + 1 if queued else 0
        waiting = len(pending_tasks)
    answer = {"active": active, "queued": queued, "completed": completed, "progress": None, "eta": None,
              "live_preview": None, "id_live_preview": -1, "textinfo": None}
    if not active:
        answer["textinfo"] = f"In queue: {position}/{waiting}" if queued else "Waiting..."
        return answer
    progress = fraction_done()
    elapsed = time.time() - (state.time_start or time.time())
    answer["progress"] = progress
    answer["eta"] = elapsed / progress - elapsed if progress > 0 else None
    answer["textinfo"] = state.textinfo
    answer["id_live_preview"] = id_live_preview
    if live_preview:
        state.set_current_image()
        if state.current_image is not None and state.id_live_preview != id_live_preview:
            answer["live_preview"] = state.current_image
            answer["id_live_preview"] = state.id_live_preview
    return answer
