"""The job queue's store: records survive reopening the database, a restart puts running jobs back in the queue and
cancels the ones a synchronous client waited for, results are on disk before a job is done, ids are unique."""
from __future__ import annotations

import json

import pytest

from modules.job_store import CANCELLED, DONE, QUEUED, RUNNING, DuplicateJob, Job, JobStore


def test_a_restart_requeues_running_jobs_in_order_and_drops_waited_ones(tmp_path):
    store = JobStore(str(tmp_path))
    for job_id, waited in (("first", False), ("sync", True), ("second", False)):
        store.add(Job(id=job_id, kind="txt2img", request={"prompt": job_id}, waited=waited))
    assert store.mark_running(store.get("first"))
    store.close()
    reopened = JobStore(str(tmp_path))
    queued, dropped = reopened.requeue_interrupted()
    assert [job.id for job in queued] == ["first", "second"] and [job.id for job in dropped] == ["sync"]
    assert reopened.get("first").state == QUEUED and reopened.get("first").started is None
    assert reopened.get("sync").state == CANCELLED and "restarted" in reopened.get("sync").error
    assert reopened.get("second").request == {"prompt": "second"}


def test_a_result_is_on_disk_before_the_job_is_done_and_ids_are_unique(tmp_path):
    store = JobStore(str(tmp_path))
    job = store.add(Job(id="task(a)", kind="txt2img", request={}))
    with pytest.raises(DuplicateJob, match=r"A job with id task\(a\) already exists \(queued\)"):
        store.add(Job(id="task(a)", kind="txt2img", request={}), replace_finished=True)
    assert store.mark_running(job) and store.get("task(a)").state == RUNNING
    store.finish(job, DONE, result={"images": ["x"]})
    assert json.loads(open(store.result_path(job), encoding="utf8").read()) == {"images": ["x"]}
    assert store.result(store.get("task(a)")) == {"images": ["x"]} and store.counts()[DONE] == 1
    again = store.add(Job(id="task(a)", kind="txt2img", request={"seed": 2}), replace_finished=True)
    assert again.state == QUEUED and store.result(again) is None and store.counts()[DONE] == 0
    assert not store.cancel_queued("missing") and store.cancel_queued("task(a)")
    assert not store.mark_running(again)  # cancelled meanwhile: never runs


def test_only_the_last_ended_synchronous_jobs_are_kept(tmp_path):
    store = JobStore(str(tmp_path))
    for n in range(5):
        job = store.add(Job(id=f"sync{n}", kind="txt2img", request={}, waited=True))
        store.finish(job, DONE)
    store.add(Job(id="api", kind="txt2img", request={}))
    store.finish(store.get("api"), DONE, result={"images": []})
    store.add(Job(id="sync-queued", kind="txt2img", request={}, waited=True))
    store.prune_waited(2)
    assert [n for n in ("sync0", "sync1", "sync2", "sync3", "sync4") if store.get(n)] == ["sync3", "sync4"]
    assert store.get("api").state == DONE and store.get("sync-queued").state == QUEUED
