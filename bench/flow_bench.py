"""What the flow-model benchmarks (bench/flux.py, bench/sd3.py) share: random full-size modules made on the card, the
engine started over a models folder as a user's, timing with warm-up and peak VRAM, the JSON report."""
from __future__ import annotations

import argparse
import contextlib
import json
import os
import statistics
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from modules import devices, paths_internal, sd_models  # noqa: E402
from modules.shared_cmd_options import cmd_opts  # noqa: E402
from modules.shared_options import opts  # noqa: E402


def parse_args(doc: str, work: str) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=doc.split("\n")[0])
    parser.add_argument("--out", default=os.environ.get("OUT") or None)
    parser.add_argument("--work", default=work)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--tiny", action="store_true", help="tiny sizes on the CPU: checks the script, measures nothing")
    args = parser.parse_args()
    args.device = torch.device("cpu") if args.tiny else torch.device("cuda")
    args.dtype = torch.float32 if args.tiny else torch.bfloat16
    args.work = Path(args.work + ("-tiny" if args.tiny else ""))
    return args


@contextlib.contextmanager
def made_on(device: torch.device, dtype: torch.dtype):
    """Modules built inside are made on `device` in `dtype` (random init on the card: fast, no host copy)."""
    previous = torch.get_default_dtype()
    torch.set_default_dtype(dtype)
    try:
        with torch.device(device):
            yield
    finally:
        torch.set_default_dtype(previous)


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


def header(args) -> dict:
    return {"device": torch.cuda.get_device_name() if args.device.type == "cuda" else "cpu", "torch": torch.__version__,
            "dtype": str(args.dtype).removeprefix("torch."), "tiny": args.tiny}


def load(args, checkpoint: str) -> tuple:
    """The engine over work/models in the benchmark's dtype (bf16 on the card, as flow models run by default), and
    the checkpoint loaded through the model manager: (model, seconds to load)."""
    models_dir = args.work / "models"
    paths_internal.configure(str(args.work), str(models_dir))
    cmd_opts.no_hashing = True
    opts.set("samples_save", False)
    sd_models.list_models(cmd_opts)
    plan = devices.DevicePlan(args.device, args.dtype, args.dtype, "normal", compile_unet=False)
    sd_models.model_manager = sd_models.ModelManager(plan, args.work / "cache", limit=1, hashing=False)
    synchronize(args.device)
    started = time.perf_counter()
    opts.set("sd_model_checkpoint", checkpoint)
    model = sd_models.model_manager.get(sd_models.get_closet_checkpoint_match(checkpoint))
    synchronize(args.device)
    return model, time.perf_counter() - started


def parameters_b(modules: dict) -> dict:
    return {name: sum(p.numel() for p in m.parameters()) / 1e9 for name, m in modules.items()}


def compare(result: dict, atelier, reference, args) -> None:
    """Atelier's job, then the reference's, timed on the same card; their ratio."""
    runs = 1 if args.tiny else args.runs
    result["atelier"] = timed(atelier, runs, args.device)
    devices.torch_gc()
    result["diffusers"] = timed(reference, runs, args.device)
    result["ratio_atelier_over_diffusers"] = result["atelier"]["s_per_image"] / result["diffusers"]["s_per_image"]


def report(result: dict, args, name: str) -> None:
    text = json.dumps(result, indent=2)
    print(text, flush=True)
    if args.out:
        Path(args.out).mkdir(parents=True, exist_ok=True)
        (Path(args.out) / (f"{name}_tiny.json" if args.tiny else f"{name}.json")).write_text(text)
