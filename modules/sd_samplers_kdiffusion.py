"""The k-diffusion family of samplers, in sigma space (x = x0 + sigma * eps), written from their papers.

Every sampler has the signature (denoiser, x, sigmas, rng, callback, opts) -> Tensor, walks the sigmas it is given,
and calls callback(i, x, denoised, sigma) after each step. Step noise comes from rng.next() (one draw of each image's
own generator) or, for the SDE samplers, from Brownian trees seeded with rng.seeds, so a batch reproduces its images.
"""

from __future__ import annotations

import math

import numpy as np
import torch
import torchsde

from modules import sd_samplers_common
from modules.sd_samplers_cfg_denoiser import CFGDenoiser
from modules.sd_samplers_common import SamplerOptions, ancestral_step
from modules.sd_schedulers import karras


def denoise(denoiser, x: torch.Tensor, sigma: float) -> torch.Tensor:
    # sigma stays float32 even for half-precision latents: fp16 would shift the model's timestep
    return denoiser(x, torch.full((x.shape[0],), sigma, dtype=torch.float32, device=x.device))


def to_d(x: torch.Tensor, sigma: float, denoised: torch.Tensor) -> torch.Tensor:
    """The probability-flow ODE's derivative dx/dsigma."""
    return (x - denoised) / sigma


def first_order_step(x: torch.Tensor, sigma: float, sigma_next: float, denoised: torch.Tensor) -> torch.Tensor:
    """Euler = DDIM = DPM-Solver(++)-1 in this parametrisation: keep the noise direction, shrink it to sigma_next."""
    return denoised + (sigma_next / sigma) * (x - denoised)


def add_noise(x: torch.Tensor, rng, scale: float) -> torch.Tensor:
    """Fresh noise of std scale from each image's generator; no draw when there is nothing to add."""
    return x + rng.next() * scale if scale > 0 else x


def _churn(x: torch.Tensor, sigma: float, n_steps: int, rng, opts: SamplerOptions) -> tuple[torch.Tensor, float]:
    """Karras et al. (2022) stochastic churn: raise the noise level to sigma_hat before the step."""
    in_range = opts.s_tmin <= sigma <= opts.churn_max_sigma
    gamma = min(opts.s_churn / n_steps, math.sqrt(2) - 1) if in_range else 0.0
    if gamma <= 0:
        return x, sigma
    sigma_hat = sigma * (gamma + 1)
    return add_noise(x, rng, opts.s_noise * math.sqrt(sigma_hat**2 - sigma**2)), sigma_hat


def churned_sampler(step):
    """A sampler that moves from each sigma to the next with `step(denoiser, x, sigma, sigma_next, denoised)`, after
    A1111's optional churn (s_churn) of the current sigma."""
    def sample(denoiser, x, sigmas, rng, callback, opts: SamplerOptions):
        sig = sigmas.tolist()
        for i in range(len(sig) - 1):
            x, sigma_hat = _churn(x, sig[i], len(sig) - 1, rng, opts)
            denoised = denoise(denoiser, x, sigma_hat)
            x = step(denoiser, x, sigma_hat, sig[i + 1], denoised)
            callback(i, x, denoised, sig[i])
        return x
    return sample


def ancestral_sampler(step):
    """A sampler that takes `step` down to the ancestral sigma_down, then adds fresh noise of size sigma_up."""
    def sample(denoiser, x, sigmas, rng, callback, opts: SamplerOptions):
        sig = sigmas.tolist()
        for i in range(len(sig) - 1):
            denoised = denoise(denoiser, x, sig[i])
            sigma_down, sigma_up = ancestral_step(sig[i], sig[i + 1], opts.eta_ancestral)
            x = add_noise(step(denoiser, x, sig[i], sigma_down, denoised), rng, opts.s_noise * sigma_up)
            callback(i, x, denoised, sig[i])
        return x
    return sample


