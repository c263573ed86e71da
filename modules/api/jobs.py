"""The job API (/atelier/v1/jobs, /atelier/v1/queue), /metrics, and the executor that runs queued txt2img/img2img
requests with A1111's route code. A1111's synchronous /sdapi/v1/txt2img and img2img submit to the same queue and
wait, so /internal/progress, force_task_id and the page's queue panel see one list of ids."""
from __future__ import annotations

import base64
import io
import json
import logging
import os
import re
import uuid
from typing import Any

from fastapi import Body, Depends, HTTPException
from fastapi.responses import Response
from fastapi.security import HTTPBasic, HTTPBasicCredentials
from pydantic import ValidationError

from modules import job_queue, metrics, paths_internal, progress
from modules.api import job_batching, models
from modules.job_store import CANCELLED, DONE, FAILED, QUEUED, RUNNING, DuplicateJob, Job
from modules.shared_cmd_options import cmd_opts
from modules.shared_options import opts
from modules.shared_state import state

log = logging.getLogger(__name__)

KINDS = {"txt2img": models.StableDiffusionTxt2ImgProcessingAPI, "img2img": models.StableDiffusionImg2ImgProcessingAPI}
ID_PATTERN = re.compile(r"[\w.:()\-]{1,128}")  # the A1111 shape task(...) included; no slashes (the id is a path part)
_basic = HTTPBasic(auto_error=False)


def owner(credentials: HTTPBasicCredentials | None = Depends(_basic)) -> str:
    """Who a job belongs to: the --api-auth user, else "anonymous" (credentials_checker has already let them in)."""
    return credentials.username if cmd_opts.api_auth and credentials is not None else "anonymous"


def jobs_folder() -> str:
    return os.path.join(paths_internal.data_path, "jobs")


class ApiExecutor:
    """Runs queued jobs in this process with the Api's txt2img/img2img code (job_queue.Executor): one alone, several
    (compatible, see job_batching) as one sampling batch."""

    def __init__(self, api):
        self.api = api

    def run(self, jobs: list[Job]) -> list[job_queue.Outcome]:
        if len(jobs) == 1:
            return [self.run_one(jobs[0])]
        try:
            results = job_batching.run_batch(self.api, jobs)
        except Exception as e:
            outcome = self.failure(jobs, e)
            return [outcome] * len(jobs)
        return [self.success(result) for result in results]

    def run_one(self, job: Job) -> job_queue.Outcome:
        try:
            req = KINDS[job.kind].model_validate(job.request)
            result = self.api.text2img_job(req) if job.kind == "txt2img" else self.api.img2img_job(req)
        except Exception as e:
            return self.failure([job], e)
        return self.success(result)

    @staticmethod
    def failure(jobs: list[Job], e: Exception) -> job_queue.Outcome:
        if isinstance(e, HTTPException):
            return job_queue.Outcome(error=str(e.detail), status_code=e.status_code, exception=e)
        if isinstance(e, ValidationError):
            return job_queue.Outcome(error=str(e), status_code=422, exception=e)
        log.exception("Job(s) %s failed", [job.id for job in jobs])
        return job_queue.Outcome(error=str(e).strip() or type(e).__name__, status_code=500, exception=e)

    @staticmethod
    def success(result: dict) -> job_queue.Outcome:
        info = json.loads(result["info"])
        return job_queue.Outcome(result=result, images=len(info["infotexts"]) - info["index_of_first_image"])


def request_model(kind: str, body: dict):
    if kind not in KINDS:
        raise HTTPException(status_code=422, detail=f"Unknown job type: {kind!r}; use \"txt2img\" or \"img2img\"")
    try:
        return KINDS[kind].model_validate(body)
    except ValidationError as e:
        raise HTTPException(status_code=422, detail=json.loads(e.json(include_url=False))) from e


def batching_policy() -> tuple[int, float]:
    """(most images per batch, seconds a job waits for partners) from the settings; a window of 0 turns batching off."""
    window = max(float(opts.job_batch_window_ms), 0.0) / 1000
    return (max(int(opts.job_batch_max_images), 1) if window > 0 else 1), window


