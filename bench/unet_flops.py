"""How much matrix work the benchmark's jobs are: FLOPs of one UNet evaluation (CFG batch of 2) for the SDXL base,
the SDXL refiner and SD1.5, of one VAE decode, and of each case of bench/speed.py, counted by torch's FlopCounterMode
on the meta device (no GPU, no weights). With the measured time of a job this gives the achieved TFLOP/s, and the
time the job would take at a card's peak.   python bench/unet_flops.py [--out DIR] [--peak-tflops 989]
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import torch
from torch.utils.flop_counter import FlopCounterMode

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from diffusers import AutoencoderKL, UNet2DConditionModel  # noqa: E402

from modules import sd_models_config  # noqa: E402

# family -> (latent size of the case, context width, pooled width, time-id count)
UNETS = {"xl_base": (128, 2048, 1280, 6), "xl_refiner": (128, 1280, 1280, 5), "v1": (64, 768, None, None)}
# bench/speed.py's cases: (UNet evaluations per family per image, VAE family and latent size)
STEPS, SWITCH_AT = 30, 0.6
CASES = {
    "sdxl_refiner": ({"xl_base": round(STEPS * SWITCH_AT), "xl_refiner": STEPS - round(STEPS * SWITCH_AT)}, ("xl_base", 128)),
    "sdxl_base": ({"xl_base": STEPS}, ("xl_base", 128)),
    "sd15": ({"v1": 20}, ("v1", 64)),
}


def counted(call) -> float:
    with FlopCounterMode(display=False) as counter, torch.no_grad():
        call()
    return counter.get_total_flops() / 1e12


def unet_tflop(family: str) -> float:
    latent, context, pooled, time_ids = UNETS[family]
    with torch.device("meta"):
        unet = UNet2DConditionModel.from_config(sd_models_config.skeleton(family, "unet")).half()
        x = torch.empty(2, 4, latent, latent, dtype=torch.half)
        t = torch.full((2,), 500.0, dtype=torch.half)
        c = torch.empty(2, 77, context, dtype=torch.half)
        added = {"text_embeds": torch.empty(2, pooled, dtype=torch.half),
                 "time_ids": torch.empty(2, time_ids, dtype=torch.half)} if pooled else None
    return counted(lambda: unet(x, t, encoder_hidden_states=c, added_cond_kwargs=added, return_dict=False))


def vae_decode_tflop(family: str, latent: int) -> float:
    with torch.device("meta"):
        vae = AutoencoderKL.from_config(sd_models_config.skeleton(family, "vae")).half()
        z = torch.empty(1, 4, latent, latent, dtype=torch.half)
    return counted(lambda: vae.decode(z))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--out", default="bench/out")
    parser.add_argument("--peak-tflops", type=float, default=989.0, help="the card's dense fp16 peak (H100/H200 SXM: 989)")
    args = parser.parse_args()
    result = {"unet_eval_tflop": {family: unet_tflop(family) for family in UNETS}, "cases": {}}
    for case, (evaluations, (vae_family, latent)) in CASES.items():
        decode = vae_decode_tflop(vae_family, latent)
        total = sum(result["unet_eval_tflop"][f] * n for f, n in evaluations.items()) + decode
        result["cases"][case] = {"unet_evaluations": evaluations, "vae_decode_tflop": decode, "tflop_per_image": total,
                                 "seconds_at_peak": total / args.peak_tflops}
    result["peak_tflops"] = args.peak_tflops
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "unet_flops.json").write_text(json.dumps(result, indent=2))
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
