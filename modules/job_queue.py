"""The job queue: jobs submitted by the job API and by A1111's synchronous routes, persisted (job_store), run in their
order by one worker thread that takes its turn on the GPU with the page's jobs (the shared queue lock).

Queue and worker meet at two seams, so that batching and remote workers can replace either side:
- `JobQueue.take(limit)` hands the worker the next jobs: the first queued one and, up to `limit` images in all,
  queued jobs that `compatible(first, other)` accepts (by default none: one job at a time); `policy()` gives the
  limit and how long the worker waits for partners after the first job (the batching window);
- an `Executor` runs a list of jobs and returns one `Outcome` each. A job is plain data (its kind and the request
  as JSON), an outcome too (the response as JSON, or an error), so an executor may run elsewhere (a Ray replica).
Progress of the running job is the process-wide state (/internal/progress, /sdapi/v1/progress), as for page jobs.
"""
from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

from modules import metrics, progress
from modules.job_store import CANCELLED, DONE, FAILED, QUEUED, RUNNING, DuplicateJob, Job, JobStore  # noqa: F401

log = logging.getLogger(__name__)


@dataclass
class Outcome:
    result: dict | None = None  # the response as A1111's route gives it (images base64, parameters, info)
    error: str | None = None  # what went wrong, for the client
    status_code: int | None = None  # the HTTP status a synchronous caller answers with (422: the user's mistake)
    exception: BaseException | None = None  # the error itself, re-raised to a synchronous caller in this process
    images: int = 0


class Executor(Protocol):
    def run(self, jobs: list[Job]) -> list[Outcome]: ...


