"""LoRA on full-size SDXL: patching time and steady-state generation time against no LoRA, on one card.

Writes a full-size random-weight SDXL checkpoint (original layout) and a rank-32 kohya LoRA over every transformer
Linear of the UNet and both text encoders (SGM names, as SDXL LoRAs are published), then times 1024x1024, 30 steps,
Euler a: without the LoRA, the first job with it (patching included) and the next (weights already patched).
Run on a CUDA machine:  python bench/lora_sdxl.py --out DIR
"""
from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

import torch
from safetensors.torch import save_file

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from sdxl_refiner import random_sdxl_base  # noqa: E402

from modules import processing  # noqa: E402
from modules.networks import layer_names  # noqa: E402
from modules.shared_cmd_options import cmd_opts  # noqa: E402

RANK = 32


def write_lora(model, path: Path) -> int:
    """Random kohya LoRA for every transformer Linear (UNet by its SGM name, text encoders te1/te2)."""
    generator = torch.Generator().manual_seed(0)
    tensors = {}
    for name, module in layer_names.network_layer_mapping(model).items():
        unet_sgm = name.startswith("lora_unet_") and any(b in name for b in ("input_blocks", "middle_block", "output_blocks"))
        text = name.startswith(("lora_te1_", "lora_te2_"))
        if not isinstance(module, torch.nn.Linear) or not ((unet_sgm and "transformer_blocks" in name) or text):
            continue
        tensors[f"{name}.lora_down.weight"] = torch.randn(RANK, module.in_features, generator=generator).half() * 0.01
        tensors[f"{name}.lora_up.weight"] = torch.randn(module.out_features, RANK, generator=generator).half() * 0.01
        tensors[f"{name}.alpha"] = torch.tensor(float(RANK))
    save_file(tensors, str(path), metadata={"ss_network_module": "networks.lora"})
    return len(tensors) // 3


def job(prompt: str):
    p = processing.StableDiffusionProcessingTxt2Img(prompt=prompt, negative_prompt="blurry", steps=30, width=1024, height=1024,
                                                    sampler_name="Euler a", cfg_scale=7.0, seed=1, do_not_save_samples=True)
    torch.cuda.synchronize()
    started = time.perf_counter()
    processing.process_images(p)
    torch.cuda.synchronize()
    return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--out", default="bench/out")
    parser.add_argument("--work", default="/tmp/atelier-bench")
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()
    work, out = Path(args.work), Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    cmd_opts.lora_dir = str(work / "models" / "Lora")
    model = random_sdxl_base(work)
    Path(cmd_opts.lora_dir).mkdir(parents=True, exist_ok=True)
    layers = write_lora(model, Path(cmd_opts.lora_dir) / "bench.safetensors")

    job("a lighthouse")  # warm-up
    plain = [job("a lighthouse") for _ in range(args.runs)]
    first_with_lora = job("a lighthouse <lora:bench:0.8>")
    with_lora = [job("a lighthouse <lora:bench:0.8>") for _ in range(args.runs)]
    restore = job("a lighthouse")
    result = {
        "device": torch.cuda.get_device_name(), "torch": torch.__version__, "lora_layers": layers, "rank": RANK,
        "case": "SDXL 1024x1024, 30 steps, Euler a, CFG 7, batch 1",
        "no_lora_s": statistics.median(plain), "first_job_with_lora_s": first_with_lora,
        "steady_with_lora_s": statistics.median(with_lora),
        "patch_s": first_with_lora - statistics.median(with_lora),
        "steady_ratio_lora_over_none": statistics.median(with_lora) / statistics.median(plain),
        "job_after_removing_lora_s": restore, "runs": {"plain": plain, "with_lora": with_lora},
    }
    (out / "lora_sdxl.json").write_text(json.dumps(result, indent=2))
    print(json.dumps({k: v for k, v in result.items() if k != "runs"}, indent=2))


if __name__ == "__main__":
    main()
