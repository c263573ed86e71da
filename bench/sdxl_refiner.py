"""SDXL base + refiner, 1024x1024, 30 steps, switch at 0.6, Euler a, CFG 7: Atelier beside plain diffusers.

Writes full-size random-weight SDXL base and refiner checkpoints in the original single-file layout, loads them
through Atelier's model manager, generates, then runs the same job with diffusers' StableDiffusionXLPipeline
(denoising_end) + StableDiffusionXLImg2ImgPipeline (denoising_start) over the same modules, on the same card.
Speed does not depend on the weights' values. Run on a CUDA machine:  python bench/sdxl_refiner.py --out DIR
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from diffusers import AutoencoderKL, EulerAncestralDiscreteScheduler, UNet2DConditionModel  # noqa: E402
from safetensors.torch import save_file  # noqa: E402
from transformers import CLIPTextConfig, CLIPTextModel, CLIPTextModelWithProjection  # noqa: E402

from modules import ldm_layout, paths_internal, processing, sd_models, sd_models_config  # noqa: E402
from modules.shared_cmd_options import cmd_opts  # noqa: E402
from modules.shared_options import opts  # noqa: E402

PROMPT = "cinematic photo of a lighthouse at dusk, dramatic clouds, 35mm"
NEGATIVE = "cartoon, painting, illustration"
STEPS, SIZE, SWITCH_AT, CFG = 30, 1024, 0.6, 7.0


def write_checkpoint(family: str, path: Path) -> None:
    """A full-size random-weight checkpoint of `family` in the original layout, built on the GPU in fp16."""
    torch.manual_seed(0)
    with torch.device("cuda"):
        unet = UNet2DConditionModel.from_config(sd_models_config.skeleton(family, "unet")).half()
        vae = AutoencoderKL.from_config(sd_models_config.skeleton(family, "vae")).half()
        sd = {**ldm_layout.unet_to_ldm(unet), **ldm_layout.vae_to_ldm(vae)}
        del unet, vae
        for component, kind, prefix in sd_models_config.TEXT_ENCODERS[family]:
            config = CLIPTextConfig(**sd_models_config.skeleton(family, component))
            if kind == "clip_l":
                sd.update(ldm_layout.clip_l_to_ldm(CLIPTextModel(config).half(), prefix))
            else:
                sd.update(ldm_layout.open_clip_to_ldm(CLIPTextModelWithProjection(config).half(), prefix))
    save_file({k: v.contiguous().cpu() for k, v in sd.items()}, str(path))


def random_sdxl_base(work: Path):
    """The full-size random SDXL base (written once under `work`) loaded through our model manager, as the current model."""
    ckpt = work / "models" / "Stable-diffusion" / "sdxl_base_random.safetensors"
    ckpt.parent.mkdir(parents=True, exist_ok=True)
    if not ckpt.exists():
        write_checkpoint("xl_base", ckpt)
    paths_internal.configure(str(work), str(work / "models"))
    cmd_opts.no_hashing = True
    opts.set("samples_save", False)
    sd_models.list_models(cmd_opts)
    manager = processing.setup_model_manager(cmd_opts, work / "cache")
    model = manager.get(sd_models.get_closet_checkpoint_match("sdxl_base_random"))
    opts.set("sd_model_checkpoint", model.sd_checkpoint_info.title)
    return model


def timed(fn, runs: int) -> tuple[list[float], float]:
    fn()  # warm-up: kernels, allocator, cuDNN/cuBLAS heuristics
    torch.cuda.synchronize()
    torch.cuda.reset_peak_memory_stats()
    times = []
    for _ in range(runs):
        torch.cuda.synchronize()
        start = time.perf_counter()
        fn()
        torch.cuda.synchronize()
        times.append(time.perf_counter() - start)
    return times, torch.cuda.max_memory_allocated() / 2**30


def atelier_job(batch: int):
    def run():
        p = processing.StableDiffusionProcessingTxt2Img(
            prompt=PROMPT, negative_prompt=NEGATIVE, steps=STEPS, width=SIZE, height=SIZE, sampler_name="Euler a",
            cfg_scale=CFG, seed=1, batch_size=batch, refiner_checkpoint="sdxl_refiner_random", refiner_switch_at=SWITCH_AT,
            do_not_save_samples=True, do_not_save_grid=True)
        return processing.process_images(p).images
    return run


def diffusers_job(base, refiner, batch: int):
    from diffusers import StableDiffusionXLImg2ImgPipeline, StableDiffusionXLPipeline

    scheduler = EulerAncestralDiscreteScheduler.from_config(sd_models_config.skeleton("xl_base", "scheduler"))
    pipe = StableDiffusionXLPipeline(
        vae=base.vae, text_encoder=base.text_encoders["text_encoder"], text_encoder_2=base.text_encoders["text_encoder_2"],
        tokenizer=base.tokenizers["tokenizer"], tokenizer_2=base.tokenizers["tokenizer_2"], unet=base.unet, scheduler=scheduler)
    ref = StableDiffusionXLImg2ImgPipeline(
        vae=base.vae, text_encoder=None, text_encoder_2=refiner.text_encoders["text_encoder_2"], tokenizer=None,
        tokenizer_2=refiner.tokenizers["tokenizer_2"], unet=refiner.unet, scheduler=scheduler,
        requires_aesthetics_score=True, force_zeros_for_empty_prompt=False)
    pipe.set_progress_bar_config(disable=True)
    ref.set_progress_bar_config(disable=True)

    def run():
        g = torch.Generator("cuda").manual_seed(1)
        latents = pipe(PROMPT, negative_prompt=NEGATIVE, num_inference_steps=STEPS, denoising_end=SWITCH_AT, guidance_scale=CFG,
                       height=SIZE, width=SIZE, num_images_per_prompt=batch, generator=g, output_type="latent").images
        return ref(PROMPT, negative_prompt=NEGATIVE, image=latents, num_inference_steps=STEPS, denoising_start=SWITCH_AT,
                   guidance_scale=CFG, num_images_per_prompt=batch, generator=g).images
    return run


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--out", default="bench/out")
    parser.add_argument("--work", default="/tmp/atelier-bench")
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--batches", default="1")
    args = parser.parse_args()
    out, work = Path(args.out), Path(args.work)
    out.mkdir(parents=True, exist_ok=True)
    models = work / "models" / "Stable-diffusion"
    models.mkdir(parents=True, exist_ok=True)
    result = {"device": torch.cuda.get_device_name(), "torch": torch.__version__, "cases": []}
    for family, name in (("xl_base", "sdxl_base_random"), ("xl_refiner", "sdxl_refiner_random")):
        path = models / f"{name}.safetensors"
        if not path.exists():
            started = time.perf_counter()
            write_checkpoint(family, path)
            print(f"wrote {path.name} ({path.stat().st_size / 2**30:.2f} GiB) in {time.perf_counter() - started:.1f}s", flush=True)
            torch.cuda.empty_cache()

    paths_internal.configure(str(work), str(work / "models"))
    cmd_opts.no_hashing = True
    opts.set("sd_checkpoints_limit", 2)
    opts.set("samples_save", False)
    sd_models.list_models(cmd_opts)
    manager = processing.setup_model_manager(cmd_opts, work / "cache")
    base_info = sd_models.get_closet_checkpoint_match("sdxl_base_random")
    refiner_info = sd_models.get_closet_checkpoint_match("sdxl_refiner_random")
    opts.set("sd_model_checkpoint", base_info.title)
    load_started = time.perf_counter()
    base = manager.get(base_info)
    torch.cuda.synchronize()
    result["load_seconds_sdxl_base"] = time.perf_counter() - load_started
    refiner = manager.get(refiner_info, make_current=False)
    manager.current = base

    for batch in [int(b) for b in args.batches.split(",")]:
        ours, ours_peak = timed(atelier_job(batch), args.runs)
        torch.cuda.empty_cache()
        ref, ref_peak = timed(diffusers_job(base, refiner, batch), args.runs)
        torch.cuda.empty_cache()
        case = {
            "case": f"SDXL base+refiner {SIZE}x{SIZE}, {STEPS} steps, switch {SWITCH_AT}, Euler a, CFG {CFG}, batch {batch}",
            "atelier_s_per_image": statistics.median(ours) / batch, "atelier_peak_vram_gib": ours_peak,
            "atelier_steps_per_s": STEPS / statistics.median(ours),
            "diffusers_s_per_image": statistics.median(ref) / batch, "diffusers_peak_vram_gib": ref_peak,
            "ratio_atelier_over_diffusers": statistics.median(ours) / statistics.median(ref),
            "atelier_runs_s": ours, "diffusers_runs_s": ref,
        }
        result["cases"].append(case)
    (out / "sdxl_refiner.json").write_text(json.dumps(result, indent=2))
    print(f"device: {result['device']}  torch {result['torch']}  SDXL base load {result['load_seconds_sdxl_base']:.1f}s")
    print(f"{'batch':>5} {'atelier s/img':>14} {'diffusers s/img':>16} {'ratio':>6} {'peak GiB ours/ref':>18}")
    for c in result["cases"]:
        print(f"{c['case'].rsplit(' ', 1)[-1]:>5} {c['atelier_s_per_image']:>14.3f} {c['diffusers_s_per_image']:>16.3f} "
              f"{c['ratio_atelier_over_diffusers']:>6.2f} {c['atelier_peak_vram_gib']:>8.1f}/{c['diffusers_peak_vram_gib']:.1f}")


if __name__ == "__main__":
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    main()
