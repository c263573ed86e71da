"""Issue 10's benchmark: Atelier beside plain diffusers on one card, in one run; prints a table and writes JSON.

Cases: SDXL base + refiner (1024x1024, 30 steps, switch at 0.6, Euler a, CFG 7) batch 1 and 4; SDXL base alone;
SD1.5 512x512, 20 steps, batch 1 and 8. Full-size random-weight checkpoints in the original single-file layout
(speed does not depend on the weights' values), loaded through Atelier's model manager; the diffusers pipelines
run over the same modules in fp16 with their default attention. Then the UNets are compiled in place
(modules.sd_unet_compile, Atelier's fast path): both engines run again over the compiled UNets, which is
"diffusers + torch.compile". Also: checkpoint load time (file in page cache -> ready on the GPU) and the cost of
switching between two checkpoints.   python bench/speed.py --out DIR [--cases ...] [--no-compile]
Cold start and warm restart to the first image: bench/start_to_image.py.
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
sys.path.insert(0, str(Path(__file__).resolve().parent))

from diffusers import EulerAncestralDiscreteScheduler  # noqa: E402
from sdxl_refiner import NEGATIVE, PROMPT, write_checkpoint  # noqa: E402

from modules import paths_internal, processing, sd_models, sd_models_config, sd_unet_compile  # noqa: E402
from modules.shared_cmd_options import cmd_opts  # noqa: E402
from modules.shared_options import opts  # noqa: E402

CHECKPOINTS = {"base": ("xl_base", "sdxl_base_random"), "refiner": ("xl_refiner", "sdxl_refiner_random"),
               "sd15": ("v1", "sd15_random")}
CASES = {  # name: (model, refiner?, size, steps, batch)
    "sdxl_refiner_b1": ("base", True, 1024, 30, 1),
    "sdxl_refiner_b4": ("base", True, 1024, 30, 4),
    "sdxl_base_b1": ("base", False, 1024, 30, 1),
    "sd15_b1": ("sd15", False, 512, 20, 1),
    "sd15_b8": ("sd15", False, 512, 20, 8),
}
SWITCH_AT, CFG = 0.6, 7.0


def timed(fn, runs: int) -> tuple[float, float, float]:
    """(median seconds, first-run seconds, peak VRAM GiB) of fn."""
    torch.cuda.synchronize()
    torch.cuda.reset_peak_memory_stats()
    started = time.perf_counter()
    fn()
    torch.cuda.synchronize()
    first = time.perf_counter() - started
    times = []
    for _ in range(runs):
        started = time.perf_counter()
        fn()
        torch.cuda.synchronize()
        times.append(time.perf_counter() - started)
    return statistics.median(times), first, torch.cuda.max_memory_allocated() / 2**30


def atelier_job(model_name: str, refiner: bool, size: int, steps: int, batch: int):
    def run():
        p = processing.StableDiffusionProcessingTxt2Img(
            prompt=PROMPT, negative_prompt=NEGATIVE, steps=steps, width=size, height=size, sampler_name="Euler a",
            cfg_scale=CFG, seed=1, batch_size=batch, override_settings={"sd_model_checkpoint": CHECKPOINTS[model_name][1]},
            refiner_checkpoint=CHECKPOINTS["refiner"][1] if refiner else None, refiner_switch_at=SWITCH_AT,
            do_not_save_samples=True, do_not_save_grid=True)
        return processing.process_images(p).images
    return run


def diffusers_job(models: dict, model_name: str, refiner: bool, size: int, steps: int, batch: int):
    from diffusers import StableDiffusionPipeline, StableDiffusionXLImg2ImgPipeline, StableDiffusionXLPipeline

    model = models[model_name]
    family = model.family.name
    scheduler = EulerAncestralDiscreteScheduler.from_config(sd_models_config.skeleton(family, "scheduler"))
    common = {"negative_prompt": NEGATIVE, "num_inference_steps": steps, "guidance_scale": CFG, "num_images_per_prompt": batch}
    if family == "v1":
        pipe = StableDiffusionPipeline(vae=model.vae, text_encoder=model.text_encoders["text_encoder"],
                                       tokenizer=model.tokenizers["tokenizer"], unet=model.unet, scheduler=scheduler,
                                       safety_checker=None, feature_extractor=None, requires_safety_checker=False)
        pipe.set_progress_bar_config(disable=True)
        return lambda: pipe(PROMPT, height=size, width=size, generator=torch.Generator("cuda").manual_seed(1), **common).images
    pipe = StableDiffusionXLPipeline(
        vae=model.vae, text_encoder=model.text_encoders["text_encoder"], text_encoder_2=model.text_encoders["text_encoder_2"],
        tokenizer=model.tokenizers["tokenizer"], tokenizer_2=model.tokenizers["tokenizer_2"], unet=model.unet, scheduler=scheduler)
    pipe.set_progress_bar_config(disable=True)
    if not refiner:
        return lambda: pipe(PROMPT, height=size, width=size, generator=torch.Generator("cuda").manual_seed(1), **common).images
    ref_model = models["refiner"]
    ref = StableDiffusionXLImg2ImgPipeline(
        vae=model.vae, text_encoder=None, text_encoder_2=ref_model.text_encoders["text_encoder_2"], tokenizer=None,
        tokenizer_2=ref_model.tokenizers["tokenizer_2"], unet=ref_model.unet, scheduler=scheduler,
        requires_aesthetics_score=True, force_zeros_for_empty_prompt=False)
    ref.set_progress_bar_config(disable=True)

    def run():
        g = torch.Generator("cuda").manual_seed(1)
        latents = pipe(PROMPT, height=size, width=size, denoising_end=SWITCH_AT, generator=g, output_type="latent",
                       **common).images
        return ref(PROMPT, image=latents, denoising_start=SWITCH_AT, generator=g, **common).images
    return run


def load_all(work: Path) -> tuple[dict, dict]:
    folder = work / "models" / "Stable-diffusion"
    folder.mkdir(parents=True, exist_ok=True)
    for family, name in CHECKPOINTS.values():
        path = folder / f"{name}.safetensors"
        if not path.exists():
            write_checkpoint(family, path)
            torch.cuda.empty_cache()
    paths_internal.configure(str(work), str(work / "models"))
    cmd_opts.no_hashing = True
    cmd_opts.no_torch_compile = True  # the eager phase first; main() compiles the UNets in place afterwards
    opts.set("sd_checkpoints_limit", 3)
    opts.set("samples_save", False)
    sd_models.list_models(cmd_opts)
    manager = processing.setup_model_manager(cmd_opts, work / "cache")
    timings, models = {}, {}
    for key, (_, name) in CHECKPOINTS.items():
        for path in folder.glob(f"{name}.safetensors"):  # into the page cache: the load is then RAM -> GPU
            path.read_bytes()
        torch.cuda.synchronize()
        started = time.perf_counter()
        models[key] = manager.get(sd_models.get_closet_checkpoint_match(name))
        torch.cuda.synchronize()
        timings[f"load_s_{key}"] = time.perf_counter() - started
    manager.limit = 1  # switching: with the others evicted, each switch is a real load from the page cache
    for key in ("sd15", "base"):
        manager.loaded.clear()
        manager.current = None
        torch.cuda.empty_cache()
        started = time.perf_counter()
        models[key] = manager.get(sd_models.get_closet_checkpoint_match(CHECKPOINTS[key][1]))
        torch.cuda.synchronize()
        timings[f"switch_to_{key}_s"] = time.perf_counter() - started
    manager.limit = 3
    for key in ("sd15", "refiner", "base"):
        models[key] = manager.get(sd_models.get_closet_checkpoint_match(CHECKPOINTS[key][1]))
    return models, timings


def run_cases(models: dict, names: list[str], runs: int, label: str, results: list, save) -> None:
    for name in names:
        model_name, refiner, size, steps, batch = CASES[name]
        row = {"case": name, "variant": label, "size": size, "steps": steps, "batch": batch}
        for engine, job in (("atelier", atelier_job(model_name, refiner, size, steps, batch)),
                            ("diffusers", diffusers_job(models, model_name, refiner, size, steps, batch))):
            seconds, first, peak = timed(job, runs)
            row[engine] = {"s_per_image": seconds / batch, "steps_per_s": steps / seconds, "first_run_s": first,
                           "peak_vram_gib": peak}
            torch.cuda.empty_cache()
        row["ratio_atelier_over_diffusers"] = row["atelier"]["s_per_image"] / row["diffusers"]["s_per_image"]
        results.append(row)
        save()
        print(f"{label:>9} {name:>16}  atelier {row['atelier']['s_per_image']:6.3f} s/img "
              f"({row['atelier']['peak_vram_gib']:5.1f} GiB, first {row['atelier']['first_run_s']:6.1f} s)  "
              f"diffusers {row['diffusers']['s_per_image']:6.3f} s/img ({row['diffusers']['peak_vram_gib']:5.1f} GiB)  "
              f"ratio {row['ratio_atelier_over_diffusers']:.2f}", flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--out", default="bench/out")
    parser.add_argument("--work", default="/tmp/atelier-bench")
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--cases", default=",".join(CASES), help="comma-separated, from: " + ", ".join(CASES))
    parser.add_argument("--compiled-cases", default="sdxl_refiner_b1,sdxl_base_b1,sd15_b1",
                        help="cases run again over compiled UNets (each new batch size compiles again)")
    parser.add_argument("--no-compile", action="store_true")
    args = parser.parse_args()
    out, work = Path(args.out), Path(args.work)
    out.mkdir(parents=True, exist_ok=True)
    sd_unet_compile.configure_cache(str(work / "cache"))
    models, timings = load_all(work)
    result = {"device": torch.cuda.get_device_name(), "torch": torch.__version__, **timings, "cases": []}

    def save():
        (out / "speed.json").write_text(json.dumps(result, indent=2))
    print(json.dumps(timings), flush=True)
    save()
    run_cases(models, args.cases.split(","), args.runs, "eager", result["cases"], save)
    if not args.no_compile:
        for key in ("base", "refiner", "sd15"):
            sd_unet_compile.compile_unet(models[key].unet)
        run_cases(models, [c for c in args.compiled_cases.split(",") if c], args.runs, "compiled", result["cases"], save)


if __name__ == "__main__":
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    main()
