"""Model families behind one interface (ARCHITECTURE "Model families").

Two kinds: UNet models (SD1/SD2/SDXL: modules.sd_models_config.ModelFamily, loaded by sd_models.build_model) and
flow-matching transformers (here: Flux.1, Chroma, SD 3.5, Z-Image, Qwen-Image). A family object answers the same questions for both kinds:

- `name`, `label`, `in_channels`, `prediction_type` ("epsilon" | "v_prediction" | "flow"), `is_sdxl`,
  `is_inpainting`, `is_flow`;
and a flow family also says
- whether its transformer takes distilled guidance (`distilled_guidance`: Flux.1 dev) or runs real CFG only,
- its `default_cfg_scale` when it has one (Flux.1: 1),
- how its schedule is shifted (`shift`, `uses_dynamic_shift`, `train_spacing`: see flow_sampling.get_sigmas).
What differs by family beyond those attributes goes through this module's functions: `load` (which parts it needs
and where they come from), `prompt_encoder` (how prompts become conditioning) and `denoise` (one model evaluation
returning the denoised latent, so the shared samplers, CFG and callbacks drive it like a UNet); `vae_decode` /
`vae_encode` (sampler latents to and from the VAE: a scaling factor and shift, or Qwen-Image's per-channel
normalisation) and `rescale_cfg` (a family's change to the CFG result: Qwen-Image's norm rescaling).

`detect_flow_family(sd)` tells a flow family from a state dict's keys, or None (then the SD loader decides).
"""
from __future__ import annotations

import safetensors
import torch

from modules.model_families import (
    chroma,
    flow_sampling,
    flux,
    flux_loader,
    flux_prompts,
    qwen_image,
    qwen_prompts,
    sd3,
    sd3_loader,
    sd3_prompts,
    z_image,
)

DEFAULT_CFG_SCALE = 7.0  # A1111's, for every family without its own
_LOAD = {"flux": flux_loader.load, "chroma": chroma.load, "sd3": sd3_loader.load, "z_image": z_image.load,
         "qwen_image": qwen_image.load}
_PROMPTS = {"flux": flux_prompts.FluxPromptEncoder, "chroma": flux_prompts.ChromaPromptEncoder,
            "sd3": sd3_prompts.SD3PromptEncoder, "z_image": qwen_prompts.ZImagePromptEncoder,
            "qwen_image": qwen_prompts.QwenImagePromptEncoder}
_DENOISE = {"flux": flow_sampling.denoise, "chroma": flow_sampling.denoise_chroma, "sd3": flow_sampling.denoise_sd3,
            "z_image": z_image.denoise, "qwen_image": qwen_image.denoise}


def detect_flow_family(sd: dict):
    """The flow-matching family of a single-file state dict, or None when it is not one this app knows."""
    return flux.detect(sd) or chroma.detect(sd) or sd3.detect(sd) or z_image.detect(sd) or qwen_image.detect(sd)


def family_of_file(filename: str):
    """A checkpoint file's flow family from its safetensors header alone (names and shapes, no tensor read); None for
    UNet families, unknown variants and other formats."""
    if not str(filename).lower().endswith(".safetensors"):
        return None
    try:
        with safetensors.safe_open(str(filename), framework="pt") as f:
            sd = {k: torch.empty(f.get_slice(k).get_shape(), device="meta") for k in f.keys()}
        return detect_flow_family(sd)
    except (OSError, ValueError, safetensors.SafetensorError):  # unreadable, or a variant detect refuses
        return None


def default_cfg_scale(family) -> float:
    """The CFG scale of a job that gives none (an API request without cfg_scale; the UI's slider on model change): the
    family's own (Flux.1: 1, real CFG off, as Forge) or A1111's 7, for UNet and flow families alike."""
    return getattr(family, "default_cfg_scale", DEFAULT_CFG_SCALE)


def load(family, sd: dict, models_dir, source: str, preferred: list[str] = ()):
    """(transformer, vae, text encoders, tokenizers other than CLIP's, the separate module files used)."""
    return _LOAD[family.name](sd, family, models_dir, source, preferred)


def prompt_encoder(model, should_stop=None):
    return _PROMPTS[model.family.name](model, should_stop=should_stop)


def denoise(model, x, sigma, cond, guidance: float | None):
    return _DENOISE[model.family.name](model, x, sigma, cond, guidance)


def _scaled_decode(vae, latents):
    scaled = latents / vae.config.scaling_factor
    if getattr(vae.config, "shift_factor", None):  # Flux's VAE centres its latents
        scaled = scaled + vae.config.shift_factor
    return vae.decode(scaled.to(next(vae.parameters()).dtype)).sample


def _scaled_encode(vae, pixels):
    latent = vae.encode(pixels).latent_dist.mode()
    if getattr(vae.config, "shift_factor", None):  # Flux's VAE centres its latents (decode adds it back)
        latent = latent - vae.config.shift_factor
    return (latent * vae.config.scaling_factor).float()


def _is_qwen_image(model) -> bool:
    return getattr(getattr(model, "family", None), "name", None) == "qwen_image"  # stand-ins may have no family


def vae_decode(model, latents):
    """Sampler latents -> the VAE's image [B, 3, H, W] around -1..1 (in the VAE's dtype)."""
    return (qwen_image.vae_decode if _is_qwen_image(model) else _scaled_decode)(model.vae, latents)


def vae_encode(model, pixels):
    """The VAE's image [B, 3, H, W] around -1..1 -> float32 sampler latents (the distribution's mode)."""
    return (qwen_image.vae_encode if _is_qwen_image(model) else _scaled_encode)(model.vae, pixels)


def rescale_cfg(model, x, cond_denoised, denoised):
    """The CFG result as the family's pipeline leaves it; x: the latents, cond_denoised: the prompt's own denoised."""
    return qwen_image.rescale_cfg(x, cond_denoised, denoised) if _is_qwen_image(model) else denoised
