"""Issue 20's SD 3.5 benchmark: SD 3.5 Large 1024x1024, 28 steps, Euler, CFG 4.5 with an empty negative prompt, through
Atelier beside diffusers' StableDiffusion3Pipeline in bf16 over the same modules, on one card in one run; seconds per
image and peak VRAM.

Full-size random weights made on the GPU in bf16 (speed does not depend on the values; nothing is downloaded): the
transformer written in Stability's layout (sd3.5_large.safetensors, `model.diffusion_model.joint_blocks.*`), CLIP-L,
CLIP-G, T5-XXL and the VAE as separate files, loaded through Atelier's model manager as a user's files are. The T5
tokenizer is the test fixture's small character-level tokenizer.json; both engines pad the prompt to 256 T5 tokens
(StableDiffusion3Pipeline's max_sequence_length), as with the real one.
    python bench/sd3.py [--out DIR]     (JSON printed, and written to DIR or $OUT when set)
    python bench/sd3.py --tiny           (the same code on the CPU with the tests' tiny sizes: a smoke test)
"""
from __future__ import annotations

import os
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))

import flow_bench  # noqa: E402  (bench/, beside this file)
from diffusers import AutoencoderKL, FlowMatchEulerDiscreteScheduler, SD3Transformer2DModel, StableDiffusion3Pipeline  # noqa: E402, E501
from transformers import CLIPTextConfig, CLIPTextModelWithProjection, T5Config, T5EncoderModel  # noqa: E402

from modules import devices, processing  # noqa: E402
from modules.model_families import sd3_prompts  # noqa: E402
from modules.sd_models_config import skeleton  # noqa: E402
from tests.fixtures import sd3 as fixture  # noqa: E402

PROMPT = ("a photograph of an old lighthouse on a rocky cliff at dusk, waves crashing below, warm light in the "
          "windows, dramatic clouds, 35mm film, highly detailed")
CHECKPOINT = "sd3.5_large-random"
FULL = dict(size=1024, steps=28, cfg=4.5)
TINY = dict(size=64, steps=4, cfg=4.5)


def config(family: str, component: str) -> dict:
    cfg = skeleton(family, component)
    cfg.pop("_class_name", None)
    cfg.pop("architectures", None)
    return cfg


def random_parts(device: torch.device, dtype: torch.dtype, tiny: bool) -> fixture.TinySD3:
    """SD 3.5 Large's five parts at their released sizes (the skeletons in configs/), random, made on `device` in
    `dtype`; tiny: the tests' SD 3.5 Large fixture."""
    if tiny:
        return fixture.make(seed=0, medium=False)
    with flow_bench.made_on(device, dtype):
        transformer = SD3Transformer2DModel.from_config(config("sd3", "transformer"))
        clip_l = CLIPTextModelWithProjection(CLIPTextConfig(**config("sd3", "text_encoder")))
        clip_g = CLIPTextModelWithProjection(CLIPTextConfig(**config("sd3", "text_encoder_2")))
        t5 = T5EncoderModel(T5Config(**config("flux", "text_encoder_2")))  # T5-XXL v1.1, as Flux.1's
        vae = AutoencoderKL.from_config(config("sd3", "vae"))
    return fixture.TinySD3(transformer, clip_l, clip_g, t5, vae, {})


def write_files(models_dir: Path, device: torch.device, dtype: torch.dtype, tiny: bool) -> None:
    """models/Stable-diffusion/sd3.5_large-random.safetensors (Stability's layout) + clip_l, clip_g, t5xxl, the VAE and
    the T5 tokenizer."""
    target = models_dir / "Stable-diffusion" / f"{CHECKPOINT}.safetensors"
    if target.exists():
        return
    parts = random_parts(device, dtype, tiny)
    for module in (parts.transformer, parts.clip_l, parts.clip_g, parts.t5, parts.vae):
        module.to("cpu")  # the conversion and the writer copy tensors: RAM has room, the card less so
    parts.transformer_sai = fixture.transformer_to_sai(parts.transformer)
    fixture.write_parts(models_dir, parts)
    fixture.write_transformer_only(target, parts)
    del parts
    devices.torch_gc()


def atelier_job(case: dict):
    def run():
        p = processing.StableDiffusionProcessingTxt2Img(
            prompt=PROMPT, negative_prompt="", steps=case["steps"], width=case["size"], height=case["size"],
            sampler_name="Euler", scheduler="Simple", cfg_scale=case["cfg"], seed=1, do_not_save_samples=True,
            do_not_save_grid=True)
        return processing.process_images(p).images
    return run


def diffusers_job(model, case: dict, device: torch.device):
    pipe = StableDiffusion3Pipeline(
        scheduler=FlowMatchEulerDiscreteScheduler.from_config(skeleton("sd3", "scheduler")), vae=model.vae,
        text_encoder=model.text_encoders["text_encoder"], tokenizer=model.tokenizers["tokenizer"],
        text_encoder_2=model.text_encoders["text_encoder_2"], tokenizer_2=model.tokenizers["tokenizer_2"],
        text_encoder_3=model.text_encoders["text_encoder_3"], tokenizer_3=model.tokenizers["tokenizer_3"],
        transformer=model.unet)
    pipe.set_progress_bar_config(disable=True)
    return lambda: pipe(PROMPT, negative_prompt="", height=case["size"], width=case["size"],
                        num_inference_steps=case["steps"], guidance_scale=case["cfg"],
                        max_sequence_length=sd3_prompts.T5_MAX_LENGTH,
                        generator=torch.Generator(device).manual_seed(1)).images


def main() -> None:
    args = flow_bench.parse_args(__doc__, "/tmp/atelier-bench-sd3")
    case = TINY if args.tiny else FULL
    started = time.perf_counter()
    write_files(args.work / "models", args.device, args.dtype, args.tiny)
    result = {**flow_bench.header(args), **case, "write_files_s": time.perf_counter() - started}
    model, result["load_s"] = flow_bench.load(args, CHECKPOINT)
    result["family"] = model.family.label
    result["parameters_b"] = flow_bench.parameters_b({
        "transformer": model.unet, "t5": model.text_encoders["text_encoder_3"],
        "clip_g": model.text_encoders["text_encoder_2"], "clip_l": model.text_encoders["text_encoder"], "vae": model.vae})
    flow_bench.compare(result, atelier_job(case), diffusers_job(model, case, args.device), args)
    flow_bench.report(result, args, "sd3")


if __name__ == "__main__":
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    main()
