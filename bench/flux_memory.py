"""Issue 20's memory modes: Flux.1-dev 1024x1024, 28 steps, Euler, distilled CFG 3.5, through Atelier in each mode
users have for small cards; seconds per image and peak VRAM of each, on one card in one run.

Modes: bf16 (the default), fp8 (flux1-dev-fp8 + t5xxl_fp8_e4m3fn, kept fp8, each layer upcast to bf16 as it runs),
fp8 + --medvram, bf16 + --lowvram, and a 4-bit GGUF transformer + --medvram. The files are bench/flux.py's random
full-size weights (its code, not a copy), the fp8 ones cast from them, the GGUF one random Q4_0 blocks (gguf's writer
cannot quantize to K-quants; Q4_0 has Q4_K's 4.5 bits per weight, so the same memory). Speed does not depend on the
values. Targets from the issue: <= 16 GiB with fp8 + --medvram, <= 10 GiB with --lowvram or a Q4 GGUF.
    python bench/flux_memory.py [--out DIR] [--modes bf16,fp8,...]
    python bench/flux_memory.py --tiny      (the same code on the CPU with tiny sizes: a smoke test)
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

import gguf
import numpy as np
import torch
from safetensors.torch import load_file, save_file

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench import (
    flow_bench,  # noqa: E402
    flux as flux_bench,  # noqa: E402
)
from modules import devices, lowvram, paths_internal, sd_models  # noqa: E402
from modules.shared_cmd_options import cmd_opts  # noqa: E402
from modules.shared_options import opts  # noqa: E402

BF16_MODULES = ["clip_l.safetensors", "t5xxl_fp16.safetensors", "ae.safetensors"]
FP8_MODULES = ["clip_l.safetensors", "t5xxl_fp8_e4m3fn.safetensors", "ae.safetensors"]
# mode -> (checkpoint file name, memory mode, modules)
MODES = {
    "bf16": ("flux1-dev-random.safetensors", "normal", BF16_MODULES),
    "fp8": ("flux1-dev-random-fp8.safetensors", "normal", FP8_MODULES),
    "fp8_medvram": ("flux1-dev-random-fp8.safetensors", "medvram", FP8_MODULES),
    "lowvram": ("flux1-dev-random.safetensors", "lowvram", BF16_MODULES),
    "gguf_q4_medvram": ("flux1-dev-random-Q4_0.gguf", "medvram", FP8_MODULES),
}
TARGETS_GIB = {"fp8_medvram": 16, "lowvram": 10, "gguf_q4_medvram": 10}


def random_q4_0(shape: tuple[int, int], generator: torch.Generator) -> np.ndarray:
    """Random Q4_0 blocks for a (rows, cols) weight: per 32 weights an fp16 scale (small, so activations stay finite)
    and 16 bytes of 4-bit values."""
    rows, cols = shape
    blocks = cols // 32
    nibbles = torch.randint(0, 256, (rows, blocks, 16), dtype=torch.uint8, generator=generator)
    scale = torch.full((rows, blocks, 1), 0.002, dtype=torch.float16).view(torch.uint8)
    return torch.cat([scale, nibbles], dim=2).reshape(rows, blocks * 18).numpy()


def write_variants(models_dir: Path) -> None:
    """The fp8 transformer and T5 cast from bench/flux.py's bf16 files, and a random Q4_0 GGUF transformer."""
    sd_dir, te_dir = models_dir / "Stable-diffusion", models_dir / "text_encoder"
    fp8 = sd_dir / MODES["fp8"][0]
    if not fp8.exists():
        bfl = load_file(str(sd_dir / MODES["bf16"][0]))
        save_file({k: v.to(torch.float8_e4m3fn) for k, v in bfl.items()}, str(fp8))
        del bfl
    t5_fp8 = te_dir / "t5xxl_fp8_e4m3fn.safetensors"
    if not t5_fp8.exists():
        t5 = load_file(str(te_dir / "t5xxl_fp16.safetensors"))
        save_file({k: v.to(torch.float8_e4m3fn) for k, v in t5.items()}, str(t5_fp8))
        del t5
    q4 = sd_dir / MODES["gguf_q4_medvram"][0]
    if not q4.exists():
        writer = gguf.GGUFWriter(str(q4), "flux")
        generator = torch.Generator().manual_seed(0)
        for key, tensor in load_file(str(fp8)).items():
            if tensor.ndim == 2 and tensor.shape[1] % 32 == 0:
                writer.add_tensor(key, random_q4_0(tuple(tensor.shape), generator), raw_dtype=gguf.GGMLQuantizationType.Q4_0)
            else:
                writer.add_tensor(key, tensor.to(torch.float32).numpy())
        writer.write_header_to_file()
        writer.write_kv_data_to_file()
        writer.write_tensors_to_file()
        writer.close()


