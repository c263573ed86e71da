"""Checkpoint Merger: Add difference over three synthetic SDXL-size checkpoints, ours beside the simple way.

Writes three random fp16 checkpoints with SDXL's original key names and shapes, then runs, each in a fresh process,
Atelier's streaming merger and the simple way (load all three state dicts, merge, save), printing seconds and peak
RSS. Needs about 3 x 7 GB of disk and, for the simple way, about 30 GB of RAM.  python bench/merge.py --work DIR
"""
from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


def sdxl_layout() -> list[tuple[str, tuple[int, ...]]]:
    """(key, shape) of a full SDXL base checkpoint in the original layout, from meta-device modules."""
    import torch
    from accelerate import init_empty_weights
    from diffusers import AutoencoderKL, UNet2DConditionModel
    from transformers import CLIPTextConfig, CLIPTextModel, CLIPTextModelWithProjection

    from modules import ldm_layout, sd_models_config

    with init_empty_weights():
        unet = UNet2DConditionModel.from_config(sd_models_config.skeleton("xl_base", "unet"))
        vae = AutoencoderKL.from_config(sd_models_config.skeleton("xl_base", "vae"))
        clip_l = CLIPTextModel(CLIPTextConfig(**sd_models_config.skeleton("xl_base", "text_encoder")))
        big_g = CLIPTextModelWithProjection(CLIPTextConfig(**sd_models_config.skeleton("xl_base", "text_encoder_2")))
    sd = {**ldm_layout.unet_to_ldm(unet), **ldm_layout.vae_to_ldm(vae),
          **ldm_layout.clip_l_to_ldm(clip_l, "conditioner.embedders.0.transformer."),
          **ldm_layout.open_clip_to_ldm(big_g, "conditioner.embedders.1.model.")}
    return [(k, tuple(v.shape)) for k, v in sd.items() if v.dtype.is_floating_point or v.dtype == torch.int64]


def write_random(path: Path, layout, seed: int) -> None:
    import torch

    from modules.extras_merge import SafetensorsWriter

    generator = torch.Generator().manual_seed(seed)
    with open(path, "wb") as f:
        writer = SafetensorsWriter(f, [(k, torch.float16, shape) for k, shape in layout], {"format": "pt"})
        for _, shape in layout:
            writer.write_tensor(torch.randn(shape, generator=generator).to(torch.float16))
        writer.finish()


def ours(work: Path) -> float:
    from modules import extras_merge, paths_internal, sd_models
    from modules.shared_cmd_options import cmd_opts

    paths_internal.configure(str(work), str(work / "models"))
    cmd_opts.no_hashing = True
    started = time.perf_counter()
    sd_models.list_models(cmd_opts)
    extras_merge.run_modelmerger("a", "b", "c", "Add difference", 0.5, custom_name="merged_ours")
    return time.perf_counter() - started


def simple(work: Path) -> float:
    from safetensors.torch import load_file, save_file

    folder = work / "models" / "Stable-diffusion"
    started = time.perf_counter()
    a, b, c = (load_file(str(folder / f"{n}.safetensors")) for n in "abc")
    merged = {k: (a[k].float() + (b[k].float() - c[k].float()) * 0.5).half() for k in a}
    save_file(merged, str(folder / "merged_simple.safetensors"))
    return time.perf_counter() - started


def measure(mode: str, work: Path) -> dict:
    """Seconds of the merge itself (imports excluded, as in the running app), wall seconds, peak RSS of the process."""
    started = time.perf_counter()
    out = subprocess.run([sys.executable, __file__, "--work", str(work), "--run", mode], check=True, cwd=ROOT,
                         capture_output=True, text=True).stdout
    wall = time.perf_counter() - started
    merge_seconds = float(out.strip().splitlines()[-1])
    return {"seconds": merge_seconds, "wall_seconds": wall,
            "peak_rss_gib": resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 2**20}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--work", default="/tmp/atelier-merge-bench")
    parser.add_argument("--out", default=None)
    parser.add_argument("--run", choices=["ours", "simple"], default=None)
    args = parser.parse_args()
    work = Path(args.work)
    if args.run:
        print((ours if args.run == "ours" else simple)(work))
        return
    folder = work / "models" / "Stable-diffusion"
    folder.mkdir(parents=True, exist_ok=True)
    layout = sdxl_layout()
    for seed, name in enumerate("abc"):
        if not (folder / f"{name}.safetensors").exists():
            write_random(folder / f"{name}.safetensors", layout, seed)
    # ru_maxrss of children is the largest child so far: measure ours first, then the simple way.
    result = {"ours": measure("ours", work)}
    result["simple"] = measure("simple", work)
    result["rss_ratio"] = result["ours"]["peak_rss_gib"] / result["simple"]["peak_rss_gib"]
    result["time_ratio"] = result["ours"]["seconds"] / result["simple"]["seconds"]
    result["file_gib"] = (folder / "a.safetensors").stat().st_size / 2**30
    print(json.dumps(result, indent=2))
    if args.out:
        Path(args.out).write_text(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
