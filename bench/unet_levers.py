"""Where the UNet's time goes, and what each speed lever buys: one CFG evaluation (batch 2; SDXL at 1024x1024, or
SD1.5 at 512x512 with --family v1).

Full-size random UNet in fp16 on the GPU. Variants: eager, channels_last, fused QKV, regional torch.compile
(each transformer and resnet block compiled once, reused by every block of the same shape), whole-UNet
torch.compile, whole-UNet torch.compile with CUDA graphs. Prints ms per evaluation and compile seconds, kernel
profiles of the variants named by --profile, and writes JSON.
    python bench/unet_levers.py --out DIR [--family xl_base|v1] [--variants a,b] [--profile a,b]
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

from diffusers import UNet2DConditionModel  # noqa: E402
from diffusers.models.attention import BasicTransformerBlock  # noqa: E402
from diffusers.models.resnet import Downsample2D, ResnetBlock2D, Upsample2D  # noqa: E402
from diffusers.models.transformers.transformer_2d import Transformer2DModel  # noqa: E402
from sdxl_refiner import timed  # noqa: E402  (the benchmarks' shared timing)

from modules import sd_models_config, sd_unet_compile  # noqa: E402

BATCH = 2
# family -> (latent size, context width, pooled width, time-id count)
SHAPES = {"xl_base": (128, 2048, 1280, 6), "v1": (64, 768, None, None)}


def make_unet(family: str) -> UNet2DConditionModel:
    torch.manual_seed(0)
    with torch.device("cuda"):
        return UNet2DConditionModel.from_config(sd_models_config.skeleton(family, "unet")).half().eval()


def inputs(family: str):
    latent, context_width, pooled, time_ids = SHAPES[family]
    g = torch.Generator("cuda").manual_seed(0)
    x = torch.randn(BATCH, 4, latent, latent, device="cuda", dtype=torch.float16, generator=g)
    t = torch.full((BATCH,), 500.0, device="cuda", dtype=torch.float16)
    context = torch.randn(BATCH, 77, context_width, device="cuda", dtype=torch.float16, generator=g)
    added = None if pooled is None else {
        "text_embeds": torch.randn(BATCH, pooled, device="cuda", dtype=torch.float16, generator=g),
        "time_ids": torch.tensor([[latent * 8, latent * 8, 0, 0, latent * 8, latent * 8][:time_ids]] * BATCH,
                                 device="cuda", dtype=torch.float16)}
    return x, t, context, added


def measure(unet, family: str, runs: int) -> tuple[float, float, torch.Tensor]:
    x, t, context, added = inputs(family)

    def call():
        with torch.inference_mode():  # cloned: CUDA-graph outputs are overwritten by the next replay
            return unet(x, t, encoder_hidden_states=context, added_cond_kwargs=added, return_dict=False)[0].clone()
    torch.cuda.synchronize()
    started = time.perf_counter()
    out = call()  # the first call: compilation, where the variant compiles
    torch.cuda.synchronize()
    first = time.perf_counter() - started
    for _ in range(2):
        call()
    times, _ = timed(call, runs)  # after its own warm-up call: three in all
    return statistics.median(times) * 1000, first, out.float()


def profile(unet, family: str) -> list[dict]:
    x, t, context, added = inputs(family)
    with torch.inference_mode(), torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CUDA]) as prof:
        unet(x, t, encoder_hidden_states=context, added_cond_kwargs=added, return_dict=False)
        torch.cuda.synchronize()
    rows = sorted(prof.key_averages(), key=lambda e: e.device_time_total, reverse=True)[:15]
    return [{"kernel": e.key[:90], "ms": e.device_time_total / 1000, "calls": e.count} for e in rows]


VARIANTS = {
    "eager": lambda unet: unet,
    "channels_last": lambda unet: unet.to(memory_format=torch.channels_last),
    "fused_qkv": lambda unet: (unet.fuse_qkv_projections(), unet)[1],
    "regional_compile": lambda unet: sd_unet_compile.compile_blocks(unet, (BasicTransformerBlock, ResnetBlock2D)),
    "regional_compile_channels_last": lambda unet: sd_unet_compile.compile_blocks(
        unet.to(memory_format=torch.channels_last), (BasicTransformerBlock, ResnetBlock2D)),
    "regional_transformers_channels_last": lambda unet: sd_unet_compile.compile_blocks(
        unet.to(memory_format=torch.channels_last), (Transformer2DModel, ResnetBlock2D, Downsample2D, Upsample2D)),
    "whole_compile": lambda unet: torch.compile(unet),
    "whole_compile_max_autotune_no_cudagraphs": lambda unet: torch.compile(unet, mode="max-autotune-no-cudagraphs"),
    "whole_compile_cudagraphs": lambda unet: torch.compile(unet, mode="reduce-overhead"),
    "whole_compile_channels_last": lambda unet: torch.compile(unet.to(memory_format=torch.channels_last)),
}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--out", default="bench/out")
    parser.add_argument("--runs", type=int, default=20)
    parser.add_argument("--variants", default="eager,channels_last,fused_qkv,regional_compile,whole_compile,whole_compile_cudagraphs")
    parser.add_argument("--family", choices=sorted(SHAPES), default="xl_base")
    parser.add_argument("--profile", default="", help="comma-separated variants to profile kernel by kernel")
    args = parser.parse_args()
    family = args.family
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    result = {"device": torch.cuda.get_device_name(), "torch": torch.__version__, "family": family, "batch": BATCH,
              "latent": SHAPES[family][0], "variants": {}}
    reference = None
    for name in args.variants.split(","):
        torch._dynamo.reset()
        unet = VARIANTS[name](make_unet(family))
        ms, first, output = measure(unet, family, args.runs)
        reference = output if reference is None else reference
        error = float((output - reference).abs().max() / reference.abs().max())
        result["variants"][name] = {"ms_per_eval": ms, "first_call_s": first, "max_rel_error_vs_first": error}
        print(f"{name:>42}: {ms:8.2f} ms/eval  first call {first:7.1f} s  max rel err {error:.2e}", flush=True)
        if name in args.profile.split(","):
            result[f"profile_{name}"] = profile(unet, family)
            for row in result[f"profile_{name}"]:
                print(f"    {row['ms']:8.2f} ms {row['calls']:5d}x  {row['kernel']}", flush=True)
        del unet
        torch.cuda.empty_cache()
    (out / f"unet_levers_{family}.json").write_text(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
