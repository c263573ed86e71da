"""Issue 19's benchmark: SDXL 1024x1024, 30 steps (Euler a, CFG 7) with one ControlNet, Atelier beside diffusers'
StableDiffusionXLControlNetPipeline on the same card in one run: seconds per image and peak VRAM; prints JSON and
writes it to $OUT/controlnet.json when OUT is set (or --out).

Full-size random weights in the original single-file layout, made here (speed does not depend on the values): the
SDXL checkpoint of bench/sdxl_refiner.py and a ControlNet copied from its UNet's encoder as the released SDXL
ControlNets are (`control_model.*` keys). Both engines run over the same modules: the pipeline gets our loaded UNet,
VAE, text encoders and the ControlNet our loader built from the file.
    python bench/controlnet.py [--runs 3] [--out DIR]
    python bench/controlnet.py --tiny      # CPU smoke test: tiny SDXL + tiny ControlNet, 64x64, 2 steps
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from diffusers import ControlNetModel, EulerAncestralDiscreteScheduler, UNet2DConditionModel  # noqa: E402
from safetensors.torch import save_file  # noqa: E402
from sdxl_refiner import NEGATIVE, PROMPT, write_checkpoint  # noqa: E402

from modules import devices, ldm_layout, paths_internal, processing, sd_models, sd_models_config  # noqa: E402
from modules.controlnet import apply  # noqa: E402
from modules.controlnet.units import ControlNetUnit  # noqa: E402
from modules.shared_cmd_options import cmd_opts  # noqa: E402
from modules.shared_options import opts  # noqa: E402

CFG = 7.0
CHECKPOINT, CONTROLNET = "sdxl_base_random", "controlnet_sdxl_random"


def write_controlnet(path: Path) -> None:
    """A full-size SDXL ControlNet (the base UNet's encoder copied, the released hint encoder) in the original layout."""
    torch.manual_seed(0)
    with torch.device("cuda"):
        unet = UNet2DConditionModel.from_config(sd_models_config.skeleton("xl_base", "unet")).half()
        controlnet = ControlNetModel.from_unet(unet).half()
        del unet
        sd = ldm_layout.controlnet_to_ldm(controlnet)
    save_file({k: v.contiguous().cpu() for k, v in sd.items()}, str(path))


def write_models(work: Path, tiny: bool) -> None:
    ckpt = work / "models" / "Stable-diffusion" / f"{CHECKPOINT}.safetensors"
    cn = work / "models" / "ControlNet" / f"{CONTROLNET}.safetensors"
    for path in (ckpt, cn):
        path.parent.mkdir(parents=True, exist_ok=True)
    if tiny:
        from tests.fixtures import checkpoints, controlnets

        checkpoints.write_sdxl(ckpt)
        controlnets.write_controlnet(cn, "xl_base")
        return
    if not ckpt.exists():
        write_checkpoint("xl_base", ckpt)
        torch.cuda.empty_cache()
    if not cn.exists():
        write_controlnet(cn)
        torch.cuda.empty_cache()


def hint_image(size: int) -> np.ndarray:
    """White square outlines on black: a canny-like map, used as is (preprocessor "none") by both engines."""
    image = np.zeros((size, size, 3), dtype=np.uint8)
    for k in range(4, 16, 4):
        a, b = size * k // 32, size - size * k // 32
        image[a:b, a:a + 2] = image[a:b, b - 2:b] = image[a:a + 2, a:b] = image[b - 2:b, a:b] = 255
    return image


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def timed(fn, runs: int, device: torch.device) -> dict:
    """Median seconds of `runs` runs after one warm-up, the warm-up's seconds, peak VRAM (GiB, None on the CPU)."""
    if device.type == "cuda":
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats()
    sync(device)
    started = time.perf_counter()
    fn()
    sync(device)
    first = time.perf_counter() - started
    times = []
    for _ in range(runs):
        started = time.perf_counter()
        fn()
        sync(device)
        times.append(time.perf_counter() - started)
    peak = torch.cuda.max_memory_allocated() / 2**30 if device.type == "cuda" else None
    return {"s_per_image": statistics.median(times), "first_run_s": first, "peak_vram_gib": peak}


def atelier_job(work: Path, size: int, steps: int):
    unit = ControlNetUnit(module="none", model=CONTROLNET, image=hint_image(size), resize_mode="Just Resize")

    def run():
        p = processing.StableDiffusionProcessingTxt2Img(
            prompt=PROMPT, negative_prompt=NEGATIVE, steps=steps, width=size, height=size, sampler_name="Euler a",
            cfg_scale=CFG, seed=1, do_not_save_samples=True, do_not_save_grid=True)
        p.controlnet_units = apply.prepare([unit], size, size, None, [work / "models" / "ControlNet"], [])
        return processing.process_images(p).images
    return run


def diffusers_job(model, controlnet, size: int, steps: int):
    from diffusers import StableDiffusionXLControlNetPipeline
    from PIL import Image

    scheduler = EulerAncestralDiscreteScheduler.from_config(sd_models_config.skeleton("xl_base", "scheduler"))
    pipe = StableDiffusionXLControlNetPipeline(
        vae=model.vae, text_encoder=model.text_encoders["text_encoder"],
        text_encoder_2=model.text_encoders["text_encoder_2"], tokenizer=model.tokenizers["tokenizer"],
        tokenizer_2=model.tokenizers["tokenizer_2"], unet=model.unet, controlnet=controlnet, scheduler=scheduler)
    pipe.set_progress_bar_config(disable=True)
    image = Image.fromarray(hint_image(size))

    def run():
        generator = torch.Generator(model.device).manual_seed(1)
        return pipe(PROMPT, negative_prompt=NEGATIVE, image=image, height=size, width=size, num_inference_steps=steps,
                    guidance_scale=CFG, generator=generator).images
    return run


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--work", default="/tmp/atelier-bench-controlnet")
    parser.add_argument("--out", default=os.environ.get("OUT"))
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--tiny", action="store_true", help="CPU smoke test: tiny models, 64x64, 2 steps, 1 run")
    args = parser.parse_args()
    size, steps, runs = (64, 2, 1) if args.tiny else (1024, 30, args.runs)
    work = Path(args.work)
    write_models(work, args.tiny)
    paths_internal.configure(str(work), str(work / "models"))
    cmd_opts.no_hashing = True
    cmd_opts.no_torch_compile = True  # eager against eager: the pipeline runs the same modules uncompiled
    opts.set("samples_save", False)
    sd_models.list_models(cmd_opts)
    if args.tiny:
        plan = devices.DevicePlan(torch.device("cpu"), torch.float32, torch.float32)
        sd_models.model_manager = sd_models.ModelManager(plan, work / "cache", hashing=False)
    else:
        processing.setup_model_manager(cmd_opts, work / "cache")
    model = sd_models.model_manager.get(sd_models.get_closet_checkpoint_match(CHECKPOINT))
    opts.set("sd_model_checkpoint", model.sd_checkpoint_info.title)
    device = model.device

    atelier = atelier_job(work, size, steps)
    atelier()  # loads the ControlNet into the manager's cache; the pipeline gets that very module
    controlnet = next(iter(sd_models.model_manager.auxiliary.values()))
    result = {"device": torch.cuda.get_device_name() if device.type == "cuda" else "cpu", "torch": torch.__version__,
              "size": size, "steps": steps, "sampler": "Euler a", "cfg": CFG, "runs": runs,
              "dtype": str(next(model.unet.parameters()).dtype)}
    result["atelier"] = timed(atelier, runs, device)
    result["diffusers"] = timed(diffusers_job(model, controlnet, size, steps), runs, device)
    result["ratio_atelier_over_diffusers"] = result["atelier"]["s_per_image"] / result["diffusers"]["s_per_image"]
    text = json.dumps(result, indent=2)
    print(text, flush=True)
    if args.out:
        Path(args.out).mkdir(parents=True, exist_ok=True)
        (Path(args.out) / "controlnet.json").write_text(text)


if __name__ == "__main__":
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    main()
