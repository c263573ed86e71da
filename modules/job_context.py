"""The context a job runs in: its model manager, its settings view, its progress state, its output folders.

`process_images` enters one (`job`) and code running for the job finds it through `current()`: the engine, scripts'
hooks, callbacks, and threads started with `contextvars.copy_context()`. A1111's globals `shared.opts` and
`shared.state` are `ContextFacade`s over it: inside a job they are the job's settings view and progress state,
outside every job the saved settings and the process-wide state that the UI and the API read.

Several jobs at once (two model managers, two threads): the first to start holds the process-wide state, so progress
(/sdapi/v1/progress, the page's bar) shows it, exactly as with one queue; a job started while another runs keeps its
progress in a state of its own. Interrupt, skip and stop requests reach every running job.
"""
from __future__ import annotations

import contextvars
import threading
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

from modules.options import LayeredOptions, Options

_current: contextvars.ContextVar[JobContext | None] = contextvars.ContextVar("atelier_job", default=None)
_running_lock = threading.Lock()
_running: list[JobContext] = []  # outermost jobs now running, oldest first


@dataclass(eq=False)
class JobContext:
    manager: Any  # sd_models.ModelManager serving the job's device (None: the caller gave p.sd_model itself)
    settings: LayeredOptions  # the saved settings with the job's override_settings (and its own writes) on top
    state: Any  # shared_state.State: the job's progress, interrupt and skip flags
    parent: JobContext | None = None  # the job a script's sub-job runs inside

    def output_dirs(self, kind: str) -> tuple[str, str]:
        """(samples folder, grids folder) for a "txt2img" or "img2img" job; the shared outdir settings win (A1111)."""
        s = self.settings
        return s.outdir_samples or getattr(s, f"outdir_{kind}_samples"), s.outdir_grids or getattr(s, f"outdir_{kind}_grids")


def current() -> JobContext | None:
    return _current.get()


def model_manager(p=None):
    """p's own model manager, else its job's, else the running job's, else the shared one (None before it starts)."""
    from modules import sd_models

    if getattr(p, "model_manager", None) is not None:
        return p.model_manager
    job = _job_of(p)
    return job.manager if job is not None and job.manager is not None else sd_models.model_manager


def saved_settings() -> Options:
    from modules import shared_options

    return shared_options.saved_opts


def _job_of(p) -> JobContext | None:
    return getattr(p, "job", None) or _current.get()


def settings(p=None) -> Options:
    """The settings engine code reads: p's job's view while it runs, else the running job's, else the saved ones."""
    job = _job_of(p)
    return saved_settings() if job is None else job.settings


def state(p=None):
    """The progress state engine code reports to: p's job's, else the running job's, else the process-wide one."""
    from modules import shared_state

    job = _job_of(p)
    return shared_state.process_state if job is None else job.state


def layered(base: Options, overrides: dict) -> LayeredOptions:
    """`base` seen with `overrides` on top. Each is checked as any change of the setting is (ValueError naming it),
    all before the job starts; `base` is never written."""
    unknown = [key for key in overrides if key not in base.data_labels]
    if unknown:
        raise ValueError(f"Unknown setting in override_settings: {unknown[0]}")
    view = LayeredOptions(base)
    for key, value in overrides.items():
        setattr(view, key, value)
    return view


def _start_outermost(context: JobContext) -> None:
    """Give a new outermost job the process-wide state if no other job runs, else a state of its own that hears the
    process-wide interrupt, skip and stop requests; and count it as running."""
    from modules import shared_state

    with _running_lock:
        if _running:
            context.state = shared_state.State()
            shared_state.process_state.add_follower(context.state)
        else:
            context.state = shared_state.process_state
        _running.append(context)


@contextmanager
def job(p, manager=None):
    """Run `p` as a job: a context of its own, or, inside a job already running (a script's sub-jobs, X/Y/Z's copies
    of p), one over that job's: its settings view layered on the outer one, its state and (unless p names another)
    its model manager. p.job is the context while it runs. With override_settings_restore_afterwards=False the
    overrides stay, once the job completed, in the outer view: the outer job's, or the saved settings (A1111)."""
    from modules import shared_state

    parent = _current.get()
    overrides = dict(p.override_settings or {})
    view = layered(parent.settings if parent else saved_settings(), overrides)
    manager = getattr(p, "model_manager", None) or (parent.manager if parent else manager)
    context = JobContext(manager, view, parent.state if parent else None, parent)
    if parent is None:
        _start_outermost(context)
    previous, p.job = getattr(p, "job", None), context
    token = _current.set(context)
    try:
        yield context
    finally:
        _current.reset(token)
        p.job = previous
        if parent is None:
            with _running_lock:
                _running.remove(context)
            shared_state.process_state.remove_follower(context.state)
    if not p.override_settings_restore_afterwards:
        for key in overrides:
            setattr(view.saved, key, view.layer.get(key, overrides[key]))


@contextmanager
def progress_held():
    """Work outside process_images that reports to the process-wide state (training) holds it as a job does: a job it
    starts meanwhile (a training preview) keeps its progress in a state of its own, so the bar never mixes the two."""
    from modules import shared_state

    holder = JobContext(None, None, shared_state.process_state)
    with _running_lock:
        _running.append(holder)
    try:
        yield
    finally:
        with _running_lock:
            _running.remove(holder)


def running() -> list[JobContext]:
    """The outermost jobs now running, oldest first."""
    with _running_lock:
        return list(_running)


class ContextFacade:
    """An A1111 global (`shared.opts`, `shared.state`): to code running for a job it is that job's part (its
    settings view, its state), elsewhere the process-wide object. Reads, writes and isinstance pass through."""

    __slots__ = ("_part", "_outside")

    def __init__(self, part: str, outside):
        object.__setattr__(self, "_part", part)
        object.__setattr__(self, "_outside", outside)

    def _target(self):
        job = _current.get()
        return self._outside if job is None else getattr(job, self._part)

    def __getattr__(self, name):
        return getattr(self._target(), name)

    def __setattr__(self, name, value):
        setattr(self._target(), name, value)

    def __delattr__(self, name):
        delattr(self._target(), name)

    def __dir__(self):
        return dir(self._target())

    def __repr__(self):
        return repr(self._target())

    @property
    def __class__(self):  # isinstance(shared.state, State) holds, as for A1111's plain objects
        return type(self._target())
