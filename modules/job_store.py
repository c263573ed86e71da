"""The job queue's records on disk: one SQLite database in the data folder (every change one committed transaction)
and each finished job's result as a JSON file written atomically before the job is recorded as done."""
from __future__ import annotations

import json
import os
import sqlite3
import tempfile
import threading
import time
from dataclasses import dataclass, field

QUEUED, RUNNING, DONE, FAILED, CANCELLED = "queued", "running", "done", "failed", "cancelled"
ACTIVE = (QUEUED, RUNNING)
FINISHED = (DONE, FAILED, CANCELLED)

SCHEMA = """
CREATE TABLE IF NOT EXISTS jobs (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,  -- the queue's order
    id TEXT UNIQUE NOT NULL,
    kind TEXT NOT NULL,                     -- txt2img | img2img
    request TEXT NOT NULL,                  -- the request as the client sent it (A1111's field names), JSON
    owner TEXT NOT NULL,
    client TEXT NOT NULL,
    waited INTEGER NOT NULL,                -- 1: a synchronous /sdapi/v1 call waits for it in this process
    state TEXT NOT NULL,
    error TEXT,
    status_code INTEGER,
    created REAL NOT NULL,
    started REAL,
    finished REAL
)
"""


@dataclass
class Job:
    id: str
    kind: str
    request: dict
    owner: str = "anonymous"
    client: str = ""
    waited: bool = False
    state: str = QUEUED
    error: str | None = None
    status_code: int | None = None
    created: float = field(default_factory=time.time)
    started: float | None = None
    finished: float | None = None
    seq: int | None = None


class DuplicateJob(ValueError):
    """A job with that id is already known."""


def write_atomically(path: str, text: str) -> None:
    folder = os.path.dirname(path)
    fd, temp = tempfile.mkstemp(dir=folder, prefix=".tmp-", suffix=".json")
    try:
        with os.fdopen(fd, "w", encoding="utf8") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        os.replace(temp, path)
    except BaseException:
        if os.path.exists(temp):
            os.remove(temp)
        raise


