"""Issue 20's Flux.1 benchmark: Flux.1-dev 1024x1024, 28 steps, Euler, distilled CFG 3.5, through Atelier beside
diffusers' FluxPipeline in bf16 over the same modules, on one card in one run; seconds per image and peak VRAM.

Full-size random weights made on the GPU in bf16 (speed does not depend on the values; nothing is downloaded): the
transformer written in BFL's layout (flux1-dev.safetensors), CLIP-L, T5-XXL and the VAE as separate files, loaded
through Atelier's model manager as a user's files are. The T5 tokenizer is the test fixture's small character-level
tokenizer.json; both engines pad the prompt to 512 T5 tokens (FluxPipeline's max_sequence_length), as with the real one.
    python bench/flux.py [--out DIR]     (JSON printed, and written to DIR or $OUT when set)
    python bench/flux.py --tiny           (the same code on the CPU with tiny sizes: a smoke test)
"""
from __future__ import annotations

import os
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))

import flow_bench  # noqa: E402  (bench/, beside this file)
from diffusers import AutoencoderKL, FlowMatchEulerDiscreteScheduler, FluxPipeline, FluxTransformer2DModel  # noqa: E402
from transformers import CLIPTextConfig, CLIPTextModel, T5Config, T5EncoderModel  # noqa: E402

from modules import devices, processing  # noqa: E402
from modules.model_families import flux as flux_family  # noqa: E402
from modules.sd_models_config import skeleton  # noqa: E402
from tests.fixtures import flux as fixture  # noqa: E402

PROMPT = ("a photograph of an old lighthouse on a rocky cliff at dusk, waves crashing below, warm light in the "
          "windows, dramatic clouds, 35mm film, highly detailed")
CHECKPOINT = "flux1-dev-random"
FULL = dict(size=1024, steps=28, guidance=3.5)
TINY = dict(size=64, steps=4, guidance=3.5)


def config(component: str, tiny: bool) -> dict:
    cfg = skeleton("v1" if component == "text_encoder" else "flux", component)  # CLIP-L: SD1's encoder
    cfg.pop("_class_name", None)
    cfg.pop("architectures", None)
    if not tiny:
        return cfg
    shrink = {"transformer": dict(num_layers=1, num_single_layers=2, attention_head_dim=fixture.HEAD_DIM,
                                  num_attention_heads=fixture.HEADS, joint_attention_dim=fixture.T5_WIDTH,
                                  axes_dims_rope=flux_family.rope_axes(fixture.HEAD_DIM)),
              "text_encoder_2": dict(d_model=fixture.T5_WIDTH, d_kv=8, d_ff=64, num_layers=2, num_decoder_layers=2,
                                     num_heads=4, relative_attention_num_buckets=8, vocab_size=64),
              "vae": dict(block_out_channels=[32] * 4, layers_per_block=1),
              "text_encoder": dict(hidden_size=768, intermediate_size=64, num_hidden_layers=2, num_attention_heads=12)}
    cfg.update(shrink[component])
    return cfg


def random_parts(device: torch.device, dtype: torch.dtype, tiny: bool) -> fixture.TinyFlux:
    """Flux.1-dev's four parts at their released sizes (or tiny ones), random, made on `device` in `dtype`."""
    with flow_bench.made_on(device, dtype):
        transformer = FluxTransformer2DModel.from_config(config("transformer", tiny))
        clip = CLIPTextModel(CLIPTextConfig(**config("text_encoder", tiny)))
        t5 = T5EncoderModel(T5Config(**config("text_encoder_2", tiny)))
        vae = AutoencoderKL.from_config(config("vae", tiny))
    return fixture.TinyFlux(transformer, clip, t5, vae, {})


def write_files(models_dir: Path, device: torch.device, dtype: torch.dtype, tiny: bool) -> None:
    """models/Stable-diffusion/flux1-dev-random.safetensors (BFL layout) + clip_l, t5xxl, ae, T5 tokenizer."""
    target = models_dir / "Stable-diffusion" / f"{CHECKPOINT}.safetensors"
    if target.exists():
        return
    parts = random_parts(device, dtype, tiny)
    for module in (parts.transformer, parts.clip_l, parts.t5, parts.vae):
        module.to("cpu")  # the BFL conversion and the writer copy tensors: RAM has room, the card less so
    parts.transformer_bfl = fixture.transformer_to_bfl(parts.transformer)
    fixture.write_parts(models_dir, parts)
    fixture.write_transformer_only(target, parts)
    del parts
    devices.torch_gc()


def atelier_job(case: dict):
    def run():
        p = processing.StableDiffusionProcessingTxt2Img(
            prompt=PROMPT, negative_prompt="", steps=case["steps"], width=case["size"], height=case["size"],
            sampler_name="Euler", scheduler="Simple", cfg_scale=1.0, distilled_cfg_scale=case["guidance"], seed=1,
            do_not_save_samples=True, do_not_save_grid=True)
        return processing.process_images(p).images
    return run


def diffusers_job(model, case: dict, device: torch.device):
    pipe = FluxPipeline(scheduler=FlowMatchEulerDiscreteScheduler.from_config(skeleton("flux", "scheduler")),
                        vae=model.vae, text_encoder=model.text_encoders["text_encoder"],
                        tokenizer=model.tokenizers["tokenizer"], text_encoder_2=model.text_encoders["text_encoder_2"],
                        tokenizer_2=model.tokenizers["tokenizer_2"], transformer=model.unet)
    pipe.set_progress_bar_config(disable=True)
    return lambda: pipe(PROMPT, height=case["size"], width=case["size"], num_inference_steps=case["steps"],
                        guidance_scale=case["guidance"], max_sequence_length=512,
                        generator=torch.Generator(device).manual_seed(1)).images


def main() -> None:
    args = flow_bench.parse_args(__doc__, "/tmp/atelier-bench-flux")
    case = TINY if args.tiny else FULL
    started = time.perf_counter()
    write_files(args.work / "models", args.device, args.dtype, args.tiny)
    result = {**flow_bench.header(args), **case, "write_files_s": time.perf_counter() - started}
    model, result["load_s"] = flow_bench.load(args, CHECKPOINT)
    result["parameters_b"] = flow_bench.parameters_b({"transformer": model.unet, "t5": model.text_encoders["text_encoder_2"],
                                                      "clip_l": model.text_encoders["text_encoder"], "vae": model.vae})
    flow_bench.compare(result, atelier_job(case), diffusers_job(model, case, args.device), args)
    flow_bench.report(result, args, "flux")


if __name__ == "__main__":
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    main()