def euler_step(denoiser, x, sigma: float, sigma_next: float, denoised: torch.Tensor) -> torch.Tensor:
    return x + to_d(x, sigma, denoised) * (sigma_next - sigma)


def heun_step(denoiser, x, sigma: float, sigma_next: float, denoised: torch.Tensor) -> torch.Tensor:
    """Heun's method (trapezoidal correction of an Euler step); Euler when stepping to sigma 0."""
    d = to_d(x, sigma, denoised)
    x_euler = x + d * (sigma_next - sigma)
    if sigma_next == 0:
        return x_euler
    d_next = to_d(x_euler, sigma_next, denoise(denoiser, x_euler, sigma_next))
    return x + (d + d_next) / 2 * (sigma_next - sigma)


def dpm2_step(denoiser, x, sigma: float, sigma_next: float, denoised: torch.Tensor) -> torch.Tensor:
    """DPM-Solver-2 in sigma: the derivative at the log-space midpoint drives the whole step."""
    d = to_d(x, sigma, denoised)
    if sigma_next == 0:
        return x + d * (sigma_next - sigma)
    sigma_mid = math.sqrt(sigma * sigma_next)
    x_mid = x + d * (sigma_mid - sigma)
    d_mid = to_d(x_mid, sigma_mid, denoise(denoiser, x_mid, sigma_mid))
    return x + d_mid * (sigma_next - sigma)


sample_euler = churned_sampler(euler_step)
sample_heun = churned_sampler(heun_step)
sample_dpm_2 = churned_sampler(dpm2_step)
sample_euler_ancestral = ancestral_sampler(lambda denoiser, x, sigma, sigma_next, denoised:
                                           first_order_step(x, sigma, sigma_next, denoised))
sample_dpm_2_ancestral = ancestral_sampler(dpm2_step)


def lms_coefficient(sig: list[float], i: int, order: int, j: int) -> float:
    """Integral over [sig[i], sig[i+1]] of the Lagrange basis polynomial of node sig[i-j] among sig[i-order+1..i]."""
    others = [sig[i - k] for k in range(order) if k != j]
    basis = np.polynomial.Polynomial.fromroots(others) if others else np.polynomial.Polynomial([1.0])
    basis = basis / math.prod(sig[i - j] - s for s in others)
    antiderivative = basis.integ()
    return float(antiderivative(sig[i + 1]) - antiderivative(sig[i]))


def sample_lms(denoiser, x, sigmas, rng, callback, opts: SamplerOptions, order: int = 4):
    sig = sigmas.tolist()
    ds: list[torch.Tensor] = []
    for i in range(len(sig) - 1):
        denoised = denoise(denoiser, x, sig[i])
        ds = [*ds, to_d(x, sig[i], denoised)][-order:]
        cur_order = len(ds)
        coefficients = [lms_coefficient(sig, i, cur_order, j) for j in range(cur_order)]
        x = x + sum(c * d for c, d in zip(coefficients, reversed(ds)))
        callback(i, x, denoised, sig[i])
    return x


