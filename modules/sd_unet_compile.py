"""The UNet's fast path on CUDA: torch.compile of the whole UNet, with Inductor's caches on disk.

Measured on an H200 (bench/unet_levers.py, SDXL, one CFG evaluation at 1024x1024): eager 54-56 ms, whole UNet
compiled 36-38 ms, compiled with CUDA graphs 35 ms, only the repeated blocks compiled 49-51 ms. Compiling takes
about 90 s the first time; Inductor's caches under `cache/torch_compile` (keyed by torch itself on the graph,
shapes, device and library versions) bring that to about 15 s after a restart.
"""
from __future__ import annotations

import logging
import os

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


def sampling_unet(unet: torch.nn.Module) -> torch.nn.Module:
    """A compiled view of `unet` for the sampling loop: it shares the module and its parameters (LoRA patches apply),
    while training and everything else keep calling the plain module."""
    torch._dynamo.config.recompile_limit = max(torch._dynamo.config.recompile_limit, RECOMPILE_LIMIT)
    log.info("torch.compile: the UNet compiles on its first use at each new shape (about 1.5 min for SDXL, then "
             "cached on disk; --no-torch-compile turns this off)")
    return torch.compile(unet, dynamic=False)


def compile_blocks(unet: torch.nn.Module, block_types: tuple[type, ...]) -> torch.nn.Module:
    """Regional compilation, kept for bench/unet_levers.py: each block of `block_types` compiled on its own."""
    for module in unet.modules():
        if isinstance(module, block_types):
            module.compile(dynamic=False)
    return unet