class JobStore:
    """The records of every job not deleted, and the results of the finished ones, under `folder`."""

    def __init__(self, folder: str):
        self.folder = folder
        self.results = os.path.join(folder, "results")
        os.makedirs(self.results, exist_ok=True)
        self._lock = threading.Lock()
        self._db = sqlite3.connect(os.path.join(folder, "jobs.sqlite"), check_same_thread=False, isolation_level=None)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=FULL")  # a commit is on disk when it returns
        self._db.execute(SCHEMA)

    def close(self) -> None:
        with self._lock:
            self._db.close()

    def _write(self, sql: str, args=()) -> sqlite3.Cursor:
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                cursor = self._db.execute(sql, args)
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
            self._db.execute("COMMIT")
            return cursor

    def _read(self, sql: str, args=()) -> list[Job]:
        with self._lock:
            cursor = self._db.execute(sql, args)
            names = [c[0] for c in cursor.description]
            rows = cursor.fetchall()
        jobs = []
        for row in rows:
            values = dict(zip(names, row))
            values["request"] = json.loads(values["request"])
            values["waited"] = bool(values["waited"])
            jobs.append(Job(**values))
        return jobs

    def add(self, job: Job, replace_finished: bool = False) -> Job:
        """Record a queued job; an id already known is a DuplicateJob, unless `replace_finished` and that job ended
        (A1111 clients may send the same force_task_id again)."""
        old = self.get(job.id)
        if old is not None:
            if not (replace_finished and old.state in FINISHED):
                raise DuplicateJob(f"A job with id {job.id} already exists ({old.state})")
            self.delete(old)
        try:
            cursor = self._write(
                "INSERT INTO jobs (id, kind, request, owner, client, waited, state, created) VALUES (?,?,?,?,?,?,?,?)",
                (job.id, job.kind, json.dumps(job.request), job.owner, job.client, int(job.waited), QUEUED, job.created))
        except sqlite3.IntegrityError as e:  # another request took the id meanwhile
            raise DuplicateJob(f"A job with id {job.id} already exists") from e
        job.seq, job.state = cursor.lastrowid, QUEUED
        return job

    def get(self, job_id: str) -> Job | None:
        found = self._read("SELECT * FROM jobs WHERE id = ?", (job_id,))
        return found[0] if found else None

    def active(self) -> list[Job]:
        """Running, then queued jobs in the queue's order."""
        return self._read("SELECT * FROM jobs WHERE state IN (?, ?) ORDER BY state = 'queued', seq", ACTIVE)

    def counts(self) -> dict[str, int]:
        with self._lock:
            rows = self._db.execute("SELECT state, COUNT(*) FROM jobs GROUP BY state").fetchall()
        return {state: 0 for state in (*ACTIVE, *FINISHED)} | dict(rows)

    def recent_run_seconds(self, limit: int = 20) -> list[float]:
        with self._lock:
            rows = self._db.execute("SELECT finished - started FROM jobs WHERE state = ? AND started IS NOT NULL "
                                    "ORDER BY finished DESC LIMIT ?", (DONE, limit)).fetchall()
        return [row[0] for row in rows]

    def mark_running(self, job: Job) -> bool:
        """queued -> running; False when the job is no longer queued (cancelled meanwhile)."""
        job.started = time.time()
        changed = self._write("UPDATE jobs SET state = ?, started = ? WHERE id = ? AND state = ?",
                              (RUNNING, job.started, job.id, QUEUED)).rowcount
        if changed:
            job.state = RUNNING
        return bool(changed)

    def finish(self, job: Job, state: str, result: dict | None = None, error: str | None = None,
               status_code: int | None = None) -> None:
        """End a job; its result reaches the disk before the record says so."""
        if result is not None:
            write_atomically(self.result_path(job), json.dumps(result))
        job.state, job.error, job.status_code, job.finished = state, error, status_code, time.time()
        self._write("UPDATE jobs SET state = ?, error = ?, status_code = ?, finished = ? WHERE id = ?",
                    (state, error, status_code, job.finished, job.id))

    def prune_waited(self, keep: int) -> None:
        """Forget all but the last `keep` ended jobs that synchronous callers waited for (they got their answer; as
        A1111, /internal/progress remembers the last 16 tasks)."""
        self._write("DELETE FROM jobs WHERE waited = 1 AND state IN (?, ?, ?) AND seq NOT IN (SELECT seq FROM jobs "
                    "WHERE waited = 1 AND state IN (?, ?, ?) ORDER BY seq DESC LIMIT ?)", (*FINISHED, *FINISHED, keep))

    def cancel_queued(self, job_id: str) -> bool:
        """queued -> cancelled in one transaction; False when it was not queued."""
        return bool(self._write("UPDATE jobs SET state = ?, finished = ? WHERE id = ? AND state = ?",
                                (CANCELLED, time.time(), job_id, QUEUED)).rowcount)

    def requeue_interrupted(self) -> tuple[list[Job], list[Job]]:
        """After a restart: jobs that were running go back to the queue at their place; jobs a synchronous client
        waited for are cancelled (that client is gone). Returns (queued, dropped)."""
        dropped = self._read("SELECT * FROM jobs WHERE state IN (?, ?) AND waited = 1", ACTIVE)
        for job in dropped:
            self.finish(job, CANCELLED, error="The server restarted while the synchronous request waited")
        self._write("UPDATE jobs SET state = ?, started = NULL WHERE state = ?", (QUEUED, RUNNING))
        return self._read("SELECT * FROM jobs WHERE state = ? ORDER BY seq", (QUEUED,)), dropped

    def result(self, job: Job) -> dict | None:
        path = self.result_path(job)
        if not os.path.exists(path):
            return None
        with open(path, encoding="utf8") as f:
            return json.load(f)

    def result_path(self, job: Job) -> str:
        return os.path.join(self.results, f"{job.seq}.json")  # ids are the client's; the sequence number is a safe name

    def delete(self, job: Job) -> None:
        self._write("DELETE FROM jobs WHERE id = ?", (job.id,))
        if os.path.exists(self.result_path(job)):
            os.remove(self.result_path(job))
