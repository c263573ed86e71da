"""Schedule types: how a step count becomes the descending list of sigmas a sampler walks.

Every schedule function takes (n, sigma_min, sigma_max) like A1111's; those with need_inner_model also take
model_sigmas, those with a default_rho take rho, Align Your Steps takes is_sdxl and Beta its alpha/beta. Each returns
a float32 tensor of n + 1 descending sigmas ending in 0. Use compute_sigmas to call one with the right arguments.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch
from scipy.special import betaincinv

from modules.sd_samplers_common import ModelSigmas


@dataclass(frozen=True)
class Scheduler:
    name: str
    label: str
    function: Callable
    default_rho: float = -1.0
    need_inner_model: bool = False
    aliases: tuple[str, ...] = ()


def _with_zero(sigmas) -> torch.Tensor:
    sigmas = torch.as_tensor(sigmas, dtype=torch.float32).reshape(-1)
    return torch.cat([sigmas, sigmas.new_zeros(1)])


def _timestep_bounds(sigma_min: float, sigma_max: float, model_sigmas: ModelSigmas) -> tuple[float, float]:
    """(timestep of sigma_max, timestep of sigma_min)."""
    return (float(model_sigmas.sigma_to_t(torch.tensor(sigma_max))),
            float(model_sigmas.sigma_to_t(torch.tensor(sigma_min))))


def _timestep_range(n_points: int, sigma_min: float, sigma_max: float, model_sigmas: ModelSigmas) -> torch.Tensor:
    """n_points timesteps spaced evenly from sigma_max's timestep down to sigma_min's."""
    return torch.linspace(*_timestep_bounds(sigma_min, sigma_max, model_sigmas), n_points)


def uniform(n: int, sigma_min: float, sigma_max: float, model_sigmas: ModelSigmas) -> torch.Tensor:
    """The model's own discretisation: timesteps evenly spaced from the last training step to 0."""
    t = torch.linspace(len(model_sigmas) - 1, 0, n)
    return _with_zero(model_sigmas.t_to_sigma(t))


def karras(n: int, sigma_min: float, sigma_max: float, rho: float = 7.0) -> torch.Tensor:
    """Karras et al. (2022): evenly spaced in sigma**(1/rho)."""
    ramp = torch.linspace(0, 1, n, dtype=torch.float64)
    min_inv_rho, max_inv_rho = sigma_min ** (1 / rho), sigma_max ** (1 / rho)
    return _with_zero((max_inv_rho + ramp * (min_inv_rho - max_inv_rho)) ** rho)


def exponential(n: int, sigma_min: float, sigma_max: float) -> torch.Tensor:
    """Evenly spaced in log sigma."""
    return _with_zero(torch.linspace(math.log(sigma_max), math.log(sigma_min), n, dtype=torch.float64).exp())


def polyexponential(n: int, sigma_min: float, sigma_max: float, rho: float = 1.0) -> torch.Tensor:
    """Log sigma follows a polynomial ramp of degree rho (rho=1 is Exponential)."""
    ramp = torch.linspace(1, 0, n, dtype=torch.float64) ** rho
    log_min, log_max = math.log(sigma_min), math.log(sigma_max)
    return _with_zero((ramp * (log_max - log_min) + log_min).exp())


def sgm_uniform(n: int, sigma_min: float, sigma_max: float, model_sigmas: ModelSigmas) -> torch.Tensor:
    """n + 1 evenly spaced timesteps with the last one dropped (the trailing spacing SDXL-Lightning/Turbo expect)."""
    t = _timestep_range(n + 1, sigma_min, sigma_max, model_sigmas)[:-1]
    return _with_zero(model_sigmas.t_to_sigma(t))


def kl_optimal(n: int, sigma_min: float, sigma_max: float) -> torch.Tensor:
    """Evenly spaced in arctan(sigma) (the KL-optimal schedule of Sabour et al., 2024)."""
    angles = torch.linspace(math.atan(sigma_max), math.atan(sigma_min), n, dtype=torch.float64)
    return _with_zero(angles.tan())


# NVIDIA's published Align Your Steps 10-step sigmas (11 values) for each model family
AYS_SIGMAS_SD15 = (14.615, 6.475, 3.861, 2.697, 1.886, 1.396, 0.963, 0.652, 0.399, 0.152, 0.029)
AYS_SIGMAS_SDXL = (14.615, 6.315, 3.771, 2.181, 1.342, 0.862, 0.555, 0.380, 0.234, 0.113, 0.029)


def align_your_steps(n: int, sigma_min: float, sigma_max: float, is_sdxl: bool) -> torch.Tensor:
    """NVIDIA's optimised table for the model family, log-linearly interpolated to n sigmas."""
    table = np.array(AYS_SIGMAS_SDXL if is_sdxl else AYS_SIGMAS_SD15)
    log_sigmas = np.interp(np.linspace(0, 1, n), np.linspace(0, 1, len(table)), np.log(table))
    return _with_zero(np.exp(log_sigmas))


