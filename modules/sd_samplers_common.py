"""Shared sampler vocabulary: a model's discrete noise schedule in sigma terms, sampler options, the ancestral split.

Samplers work in k-diffusion scaling: x = x0 + sigma * eps, with sigma = ((1 - alphas_cumprod) / alphas_cumprod) ** 0.5.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, fields
from typing import NamedTuple

import torch


class SamplerData(NamedTuple):
    """A1111's sampler entry: constructor(sd_model) makes the run's sampler object; options use A1111's keys
    (scheduler: what Automatic means, uniform when absent; second_order; uses_ensd; brownian_noise;
    discard_next_to_last_sigma) and ours (timestep_based: sigmas from training timesteps, schedule type ignored)."""

    name: str
    constructor: Callable
    aliases: tuple[str, ...]
    options: dict

    def total_steps(self, steps: int) -> int:
        """UNet evaluations the sampler makes for `steps` steps (A1111's)."""
        return steps * 2 if self.second_order else steps

    @property
    def default_scheduler(self) -> str:
        return self.options.get("scheduler", "uniform")

    @property
    def second_order(self) -> bool:
        return self.options.get("second_order", False)

    @property
    def ancestral(self) -> bool:  # uses ENSD (eta noise seed delta)
        return self.options.get("uses_ensd", False)

    @property
    def brownian(self) -> bool:  # SDE noise from per-image Brownian trees
        return self.options.get("brownian_noise", False)

    @property
    def discard_penultimate_sigma(self) -> bool:
        return self.options.get("discard_next_to_last_sigma", False)

    @property
    def timestep_based(self) -> bool:
        return self.options.get("timestep_based", False)


class Sampler:
    """A1111's sampler object, made for each run by sd_samplers.create_sampler: the sampling function and the CFG
    denoiser it calls, `model_wrap_cfg`, which extensions may replace with their own CFGDenoiser subclass."""

    def __init__(self, func: Callable, sd_model=None):
        from modules.sd_samplers_cfg_denoiser import (
            CFGDenoiser,  # that module imports this one
        )

        self.func = func
        self.sd_model = sd_model
        self.config: SamplerData | None = None
        self.model_wrap_cfg = CFGDenoiser(self)


class InterruptedException(Exception):
    """Raised by the caller's denoiser to stop sampling; samplers let it propagate untouched."""


class ModelSigmas:
    """The discrete training noise schedule of one model (1000 steps), in k-diffusion sigma terms."""

    def __init__(self, alphas_cumprod: torch.Tensor):
        alphas_cumprod = torch.as_tensor(alphas_cumprod).detach().cpu()
        if alphas_cumprod.ndim != 1 or alphas_cumprod.numel() < 2:
            raise ValueError("alphas_cumprod must be a 1-D tensor of the model's training steps")
        self.sigmas = ((1 - alphas_cumprod) / alphas_cumprod).sqrt().to(torch.float32)
        self.log_sigmas = self.sigmas.log()
        self.sigma_min = float(self.sigmas[0])
        self.sigma_max = float(self.sigmas[-1])
        self._log_sigmas_on: dict[torch.device, torch.Tensor] = {}

    def __len__(self) -> int:
        return self.sigmas.numel()

    def sigma_to_t(self, sigma: torch.Tensor) -> torch.Tensor:
        """Continuous timestep of each sigma, interpolating linearly in log sigma between training steps."""
        sigma = torch.as_tensor(sigma, dtype=torch.float32)
        log_sigmas = self._log_sigmas_for(sigma.device)
        log_sigma = sigma.log().reshape(-1)
        low = (torch.searchsorted(log_sigmas, log_sigma) - 1).clamp(0, len(self) - 2)
        low_log, high_log = log_sigmas[low], log_sigmas[low + 1]
        w = ((log_sigma - low_log) / (high_log - low_log)).clamp(0, 1)
        return (low.to(torch.float32) + w).reshape(sigma.shape)

    def _log_sigmas_for(self, device: torch.device) -> torch.Tensor:
        # One copy per device: copying the table every step would make the GPU wait for the host.
        if device not in self._log_sigmas_on:
            self._log_sigmas_on[device] = self.log_sigmas.to(device)
        return self._log_sigmas_on[device]

    def t_to_sigma(self, t: torch.Tensor) -> torch.Tensor:
        """Sigma at a continuous timestep, interpolating linearly in log sigma."""
        t = torch.as_tensor(t, dtype=torch.float32)
        log_sigmas = self._log_sigmas_for(t.device)
        t = t.clamp(0, len(self) - 1)
        low = t.floor().long()
        high = t.ceil().long()
        w = t - low
        return ((1 - w) * log_sigmas[low] + w * log_sigmas[high]).exp()


@dataclass(frozen=True)
class SamplerOptions:
    """The sampler settings of A1111 (option names and defaults as A1111)."""

    eta_ancestral: float = 1.0
    eta_ddim: float = 0.0
    s_churn: float = 0.0
    s_tmin: float = 0.0
    s_tmax: float = 0.0  # 0 means infinity, as in A1111's settings
    s_noise: float = 1.0
    uni_pc_variant: str = "bh1"
    uni_pc_skip_type: str = "time_uniform"
    uni_pc_order: int = 3
    uni_pc_lower_order_final: bool = True

    @classmethod
    def from_options(cls, options: dict | None) -> SamplerOptions:
        """Pick this class's keys out of an options dict (e.g. all of opts); missing or None keys keep defaults."""
        options = options or {}
        names = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in options.items() if k in names and v is not None})

    @property
    def churn_max_sigma(self) -> float:
        return self.s_tmax if self.s_tmax > 0 else math.inf


def ancestral_step(sigma: float, sigma_next: float, eta: float) -> tuple[float, float]:
    """Split a step to sigma_next into a deterministic step to sigma_down plus fresh noise of std sigma_up.

    sigma_down**2 + sigma_up**2 == sigma_next**2; eta=1 gives the DDPM posterior variance, eta=0 no noise.
    """
    if eta == 0 or sigma_next == 0:
        return sigma_next, 0.0
    sigma_up = min(sigma_next, eta * math.sqrt(sigma_next**2 * (sigma**2 - sigma_next**2) / sigma**2))
    sigma_down = math.sqrt(sigma_next**2 - sigma_up**2)
    return sigma_down, sigma_up
