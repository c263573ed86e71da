"""The timestep-based samplers (DDIM, DDIM CFG++, PLMS, UniPC), written in sigma space from their papers.

They walk the sigmas they are given, like the k-diffusion ones (same signature, see sd_samplers_kdiffusion), but their
schedule comes from the training timesteps rather than from a schedule type: see get_sigmas in sd_samplers.
"""

from __future__ import annotations

import math

import numpy as np
import torch

from modules import sd_samplers_common
from modules.sd_samplers_cfg_denoiser import CFGDenoiser
from modules.sd_samplers_common import ModelSigmas, SamplerOptions, ancestral_step
from modules.sd_samplers_kdiffusion import add_noise, denoise, first_order_step


def sample_ddim(denoiser, x, sigmas, rng, callback, opts: SamplerOptions):
    """DDIM (Song et al., 2021); its eta noise equals the ancestral split with eta = eta_ddim."""
    sig = sigmas.tolist()
    for i in range(len(sig) - 1):
        denoised = denoise(denoiser, x, sig[i])
        sigma_down, sigma_up = ancestral_step(sig[i], sig[i + 1], opts.eta_ddim)
        x = add_noise(first_order_step(x, sig[i], sigma_down, denoised), rng, sigma_up)
        callback(i, x, denoised, sig[i])
    return x


def sample_ddim_cfgpp(denoiser, x, sigmas, rng, callback, opts: SamplerOptions):
    """CFG++ (Chung et al., 2024): DDIM that renoises the guided estimate along the unconditional noise."""
    sig = sigmas.tolist()
    for i in range(len(sig) - 1):
        sigma = sig[i]
        denoised = denoise(denoiser, x, sigma)
        uncond = denoiser.uncond_denoised if denoiser.uncond_denoised is not None else denoised
        sigma_down, sigma_up = ancestral_step(sigma, sig[i + 1], opts.eta_ddim)
        x = add_noise(denoised + (sigma_down / sigma) * (x - uncond), rng, sigma_up)
        callback(i, x, denoised, sigma)
    return x


def plms_eps(eps: torch.Tensor, history: list[torch.Tensor]) -> torch.Tensor:
    """Adams-Bashforth combination of the current and up to three previous noise predictions."""
    if len(history) == 1:
        return (3 * eps - history[-1]) / 2
    if len(history) == 2:
        return (23 * eps - 16 * history[-1] + 5 * history[-2]) / 12
    return (55 * eps - 59 * history[-1] + 37 * history[-2] - 9 * history[-3]) / 24


def sample_plms(denoiser, x, sigmas, rng, callback, opts: SamplerOptions):
    """PLMS (Liu et al., 2022): pseudo linear multistep on the noise prediction; the first step is improved Euler."""
    sig = sigmas.tolist()
    history: list[torch.Tensor] = []
    for i in range(len(sig) - 1):
        sigma, sigma_next = sig[i], sig[i + 1]
        eps = (x - denoise(denoiser, x, sigma)) / sigma
        if history:
            eps_prime = plms_eps(eps, history)
        elif sigma_next > 0:
            x_next = x + (sigma_next - sigma) * eps
            eps_prime = (eps + (x_next - denoise(denoiser, x_next, sigma_next)) / sigma_next) / 2
        else:
            eps_prime = eps
        denoised = x - sigma * eps_prime
        x = x + (sigma_next - sigma) * eps_prime
        history = [*history, eps][-3:]
        callback(i, x, denoised, sigma)
    return x


UNI_PC_SKIP_TYPES = ("time_uniform", "time_quadratic", "logSNR")
UNI_PC_VARIANTS = ("bh1", "bh2")


def get_unipc_sigmas(steps: int, model_sigmas: ModelSigmas, skip_type: str) -> torch.Tensor:
    """UniPC's time grid: steps points from the last training step to the first, then 0 (a final denoise).

    time_uniform / time_quadratic space continuous time t in (0, 1] (training step = N t - 1) linearly / quadratically;
    logSNR spaces log sigma evenly.
    """
    n_train = len(model_sigmas)
    if skip_type == "logSNR":
        log_sigmas = torch.linspace(math.log(model_sigmas.sigma_max), math.log(model_sigmas.sigma_min), steps)
        sigmas = log_sigmas.exp()
    elif skip_type in ("time_uniform", "time_quadratic"):
        power = 1 if skip_type == "time_uniform" else 2
        t = torch.linspace(1.0, (1 / n_train) ** (1 / power), steps, dtype=torch.float64) ** power
        sigmas = model_sigmas.t_to_sigma((n_train * t - 1).to(torch.float32))
    else:
        raise ValueError(f"UniPC skip type not found: {skip_type}; valid choices: {', '.join(UNI_PC_SKIP_TYPES)}")
    return torch.cat([sigmas.to(torch.float32), torch.zeros(1)])


