"""The denoiser the samplers call: UNet + classifier-free guidance + the refiner switch + interrupt checks."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import torch

from modules.prompt_encoding import Conditioning
from modules.sd_samplers_common import InterruptedException, ModelSigmas


@dataclass
class UNetStage:
    """One model's part of a run: its UNet, conditioning and extra inputs (SDXL time ids, inpainting channels)."""

    model: object                     # sd_models.StableDiffusionModel
    cond: Conditioning
    uncond: Conditioning
    time_ids: torch.Tensor | None = None        # [2B, n] cond rows then uncond rows (SDXL)
    image_conditioning: torch.Tensor | None = None  # [B, 5, h, w] for 9-channel inpainting UNets


class CFGDenoiser:
    """denoiser(x, sigma) -> denoised x0 with CFG applied; switches to the refiner stage once, inside the same run."""

    def __init__(self, stage: UNetStage, cfg_scale: float, state, *, refiner: Callable[[], UNetStage] | None = None,
                 switch_at: float = 1.0, switch_by_steps: bool = False, total_steps: int = 1):
        self.stage = stage
        self.cfg_scale = cfg_scale
        self.state = state
        self.refiner = refiner
        self.switch_at = switch_at
        self.switch_by_steps = switch_by_steps
        self.total_steps = total_steps
        self.model_sigmas: ModelSigmas = stage.model.model_sigmas
        self.uncond_denoised: torch.Tensor | None = None
        self.step = 0  # set by the sampling callback
        self.switched_at_step: int | None = None
        self.calls: list[tuple[int, str]] = []  # (step, checkpoint title) per UNet evaluation, for tests and logs

    def __call__(self, x: torch.Tensor, sigma: torch.Tensor) -> torch.Tensor:
        if self.state.interrupted or self.state.skipped:
            raise InterruptedException
        sigma = sigma.reshape(-1).expand(x.shape[0]) if sigma.numel() == 1 else sigma
        self._maybe_switch(sigma)
        stage = self.stage
        self.calls.append((self.step, stage.model.sd_checkpoint_info.title))
        if self.cfg_scale == 1.0:
            self.uncond_denoised = None
            return self._denoise(stage, x, sigma, stage.cond, rows=slice(0, x.shape[0]))
        b = x.shape[0]
        if stage.cond.context.shape[1] == stage.uncond.context.shape[1]:
            both = _cat_cond(stage.cond, stage.uncond)
            out = self._denoise(stage, torch.cat([x, x]), torch.cat([sigma, sigma]), both, rows=slice(0, 2 * b))
            cond_out, uncond_out = out[:b], out[b:]
        else:  # prompts of different chunk counts cannot share a batch
            cond_out = self._denoise(stage, x, sigma, stage.cond, rows=slice(0, b))
            uncond_out = self._denoise(stage, x, sigma, stage.uncond, rows=slice(b, 2 * b))
        self.uncond_denoised = uncond_out
        return uncond_out + (cond_out - uncond_out) * self.cfg_scale

    def _maybe_switch(self, sigma: torch.Tensor) -> None:
        if self.refiner is None or self.switched_at_step is not None:
            return
        if self.switch_by_steps:
            done = self.step / max(self.total_steps, 1)
        else:  # A1111 >= 1.9: progress is the nearest training timestep of the current sigma
            t = self.model_sigmas.sigma_to_t(sigma[:1].float().cpu()).round()
            done = float((999 - t) / 1000)
        if done >= self.switch_at:
            self.stage = self.refiner()
            self.model_sigmas = self.stage.model.model_sigmas
            self.switched_at_step = self.step

    def _denoise(self, stage: UNetStage, x: torch.Tensor, sigma: torch.Tensor, cond: Conditioning, rows: slice) -> torch.Tensor:
        model = stage.model
        unet = model.unet
        dtype = next(unet.parameters()).dtype
        s = sigma.to(x.dtype)[:, None, None, None]
        c_in = 1.0 / (s**2 + 1.0) ** 0.5
        t = self.model_sigmas.sigma_to_t(sigma.float().cpu()).to(x.device)
        x_in = x * c_in
        if stage.image_conditioning is not None:
            reps = x.shape[0] // stage.image_conditioning.shape[0]
            x_in = torch.cat([x_in, stage.image_conditioning.repeat(reps, 1, 1, 1)], dim=1)
        added = None
        if cond.pooled is not None:
            added = {"text_embeds": cond.pooled.to(dtype), "time_ids": stage.time_ids[rows].to(dtype)}
        out = unet(x_in.to(dtype), t.to(dtype), encoder_hidden_states=cond.context.to(dtype), added_cond_kwargs=added,
                   return_dict=False)[0].to(x.dtype)
        if model.family.prediction_type == "v_prediction":
            return x * (1.0 / (s**2 + 1.0)) - out * (s / (s**2 + 1.0) ** 0.5)
        return x - out * s


def _cat_cond(a: Conditioning, b: Conditioning) -> Conditioning:
    pooled = None if a.pooled is None else torch.cat([a.pooled, b.pooled])
    return Conditioning(torch.cat([a.context, b.context]), pooled)