def simple(n: int, sigma_min: float, sigma_max: float, model_sigmas: ModelSigmas) -> torch.Tensor:
    """Every (steps / n)-th training sigma, starting from the largest."""
    stride = len(model_sigmas) / n
    indices = [len(model_sigmas) - 1 - int(i * stride) for i in range(n)]
    return _with_zero(model_sigmas.sigmas[indices])


def normal(n: int, sigma_min: float, sigma_max: float, model_sigmas: ModelSigmas) -> torch.Tensor:
    """Timesteps evenly spaced from sigma_max's timestep to sigma_min's (honours sigma overrides)."""
    return _with_zero(model_sigmas.t_to_sigma(_timestep_range(n, sigma_min, sigma_max, model_sigmas)))


def ddim_timesteps(n: int, num_train_steps: int) -> list[int]:
    """The n DDIM timesteps, descending: a stride of num_train_steps // n starting at 1 (A1111's CompVis grid)."""
    stride = max(num_train_steps // n, 1)
    return [min(1 + i * stride, num_train_steps - 1) for i in reversed(range(n))]


def ddim(n: int, sigma_min: float, sigma_max: float, model_sigmas: ModelSigmas) -> torch.Tensor:
    """The training sigmas at the DDIM timestep grid."""
    return _with_zero(model_sigmas.sigmas[ddim_timesteps(n, len(model_sigmas))])


def beta_schedule(n: int, sigma_min: float, sigma_max: float, model_sigmas: ModelSigmas,
                  alpha: float = 0.6, beta: float = 0.6) -> torch.Tensor:
    """Timesteps at the quantiles of a Beta(alpha, beta) distribution (Lee et al., 2024): dense at both ends."""
    quantiles = betaincinv(alpha, beta, np.linspace(1, 0, n))
    start, end = _timestep_bounds(sigma_min, sigma_max, model_sigmas)
    t = torch.as_tensor(end + quantiles * (start - end), dtype=torch.float32)
    return _with_zero(model_sigmas.t_to_sigma(t))


schedulers: list[Scheduler] = [
    Scheduler("uniform", "Uniform", uniform, need_inner_model=True),
    Scheduler("karras", "Karras", karras, default_rho=7.0),
    Scheduler("exponential", "Exponential", exponential),
    Scheduler("polyexponential", "Polyexponential", polyexponential, default_rho=1.0),
    Scheduler("sgm_uniform", "SGM Uniform", sgm_uniform, need_inner_model=True, aliases=("SGMUniform",)),
    Scheduler("kl_optimal", "KL Optimal", kl_optimal),
    Scheduler("align_your_steps", "Align Your Steps", align_your_steps),
    Scheduler("simple", "Simple", simple, need_inner_model=True),
    Scheduler("normal", "Normal", normal, need_inner_model=True),
    Scheduler("ddim", "DDIM", ddim, need_inner_model=True),
    Scheduler("beta", "Beta", beta_schedule, need_inner_model=True),
]

schedulers_map: dict[str, Scheduler] = {
    key: s for s in schedulers for key in (s.name, s.label, *s.aliases)
}

_schedulers_by_lower_key = {key.lower(): s for key, s in schedulers_map.items()}


def find_scheduler(name: str) -> Scheduler | None:
    """Case-insensitive lookup by name, label or alias."""
    return _schedulers_by_lower_key.get(name.strip().lower())


def compute_sigmas(scheduler: Scheduler, n: int, model_sigmas: ModelSigmas, *, is_sdxl: bool,
                   sigma_min: float | None = None, sigma_max: float | None = None, rho: float | None = None,
                   beta_alpha: float | None = None, beta_beta: float | None = None) -> torch.Tensor:
    """n + 1 sigmas of this schedule type; None means the model's sigma range and the schedule's own rho/alpha/beta."""
    if n < 1:
        raise ValueError(f"A schedule needs at least 1 step, got {n}")
    kwargs = {
        "n": n,
        "sigma_min": model_sigmas.sigma_min if sigma_min is None else sigma_min,
        "sigma_max": model_sigmas.sigma_max if sigma_max is None else sigma_max,
    }
    if scheduler.need_inner_model:
        kwargs["model_sigmas"] = model_sigmas
    if scheduler.default_rho != -1:
        kwargs["rho"] = scheduler.default_rho if rho is None else rho
    if scheduler.function is align_your_steps:
        kwargs["is_sdxl"] = is_sdxl
    if scheduler.function is beta_schedule:
        kwargs.update({k: v for k, v in (("alpha", beta_alpha), ("beta", beta_beta)) if v is not None})
    return scheduler.function(**kwargs)
