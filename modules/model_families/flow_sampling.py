"""Flow-matching sampling for the shared loop: schedules with the family's shift, latent packing, one model evaluation.

Flow models are trained on x_t = (1 - sigma) * x0 + sigma * noise and predict the velocity v = noise - x0. Given the
denoised estimate x0 = x - sigma * v, the k-diffusion ODE step dx/dsigma = (x - x0) / sigma equals v, so the shared
samplers (Euler, Heun, LMS, DPM++ 2M: ODE solvers over the sigma list) walk the flow unchanged; sigma 1 is pure noise,
so txt2img starts from the noise itself. Ancestral and SDE samplers add noise the variance-exploding way and are refused.
"""
from __future__ import annotations

import math

import numpy as np
import torch

from modules import quantized_weights, sd_models_config as cfgs

FLOW_SAMPLERS = ("Euler", "Heun", "LMS", "DPM++ 2M")
FLOW_SCHEDULERS = ("Automatic", "Simple", "simple", "automatic")


class FlowSigmas:
    """A flow model's noise range in the terms the loop asks of a model (ModelSigmas' interface): sigma in [0, 1],
    the timestep is sigma * 1000."""

    sigma_min = 0.0
    sigma_max = 1.0
    train_timesteps = 1000

    def __len__(self) -> int:
        return self.train_timesteps

    def sigma_to_t(self, sigma: torch.Tensor) -> torch.Tensor:
        return torch.as_tensor(sigma, dtype=torch.float32) * self.train_timesteps

    def t_to_sigma(self, t: torch.Tensor) -> torch.Tensor:
        return torch.as_tensor(t, dtype=torch.float32) / self.train_timesteps


def calculate_mu(image_seq_len: int, config: dict) -> float:
    """diffusers' FluxPipeline shift: linear in the packed image's token count between the base and max lengths."""
    m = (config["max_shift"] - config["base_shift"]) / (config["max_image_seq_len"] - config["base_image_seq_len"])
    return image_seq_len * m + config["base_shift"] - m * config["base_image_seq_len"]


