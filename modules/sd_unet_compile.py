"""The UNet's fast path on CUDA: torch.compile of the whole UNet, with Inductor's caches on disk.

Measured on an H200 (bench/unet_levers.py, SDXL, one CFG evaluation at 1024x1024): eager 54-56 ms, whole UNet
compiled 36-38 ms, compiled with CUDA graphs 35 ms, only the repeated blocks compiled 49-51 ms. Compiling takes
about 90 s the first time; Inductor's caches under `cache/torch_compile` (keyed by torch itself on the graph,
shapes, device and library versions) bring that to about 15 s after a restart. So that no image waits for it,
the sampling loop runs the eager UNet while a background thread compiles the graph for the call's shapes, and
switches to the graph once it is built.
"""
from __future__ import annotations

import contextvars
import logging
import os
import threading
import time
from collections.abc import Callable
from typing import Any

import torch

log = logging.getLogger(__name__)

# every model and image size gets its own static graph: dynamic-shape graphs compile slower and run slower
RECOMPILE_LIMIT = 64


def configure_cache(cache_dir: str) -> None:
    """Point Inductor's caches (FX graphs, Triton kernels, autotuning) at our cache folder, unless the user chose one."""
    os.environ.setdefault("TORCHINDUCTOR_CACHE_DIR", os.path.join(cache_dir, "torch_compile"))


def compile_unet(unet: torch.nn.Module) -> None:
    """Compile `unet` in place (nn.Module.compile keeps the module and its parameters, so weight patches such as
    LoRA still apply); the first evaluation at a new image size compiles, the next ones run the compiled graph."""
    torch._dynamo.config.recompile_limit = max(torch._dynamo.config.recompile_limit, RECOMPILE_LIMIT)
    unet.compile(dynamic=False)


def sampling_unet(unet: torch.nn.Module) -> CompilingUNet:
    """The sampling loop's view of `unet`: it shares the module and its parameters (LoRA patches apply), while
    training and everything else keep calling the plain module."""
    torch._dynamo.config.recompile_limit = max(torch._dynamo.config.recompile_limit, RECOMPILE_LIMIT)
    log.info("torch.compile: the UNet compiles in the background at each new shape (about 1.5 min for SDXL, then "
             "cached on disk; images run eagerly meanwhile; --no-torch-compile turns this off)")
    return CompilingUNet(unet, lambda module: torch.compile(module, dynamic=False))


def _shapes(value: Any) -> Any:
    """What a compiled graph is specialised on: tensors' shape, dtype and device, and every other value as is."""
    if isinstance(value, torch.Tensor):
        return tuple(value.shape), value.dtype, value.device
    if isinstance(value, dict):
        return tuple((k, _shapes(v)) for k, v in sorted(value.items()))
    if isinstance(value, (list, tuple)):
        return tuple(_shapes(v) for v in value)
    return value


def _copied(value: Any) -> Any:
    """Inputs for the compiling thread, so the sampling loop's tensors are never shared with it."""
    if isinstance(value, torch.Tensor):
        return value.detach().clone()
    if isinstance(value, dict):
        return {k: _copied(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return type(value)(_copied(v) for v in value)
    return value


class CompilingUNet:
    """Calls the eager UNet until `compiler(unet)` has run once for the call's input shapes in a background thread,
    then calls the compiled one for those shapes."""

    def __init__(self, unet: torch.nn.Module, compiler: Callable[[torch.nn.Module], Callable]):
        self.unet = unet
        self.compiled = compiler(unet)
        self.ready: set = set()  # input shapes whose compiled graph has run
        self.failed: set = set()
        self._threads: dict[Any, threading.Thread] = {}
        self._lock = threading.Lock()

    def __call__(self, *args, **kwargs):
        key = _shapes((args, kwargs, torch.is_grad_enabled(), torch.is_inference_mode_enabled()))
        if key in self.ready:
            return self.compiled(*args, **kwargs)
        with self._lock:
            if key not in self._threads:
                # the thread runs in the job's context (settings, state), as every thread the engine starts
                thread = threading.Thread(target=contextvars.copy_context().run,
                                          args=(self._compile, key, _copied((args, kwargs))),
                                          name="unet-compile", daemon=True)
                self._threads[key] = thread
                thread.start()
        return self.unet(*args, **kwargs)

    def _compile(self, key: tuple, example: tuple) -> None:
        args, kwargs = example
        grad, inference = key[2:]
        started = time.perf_counter()
        try:
            # grad and inference mode are thread-local, and the compiled graph is guarded on them
            with torch.inference_mode(inference), torch.set_grad_enabled(grad):
                self.compiled(*args, **kwargs)
        except Exception:
            self.failed.add(key)
            log.exception("torch.compile of the UNet failed; the sampling loop stays eager at these shapes")
            return
        self.ready.add(key)
        log.info("torch.compile: the UNet's graph is ready after %.1fs; the sampling loop uses it from the next step",
                 time.perf_counter() - started)

    def wait(self, timeout: float | None = None) -> bool:
        """Wait for the compilations started so far; whether all finished (successfully or not) in time."""
        deadline = None if timeout is None else time.monotonic() + timeout
        for thread in list(self._threads.values()):
            thread.join(None if deadline is None else max(deadline - time.monotonic(), 0))
        return not any(thread.is_alive() for thread in self._threads.values())


def compile_blocks(unet: torch.nn.Module, block_types: tuple[type, ...]) -> torch.nn.Module:
    """Regional compilation, kept for bench/unet_levers.py: each block of `block_types` compiled on its own."""
    for module in unet.modules():
        if isinstance(module, block_types):
            module.compile(dynamic=False)
    return unet
