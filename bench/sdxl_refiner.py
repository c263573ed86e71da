"""What the GPU benchmarks share: full-size random-weight checkpoints in the original single-file layout (speed does
not depend on the weights' values), the random SDXL base loaded through our model manager, the SDXL base + refiner
job (1024x1024, 30 steps, switch at 0.6, Euler a, CFG 7) and its timing. The comparison with diffusers is
bench/speed.py.
"""
from __future__ import annotations

import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from diffusers import AutoencoderKL, UNet2DConditionModel  # noqa: E402
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