class DPMSolver:
    """DPM-Solver (Lu et al., 2022), noise-prediction form, in lam = -log(sigma)."""

    def __init__(self, denoiser):
        self.denoiser = denoiser

    def eps(self, x: torch.Tensor, lam: float) -> tuple[torch.Tensor, torch.Tensor]:
        sigma = math.exp(-lam)
        denoised = denoise(self.denoiser, x, sigma)
        return (x - denoised) / sigma, denoised

    @staticmethod
    def first_order(x, lam: float, lam_next: float, eps: torch.Tensor) -> torch.Tensor:
        return x - math.exp(-lam_next) * math.expm1(lam_next - lam) * eps

    def second_order(self, x, lam: float, lam_next: float, eps, r1: float = 0.5):
        h = lam_next - lam
        s1 = lam + r1 * h
        eps_1, _ = self.eps(self.first_order(x, lam, s1, eps), s1)
        return self.first_order(x, lam, lam_next, eps) - math.exp(-lam_next) / (2 * r1) * math.expm1(h) * (eps_1 - eps)

    def third_order(self, x, lam: float, lam_next: float, eps, r1: float = 1 / 3, r2: float = 2 / 3):
        """Returns (second-order estimate, third-order estimate) sharing their model evaluations."""
        h = lam_next - lam
        s1, s2 = lam + r1 * h, lam + r2 * h
        eps_1, _ = self.eps(self.first_order(x, lam, s1, eps), s1)
        base = self.first_order(x, lam, lam_next, eps)
        low = base - math.exp(-lam_next) / (2 * r1) * math.expm1(h) * (eps_1 - eps)
        u2 = self.first_order(x, lam, s2, eps) - math.exp(-s2) * (r2 / r1) * (
            math.expm1(r2 * h) / (r2 * h) - 1) * (eps_1 - eps)
        eps_2, _ = self.eps(u2, s2)
        high = base - math.exp(-lam_next) / r2 * (math.expm1(h) / h - 1) * (eps_2 - eps)
        return low, high


def solver_range(sig: list[float]) -> tuple[float, float, bool]:
    """(sigma_max, smallest positive sigma, whether the walk ends with a final denoise to sigma 0)."""
    positive = [s for s in sig if s > 0]
    return positive[0], positive[-1], sig[-1] == 0


def ancestral_target(lam: float, lam_next: float, lam_end: float, eta: float) -> tuple[float, float]:
    """Where a DPM-Solver step lands before its noise is added, and that noise's std."""
    if eta == 0:
        return lam_next, 0.0
    sigma, sigma_next = math.exp(-lam), math.exp(-lam_next)
    sigma_down, _ = ancestral_step(sigma, sigma_next, eta)
    lam_target = min(lam_end, -math.log(sigma_down)) if sigma_down > 0 else lam_end
    return lam_target, math.sqrt(max(sigma_next**2 - math.exp(-2 * lam_target), 0.0))


def finish_with_denoise(denoiser, x, sigma: float, i: int, callback) -> torch.Tensor:
    denoised = denoise(denoiser, x, sigma)
    callback(i, denoised, denoised, sigma)
    return denoised