def measure(mode: str, device: torch.device, dtype: torch.dtype, case: dict, work: Path, runs: int) -> dict:
    filename, memory_mode, modules = MODES[mode]
    plan = devices.DevicePlan(device, dtype, dtype, memory_mode, compile_unet=False)
    sd_models.model_manager = sd_models.ModelManager(plan, work / "cache", limit=1, hashing=False)
    opts.set("forge_additional_modules", modules)
    opts.set("sd_model_checkpoint", Path(filename).stem)
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats()
    started = time.perf_counter()
    model = sd_models.model_manager.get(sd_models.get_closet_checkpoint_match(Path(filename).stem))
    flow_bench.synchronize(device)
    result = {"file": filename, "memory_mode": memory_mode, "modules": modules, "load_s": time.perf_counter() - started,
              "transformer_dtypes": sorted({str(p.dtype).removeprefix("torch.") for p in model.unet.parameters()})}
    result |= flow_bench.timed(flux_bench.atelier_job(case), runs, device)
    if mode in TARGETS_GIB and result["peak_vram_gib"] is not None:
        result["target_gib"] = TARGETS_GIB[mode]
        result["meets_target"] = result["peak_vram_gib"] <= TARGETS_GIB[mode]
    sd_models.model_manager.unload_all()
    lowvram.send_everything_to_cpu()
    del model
    devices.torch_gc()
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--out", default=os.environ.get("OUT") or None)
    parser.add_argument("--work", default="/tmp/atelier-bench-flux")
    parser.add_argument("--runs", type=int, default=2)
    parser.add_argument("--modes", default=",".join(MODES))
    parser.add_argument("--tiny", action="store_true", help="tiny sizes on the CPU: checks the script, measures nothing")
    args = parser.parse_args()
    tiny = args.tiny
    device = torch.device("cpu") if tiny else torch.device("cuda")
    dtype = torch.float32 if tiny else torch.bfloat16
    case = flux_bench.TINY if tiny else flux_bench.FULL
    work = Path(args.work + ("-tiny" if tiny else ""))
    models_dir = work / "models"
    started = time.perf_counter()
    flux_bench.write_files(models_dir, device, dtype, tiny)
    write_variants(models_dir)
    result = {"device": torch.cuda.get_device_name() if device.type == "cuda" else "cpu", "torch": torch.__version__,
              "compute_dtype": str(dtype).removeprefix("torch."), "tiny": tiny, **case,
              "write_files_s": time.perf_counter() - started, "modes": {}}
    paths_internal.configure(str(work), str(models_dir))
    cmd_opts.no_hashing = True
    opts.set("samples_save", False)
    sd_models.list_models(cmd_opts)
    for mode in args.modes.split(","):
        result["modes"][mode] = measure(mode, device, dtype, case, work, 1 if tiny else args.runs)
        print(mode, json.dumps(result["modes"][mode]), flush=True)
    text = json.dumps(result, indent=2)
    print(text, flush=True)
    if args.out:
        Path(args.out).mkdir(parents=True, exist_ok=True)
        (Path(args.out) / ("flux_memory_tiny.json" if tiny else "flux_memory.json")).write_text(text)


if __name__ == "__main__":
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    main()
