"""What the flow-family benchmarks (bench/flux.py, bench/z_image.py) share: timing on one card, loading the written
files through Atelier's model manager as a user's files are, and writing the JSON result."""
from __future__ import annotations

import json
import statistics
import time
from pathlib import Path

import torch

from modules import devices, paths_internal, sd_models
from modules.shared_cmd_options import cmd_opts
from modules.shared_options import opts


def synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def timed(fn, runs: int, device: torch.device) -> dict:
    """Median seconds per image over `runs` after one warm-up run, the warm-up's seconds and the peak VRAM (GiB)."""
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats()
    synchronize(device)
    started = time.perf_counter()
    fn()
    synchronize(device)
    first = time.perf_counter() - started
    times = []
    for _ in range(runs):
        started = time.perf_counter()
        fn()
        synchronize(device)
        times.append(time.perf_counter() - started)
    peak = torch.cuda.max_memory_allocated() / 2**30 if device.type == "cuda" else None
    return {"s_per_image": statistics.median(times), "first_run_s": first, "peak_vram_gib": peak}


def load(work: Path, models_dir: Path, checkpoint: str, device: torch.device, dtype: torch.dtype, result: dict,
         memory_mode: str = "normal"):
    """The checkpoint through a model manager on `device` in `dtype` (bf16 on the GPU: flow transformers and their
    LLM encoders overflow in fp16); its load time goes into `result`."""
    paths_internal.configure(str(work), str(models_dir))
    cmd_opts.no_hashing = True
    opts.set("samples_save", False)
    sd_models.list_models(cmd_opts)
    plan = devices.DevicePlan(device, dtype, dtype, memory_mode, compile_unet=False)
    sd_models.model_manager = sd_models.ModelManager(plan, work / "cache", limit=1, hashing=False)
    synchronize(device)
    started = time.perf_counter()
    opts.set("sd_model_checkpoint", checkpoint)
    model = sd_models.model_manager.get(sd_models.get_closet_checkpoint_match(checkpoint))
    synchronize(device)
    result["load_s"] = time.perf_counter() - started
    return model


def report(result: dict, out: str | None, name: str) -> None:
    text = json.dumps(result, indent=2)
    print(text, flush=True)
    if out:
        Path(out).mkdir(parents=True, exist_ok=True)
        (Path(out) / f"{name}.json").write_text(text)
