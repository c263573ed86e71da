"""Error reporting for extensions (A1111's modules.errors): log an error with its traceback and keep the last few, so
that a failing extension is visible on the console and the server goes on."""
from __future__ import annotations

import logging
import sys
import threading
import traceback
from collections import deque

log = logging.getLogger(__name__)

MAX_RECORDS = 5  # A1111 keeps the last five exceptions for its system-info page
exception_records: deque[dict] = deque(maxlen=MAX_RECORDS)
_lock = threading.Lock()
_displayed_tasks: set[str] = set()


def record_exception(e: BaseException | None = None) -> None:
    """Keep `e` (by default the exception being handled): its type, message and traceback, among the recent ones."""
    e = e if e is not None else sys.exc_info()[1]
    if e is None:
        return
    with _lock:
        if exception_records and exception_records[-1]["exception"] == str(e):
            return  # the same error reported twice on its way up
        exception_records.append({"exception": str(e), "type": type(e).__name__,
                                  "traceback": traceback.format_tb(e.__traceback__)})


def get_exceptions() -> list[dict]:
    """The recent exceptions, newest first."""
    with _lock:
        return list(reversed(exception_records))


def report(message: str, *, exc_info: bool = False) -> None:
    """Log `message` as an error; with exc_info, also the exception being handled and its traceback."""
    if exc_info:
        record_exception()
    log.error("%s", message, exc_info=exc_info)


def print_error_explanation(message: str) -> None:
    """An explanation for the user, framed so it stands out in the console."""
    lines = message.strip().split("\n")
    frame = "=" * max(len(line) for line in lines)
    log.error("\n%s\n%s\n%s", frame, "\n".join(lines), frame)


def display(e: Exception, task: str | None, *, full_traceback: bool = False) -> None:
    """Log an exception caught while doing `task`, with its traceback (from the outermost frame with full_traceback)."""
    record_exception(e)
    stack = traceback.format_exception(type(e), e, e.__traceback__)
    if full_traceback:
        stack = traceback.format_stack()[:-1] + stack[1:]
    log.error("%s: %s\n%s", task or "error", type(e).__name__, "".join(stack).rstrip())


def display_once(e: Exception, task: str) -> None:
    """display(), but only the first time for each task."""
    with _lock:
        if task in _displayed_tasks:
            return
        _displayed_tasks.add(task)
    display(e, task)


def run(code, task: str) -> None:
    """Call code(); an exception is displayed for `task` instead of raised."""
    try:
        code()
    except Exception as e:
        display(e, task)
