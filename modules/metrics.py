"""Prometheus metrics of the job queue and the engine (served as /metrics by the API): counters and histograms updated
as jobs move, gauges read from the queue, the model manager and the GPU at each scrape. A registry of our own, so
that building the app again never registers a metric twice."""
from __future__ import annotations

import time

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.core import GaugeMetricFamily

REPLICA = "local"  # the embedded engine; a replica of a cluster names itself here
TIME_BUCKETS = (0.1, 0.25, 0.5, 1, 2, 5, 10, 20, 30, 60, 120, 300, 600, 1800)

registry = CollectorRegistry(auto_describe=True)
jobs_submitted = Counter("atelier_jobs_submitted", "Jobs submitted to the queue", ["kind"], registry=registry)
jobs_finished = Counter("atelier_jobs_finished", "Jobs that ended, by final state", ["kind", "state"], registry=registry)
images_generated = Counter("atelier_images_generated", "Images returned by finished jobs (rate() gives images per "
                           "second)", registry=registry)
job_latency = Histogram("atelier_job_latency_seconds", "From submission to the end of the job", ["kind"],
                        buckets=TIME_BUCKETS, registry=registry)
queue_wait = Histogram("atelier_job_queue_seconds", "Time a job waited in the queue before it ran", ["kind"],
                       buckets=TIME_BUCKETS, registry=registry)
batch_size = Histogram("atelier_batch_size", "Jobs run together in one sampling batch", ["replica"],
                       buckets=(1, 2, 3, 4, 6, 8, 12, 16, 32), registry=registry)


def job_submitted(job) -> None:
    jobs_submitted.labels(job.kind).inc()


def batch_started(jobs) -> None:
    batch_size.labels(REPLICA).observe(len(jobs))
    for job in jobs:
        queue_wait.labels(job.kind).observe(max((job.started or time.time()) - job.created, 0.0))


def job_finished(job, images: int = 0) -> None:
    jobs_finished.labels(job.kind, job.state).inc()
    job_latency.labels(job.kind).observe(max((job.finished or time.time()) - job.created, 0.0))
    images_generated.inc(images)


class EngineCollector:
    """Gauges read at scrape time: the queue's jobs by state, the loaded checkpoints, the GPU memory."""

    def describe(self):
        return []  # nothing to read while the registry is built (the queue and the models come later)

    def collect(self):
        from modules import job_queue

        queue = job_queue.service()
        counts = queue.store.counts() if queue is not None else {}
        by_state = GaugeMetricFamily("atelier_jobs", "Jobs known to the queue, by state", labels=["state"])
        for state, count in counts.items():
            by_state.add_metric([state], count)
        yield by_state
        yield GaugeMetricFamily("atelier_queue_length", "Jobs waiting to run", value=counts.get("queued", 0))
        yield from self.checkpoints()
        yield from self.gpu_memory()

    @staticmethod
    def checkpoints():
        from modules import sd_models

        manager = sd_models.model_manager
        titles = [model.sd_checkpoint_info.title for model in list(manager.loaded.values())] if manager is not None else []
        loaded = GaugeMetricFamily("atelier_loaded_checkpoints", "Checkpoints loaded by the model manager",
                                   labels=["replica"])
        loaded.add_metric([REPLICA], len(titles))
        yield loaded
        each = GaugeMetricFamily("atelier_checkpoint_loaded", "1 for each loaded checkpoint", labels=["replica", "checkpoint"])
        for title in titles:
            each.add_metric([REPLICA, title], 1)
        yield each

    @staticmethod
    def gpu_memory():
        import torch

        memory = GaugeMetricFamily("atelier_gpu_memory_bytes", "GPU memory (absent without CUDA)",
                                   labels=["replica", "device", "kind"])
        if torch.cuda.is_available():
            for index in range(torch.cuda.device_count()):
                free, total = torch.cuda.mem_get_info(index)
                for kind, value in (("allocated", torch.cuda.memory_allocated(index)),
                                    ("reserved", torch.cuda.memory_reserved(index)), ("total", total),
                                    ("free", free)):
                    memory.add_metric([REPLICA, f"cuda:{index}", kind], value)
        yield memory


registry.register(EngineCollector())


def render() -> tuple[bytes, str]:
    """The text exposition of every metric, and its content type."""
    return generate_latest(registry), CONTENT_TYPE_LATEST