def image_seq_len(width: int, height: int) -> int:
    return (height // 16) * (width // 16)  # 8x VAE, then 2x2 packing


def shifted(sigmas, shift: float):
    """A fixed timestep shift: sigma' = s*sigma / (1 + (s-1)*sigma)."""
    return shift * sigmas / (1 + (shift - 1) * sigmas)


def get_sigmas(family, sampler_name: str, scheduler: str | None, steps: int, width: int, height: int,
               shift: float | None = None) -> torch.Tensor:
    """steps + 1 sigmas from 1 to 0, as the family's diffusers pipeline makes them: Flux.1 and Chroma pass
    linspace(1, 1/steps) shifted by mu from the image size (dev, Chroma, Qwen-Image, which then stretches them to end
    at its shift_terminal) or not at all (schnell); SD 3.5 spaces its steps over the shifted training range and
    shifts them by its fixed 3.0. `shift` replaces the family's shift."""
    if sampler_name not in FLOW_SAMPLERS:
        raise ValueError(f"Sampler {sampler_name} does not apply to {family.label} (flow matching); "
                         f"use one of: {', '.join(FLOW_SAMPLERS)}")
    if scheduler not in (None, *FLOW_SCHEDULERS):
        raise ValueError(f"Schedule type {scheduler} does not apply to {family.label} yet; use Automatic or Simple")
    config = cfgs.skeleton(family.name, "scheduler")
    shift = family.shift if shift is None else shift
    end = shifted(1.0 / config["num_train_timesteps"], shift) if family.train_spacing else 1.0 / steps
    sigmas = np.linspace(1.0, end, steps)
    if shift is not None:
        sigmas = shifted(sigmas, shift)
    elif family.uses_dynamic_shift:
        mu = calculate_mu(image_seq_len(width, height), config)
        sigmas = math.exp(mu) / (math.exp(mu) + (1 / sigmas - 1))
    if config.get("shift_terminal"):  # Qwen-Image: stretched so that the last sigma is shift_terminal
        sigmas = 1 - (1 - sigmas) * (1 - config["shift_terminal"]) / (1 - sigmas[-1])
    return torch.cat([torch.from_numpy(sigmas).to(torch.float32), torch.zeros(1)])


def img2img_sigmas(sigmas: torch.Tensor, denoising_strength: float) -> torch.Tensor:
    """The tail of the schedule img2img and Hires. fix walk: FluxImg2ImgPipeline's cut, from step
    int(steps - strength * steps) on (strength 1: all of it, from pure noise), at least one step."""
    steps = len(sigmas) - 1
    start = min(int(max(steps - steps * denoising_strength, 0)), steps - 1)
    return sigmas[start:]


def noised(x0: torch.Tensor, noise: torch.Tensor, sigma: torch.Tensor) -> torch.Tensor:
    """A clean latent at noise level sigma on the flow: x_t = (1 - sigma) * x0 + sigma * noise (scale_noise)."""
    return (1 - sigma) * x0 + sigma * noise


def pack(latents: torch.Tensor) -> torch.Tensor:
    """[B, C, H, W] -> [B, H/2 * W/2, C*4]: 2x2 patches as tokens (diffusers' FluxPipeline._pack_latents)."""
    b, c, h, w = latents.shape
    x = latents.view(b, c, h // 2, 2, w // 2, 2).permute(0, 2, 4, 1, 3, 5)
    return x.reshape(b, (h // 2) * (w // 2), c * 4)


def unpack(tokens: torch.Tensor, height: int, width: int) -> torch.Tensor:
    """The inverse of pack for a latent of height x width cells."""
    b, _, d = tokens.shape
    x = tokens.view(b, height // 2, width // 2, d // 4, 2, 2).permute(0, 3, 1, 4, 2, 5)
    return x.reshape(b, d // 4, height, width)


def image_ids(height: int, width: int, device, dtype) -> torch.Tensor:
    """Rotary positions (0, row, column) of each packed token."""
    ids = torch.zeros(height // 2, width // 2, 3)
    ids[..., 1] += torch.arange(height // 2)[:, None]
    ids[..., 2] += torch.arange(width // 2)[None, :]
    return ids.reshape(-1, 3).to(device=device, dtype=dtype)


def _transformer(model):
    return (model.unet if model.sampling_unet is None else model.sampling_unet), quantized_weights.compute_dtype(model.unet)


def _denoised(x: torch.Tensor, v: torch.Tensor, sigma: torch.Tensor) -> torch.Tensor:
    return x - v.to(x.dtype) * sigma.to(x.dtype)[:, None, None, None]


def denoise(model, x: torch.Tensor, sigma: torch.Tensor, cond, guidance: float | None) -> torch.Tensor:
    """One Flux.1 evaluation on latents x [B, C, H, W] at sigma [B]; returns the denoised x0 = x - sigma * v."""
    transformer, dtype = _transformer(model)
    b, _, h, w = x.shape
    guidance_in = None
    if model.unet.config.guidance_embeds:
        guidance_in = torch.full((b,), float(guidance), device=x.device, dtype=torch.float32)
    v = transformer(hidden_states=pack(x).to(dtype), encoder_hidden_states=cond.context.to(dtype),
                    pooled_projections=cond.pooled.to(dtype), timestep=sigma.to(dtype), guidance=guidance_in,
                    img_ids=image_ids(h, w, x.device, dtype),
                    txt_ids=torch.zeros(cond.context.shape[1], 3, device=x.device, dtype=dtype),
                    return_dict=False)[0]
    return _denoised(x, unpack(v, h, w), sigma)


def denoise_chroma(model, x: torch.Tensor, sigma: torch.Tensor, cond, guidance: float | None) -> torch.Tensor:
    """One Chroma evaluation: Flux's packing, no pooled vector, the text mask extended over the image tokens."""
    transformer, dtype = _transformer(model)
    b, _, h, w = x.shape
    mask = torch.cat([cond.mask, torch.ones(b, (h // 2) * (w // 2), device=x.device)], dim=1).to(dtype)
    v = transformer(hidden_states=pack(x).to(dtype), encoder_hidden_states=cond.context.to(dtype),
                    timestep=sigma.to(dtype), img_ids=image_ids(h, w, x.device, dtype),
                    txt_ids=torch.zeros(cond.context.shape[1], 3, device=x.device, dtype=dtype),
                    attention_mask=mask, return_dict=False)[0]
    return _denoised(x, unpack(v, h, w), sigma)


def denoise_sd3(model, x: torch.Tensor, sigma: torch.Tensor, cond, guidance: float | None) -> torch.Tensor:
    """One SD 3.5 evaluation: the transformer patches the latent itself and takes the timestep as sigma * 1000."""
    transformer, dtype = _transformer(model)
    v = transformer(hidden_states=x.to(dtype), encoder_hidden_states=cond.context.to(dtype),
                    pooled_projections=cond.pooled.to(dtype), timestep=(sigma * 1000).to(dtype),
                    return_dict=False)[0]
    return _denoised(x, v, sigma)
