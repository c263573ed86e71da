"""One GPU job at a time, and errors turned into messages for the page (A1111's modules.call_queue names).

The UI and the API share `queue_lock`; a job that fails leaves a readable message and the lock free, so the
server keeps serving.
"""
from __future__ import annotations

import collections
import functools
import html
import logging
import re
import threading
import time
from concurrent.futures import Future

import torch

from modules import progress

log = logging.getLogger(__name__)



class FIFOLock:
    """A lock that waiting threads get in the order they asked for it (threading.Lock promises no order)."""

    def __init__(self):
        self._lock = threading.Lock()
        self._inner = threading.Lock()
        self._waiters: collections.deque[threading.Event] = collections.deque()

    def acquire(self, blocking: bool = True) -> bool:
        with self._inner:
            if not self._waiters and self._lock.acquire(False):
                return True
            if not blocking:
                return False
            turn = threading.Event()
            self._waiters.append(turn)
        turn.wait()  # release() hands the lock straight to the first waiter
        return True

    def release(self) -> None:
        with self._inner:
            if self._waiters:
                self._waiters.popleft().set()  # _lock stays held: ownership passes to that waiter
            else:
                self._lock.release()

    def locked(self) -> bool:
        return self._lock.locked()

    def waiting(self) -> int:
        """Jobs queued behind the running one."""
        return len(self._waiters)

    def __enter__(self):
        self.acquire()
        return self

    def __exit__(self, *exc):
        self.release()


queue_lock = FIFOLock()

OUT_OF_MEMORY_ADVICE = ("Out of memory: try a smaller width, height or batch size, or start Atelier with --medvram "
                        "(or --lowvram).")


def wrap_queued_call(func):
    """`func` run while holding queue_lock, so it never overlaps a generation."""

    @functools.wraps(func)
    def f(*args, **kwargs):
        with queue_lock:
            return func(*args, **kwargs)

    return f


def error_message(e: BaseException) -> str:
    """What the user reads: the error's own sentence; out-of-memory errors also say what to change."""
    if isinstance(e, (torch.OutOfMemoryError, MemoryError)):
        detail = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        return f"{OUT_OF_MEMORY_ADVICE} ({detail})"
    if is_user_error(e):
        return _user_message(e)
    text = str(e).strip()
    if isinstance(e, (RuntimeError, OSError)) and text:
        return text
    return f"{type(e).__name__}: {text}" if text else type(e).__name__


def _user_message(e: BaseException) -> str:
    # gr.Error's str() is the repr of its message (quotes included): its `message` is the sentence itself
    message = getattr(e, "message", None)
    return (message if isinstance(message, str) else str(e)).strip() or type(e).__name__


def is_user_error(e: BaseException) -> bool:
    """A mistake the user can fix (a bad size, no image, a page's gr.Error): one log line, no traceback."""
    return isinstance(e, ValueError) or type(e).__name__ == "Error" and isinstance(getattr(e, "message", None), str)


def error_html(message: str) -> str:
    return f"<div class='error'><b>Error:</b> {html.escape(message)}</div>"


def error_in(log_html) -> str | None:
    """The message of an error_html page log, None for any other."""
    found = re.fullmatch(r"<div class='error'><b>Error:</b> (.*)</div>", log_html, re.S) if isinstance(log_html, str) else None
    return html.unescape(found.group(1)) if found else None


def wrap_gradio_call(func, extra_outputs=None, add_stats: bool = False):
    """Call `func`; its last output is the page's log HTML. On an exception the outputs are `extra_outputs` plus an
    error message in that place, and the traceback goes to the console."""

    @functools.wraps(func)
    def f(*args, **kwargs):
        started = time.perf_counter()
        try:
            res = list(func(*args, **kwargs))
        except Exception as e:
            if is_user_error(e):
                log.warning("Request not done: %s", error_message(e))
            else:
                log.exception("Error completing request")
            return [*(extra_outputs or []), error_html(error_message(e))]
        if add_stats:
            elapsed = time.perf_counter() - started
            res[-1] = (res[-1] or "") + f"<div class='performance'><p class='time'>Time taken: {format_duration(elapsed)}</p></div>"
        return tuple(res)

    return f


CANCELLED = "Cancelled before it started."


def is_task_id(value) -> bool:
    return isinstance(value, str) and value.startswith("task(") and value.endswith(")")


def wrap_gradio_gpu_call(func, extra_outputs=None):
    """A generation for the page: one at a time (queue_lock), errors as messages, time taken in the log. As A1111, a
    first argument `task(...)` is the job's task id (func receives it too): queued, running and finished in
    modules.progress, its outputs kept there for a page that reloads meanwhile; a task cancelled while it waited does
    not run."""

    def locked(*args, **kwargs):
        id_task = args[0] if args and is_task_id(args[0]) else None
        with queue_lock:
            if id_task is None:
                return func(*args, **kwargs)
            if progress.take_cancelled(id_task):
                raise TaskCancelled(CANCELLED)
            progress.start_task(id_task)
            return func(*args, **kwargs)

    call = wrap_gradio_call(locked, extra_outputs=extra_outputs, add_stats=True)

    @functools.wraps(func)
    def f(*args, **kwargs):
        id_task = args[0] if args and is_task_id(args[0]) else None
        if id_task is None:
            return call(*args, **kwargs)
        progress.add_task_to_queue(id_task)
        try:
            result = call(*args, **kwargs)
            progress.record_results(id_task, result)  # before it counts as finished: a restoring page finds it
            return result
        finally:
            progress.finish_task(id_task)

    return f


class TaskCancelled(ValueError):
    """A queued task cancelled before its turn: told to its page as a user's doing."""


def format_duration(seconds: float) -> str:
    seconds = max(seconds, 0.0)
    if seconds < 60:
        return f"{seconds:.1f} sec."
    minutes, secs = divmod(int(round(seconds)), 60)
    if minutes < 60:
        return f"{minutes} min. {secs} sec."
    hours, minutes = divmod(minutes, 60)
    return f"{hours} h. {minutes} min. {secs} sec."


def run_in_background(func, *args) -> Future:
    """Run `func(*args)` in a daemon thread (a stuck job never blocks the process from exiting); its Future."""
    future: Future = Future()

    def run():
        if not future.set_running_or_notify_cancel():
            return
        try:
            future.set_result(func(*args))
        except BaseException as e:  # the caller reads it from the Future
            future.set_exception(e)

    threading.Thread(target=run, name=f"job {getattr(func, '__name__', 'call')}", daemon=True).start()
    return future