class JobQueue:
    def __init__(self, store: JobStore, executor: Executor, lock, limit: int = 1,
                 compatible: Callable[[Job, Job], bool] | None = None,
                 policy: Callable[[], tuple[int, float]] | None = None):
        self.store, self.executor, self.lock = store, executor, lock
        self.compatible = compatible or (lambda first, other: False)
        self.policy = policy or (lambda: (limit, 0.0))  # (most images per batch, seconds to wait for partners)
        self._running: list[str] = []  # the ids of the batch running now
        self._wake = threading.Condition()
        self._paused = False
        self._stopping = False
        self._done: dict[str, threading.Event] = {}  # jobs a caller waits for in this process
        self._outcomes: dict[str, Outcome] = {}
        self._cancel_asked: set[str] = set()  # running jobs a DELETE interrupted: they end as cancelled
        queued, dropped = store.requeue_interrupted()
        for job in dropped:
            log.info("Job %s dropped: its synchronous client went away with the previous server", job.id)
        for job in queued:
            progress.add_task_to_queue(job.id, job.client)
        if queued:
            log.info("Job queue: %d job(s) waiting from before the restart", len(queued))
        self._thread = threading.Thread(target=self._work, name="job queue", daemon=True)
        self._thread.start()

    # submitting and waiting

    def submit(self, job: Job, replace_finished: bool = False) -> Job:
        """Record `job` (DuplicateJob for an id in use) and queue it."""
        if job.waited:
            self._done[job.id] = threading.Event()
        try:
            self.store.add(job, replace_finished)
        except DuplicateJob:
            self._done.pop(job.id, None)
            raise
        progress.add_task_to_queue(job.id, job.client)
        metrics.job_submitted(job)
        with self._wake:
            self._wake.notify_all()
        return job

    def wait(self, job_id: str) -> tuple[Job | None, Outcome | None]:
        """Block until a job submitted with waited=True ends: its record and outcome (no record when the queue
        stopped first)."""
        self._done[job_id].wait()
        self._done.pop(job_id, None)
        outcome = self._outcomes.pop(job_id, None)
        return (None if self._stopping else self.store.get(job_id)), outcome

    # cancelling

    def cancel(self, job_id: str) -> str | None:
        """"cancelled" for a queued job, "interrupting" for the running one, None for a job in neither state."""
        if self.store.cancel_queued(job_id):
            progress.cancel_task(job_id)
            progress.take_cancelled(job_id)  # ends it in the task registry: /internal/progress says completed
            metrics.job_finished(self.store.get(job_id))
            self._release(job_id, None)
            return "cancelled"
        job = self.store.get(job_id)
        if job is not None and job.state == RUNNING:
            self._cancel_asked.add(job_id)
            # one job of a batch: the others go on and its images are dropped; the last one left stops the batch
            if all(other in self._cancel_asked for other in self._running):
                for other in self._running:
                    progress.cancel_task(other)  # interrupts the state through the task registry's running id
            return "interrupting"
        return None

    # the worker

    def pause(self) -> None:
        """Keep queued jobs waiting (the running one finishes)."""
        with self._wake:
            self._paused = True

    def resume(self) -> None:
        with self._wake:
            self._paused = False
            self._wake.notify_all()

    def stop(self, timeout: float = 60) -> None:
        """End the worker after its running jobs; queued ones stay on disk for the next start."""
        with self._wake:
            self._stopping = True
            self._wake.notify_all()
        self._thread.join(timeout)
        for event in list(self._done.values()):  # synchronous callers stop waiting: their job stays queued on disk
            event.set()
        self.store.close()

    def take(self, limit: int) -> list[Job]:
        """The first queued job and the queued jobs compatible with it, in the queue's order, while their images
        (batch_size each) add up to at most `limit`."""
        queued = [job for job in self.store.active() if job.state == QUEUED]
        if not queued:
            return []
        first = queued[0]
        jobs, images = [first], images_of(first)
        for job in queued[1:]:
            if images + images_of(job) <= limit and self.compatible(first, job):
                jobs.append(job)
                images += images_of(job)
        return jobs

    def _next(self) -> list[Job] | None:
        with self._wake:
            while True:
                if self._stopping:
                    return None
                limit, window = self.policy()
                jobs = [] if self._paused else self.take(limit)
                if jobs:
                    return self._gather(jobs, limit, window)
                self._wake.wait(1.0)

    def _gather(self, jobs: list[Job], limit: int, window: float) -> list[Job]:
        """`jobs` joined by compatible ones submitted within `window` seconds of taking the first (caller holds
        _wake), until the batch is full."""
        if not self.compatible(jobs[0], jobs[0]):  # a job that never batches does not wait
            return jobs
        deadline = time.monotonic() + window
        while sum(map(images_of, jobs)) < limit and (left := deadline - time.monotonic()) > 0 and not self._stopping:
            self._wake.wait(left)
            jobs = self.take(limit) or jobs  # the first may have been cancelled meanwhile: the next one leads
        return jobs

    def _work(self) -> None:
        while (jobs := self._next()) is not None:
            try:
                with self.lock:  # the GPU's turn, shared with the page's jobs
                    self._run(jobs)
            except Exception:  # the worker must survive anything a job does
                log.exception("Job queue: error running %s", [job.id for job in jobs])

    def _run(self, jobs: list[Job]) -> None:
        running = []
        for job in jobs:
            if progress.take_cancelled(job.id):  # the page's queue panel cancelled it
                self.store.cancel_queued(job.id)
                metrics.job_finished(self.store.get(job.id))
                self._release(job.id, None)
            else:
                self._running.append(job.id)  # before a DELETE can see it running
                if not self.store.mark_running(job):
                    self._running.remove(job.id)
                    continue
                progress.start_task(job.id)
                running.append(job)
        if not running:
            return
        metrics.batch_started(running)
        try:
            outcomes = self.executor.run(running)
        except Exception as e:
            outcomes = [Outcome(error=str(e) or type(e).__name__, status_code=500, exception=e)] * len(running)
        finally:
            self._running = []
        for job, outcome in zip(running, outcomes):
            if len(running) > 1 and job.id in self._cancel_asked and outcome.error is None:
                outcome = Outcome()  # cancelled inside a batch that went on: its images are dropped
            self._finish(job, outcome)

    def _finish(self, job: Job, outcome: Outcome) -> None:
        try:
            if outcome.error is not None:
                self.store.finish(job, FAILED, error=outcome.error, status_code=outcome.status_code)
            else:
                state = CANCELLED if job.id in self._cancel_asked else DONE
                # a synchronous caller gets the result in its answer: only the job API's results are stored
                self.store.finish(job, state, result=None if job.waited else outcome.result)
        except Exception as e:  # a full disk: the job fails, visibly, and the server goes on
            log.exception("Job %s: its result could not be stored", job.id)
            outcome = Outcome(error=f"The result could not be stored: {e}", status_code=500, exception=e)
            self.store.finish(job, FAILED, error=outcome.error, status_code=500)
        finally:
            self._cancel_asked.discard(job.id)
            progress.finish_task(job.id)
        if job.waited:
            self.store.prune_waited(progress.FINISHED_KEPT)
        metrics.job_finished(job, outcome.images)
        self._release(job.id, outcome)

    def _release(self, job_id: str, outcome: Outcome | None) -> None:
        event = self._done.get(job_id)
        if event is not None:
            if outcome is not None:
                self._outcomes[job_id] = outcome
            event.set()

    # reading

    def listing(self) -> list[dict]:
        """The running and queued jobs, the page's included (from the task registry), in their order: id, owner,
        client, state, position (0: running) and eta (seconds until done, from recent jobs' durations)."""
        ours = {job.id: job for job in self.store.active()}
        recent = self.store.recent_run_seconds()
        typical = sum(recent) / len(recent) if recent else None
        tasks = progress.queued_tasks()
        offset = 0 if tasks and tasks[0]["status"] == "running" else 1
        entries, wait = [], 0.0
        for index, task in enumerate(tasks):
            job = ours.get(task["id_task"])
            running = task["status"] == "running"
            remaining = self._remaining(job, typical) if running else typical
            wait = None if wait is None or remaining is None else wait + remaining
            entries.append({"id": task["id_task"], "kind": job.kind if job else None,
                            "owner": job.owner if job else task["owner"], "client": job.client if job else task["owner"],
                            "state": RUNNING if running else QUEUED, "position": index + offset,
                            "eta": None if wait is None else round(wait, 2)})
        return entries

    @staticmethod
    def _remaining(job: Job | None, typical: float | None) -> float | None:
        done = progress.fraction_done()
        started = job.started if job is not None and job.started else None
        if started is None or done <= 0:
            return typical
        elapsed = time.time() - started
        return max(elapsed / done - elapsed, 0.0)


def images_of(job: Job) -> int:
    return max(int(job.request.get("batch_size") or 1), 1) * max(int(job.request.get("n_iter") or 1), 1)


_service: JobQueue | None = None
_service_lock = threading.Lock()


def start(folder: str, executor: Executor, lock) -> JobQueue:
    """The process's queue on `folder` (started once; a later call with the same folder gives the new executor,
    as a rebuilt app does)."""
    global _service
    with _service_lock:
        if _service is not None and os.path.abspath(_service.store.folder) == os.path.abspath(folder):
            _service.executor = executor
            return _service
        if _service is not None:
            _service.stop()
        _service = JobQueue(JobStore(folder), executor, lock)
        return _service


def service() -> JobQueue | None:
    return _service


def shutdown() -> None:
    """Stop the process's queue (a server restart in tests); what was queued stays on disk."""
    global _service
    with _service_lock:
        if _service is not None:
            _service.stop()
        _service = None
