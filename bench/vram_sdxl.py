"""Memory modes on full-size SDXL: normal, --medvram, --lowvram (issue 10's memory targets: 8 GiB and 4 GiB).

SDXL base + refiner, 1024x1024, 30 steps, switch at 0.6, Euler a, CFG 7, batch 1, with the random-weight checkpoints
of bench/sdxl_refiner.py. For each mode: seconds per image end to end and peak VRAM (torch.cuda.max_memory_allocated,
reset after a warm-up run, so resident weights count), and how far its image is from the normal mode's.
Run on a CUDA machine:  python bench/vram_sdxl.py [--modes normal,medvram,lowvram] [--runs 2]
"""
from __future__ import annotations

import argparse
import gc
import json
import os
import re
import statistics
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from sdxl_refiner import CFG, SIZE, STEPS, SWITCH_AT, atelier_job, timed, write_checkpoint  # noqa: E402

from modules import lowvram, paths_internal, processing, sd_models  # noqa: E402
from modules.shared_cmd_options import cmd_opts  # noqa: E402
from modules.shared_options import opts  # noqa: E402

MODES = ("normal", "medvram", "lowvram")
TARGET_GIB = {"medvram": 8.0, "lowvram": 4.0}


def ensure_checkpoints(work: Path) -> None:
    models = work / "models" / "Stable-diffusion"
    models.mkdir(parents=True, exist_ok=True)
    for family, name in (("xl_base", "sdxl_base_random"), ("xl_refiner", "sdxl_refiner_random")):
        path = models / f"{name}.safetensors"
        if not path.exists():
            started = time.perf_counter()
            write_checkpoint(family, path)
            print(f"wrote {path.name} ({path.stat().st_size / 2**30:.2f} GiB) in {time.perf_counter() - started:.1f}s",
                  flush=True)
            torch.cuda.empty_cache()


def start_mode(mode: str, work: Path) -> sd_models.ModelManager:
    """A fresh model manager under this mode's flags, base and refiner loaded (in RAM or on the card)."""
    cmd_opts.medvram, cmd_opts.lowvram, cmd_opts.medvram_sdxl = mode == "medvram", mode == "lowvram", False
    manager = processing.setup_model_manager(cmd_opts, work / "cache")
    base = manager.get(sd_models.get_closet_checkpoint_match("sdxl_base_random"))
    manager.get(sd_models.get_closet_checkpoint_match("sdxl_refiner_random"), make_current=False)
    manager.current = base
    opts.set("sd_model_checkpoint", base.sd_checkpoint_info.title)
    return manager


def stop_mode(manager: sd_models.ModelManager) -> None:
    manager.unload_all()
    lowvram.send_everything_to_cpu()
    gc.collect()
    torch.cuda.empty_cache()


def card_slug(name: str) -> str:
    match = re.search(r"\b([A-Z]\d{2,4})\b", name)
    return match.group(1).lower() if match else "gpu"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default="bench/results", help="folder for the JSON result")
    parser.add_argument("--work", default="/tmp/atelier-bench", help="folder for the random checkpoints")
    parser.add_argument("--runs", type=int, default=2, help="timed runs per mode, after one warm-up run")
    parser.add_argument("--modes", default=",".join(MODES), help="comma-separated, from: " + ", ".join(MODES))
    args = parser.parse_args()
    modes = [m for m in args.modes.split(",") if m]
    if unknown := [m for m in modes if m not in MODES]:
        parser.error(f"unknown mode(s): {', '.join(unknown)}")
    if not torch.cuda.is_available():
        parser.error("needs a CUDA device")
    out, work = Path(args.out), Path(args.work)
    out.mkdir(parents=True, exist_ok=True)
    ensure_checkpoints(work)
    paths_internal.configure(str(work), str(work / "models"))
    cmd_opts.no_hashing = True
    opts.set("sd_checkpoints_limit", 2)
    opts.set("samples_save", False)
    sd_models.list_models(cmd_opts)

    result = {"device": torch.cuda.get_device_name(), "torch": torch.__version__,
              "case": f"SDXL base+refiner {SIZE}x{SIZE}, {STEPS} steps, switch {SWITCH_AT}, Euler a, CFG {CFG}, batch 1",
              "modes": []}
    reference = None
    for mode in modes:
        started = time.perf_counter()
        manager = start_mode(mode, work)
        load_s = time.perf_counter() - started
        job = atelier_job(1)
        times, peak = timed(job, args.runs)
        picture = np.asarray(job()[0], dtype=np.int16)
        reference = picture if reference is None else reference
        result["modes"].append({
            "mode": mode, "s_per_image": statistics.median(times), "peak_vram_gib": peak, "runs_s": times,
            "load_s_base_and_refiner": load_s, "target_gib": TARGET_GIB.get(mode),
            "max_pixel_diff_vs_first_mode": int(np.abs(picture - reference).max()),
        })
        print(f"{mode}: {statistics.median(times):.2f} s/image, peak {peak:.2f} GiB", flush=True)
        stop_mode(manager)
    normal = next((m for m in result["modes"] if m["mode"] == "normal"), None)
    for m in result["modes"]:
        m["slowdown_vs_normal"] = m["s_per_image"] / normal["s_per_image"] if normal else None
    path = out / f"vram_sdxl_{card_slug(result['device'])}.json"
    path.write_text(json.dumps(result, indent=2))
    print(f"\ndevice: {result['device']}  torch {result['torch']}\n{result['case']}")
    print(f"{'mode':>8} {'s/image':>8} {'x normal':>8} {'peak GiB':>9} {'target':>7} {'px diff':>7}")
    for m in result["modes"]:
        slowdown = f"{m['slowdown_vs_normal']:.2f}" if m["slowdown_vs_normal"] else "-"
        target = f"{m['target_gib']:.0f}" if m["target_gib"] else "-"
        print(f"{m['mode']:>8} {m['s_per_image']:>8.2f} {slowdown:>8} {m['peak_vram_gib']:>9.2f} {target:>7} "
              f"{m['max_pixel_diff_vs_first_mode']:>7}")
    print(f"wrote {path}")


if __name__ == "__main__":
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    main()