def dpm_fast_orders(nfe: int) -> list[int]:
    """DPM-Solver-fast's split of a model-evaluation budget into steps of order 3, ending with lower orders."""
    if nfe % 3 == 0:
        return [3] * (nfe // 3 - 1) + [2, 1]
    return [3] * (nfe // 3) + [nfe % 3]


def sample_dpm_fast(denoiser, x, sigmas, rng, callback, opts: SamplerOptions):
    """DPM-Solver-fast from sigmas[0] to the smallest positive sigma, steps uniform in log sigma.

    It spends one model evaluation per step of the given list; the step to sigma 0, if any, is a final denoise.
    """
    sig = sigmas.tolist()
    sigma_max, sigma_min, ends_at_zero = solver_range(sig)
    nfe = len(sig) - 1 - int(ends_at_zero)
    solver = DPMSolver(denoiser)
    lam_end = -math.log(sigma_min)
    orders = dpm_fast_orders(nfe) if nfe > 0 else []
    lams = np.linspace(-math.log(sigma_max), lam_end, len(orders) + 1).tolist()
    for i, order in enumerate(orders):
        lam_target, noise_std = ancestral_target(lams[i], lams[i + 1], lam_end, opts.eta_ancestral)
        eps, denoised = solver.eps(x, lams[i])
        if order == 1:
            x = solver.first_order(x, lams[i], lam_target, eps)
        elif order == 2:
            x = solver.second_order(x, lams[i], lam_target, eps)
        else:
            x = solver.third_order(x, lams[i], lam_target, eps)[1]
        x = add_noise(x, rng, opts.s_noise * noise_std)
        callback(i, x, denoised, math.exp(-lams[i]))
    return finish_with_denoise(denoiser, x, sigma_min, len(orders), callback) if ends_at_zero else x


# DPM-Solver's adaptive defaults: tolerances relative to the latent's scale, first step size in log sigma
ADAPTIVE_RTOL, ADAPTIVE_ATOL, ADAPTIVE_H_INIT, ADAPTIVE_ACCEPT_SAFETY = 0.05, 0.0078, 0.05, 0.81


def sample_dpm_adaptive(denoiser, x, sigmas, rng, callback, opts: SamplerOptions):
    """DPM-Solver-12/23 with error-controlled step size (Lu et al., 2022); ignores the step count of the list.

    Integrates from sigmas[0] to the smallest positive sigma, then denoises to sigma 0 if the list ends there.
    """
    sig = sigmas.tolist()
    sigma_max, sigma_min, ends_at_zero = solver_range(sig)
    solver = DPMSolver(denoiser)
    eta = opts.eta_ancestral
    error_order = 1.5 if eta else 3.0  # the noise lowers the effective order the controller assumes
    lam, lam_end, h = -math.log(sigma_max), -math.log(sigma_min), ADAPTIVE_H_INIT
    x_prev, cached, i = x, None, 0
    while lam < lam_end - 1e-5:
        lam_next = min(lam_end, lam + h)
        lam_target, noise_std = ancestral_target(lam, lam_next, lam_end, eta)
        eps, denoised = cached or solver.eps(x, lam)
        x_low, x_high = solver.third_order(x, lam, lam_target, eps)
        scale = ADAPTIVE_RTOL * torch.maximum(x_low.abs(), x_prev.abs())
        delta = torch.maximum(torch.full_like(x_low, ADAPTIVE_ATOL), scale)
        error = float(torch.linalg.vector_norm((x_low - x_high) / delta)) / math.sqrt(x.numel())
        factor = 1 + math.atan((1 / (error + 1e-8)) ** (1 / error_order) - 1)
        if not math.isfinite(error) or factor >= ADAPTIVE_ACCEPT_SAFETY:
            x_prev = x_low
            x = add_noise(x_high, rng, opts.s_noise * noise_std)
            callback(i, x, denoised, math.exp(-lam))
            lam, cached, i = lam_next, None, i + 1
        else:
            cached = eps, denoised  # a rejected step retries from the same point: reuse its evaluation
        if math.isfinite(factor):
            h *= factor
    return finish_with_denoise(denoiser, x, sigma_min, i, callback) if ends_at_zero else x


def sample_dpmpp_2s_ancestral(denoiser, x, sigmas, rng, callback, opts: SamplerOptions):
    """DPM-Solver++(2S) (Lu et al., 2022) to the ancestral sigma_down, then fresh noise."""
    sig = sigmas.tolist()
    for i in range(len(sig) - 1):
        sigma = sig[i]
        denoised = denoise(denoiser, x, sigma)
        sigma_down, sigma_up = ancestral_step(sigma, sig[i + 1], opts.eta_ancestral)
        if sigma_down == 0:
            x = denoised
        else:
            sigma_mid = math.sqrt(sigma * sigma_down)
            denoised_mid = denoise(denoiser, first_order_step(x, sigma, sigma_mid, denoised), sigma_mid)
            x = first_order_step(x, sigma, sigma_down, denoised_mid)
        x = add_noise(x, rng, opts.s_noise * sigma_up)
        callback(i, x, denoised, sigma)
    return x


def sample_dpmpp_2m(denoiser, x, sigmas, rng, callback, opts: SamplerOptions):
    """DPM-Solver++(2M): second-order multistep with the previous step's denoised estimate."""
    sig = sigmas.tolist()
    old_denoised, h_last = None, None
    for i in range(len(sig) - 1):
        sigma, sigma_next = sig[i], sig[i + 1]
        denoised = denoise(denoiser, x, sigma)
        if sigma_next == 0:
            x = denoised
        else:
            h = math.log(sigma / sigma_next)
            target = denoised
            if old_denoised is not None:
                r = h_last / h
                target = (1 + 1 / (2 * r)) * denoised - (1 / (2 * r)) * old_denoised
            x = first_order_step(x, sigma, sigma_next, target)
            h_last = h
        old_denoised = denoised
        callback(i, x, denoised, sigma)
    return x


class BrownianNoise:
    """Brownian-motion increments over sigma, one tree per image seeded with its seed (batches reproduce singles)."""

    def __init__(self, x: torch.Tensor, sigma_min: float, sigma_max: float, seeds: list[int]):
        if len(seeds) != x.shape[0]:
            raise ValueError(f"Brownian noise needs one seed per image: {len(seeds)} seeds for a batch of {x.shape[0]}")
        w0 = torch.zeros(x.shape[1:], dtype=torch.float32, device=x.device)
        # torchsde rounds the tree's ends to its tolerance (1e-6): widen them so every query stays inside
        t0, t1 = math.floor(sigma_min * 1e6) / 1e6, math.ceil(sigma_max * 1e6) / 1e6
        self.trees = [torchsde.BrownianTree(t0, w0, t1, tol=1e-6, entropy=int(seed)) for seed in seeds]
        self.dtype = x.dtype

    def __call__(self, sigma: float, sigma_next: float) -> torch.Tensor:
        """Unit-variance noise: the tree's increment from sigma to sigma_next over its standard deviation."""
        lo, hi = min(sigma, sigma_next), max(sigma, sigma_next)
        sign = -1.0 if sigma > sigma_next else 1.0
        w = torch.stack([tree(lo, hi) for tree in self.trees])
        return (w * (sign / math.sqrt(hi - lo))).to(self.dtype)


def brownian_noise(x, sig: list[float], rng, eta: float) -> BrownianNoise | None:
    """The noise source of an SDE sampler, or None when it adds no noise (eta 0 or no step between two sigmas > 0)."""
    positive = [s for s in sig if s > 0]
    if eta == 0 or len(positive) < 2:
        return None
    return BrownianNoise(x, min(positive), max(positive), rng.seeds)


def sample_dpmpp_sde(denoiser, x, sigmas, rng, callback, opts: SamplerOptions):
    """DPM-Solver++ SDE: a stochastic half step to the log-space midpoint, then a stochastic full step."""
    sig = sigmas.tolist()
    eta = opts.eta_ancestral
    noise = brownian_noise(x, sig, rng, eta)
    for i in range(len(sig) - 1):
        sigma, sigma_next = sig[i], sig[i + 1]
        denoised = denoise(denoiser, x, sigma)
        if sigma_next == 0:
            x = denoised
        else:
            sigma_mid = math.sqrt(sigma * sigma_next)
            sigma_down, sigma_up = ancestral_step(sigma, sigma_mid, eta)
            x_mid = first_order_step(x, sigma, sigma_down, denoised)
            if sigma_up > 0:
                x_mid = x_mid + noise(sigma, sigma_mid) * opts.s_noise * sigma_up
            denoised_mid = denoise(denoiser, x_mid, sigma_mid)
            sigma_down, sigma_up = ancestral_step(sigma, sigma_next, eta)
            x = first_order_step(x, sigma, sigma_down, denoised_mid)
            if sigma_up > 0:
                x = x + noise(sigma, sigma_next) * opts.s_noise * sigma_up
        callback(i, x, denoised, sigma)
    return x


def sample_dpmpp_2m_sde(denoiser, x, sigmas, rng, callback, opts: SamplerOptions, solver_type: str = "midpoint"):
    """DPM-Solver++(2M) SDE: exponential integrator with eta-scaled noise; midpoint or Heun-style correction."""
    sig = sigmas.tolist()
    eta = opts.eta_ancestral
    noise = brownian_noise(x, sig, rng, eta)
    old_denoised, h_last = None, None
    for i in range(len(sig) - 1):
        sigma, sigma_next = sig[i], sig[i + 1]
        denoised = denoise(denoiser, x, sigma)
        if sigma_next == 0:
            x = denoised
        else:
            h = math.log(sigma / sigma_next)
            h_eta = h * (1 + eta)
            keep = -math.expm1(-h_eta)
            x = math.exp(-h_eta) * x + keep * denoised
            if old_denoised is not None:
                r = h_last / h
                if solver_type == "heun":
                    x = x + (keep / -h_eta + 1) * (1 / r) * (denoised - old_denoised)
                else:
                    x = x + 0.5 * keep * (1 / r) * (denoised - old_denoised)
            if noise is not None:
                x = x + noise(sigma, sigma_next) * (sigma_next * math.sqrt(-math.expm1(-2 * eta * h)) * opts.s_noise)
            h_last = h
        old_denoised = denoised
        callback(i, x, denoised, sigma)
    return x


def sample_dpmpp_3m_sde(denoiser, x, sigmas, rng, callback, opts: SamplerOptions):
    """DPM-Solver++(3M) SDE: third-order multistep exponential integrator with eta-scaled noise."""
    sig = sigmas.tolist()
    eta = opts.eta_ancestral
    noise = brownian_noise(x, sig, rng, eta)
    denoised_1 = denoised_2 = None
    h_1 = h_2 = None
    for i in range(len(sig) - 1):
        sigma, sigma_next = sig[i], sig[i + 1]
        denoised = denoise(denoiser, x, sigma)
        if sigma_next == 0:
            x = denoised
        else:
            h = math.log(sigma / sigma_next)
            h_eta = h * (1 + eta)
            x = math.exp(-h_eta) * x - math.expm1(-h_eta) * denoised
            phi_2 = math.expm1(-h_eta) / h_eta + 1
            if h_2 is not None:
                r0, r1 = h_1 / h, h_2 / h
                d1_0 = (denoised - denoised_1) / r0
                d1_1 = (denoised_1 - denoised_2) / r1
                d1 = d1_0 + (d1_0 - d1_1) * r0 / (r0 + r1)
                d2 = (d1_0 - d1_1) / (r0 + r1)
                phi_3 = phi_2 / h_eta - 0.5
                x = x + phi_2 * d1 - phi_3 * d2
            elif h_1 is not None:
                x = x + phi_2 * (denoised - denoised_1) / (h_1 / h)
            if noise is not None:
                x = x + noise(sigma, sigma_next) * (sigma_next * math.sqrt(-math.expm1(-2 * eta * h)) * opts.s_noise)
            h_1, h_2 = h, h_1
        denoised_1, denoised_2 = denoised, denoised_1
        callback(i, x, denoised, sigma)
    return x


def restart_plan(sig: list[float]) -> tuple[int, int, list[float]] | None:
    """Where and how Restart sampling (Xu et al., 2023) jumps back, for walks of 20 steps or more.

    Returns (index after which to restart, number of restarts, the sigmas of one restart segment), or None.
    From the sigma nearest 0.1 it renoises to the sigma nearest 2 and walks a Karras segment back down:
    9 steps once, or steps // 4 steps twice from 36 steps on (A1111's choices).
    """
    n = len(sig) - 1
    if n < 20:
        return None
    segment_steps, times = (n // 4, 2) if n >= 36 else (9, 1)
    low = min(range(len(sig)), key=lambda k: abs(sig[k] - 0.1))
    high = min(range(len(sig)), key=lambda k: abs(sig[k] - 2.0))
    if not (high < low and sig[low] > 0):
        return None
    segment = karras(segment_steps + 1, sig[low], sig[high])[:-1].tolist()
    return low, times, segment


def sample_restart(denoiser, x, sigmas, rng, callback, opts: SamplerOptions):
    """Heun steps along the sigmas; long walks add restart segments (renoise, then Heun back down)."""
    sig = sigmas.tolist()
    plan = restart_plan(sig)
    for i in range(len(sig) - 1):
        denoised = denoise(denoiser, x, sig[i])
        x = heun_step(denoiser, x, sig[i], sig[i + 1], denoised)
        callback(i, x, denoised, sig[i])
        if plan is not None and i + 1 == plan[0]:
            low, times, segment = plan
            for _ in range(times):
                x = add_noise(x, rng, opts.s_noise * math.sqrt(segment[0] ** 2 - sig[low] ** 2))
                for sigma, sigma_next in zip(segment[:-1], segment[1:]):
                    x = heun_step(denoiser, x, sigma, sigma_next, denoise(denoiser, x, sigma))
    return x


def sample_lcm(denoiser, x, sigmas, rng, callback, opts: SamplerOptions):
    """Latent Consistency Model sampling: jump to the denoised estimate, then renoise to the next sigma."""
    sig = sigmas.tolist()
    for i in range(len(sig) - 1):
        denoised = denoise(denoiser, x, sig[i])
        x = add_noise(denoised, rng, sig[i + 1])
        callback(i, x, denoised, sig[i])
    return x


# A1111's table of its k-diffusion samplers: (label, function name in this module, aliases, options). Options use
# A1111's keys: scheduler (what Automatic means; uniform when absent), second_order, uses_ensd (ancestral noise),
# brownian_noise, discard_next_to_last_sigma, solver_type (passed to the function).
samplers_k_diffusion: list[tuple[str, str, list[str], dict]] = [
    ("DPM++ 2M", "sample_dpmpp_2m", ["k_dpmpp_2m"], {"scheduler": "karras"}),
    ("DPM++ SDE", "sample_dpmpp_sde", ["k_dpmpp_sde"],
     {"scheduler": "karras", "second_order": True, "brownian_noise": True}),
    ("DPM++ 2M SDE", "sample_dpmpp_2m_sde", ["k_dpmpp_2m_sde"], {"scheduler": "exponential", "brownian_noise": True}),
    ("DPM++ 2M SDE Heun", "sample_dpmpp_2m_sde", ["k_dpmpp_2m_sde_heun"],
     {"scheduler": "exponential", "brownian_noise": True, "solver_type": "heun"}),
    ("DPM++ 2S a", "sample_dpmpp_2s_ancestral", ["k_dpmpp_2s_a"],
     {"scheduler": "karras", "uses_ensd": True, "second_order": True}),
    ("DPM++ 3M SDE", "sample_dpmpp_3m_sde", ["k_dpmpp_3m_sde"],
     {"scheduler": "exponential", "discard_next_to_last_sigma": True, "brownian_noise": True}),
    ("Euler a", "sample_euler_ancestral", ["k_euler_a", "k_euler_ancestral"], {"uses_ensd": True}),
    ("Euler", "sample_euler", ["k_euler"], {}),
    ("LMS", "sample_lms", ["k_lms"], {}),
    ("Heun", "sample_heun", ["k_heun"], {"second_order": True}),
    ("DPM2", "sample_dpm_2", ["k_dpm_2"],
     {"scheduler": "karras", "discard_next_to_last_sigma": True, "second_order": True}),
    ("DPM2 a", "sample_dpm_2_ancestral", ["k_dpm_2_a"],
     {"scheduler": "karras", "discard_next_to_last_sigma": True, "uses_ensd": True, "second_order": True}),
    ("DPM fast", "sample_dpm_fast", ["k_dpm_fast"], {"uses_ensd": True}),
    ("DPM adaptive", "sample_dpm_adaptive", ["k_dpm_ad"], {"uses_ensd": True}),
    ("Restart", "sample_restart", ["restart"], {"scheduler": "karras", "second_order": True}),
]

# A1111's class names: one sampler object and one CFG denoiser serve every sampler here and in sd_samplers_timesteps
KDiffusionSampler = sd_samplers_common.Sampler
CFGDenoiserKDiffusion = CFGDenoiser
