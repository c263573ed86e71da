"""A1111's modules.safe: loading .ckpt/.pt pickles without running code found in them.

A1111 wrote its own restricted unpickler; Atelier uses torch's weights-only unpickler for the same rule (tensors,
containers and plain values only), and `Extra` lets a caller allow the further globals its files need, one by one, as
A1111's handler did.
"""
from __future__ import annotations

import contextlib
import logging
import threading

import torch

log = logging.getLogger(__name__)

unsafe_torch_load = torch.load  # A1111's name for torch's own loader, for files the caller trusts
_extra = threading.local()


def load(filename, *args, **kwargs):
    """torch.load restricted to weights: a file that needs any other global raises pickle.UnpicklingError, unless the
    handler of an enclosing `Extra` returns the object for that global's (module, name)."""
    kwargs.pop("weights_only", None)
    handler = getattr(_extra, "handler", None)
    allowed = _allowed_by_handler(filename, handler) if handler is not None else []
    with torch.serialization.safe_globals(allowed):
        return torch.load(filename, *args, weights_only=True, **kwargs)


def _allowed_by_handler(filename, handler) -> list:
    """(object, "module.name") for each global of the file torch would refuse and the handler allows."""
    allowed = []
    for qualified in torch.serialization.get_unsafe_globals_in_checkpoint(filename):
        module, _, name = qualified.rpartition(".")
        found = handler(module, name)
        if found is not None:
            allowed.append((found, qualified))
    return allowed


@contextlib.contextmanager
def Extra(handler):  # A1111's name: used as `with safe.Extra(handler):`
    """Within the block, load() also accepts the globals for which handler(module, name) returns an object."""
    previous = getattr(_extra, "handler", None)
    _extra.handler = handler
    try:
        yield
    finally:
        _extra.handler = previous