class JobRoutes:
    def __init__(self, api, router):
        self.api = api
        queue = job_queue.start(jobs_folder(), ApiExecutor(api), api.queue_lock)
        queue.compatible, queue.policy = job_batching.compatible, batching_policy
        router.add_api_route("/atelier/v1/jobs", self.submit, methods=["POST"], status_code=202)
        router.add_api_route("/atelier/v1/jobs/{job_id}", self.get, methods=["GET"])
        router.add_api_route("/atelier/v1/jobs/{job_id}", self.delete, methods=["DELETE"])
        router.add_api_route("/atelier/v1/queue", self.listing, methods=["GET"])
        router.add_api_route("/metrics", self.metrics, methods=["GET"])

    @property
    def queue(self) -> job_queue.JobQueue:
        return job_queue.service()  # the process's queue: an app built again (Reload UI) serves the same one

    # A1111's synchronous routes

    def run_waiting(self, kind: str, req, who: str, client: str) -> dict:
        """Queue `req` under its force_task_id (or a new task id) and answer when it ended, as A1111 answers: its
        response, or the error the route would have raised (a 422 for the user's mistakes)."""
        self.check(kind, req)
        who = who if isinstance(who, str) else "anonymous"  # an extension calling Api.text2imgapi(req) directly
        job_id = req.force_task_id or progress.create_task_id(kind)
        job = Job(id=job_id, kind=kind, request=req.model_dump(mode="json", exclude_unset=True), owner=who,
                  client=client, waited=True)
        try:
            self.queue.submit(job, replace_finished=True)
        except DuplicateJob as e:
            raise HTTPException(status_code=409, detail=str(e)) from e
        queue = self.queue
        job, outcome = queue.wait(job_id)
        if outcome is None and (job is None or job.state != CANCELLED):
            raise HTTPException(status_code=503, detail="The server stopped before the job ran")
        if outcome is None:
            raise HTTPException(status_code=409, detail=job.error or "Cancelled before it started.")
        if outcome.exception is not None:
            raise outcome.exception
        if outcome.result is None:  # interrupted inside a batch that went on: its images were dropped
            raise HTTPException(status_code=409, detail="Cancelled while it ran in a batch.")
        return outcome.result

    def check(self, kind: str, req) -> None:
        """The route's checks on a copy, before the job waits in the queue: a mistake is a 4xx at once."""
        probe = req.model_copy(deep=True)
        self.api.apply_infotext(probe, kind)
        self.api.validate_generation(probe)
        if kind == "img2img":
            from modules.api.api import decode_base64_to_image

            for image in [*probe.init_images, *([probe.mask] if probe.mask else [])]:
                decode_base64_to_image(image)

    # the job API

    def submit(self, body: dict[str, Any] = Body(...), who: str = Depends(owner)):
        """A txt2img or img2img request in A1111's fields, plus `type` ("txt2img", the default, or "img2img") and
        an optional client-chosen `id`: queued at once (202) with its id."""
        body = dict(body)
        kind, job_id = body.pop("type", "txt2img"), body.pop("id", None)
        if job_id is not None and (not isinstance(job_id, str) or not ID_PATTERN.fullmatch(job_id)):
            raise HTTPException(status_code=422, detail="id must be 1 to 128 letters, digits or ._:()- characters")
        req = request_model(kind, body)
        self.check(kind, req)
        from modules.api.api import api_client

        job = Job(id=job_id or uuid.uuid4().hex, kind=kind, request=req.model_dump(mode="json", exclude_unset=True),
                  owner=who, client=api_client.get())
        try:
            self.queue.submit(job)
        except DuplicateJob as e:
            raise HTTPException(status_code=409, detail=str(e)) from e
        return {"id": job.id, "state": QUEUED, "position": self.position(job.id)}

    def find(self, job_id: str) -> Job:
        job = self.queue.store.get(job_id)
        if job is None:
            raise HTTPException(status_code=404, detail=f"Job not found: {job_id}")
        return job

    def position(self, job_id: str) -> int | None:
        return next((entry["position"] for entry in self.queue.listing() if entry["id"] == job_id), None)

    def get(self, job_id: str):
        """The job's state: queued (position), running (step, total, progress, preview), done (A1111's response:
        images, parameters, info, plus infotexts), failed (error), cancelled (the images done before it stopped)."""
        job = self.find(job_id)
        answer = {"id": job.id, "type": job.kind, "state": job.state, "owner": job.owner, "created": job.created,
                  "started": job.started, "finished": job.finished}
        if job.state == QUEUED:
            answer["position"] = self.position(job.id)
        elif job.state == RUNNING:
            answer.update(self.running_progress())
        elif job.state == FAILED:
            answer.update(error=job.error, status_code=job.status_code)
        if job.state in (DONE, CANCELLED):
            result = self.queue.store.result(job)
            if result is not None:
                answer.update(result)
                answer["infotexts"] = json.loads(result["info"])["infotexts"]
        return answer

    @staticmethod
    def running_progress() -> dict:
        snapshot = state.dict()
        preview = None
        state.set_current_image()
        if state.current_image is not None:
            buffer = io.BytesIO()
            state.current_image.save(buffer, format="PNG")
            preview = base64.b64encode(buffer.getvalue()).decode("ascii")
        return {"step": snapshot["sampling_step"], "total": snapshot["sampling_steps"],
                "progress": progress.fraction_done(), "preview": preview}

    def delete(self, job_id: str):
        """Cancel a queued job, interrupt a running one (it ends as cancelled, with the images done so far); a job that
        ended is deleted with its stored result."""
        job = self.find(job_id)
        outcome = self.queue.cancel(job_id)
        if outcome is not None:
            return {"id": job_id, "state": outcome}
        if job.state in (DONE, FAILED, CANCELLED):
            self.queue.store.delete(job)
            return {"id": job_id, "state": "deleted"}
        raise HTTPException(status_code=409, detail=f"Job {job_id} is {job.state}")  # ended meanwhile: ask again

    def listing(self):
        return {"jobs": self.queue.listing()}

    @staticmethod
    def metrics():
        content, content_type = metrics.render()
        return Response(content=content, media_type=content_type)

