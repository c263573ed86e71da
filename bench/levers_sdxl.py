"""Speed levers on full-size SDXL (issue 10's exploration): each variant of our engine beside plain diffusers.

1024x1024, 30 steps, Euler a, CFG 7, batch 1, base only. Variants: as shipped; UNet in channels_last; UNet under
torch.compile (default mode). Prints seconds per image, compile seconds and the
ratio to plain diffusers measured in the same run.  python bench/levers_sdxl.py --out DIR
"""
from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from sdxl_refiner import NEGATIVE, PROMPT, random_sdxl_base  # noqa: E402

from modules import processing, sd_models_config  # noqa: E402


def ours() -> float:
    p = processing.StableDiffusionProcessingTxt2Img(prompt=PROMPT, negative_prompt=NEGATIVE, steps=30, width=1024, height=1024,
                                                    sampler_name="Euler a", cfg_scale=7.0, seed=1, do_not_save_samples=True)
    torch.cuda.synchronize()
    started = time.perf_counter()
    processing.process_images(p)
    torch.cuda.synchronize()
    return time.perf_counter() - started


def timed(fn, runs: int) -> tuple[float, float]:
    started = time.perf_counter()
    fn()  # warm-up (and compilation)
    first = time.perf_counter() - started
    return statistics.median(fn() for _ in range(runs)), first


def diffusers_job(model):
    from diffusers import EulerAncestralDiscreteScheduler, StableDiffusionXLPipeline

    pipe = StableDiffusionXLPipeline(
        vae=model.vae, text_encoder=model.text_encoders["text_encoder"], text_encoder_2=model.text_encoders["text_encoder_2"],
        tokenizer=model.tokenizers["tokenizer"], tokenizer_2=model.tokenizers["tokenizer_2"], unet=model.unet,
        scheduler=EulerAncestralDiscreteScheduler.from_config(sd_models_config.skeleton("xl_base", "scheduler")))
    pipe.set_progress_bar_config(disable=True)

    def run() -> float:
        torch.cuda.synchronize()
        started = time.perf_counter()
        pipe(PROMPT, negative_prompt=NEGATIVE, num_inference_steps=30, guidance_scale=7.0, height=1024, width=1024,
             generator=torch.Generator("cuda").manual_seed(1))
        torch.cuda.synchronize()
        return time.perf_counter() - started
    return run


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--out", default="bench/out")
    parser.add_argument("--work", default="/tmp/atelier-bench")
    parser.add_argument("--runs", type=int, default=5)
    args = parser.parse_args()
    work, out = Path(args.work), Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    model = random_sdxl_base(work)
    results = {"device": torch.cuda.get_device_name(), "torch": torch.__version__, "variants": {}}

    def record(name, fn):
        seconds, first = timed(fn, args.runs)
        results["variants"][name] = {"s_per_image": seconds, "first_run_s": first}
        print(f"{name:40s} {seconds:7.3f} s/img   first run {first:7.1f} s", flush=True)

    record("diffusers (plain, fp16, SDPA)", diffusers_job(model))
    record("atelier as shipped", ours)
    original = model.unet
    model.unet = original.to(memory_format=torch.channels_last)
    record("atelier + channels_last", ours)
    model.sampling_unet = torch.compile(original)
    record("atelier + torch.compile (default)", ours)
    base = results["variants"]["diffusers (plain, fp16, SDPA)"]["s_per_image"]
    for v in results["variants"].values():
        v["ratio_to_diffusers"] = v["s_per_image"] / base
    (out / "levers_sdxl.json").write_text(json.dumps(results, indent=2))
    print(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
