"""modules.errors, as extensions call it: errors are logged with their traceback and kept, never raised."""
from __future__ import annotations

import logging

import pytest

from modules import errors


@pytest.fixture(autouse=True)
def fresh_records(monkeypatch):
    monkeypatch.setattr(errors, "exception_records", errors.deque(maxlen=errors.MAX_RECORDS))
    monkeypatch.setattr(errors, "_displayed_tasks", set())


def fail(message="boom"):
    raise ValueError(message)


def test_report_logs_the_message_and_with_exc_info_the_traceback(caplog):
    with caplog.at_level(logging.ERROR, logger="modules.errors"):
        errors.report("plain message")
        try:
            fail()
        except ValueError:
            errors.report("extension xyz failed", exc_info=True)
    assert "plain message" in caplog.text and "extension xyz failed" in caplog.text
    assert "ValueError: boom" in caplog.text and "in fail" in caplog.text
    assert [(r["type"], r["exception"]) for r in errors.get_exceptions()] == [("ValueError", "boom")]


def test_run_displays_instead_of_raising(caplog):
    with caplog.at_level(logging.ERROR, logger="modules.errors"):
        errors.run(lambda: fail("from run"), "loading my script")
    assert "loading my script: ValueError" in caplog.text and "from run" in caplog.text
    assert errors.get_exceptions()[0]["exception"] == "from run"


def test_display_once_logs_a_task_only_the_first_time(caplog):
    with caplog.at_level(logging.ERROR, logger="modules.errors"):
        for message in ("first", "second"):
            try:
                fail(message)
            except ValueError as e:
                errors.display_once(e, "the same task")
    assert "first" in caplog.text and "second" not in caplog.text


def test_only_the_last_records_are_kept_newest_first():
    for i in range(errors.MAX_RECORDS + 2):
        errors.record_exception(ValueError(f"error {i}"))
    kept = [r["exception"] for r in errors.get_exceptions()]
    assert kept == [f"error {i}" for i in range(errors.MAX_RECORDS + 1, 1, -1)]


def test_print_error_explanation_frames_the_text(caplog):
    with caplog.at_level(logging.ERROR, logger="modules.errors"):
        errors.print_error_explanation("line one\nlonger line two")
    assert "=" * len("longer line two") + "\nline one\nlonger line two\n" + "=" * len("longer line two") in caplog.text
