"""Textual inversion training speed: optimizer steps per second on full-size SD1.5 (512²) and SDXL (1024²), batch 1.

Writes full-size random-weight checkpoints in the original single-file layout (bench/sdxl_refiner.write_checkpoint),
loads them through Atelier's model manager (fp16 weights on CUDA, so training runs under fp16 autocast with a
GradScaler), creates a 1-vector embedding and trains it on 4 random images with train_embedding, timing the steps
after a warm-up. Speed does not depend on the weights' values. Run on a CUDA machine:
    python bench/train_speed.py [--work DIR] [--steps 30] [--warmup 5] [--families sd15,sdxl]
Prints a table and writes bench/results/train_speed_<card>.json.
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.sdxl_refiner import write_checkpoint
from modules import paths_internal, processing, sd_models, textual_inversion, textual_inversion_training as training
from modules.shared_cmd_options import cmd_opts
from modules.shared_options import opts

FAMILIES = {  # name -> (checkpoint family, file stem, training size)
    "sd15": ("v1", "sd15_random", 512),
    "sdxl": ("xl_base", "sdxl_base_random", 1024),
}


def write_images(folder: Path, size: int, count: int = 4) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    for i in range(count):
        Image.fromarray(rng.integers(0, 256, (size, size, 3), dtype=np.uint8)).save(folder / f"{i}-noise {i}.png")
    return folder


def measure(manager, work: Path, family: str, stem: str, size: int, steps: int, warmup: int) -> dict:
    """Train `warmup + steps` steps; steps/s over the steps after the warm-up."""
    model = manager.get(sd_models.get_closet_checkpoint_match(stem))
    opts.set("sd_model_checkpoint", model.sd_checkpoint_info.title)
    name = f"bench-{stem}"
    textual_inversion.create_embedding(name, 1, True, init_text="*", model=model)
    stamps: list[float] = []
    torch.cuda.reset_peak_memory_stats()
    training.train_embedding(name, learn_rate="0.005", batch_size=1, data_root=str(write_images(work / f"data{size}", size)),
                             log_directory=str(work / "logs"), training_width=size, training_height=size,
                             steps=warmup + steps, create_image_every=0, save_embedding_every=0,
                             template_filename="style_filewords.txt", model=model, seed=0,
                             callback=lambda step, loss: stamps.append(time.perf_counter()))
    timed = stamps[warmup:]
    seconds = timed[-1] - stamps[warmup - 1] if warmup else timed[-1] - timed[0]
    counted = len(timed) if warmup else len(timed) - 1
    return {"family": family, "checkpoint": stem, "size": size, "batch_size": 1, "dtype": str(model.plan.dtype),
            "steps_timed": counted, "steps_per_s": counted / seconds, "s_per_step": seconds / counted,
            "peak_vram_gib": torch.cuda.max_memory_allocated() / 2**30}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--work", default="/tmp/atelier-bench", help="checkpoints, data and logs (reused between runs)")
    parser.add_argument("--steps", type=int, default=30, help="timed training steps per model")
    parser.add_argument("--warmup", type=int, default=5, help="untimed steps first (kernels, allocator)")
    parser.add_argument("--families", default="sd15,sdxl", help=f"comma-separated, of {', '.join(FAMILIES)}")
    parser.add_argument("--results", default=str(ROOT / "bench" / "results"), help="folder for the JSON result")
    args = parser.parse_args()
    families = [f.strip() for f in args.families.split(",") if f.strip()]
    unknown = [f for f in families if f not in FAMILIES]
    if unknown:
        parser.error(f"unknown families {unknown}; choose from {', '.join(FAMILIES)}")
    if not torch.cuda.is_available():
        sys.exit("train_speed.py needs a CUDA device")
    work = Path(args.work)
    models = work / "models" / "Stable-diffusion"
    models.mkdir(parents=True, exist_ok=True)
    for name in families:
        family, stem, _ = FAMILIES[name]
        path = models / f"{stem}.safetensors"
        if not path.exists():
            write_checkpoint(family, path)
            torch.cuda.empty_cache()
    paths_internal.configure(str(work), str(work / "models"))
    cmd_opts.no_hashing = True
    cmd_opts.embeddings_dir = str(work / "embeddings")
    opts.set("sd_checkpoints_limit", 1)
    sd_models.list_models(cmd_opts)
    manager = processing.setup_model_manager(cmd_opts, work / "cache")
    device = torch.cuda.get_device_name()
    cases = []
    for name in families:
        family, stem, size = FAMILIES[name]
        cases.append(measure(manager, work, family, stem, size, args.steps, args.warmup))
        manager.unload_all()
    result = {"device": device, "torch": torch.__version__, "cases": cases}
    out = Path(args.results)
    out.mkdir(parents=True, exist_ok=True)
    card = device.split()[-1].lower().replace("/", "-")
    (out / f"train_speed_{card}.json").write_text(json.dumps(result, indent=2))
    print(f"device: {device}  torch {torch.__version__}  embedding training, batch 1, mixed precision")
    print(f"{'model':>6} {'size':>5} {'dtype':>14} {'steps/s':>8} {'s/step':>7} {'peak GiB':>9}")
    for c in cases:
        print(f"{c['family']:>6} {c['size']:>5} {c['dtype']:>14} {c['steps_per_s']:>8.2f} {c['s_per_step']:>7.3f} "
              f"{c['peak_vram_gib']:>9.1f}")


if __name__ == "__main__":
    main()
