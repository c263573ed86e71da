"""The Train tab's /sdapi/v1 routes in A1111's shapes: create/embedding, create/hypernetwork, train/embedding,
train/hypernetwork. The body is the engine function's keyword arguments; the answer `{"info": str}`. Jobs run in
the shared queue; a user's mistake (unknown field, bad value, malformed schedule) is a 422 with `detail`."""
from __future__ import annotations

import inspect
import os

from pydantic import BaseModel

from modules import (
    hypernetwork_training,
    hypernetworks,
    textual_inversion,
    textual_inversion_training,
)

# A1111's UI task id: accepted, not used
IGNORED_FIELDS = ("id_task",)


class InfoResponse(BaseModel):
    info: str


def keyword_args(func, args: dict) -> dict:
    """The request's fields as `func`'s keyword arguments; ValueError naming fields `func` does not take or needs."""
    args = {k: v for k, v in (args or {}).items() if k not in IGNORED_FIELDS}
    parameters = {name: p for name, p in inspect.signature(func).parameters.items() if p.kind == p.POSITIONAL_OR_KEYWORD}
    unknown = sorted(set(args) - set(parameters))
    if unknown:
        raise ValueError(f"Unknown fields: {', '.join(unknown)}. Accepted: {', '.join(sorted(parameters))}")
    missing = [name for name, p in parameters.items() if p.default is p.empty and name not in args]
    if missing:
        raise ValueError(f"Missing fields: {', '.join(missing)}")
    return args


def plain_name(args: dict) -> dict:
    """`args`, whose `name` becomes a file name in its models folder: no folder parts that would lead elsewhere."""
    name = args["name"]
    if not isinstance(name, str) or not name.strip() or name in (".", "..") or os.path.basename(name) != name \
            or "\\" in name:
        raise ValueError(f"name must be a plain file name, not {name!r}")
    return args


def create_embedding(args: dict) -> dict:
    filename = textual_inversion.create_embedding(**plain_name(keyword_args(textual_inversion.create_embedding, args)))
    return {"info": f"create embedding filename: {filename}"}


def create_hypernetwork(args: dict) -> dict:
    filename = hypernetworks.create_hypernetwork(**plain_name(keyword_args(hypernetworks.create_hypernetwork, args)))
    return {"info": f"create hypernetwork filename: {filename}"}


def train_embedding(args: dict) -> dict:
    func = textual_inversion_training.train_embedding
    _, filename, message = func(**keyword_args(func, args))
    return {"info": f"train embedding complete: filename: {filename} error: None\n{message}"}


def train_hypernetwork(args: dict) -> dict:
    func = hypernetwork_training.train_hypernetwork
    _, filename, message = func(**keyword_args(func, args))
    return {"info": f"train hypernetwork complete: filename: {filename} error: None\n{message}"}


def routes(api) -> list[tuple]:
    """(path, endpoint, method, response model) for modules.api.api.Api's route table; each runs in the queue."""
    def queued(name, func):
        def endpoint(args: dict):
            return api.run_job(name, func, args)

        endpoint.__name__ = func.__name__
        return endpoint

    return [(path, queued(path, func), "POST", InfoResponse) for path, func in (
        ("create/embedding", create_embedding), ("create/hypernetwork", create_hypernetwork),
        ("train/embedding", train_embedding), ("train/hypernetwork", train_hypernetwork))]
