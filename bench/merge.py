"""Checkpoint Merger: Add difference over three synthetic checkpoints, ours beside the simple way.

Writes three random fp16 checkpoints with the original key names and shapes of SDXL base (--layout sdxl, 6.5 GiB
each, the issue's benchmark) or SD1 (--layout sd1, 2 GiB each, for small machines), then runs, each in a fresh
process, Atelier's streaming merger and the simple way (load all three state dicts, merge, save), --repeats times in
alternating order, printing seconds and peak RSS of each run and the median ratios ours/simple. Both results are then
compared key by key: they must be bit-identical. SDXL needs about 5 x 7 GB of disk and, for the simple way, about
30 GB of RAM.  python bench/merge.py --layout sdxl --work DIR --out results.json
"""
from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

MULTIPLIER = 0.5
LAYOUT_LABELS = {"sdxl": "SDXL base", "sd1": "SD1"}


def checkpoint_layout(layout: str) -> list[tuple[str, tuple[int, ...], bool]]:
    """(key, shape, is_float) of a full checkpoint in the original layout, from meta-device modules."""
    import torch
    from accelerate import init_empty_weights
    from diffusers import AutoencoderKL, UNet2DConditionModel
    from transformers import CLIPTextConfig, CLIPTextModel, CLIPTextModelWithProjection

    from modules import ldm_layout, sd_models_config

    family = "xl_base" if layout == "sdxl" else "v1"
    with init_empty_weights():
        unet = UNet2DConditionModel.from_config(sd_models_config.skeleton(family, "unet"))
        vae = AutoencoderKL.from_config(sd_models_config.skeleton(family, "vae"))
        clip_l = CLIPTextModel(CLIPTextConfig(**sd_models_config.skeleton(family, "text_encoder")))
        sd = {**ldm_layout.unet_to_ldm(unet), **ldm_layout.vae_to_ldm(vae)}
        if layout == "sdxl":
            big_g = CLIPTextModelWithProjection(CLIPTextConfig(**sd_models_config.skeleton(family, "text_encoder_2")))
            sd.update(ldm_layout.clip_l_to_ldm(clip_l, "conditioner.embedders.0.transformer."))
            sd.update(ldm_layout.open_clip_to_ldm(big_g, "conditioner.embedders.1.model."))
        else:
            sd.update(ldm_layout.clip_l_to_ldm(clip_l, "cond_stage_model.transformer."))
    return [(k, tuple(v.shape), v.dtype.is_floating_point) for k, v in sd.items()
            if v.dtype.is_floating_point or v.dtype == torch.int64]


def write_random(path: Path, layout, seed: int) -> None:
    """Random fp16 weights; integer tensors (the text encoders' position ids) as real checkpoints have them."""
    import torch

    from modules.extras_merge import SafetensorsWriter

    generator = torch.Generator().manual_seed(seed)
    entries = [(k, torch.float16 if is_float else torch.int64, shape) for k, shape, is_float in layout]
    tmp = path.with_suffix(".tmp")
    with open(tmp, "wb") as f:
        writer = SafetensorsWriter(f, entries, {"format": "pt"})
        for _, shape, is_float in layout:
            tensor = torch.randn(shape, generator=generator) if is_float else torch.arange(shape[-1]).expand(shape)
            writer.write_tensor(tensor.to(torch.float16 if is_float else torch.int64))
        writer.finish()
    tmp.rename(path)


def ours(work: Path) -> dict:
    from modules import extras_merge, paths_internal, sd_models
    from modules.shared_cmd_options import cmd_opts

    paths_internal.configure(str(work), str(work / "models"))
    cmd_opts.no_hashing = True
    started = clocks()
    sd_models.list_models(cmd_opts)
    extras_merge.run_modelmerger("a", "b", "c", "Add difference", MULTIPLIER, custom_name="merged_ours")
    return since(started)


def simple(work: Path) -> dict:
    from safetensors.torch import load_file, save_file

    folder = work / "models" / "Stable-diffusion"
    started = clocks()
    a, b, c = (load_file(str(folder / f"{n}.safetensors")) for n in "abc")
    merged = {k: (a[k].float() + (b[k].float() - c[k].float()) * MULTIPLIER).half() if a[k].is_floating_point()
              else a[k] for k in a}
    save_file(merged, str(folder / "merged_simple.safetensors"))
    return since(started)


def clocks() -> tuple[float, float]:
    """Wall clock and the CPU time of the whole process (all threads, user + system)."""
    return time.perf_counter(), time.process_time()


def since(started: tuple[float, float]) -> dict:
    wall, cpu = clocks()
    return {"seconds": wall - started[0], "cpu_seconds": cpu - started[1]}