def unipc_coefficients(rks: list[float], h: float, variant: str):
    """UniPC's B(h) and the linear system R rho = b of its predictor/corrector (Zhao et al., 2023), data prediction."""
    hh = -h
    h_phi_1 = math.expm1(hh)
    h_phi_k = h_phi_1 / hh - 1
    b_h = hh if variant == "bh1" else math.expm1(hh)
    factorial = 1
    rows, b = [], []
    for i in range(1, len(rks) + 1):
        rows.append([rk ** (i - 1) for rk in rks])
        b.append(h_phi_k * factorial / b_h)
        factorial *= i + 1
        h_phi_k = h_phi_k / hh - 1 / factorial
    return h_phi_1, b_h, np.array(rows), np.array(b)


def unipc_step(denoiser, x, history: list[tuple[float, torch.Tensor]], lam_t: float, order: int, variant: str,
               use_corrector: bool) -> tuple[torch.Tensor, torch.Tensor | None]:
    """One UniP-p predictor step to lam_t from history [(lam, model output)], plus the UniC-p corrector.

    Returns the new x and the model output at the predicted point (None without the corrector).
    """
    lam_s, m0 = history[-1]
    h = lam_t - lam_s
    rks, d1s = [], []
    for lam_i, m_i in history[-order:-1][::-1]:
        rk = (lam_i - lam_s) / h
        rks.append(rk)
        d1s.append((m_i - m0) / rk)
    rks.append(1.0)
    h_phi_1, b_h, rows, b = unipc_coefficients(rks, h, variant)
    x_t_base = math.exp(-h) * x - h_phi_1 * m0  # sigma_t / sigma_s == exp(-h)
    if d1s:
        rhos_p = [0.5] if order == 2 else np.linalg.solve(rows[:-1, :-1], b[:-1]).tolist()
        x_t = x_t_base - b_h * sum(rho * d for rho, d in zip(rhos_p, d1s))
    else:
        x_t = x_t_base
    if not use_corrector:
        return x_t, None
    model_t = denoise(denoiser, x_t, math.exp(-lam_t))
    rhos_c = [0.5] if order == 1 else np.linalg.solve(rows, b).tolist()
    correction = sum(rho * d for rho, d in zip(rhos_c[:-1], d1s)) + rhos_c[-1] * (model_t - m0)
    return x_t_base - b_h * correction, model_t


def sample_unipc(denoiser, x, sigmas, rng, callback, opts: SamplerOptions):
    """UniPC multistep (Zhao et al., 2023), data prediction, variants bh1/bh2, from settings' order.

    Each step costs one model evaluation; the step to sigma 0, if any, takes the last model output as the result.
    """
    if opts.uni_pc_variant not in UNI_PC_VARIANTS:
        raise ValueError(f"UniPC variant not supported: {opts.uni_pc_variant}; valid choices: "
                         f"{', '.join(UNI_PC_VARIANTS)}")
    sig = sigmas.tolist()
    n_solver = sum(1 for s in sig[1:] if s > 0)
    max_order = max(1, int(opts.uni_pc_order))
    history = [(-math.log(sig[0]), denoise(denoiser, x, sig[0]))]
    for i in range(len(sig) - 1):
        sigma, sigma_next = sig[i], sig[i + 1]
        denoised = history[-1][1]
        if sigma_next == 0:
            x = denoised
        else:
            step = i + 1
            order = min(max_order, len(history))
            if opts.uni_pc_lower_order_final:
                order = min(order, n_solver + 1 - step)
            # the last solver step skips the corrector, as in UniPC: its model output would only feed a next step
            is_last = step == n_solver
            x, model_t = unipc_step(denoiser, x, history, -math.log(sigma_next), order, opts.uni_pc_variant,
                                    use_corrector=not is_last)
            if model_t is None and sig[-1] == 0:
                model_t = denoise(denoiser, x, sigma_next)
            if model_t is not None:
                history = [*history, (-math.log(sigma_next), model_t)][-max_order:]
        callback(i, x, denoised, sigma)
    return x

# A1111's class names for its DDIM/PLMS/UniPC samplers: the same sampler object and CFG denoiser as every other
CompVisSampler = sd_samplers_common.Sampler
CFGDenoiserTimesteps = CFGDenoiser