def measure(mode: str, work: Path, threads: int | None) -> dict:
    """Seconds of the merge itself (imports excluded, as in the running app), wall seconds, the process's peak RSS.

    Dirty pages are flushed first so that neither way is throttled by writeback of the other's output.
    """
    (work / "models" / "Stable-diffusion" / f"merged_{mode}.safetensors").unlink(missing_ok=True)
    os.sync()
    started = time.perf_counter()
    command = [sys.executable, __file__, "--work", str(work), "--run", mode]
    command += ["--threads", str(threads)] if threads else []
    out = subprocess.run(command, check=True, cwd=ROOT, capture_output=True, text=True).stdout
    result = json.loads(out.strip().splitlines()[-1])
    result["wall_seconds"] = time.perf_counter() - started
    return result


def run_child(mode: str, work: Path, threads: int | None) -> None:
    """Prints seconds, CPU seconds (steadier than seconds on a busy machine) and the process's peak RSS."""
    if threads:
        import torch

        torch.set_num_threads(threads)
    result = (ours if mode == "ours" else simple)(work)
    result["peak_rss_gib"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20  # KiB on Linux
    print(json.dumps(result))


def same_tensors(first: Path, second: Path) -> bool:
    """Every tensor of both files bit-identical (metadata may differ)."""
    import safetensors
    import torch

    with safetensors.safe_open(str(first), "pt") as f, safetensors.safe_open(str(second), "pt") as g:
        keys = f.keys()
        return set(keys) == set(g.keys()) and all(torch.equal(f.get_tensor(k), g.get_tensor(k)) for k in keys)


def warm_page_cache(paths) -> None:
    """Read the inputs once, so that every run (whichever is first) finds them in the page cache."""
    for path in paths:
        with open(path, "rb") as f:
            while f.read(64 * 2**20):
                pass


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--layout", choices=sorted(LAYOUT_LABELS), default="sdxl",
                        help="checkpoint size: sdxl (the issue's benchmark) or sd1 (a third of the size)")
    parser.add_argument("--repeats", type=int, default=3, help="runs of each way, alternating which goes first")
    parser.add_argument("--work", default=None,
                        help="folder for the checkpoints (default /tmp/atelier-merge-bench/LAYOUT)")
    parser.add_argument("--out", default=None)
    parser.add_argument("--threads", type=int, default=None,
                        help="torch threads for both ways (default: torch's own); 1 compares work on a shared machine")
    parser.add_argument("--run", choices=["ours", "simple"], default=None, help=argparse.SUPPRESS)
    args = parser.parse_args()
    work = Path(args.work or f"/tmp/atelier-merge-bench/{args.layout}")
    if args.run:
        run_child(args.run, work, args.threads)
        return
    folder = work / "models" / "Stable-diffusion"
    folder.mkdir(parents=True, exist_ok=True)
    inputs = [folder / f"{name}.safetensors" for name in "abc"]
    if not all(p.exists() for p in inputs):
        layout = checkpoint_layout(args.layout)
        for seed, path in enumerate(inputs):
            if not path.exists():
                write_random(path, layout, seed)
    warm_page_cache(inputs)
    scale = f"{LAYOUT_LABELS[args.layout]} ({inputs[0].stat().st_size / 2**30:.2f} GiB per checkpoint)"
    threads = f"{args.threads} torch threads" if args.threads else "torch's default threads"
    print(f"scale: {scale}, Add difference M={MULTIPLIER}, {args.repeats} runs each, {os.cpu_count()} CPUs, {threads}",
          flush=True)
    runs: dict[str, list[dict]] = {"ours": [], "simple": []}
    for repeat in range(args.repeats):
        order = ("ours", "simple") if repeat % 2 == 0 else ("simple", "ours")
        for mode in order:
            runs[mode].append(measure(mode, work, args.threads))
            last = runs[mode][-1]
            print(f"run {repeat + 1} {mode:6s} {last['seconds']:7.2f} s  CPU {last['cpu_seconds']:7.2f} s  "
                  f"peak RSS {last['peak_rss_gib']:6.2f} GiB", flush=True)
    result = {"layout": args.layout, "scale": scale, "cpus": os.cpu_count(), "torch_threads": args.threads,
              "file_gib": inputs[0].stat().st_size / 2**30}
    for mode, results in runs.items():
        result[mode] = {"runs": results, "median_seconds": statistics.median(r["seconds"] for r in results),
                        "median_cpu_seconds": statistics.median(r["cpu_seconds"] for r in results),
                        "peak_rss_gib": max(r["peak_rss_gib"] for r in results)}
    result["time_ratio"] = result["ours"]["median_seconds"] / result["simple"]["median_seconds"]
    result["time_ratios_per_repeat"] = [o["seconds"] / s["seconds"] for o, s in zip(runs["ours"], runs["simple"])]
    result["cpu_ratio"] = result["ours"]["median_cpu_seconds"] / result["simple"]["median_cpu_seconds"]
    result["rss_ratio"] = result["ours"]["peak_rss_gib"] / result["simple"]["peak_rss_gib"]
    result["identical_results"] = same_tensors(folder / "merged_ours.safetensors", folder / "merged_simple.safetensors")
    print(json.dumps(result, indent=2))
    if args.out:
        Path(args.out).write_text(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
