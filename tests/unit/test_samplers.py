"""The 20 samplers on Gaussian data, where the ideal denoiser and the probability-flow ODE are known exactly.

Data ~ N(MU, S^2) per element: the denoiser is the posterior mean MU + S^2/(S^2+sigma^2) (x - MU), and the ODE maps
x at sigma_max to MU + (x - MU) * S / sqrt(S^2 + sigma_max^2) at sigma 0.
"""

import math

import numpy as np
import pytest
import torch

from modules import sd_samplers, sd_schedulers
from modules.sd_samplers_common import InterruptedException, ModelSigmas

MU, S = 0.5, 1.0
SAMPLER_NAMES = [
    "DPM++ 2M", "DPM++ SDE", "DPM++ 2M SDE", "DPM++ 2M SDE Heun", "DPM++ 2S a", "DPM++ 3M SDE", "Euler a", "Euler",
    "LMS", "Heun", "DPM2", "DPM2 a", "DPM fast", "DPM adaptive", "Restart", "DDIM", "DDIM CFG++", "PLMS", "UniPC",
    "LCM"]
ANCESTRAL = {"Euler a", "DPM++ 2S a", "DPM2 a", "DPM fast", "DPM adaptive"}
BROWNIAN = {"DPM++ SDE", "DPM++ 2M SDE", "DPM++ 2M SDE Heun", "DPM++ 3M SDE"}
DETERMINISTIC = {"DPM++ 2M", "Euler", "LMS", "Heun", "DPM2", "DDIM", "DDIM CFG++", "PLMS", "UniPC"}


@pytest.fixture(scope="module")
def model_sigmas():
    betas = torch.linspace(0.00085**0.5, 0.012**0.5, 1000, dtype=torch.float64) ** 2
    return ModelSigmas(torch.cumprod(1 - betas, 0))


class GaussianDenoiser:
    """The exact denoiser for N(MU, S^2) data; records the sigmas it is called at.

    consistency=True returns the ODE's endpoint instead, which is what an LCM model predicts.
    """

    def __init__(self, model_sigmas, consistency=False, interrupt_at_call=None):
        self.model_sigmas = model_sigmas
        self.uncond_denoised = None
        self.consistency = consistency
        self.interrupt_at_call = interrupt_at_call
        self.sigmas_seen: list[float] = []

    def __call__(self, x, sigma):
        assert sigma.shape == (x.shape[0],) and sigma.dtype == torch.float32
        self.sigmas_seen.append(float(sigma[0]))
        if len(self.sigmas_seen) == self.interrupt_at_call:
            raise InterruptedException()
        s = sigma.to(x.dtype).view(-1, 1, 1, 1)
        if self.consistency:
            return MU + (x - MU) * S / (S**2 + s**2).sqrt()
        return MU + S**2 / (S**2 + s**2) * (x - MU)


class CountingRng:
    """Per-image generators like the caller's ImageRNG; counts draws and reads of the seeds."""

    def __init__(self, seeds, shape):
        self._seeds = list(seeds)
        self.generators = [torch.Generator().manual_seed(s) for s in seeds]
        self.shape = shape
        self.draws = 0
        self.seed_reads = 0

    @property
    def seeds(self):
        self.seed_reads += 1
        return self._seeds

    def next(self):
        self.draws += 1
        return torch.stack([torch.randn(self.shape, generator=g) for g in self.generators])


def start(sampler_name, model_sigmas, steps=30, seeds=(1,), shape=(4, 64, 64), scheduler="Automatic", options=None):
    """(sampler, sigmas, noisy start, rng); the start is each generator's first draw, as the caller does."""
    sampler = sd_samplers.find_sampler(sampler_name)
    sigmas = sd_samplers.get_sigmas(sampler, scheduler, steps, model_sigmas, is_sdxl=False, options=options)
    rng = CountingRng(seeds, shape)
    x = rng.next() * sigmas[0]
    rng.draws = 0
    return sampler, sigmas, x, rng


def ode_solution(x, sigma_start):
    return MU + (x - MU) * S / math.sqrt(S**2 + sigma_start**2)


def relative_error(out, exact):
    return float((out - exact).pow(2).mean().sqrt() / (exact - MU).pow(2).mean().sqrt())


# --- the list and name resolution ------------------------------------------------------------------------------


def test_the_list_holds_the_a1111_samplers_in_order():
    assert [s.name for s in sd_samplers.all_samplers] == SAMPLER_NAMES


def test_sampler_flags():
    by_name = {s.name: s for s in sd_samplers.all_samplers}
    assert {n for n, s in by_name.items() if s.ancestral} == ANCESTRAL
    assert {n for n, s in by_name.items() if s.brownian} == BROWNIAN
    assert {n for n, s in by_name.items() if s.discard_penultimate_sigma} == {"DPM2", "DPM2 a", "DPM++ 3M SDE"}
    assert {n for n, s in by_name.items() if s.timestep_based} == {"DDIM", "DDIM CFG++", "PLMS", "UniPC"}
    assert {n for n, s in by_name.items() if s.second_order} == {
        "DPM++ SDE", "DPM++ 2S a", "Heun", "DPM2", "DPM2 a", "Restart"}
    assert by_name["DPM++ 2M"].default_scheduler == "karras"
    assert by_name["DPM++ 2M SDE"].default_scheduler == "exponential"
    assert by_name["Euler a"].default_scheduler == "uniform"
    assert all(s.default_scheduler in sd_schedulers.schedulers_map for s in sd_samplers.all_samplers)


def test_find_sampler_by_name_and_alias_ignoring_case():
    assert sd_samplers.find_sampler("k_euler_a").name == "Euler a"
    assert sd_samplers.find_sampler("k_euler_ancestral").name == "Euler a"
    assert sd_samplers.find_sampler("K_DPMPP_2M").name == "DPM++ 2M"
    assert sd_samplers.find_sampler("dpm++ 2m sde heun").name == "DPM++ 2M SDE Heun"
    assert sd_samplers.find_sampler("k_dpm_ad").name == "DPM adaptive"
    assert sd_samplers.find_sampler("k_lcm").name == "LCM"
    assert sd_samplers.all_samplers_map["k_dpmpp_3m_sde"].name == "DPM++ 3M SDE"
    assert sd_samplers.find_sampler("Euler b") is None
    assert sd_samplers.find_sampler("") is None


@pytest.mark.parametrize(("name", "scheduler", "expected"), [
    ("DPM++ 2M Karras", None, ("DPM++ 2M", "Karras")),
    ("DPM++ SDE Karras", "", ("DPM++ SDE", "Karras")),
    ("DPM++ 2M SDE Exponential", "Automatic", ("DPM++ 2M SDE", "Exponential")),
    ("DPM++ 2M SDE Heun Karras", None, ("DPM++ 2M SDE Heun", "Karras")),
    ("Euler a", None, ("Euler a", "Automatic")),
    ("k_euler_a", "karras", ("Euler a", "Karras")),
    ("Euler SGMUniform", None, ("Euler", "SGM Uniform")),
    ("dpm2 a karras", None, ("DPM2 a", "Karras")),
    ("DDIM", "automatic", ("DDIM", "Automatic")),
    ("LMS", "align_your_steps", ("LMS", "Align Your Steps")),
    ("Euler", "SGMUniform", ("Euler", "SGM Uniform")),
    (None, None, ("DPM++ 2M", "Automatic")),
])
def test_resolve_sampler_scheduler(name, scheduler, expected):
    assert sd_samplers.resolve_sampler_scheduler(name, scheduler) == expected


def test_resolve_rejects_unknown_names_listing_the_choices():
    with pytest.raises(ValueError, match=r"^Sampler not found: Euler b; valid choices: DPM\+\+ 2M, .*LCM$"):
        sd_samplers.resolve_sampler_scheduler("Euler b", None)
    with pytest.raises(ValueError, match=r"^Sampler not found: Foo Karras"):
        sd_samplers.resolve_sampler_scheduler("Foo Karras", None)
    with pytest.raises(ValueError, match=r"^Scheduler not found: Wavy; valid choices: Automatic, Uniform, Karras"):
        sd_samplers.resolve_sampler_scheduler("Euler", "Wavy")


def test_effective_scheduler_resolves_automatic_to_the_sampler_default():
    dpm2m = sd_samplers.find_sampler("DPM++ 2M")
    assert sd_samplers.effective_scheduler(dpm2m, "Automatic").name == "karras"
    assert sd_samplers.effective_scheduler(dpm2m, "Exponential").name == "exponential"
    assert sd_samplers.effective_scheduler(sd_samplers.find_sampler("Euler"), "Automatic").name == "uniform"
    with pytest.raises(ValueError, match="Scheduler not found: x"):
        sd_samplers.effective_scheduler(dpm2m, "x")


# --- the sigmas a sampler walks ---------------------------------------------------------------------------------


def test_get_sigmas_uses_the_chosen_or_default_schedule(model_sigmas):
    dpm2m = sd_samplers.find_sampler("DPM++ 2M")
    karras = sd_schedulers.karras(10, model_sigmas.sigma_min, model_sigmas.sigma_max)
    assert torch.equal(sd_samplers.get_sigmas(dpm2m, "Automatic", 10, model_sigmas, is_sdxl=False), karras)
    uniform = sd_samplers.get_sigmas(dpm2m, "Uniform", 10, model_sigmas, is_sdxl=False)
    assert torch.equal(uniform, sd_schedulers.uniform(10, 0, 0, model_sigmas))


@pytest.mark.parametrize("name", ["DPM2", "DPM2 a", "DPM++ 3M SDE"])
def test_get_sigmas_discards_the_penultimate_sigma(name, model_sigmas):
    sampler = sd_samplers.find_sampler(name)
    scheduler = sd_samplers.effective_scheduler(sampler, "Automatic")
    full = sd_schedulers.compute_sigmas(scheduler, 11, model_sigmas, is_sdxl=False)
    sigmas = sd_samplers.get_sigmas(sampler, "Automatic", 10, model_sigmas, is_sdxl=False)
    assert sigmas.shape == (11,)
    assert torch.equal(sigmas, torch.cat([full[:-2], full[-1:]]))


def test_get_sigmas_option_overrides(model_sigmas):
    euler = sd_samplers.find_sampler("Euler")
    sigmas = sd_samplers.get_sigmas(euler, "Karras", 4, model_sigmas, is_sdxl=False,
                                    options={"sigma_min": 0.1, "sigma_max": 10, "rho": 3})
    assert torch.equal(sigmas, sd_schedulers.karras(4, 0.1, 10.0, 3.0))
    defaults = sd_samplers.get_sigmas(euler, "Karras", 4, model_sigmas, is_sdxl=False,
                                      options={"sigma_min": 0, "sigma_max": 0, "rho": 0})
    assert torch.equal(defaults, sd_schedulers.karras(4, model_sigmas.sigma_min, model_sigmas.sigma_max, 7.0))
    old = sd_samplers.get_sigmas(euler, "Karras", 4, model_sigmas, is_sdxl=False,
                                 options={"use_old_karras_scheduler_sigmas": True})
    assert torch.equal(old, sd_schedulers.karras(4, 0.1, 10.0))
    discarded = sd_samplers.get_sigmas(euler, "Karras", 4, model_sigmas, is_sdxl=False,
                                       options={"always_discard_next_to_last_sigma": True})
    assert discarded.shape == (5,) and float(discarded[-2]) > model_sigmas.sigma_min * 1.5


def test_get_sigmas_align_your_steps_follows_the_model_family(model_sigmas):
    euler = sd_samplers.find_sampler("Euler")
    sd15 = sd_samplers.get_sigmas(euler, "Align Your Steps", 11, model_sigmas, is_sdxl=False)
    sdxl = sd_samplers.get_sigmas(euler, "Align Your Steps", 11, model_sigmas, is_sdxl=True)
    assert float(sd15[1]) == pytest.approx(6.475) and float(sdxl[1]) == pytest.approx(6.315)


@pytest.mark.parametrize("name", ["DDIM", "DDIM CFG++", "PLMS"])
def test_timestep_samplers_ignore_the_schedule_type(name, model_sigmas):
    sampler = sd_samplers.find_sampler(name)
    for label in ("Automatic", "Karras", "Exponential"):
        sigmas = sd_samplers.get_sigmas(sampler, label, 4, model_sigmas, is_sdxl=False)
        expected = np.append(model_sigmas.sigmas[[751, 501, 251, 1]].numpy(), 0)
        np.testing.assert_array_equal(sigmas.numpy(), expected)


def test_unipc_sigmas_follow_the_skip_type(model_sigmas):
    unipc = sd_samplers.find_sampler("UniPC")
    uniform = sd_samplers.get_sigmas(unipc, "Karras", 4, model_sigmas, is_sdxl=False)
    assert torch.allclose(uniform, torch.cat([model_sigmas.t_to_sigma(torch.tensor([999.0, 666.0, 333.0, 0.0])),
                                              torch.zeros(1)]), rtol=1e-5)
    log_snr = sd_samplers.get_sigmas(unipc, "Automatic", 4, model_sigmas, is_sdxl=False,
                                     options={"uni_pc_skip_type": "logSNR"})
    ratios = log_snr[1:-1] / log_snr[:-2]
    assert torch.allclose(ratios, ratios[0].expand_as(ratios), rtol=1e-4)
    quadratic = sd_samplers.get_sigmas(unipc, "Automatic", 4, model_sigmas, is_sdxl=False,
                                       options={"uni_pc_skip_type": "time_quadratic"})
    t = (np.linspace(1, 0.001**0.5, 4) ** 2) * 1000 - 1
    assert torch.allclose(quadratic[:-1], model_sigmas.t_to_sigma(torch.tensor(t, dtype=torch.float32)), rtol=1e-5)
    with pytest.raises(ValueError, match="UniPC skip type not found: sideways"):
        sd_samplers.get_sigmas(unipc, "Automatic", 4, model_sigmas, is_sdxl=False,
                               options={"uni_pc_skip_type": "sideways"})


def test_get_sigmas_rejects_zero_steps(model_sigmas):
    with pytest.raises(ValueError, match="at least 1"):
        sd_samplers.get_sigmas(sd_samplers.find_sampler("Euler"), "Automatic", 0, model_sigmas, is_sdxl=False)


# --- sampling ---------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", SAMPLER_NAMES)
def test_every_sampler_turns_noise_into_the_data_distribution(name, model_sigmas):
    sampler, sigmas, x, rng = start(name, model_sigmas)
    out = sd_samplers.sample(sampler, GaussianDenoiser(model_sigmas, consistency=name == "LCM"), x, sigmas, rng)
    assert out.shape == x.shape and torch.isfinite(out).all()
    assert float(out.mean()) == pytest.approx(MU, abs=0.06)
    assert float(out.std()) == pytest.approx(S, rel=0.15)


# relative RMS error against the exact ODE solution after 30 steps (first-order and adaptive ones are coarser)
ODE_TOLERANCE = {"Euler": 0.06, "DDIM": 0.06, "DDIM CFG++": 0.06, "Euler a": 0.06, "DPM adaptive": 0.05,
                 "UniPC": 0.015, "Restart": 0.03}


@pytest.mark.parametrize("name", sorted(set(SAMPLER_NAMES) - {"LCM"}))
def test_without_noise_samplers_solve_the_probability_flow_ode(name, model_sigmas):
    # Restart's deterministic mode: fewer than 20 steps make no restarts, so it is Heun along the schedule
    steps = 15 if name == "Restart" else 30
    sampler, sigmas, x, rng = start(name, model_sigmas, steps=steps, shape=(4, 16, 16))
    out = sd_samplers.sample(sampler, GaussianDenoiser(model_sigmas), x, sigmas, rng, options={"eta_ancestral": 0})
    assert relative_error(out, ode_solution(x, float(sigmas[0]))) < ODE_TOLERANCE.get(name, 0.01)
    assert rng.draws == 0 and rng.seed_reads == 0


@pytest.mark.parametrize(("name", "options"), [
    ("DPM++ 2M", {}), ("Heun", {}), ("DPM2", {}), ("LMS", {}), ("DPM++ 3M SDE", {}), ("DPM++ 2S a", {}), ("PLMS", {}),
    # at order 3 UniPC's error reaches float32 rounding within 20 steps
    ("UniPC", {"uni_pc_order": 1}), ("UniPC", {"uni_pc_order": 2}),
])
def test_higher_order_samplers_converge_faster_than_euler(name, options, model_sigmas):
    def error(sampler_name, steps):
        sampler = sd_samplers.find_sampler(sampler_name)
        # exponential steps down to the smallest sigma, where the exact solution is known too
        walk = sd_schedulers.exponential(steps, model_sigmas.sigma_min, model_sigmas.sigma_max)[:-1]
        x = torch.randn(1, 4, 8, 8, generator=torch.Generator().manual_seed(0)) * walk[0]
        out = sd_samplers.sample(sampler, GaussianDenoiser(model_sigmas), x, walk, None,
                                 options={"eta_ancestral": 0, **options})
        exact = MU + (x - MU) * math.sqrt((S**2 + float(walk[-1]) ** 2) / (S**2 + float(walk[0]) ** 2))
        return relative_error(out, exact)

    # doubling the steps divides a first-order error by about 2 and a second-order one by about 4
    assert error("Euler", 20) / error("Euler", 40) < 2.2
    assert error(name, 20) / error(name, 40) > 3.5


def test_restart_below_20_steps_is_heun_and_from_20_on_adds_restart_segments(model_sigmas):
    sampler, sigmas, x, rng = start("Restart", model_sigmas, steps=19, shape=(4, 8, 8))
    restart = sd_samplers.sample(sampler, GaussianDenoiser(model_sigmas), x, sigmas, rng)
    heun = sd_samplers.sample(sd_samplers.find_sampler("Heun"), GaussianDenoiser(model_sigmas), x, sigmas, rng)
    assert torch.equal(restart, heun) and rng.draws == 0
    for steps, restarts, segment_steps in ((20, 1, 9), (40, 2, 10)):
        sampler, sigmas, x, rng = start("Restart", model_sigmas, steps=steps, shape=(4, 8, 8))
        denoiser = GaussianDenoiser(model_sigmas)
        sd_samplers.sample(sampler, denoiser, x, sigmas, rng)
        assert rng.draws == restarts
        # Heun: two evaluations per step, one for the step to 0
        assert len(denoiser.sigmas_seen) == 2 * steps - 1 + restarts * 2 * segment_steps
        seen = denoiser.sigmas_seen
        jumps = [k for k in range(1, len(seen)) if seen[k] > 1.5 * seen[k - 1]]
        assert len(jumps) >= restarts
        assert max(seen[k] for k in jumps) == pytest.approx(2.0, rel=0.3)


def test_noise_sources(model_sigmas):
    for name in SAMPLER_NAMES:
        sampler, sigmas, x, rng = start(name, model_sigmas, steps=20, shape=(4, 8, 8))
        sd_samplers.sample(sampler, GaussianDenoiser(model_sigmas, consistency=name == "LCM"), x, sigmas, rng)
        draws_noise = name in ANCESTRAL or name in {"Restart", "LCM"}
        assert (rng.draws > 0) == draws_noise, name
        assert (rng.seed_reads > 0) == (name in BROWNIAN), name


def test_option_driven_noise(model_sigmas):
    for name, options in [("Euler", {"s_churn": 1.0}), ("Heun", {"s_churn": 1.0}), ("DDIM", {"eta_ddim": 0.5}),
                          ("DDIM CFG++", {"eta_ddim": 1.0})]:
        sampler, sigmas, x, rng = start(name, model_sigmas, steps=10, shape=(4, 8, 8))
        quiet = sd_samplers.sample(sampler, GaussianDenoiser(model_sigmas), x, sigmas, rng)
        assert rng.draws == 0, name
        noisy = sd_samplers.sample(sampler, GaussianDenoiser(model_sigmas), x, sigmas, rng, options=options)
        assert rng.draws > 0 and not torch.allclose(quiet, noisy), name
    sampler, sigmas, x, rng = start("Euler", model_sigmas, steps=10, shape=(4, 8, 8))
    outside = {"s_churn": 1.0, "s_tmin": 100.0}  # churn only applies between s_tmin and s_tmax
    sd_samplers.sample(sampler, GaussianDenoiser(model_sigmas), x, sigmas, rng, options=outside)
    assert rng.draws == 0


def test_brownian_noise_depends_on_the_seed(model_sigmas):
    sampler, sigmas, x, rng_a = start("DPM++ 2M SDE", model_sigmas, steps=10, shape=(4, 8, 8))
    a = sd_samplers.sample(sampler, GaussianDenoiser(model_sigmas), x, sigmas, rng_a)
    again = sd_samplers.sample(sampler, GaussianDenoiser(model_sigmas), x, sigmas, CountingRng([1], (4, 8, 8)))
    other = sd_samplers.sample(sampler, GaussianDenoiser(model_sigmas), x, sigmas, CountingRng([2], (4, 8, 8)))
    assert torch.equal(a, again)
    assert not torch.allclose(a, other)


@pytest.mark.parametrize("name", ["Euler a", "DPM++ 2M SDE"])
def test_a_batch_reproduces_its_single_images(name, model_sigmas):
    seeds, shape = (100, 101), (4, 8, 8)
    sampler, sigmas, x, rng = start(name, model_sigmas, steps=12, seeds=seeds, shape=shape)
    batch = sd_samplers.sample(sampler, GaussianDenoiser(model_sigmas), x, sigmas, rng)
    for k, seed in enumerate(seeds):
        _, _, x_single, rng_single = start(name, model_sigmas, steps=12, seeds=(seed,), shape=shape)
        assert torch.equal(x_single[0], x[k])
        single = sd_samplers.sample(sampler, GaussianDenoiser(model_sigmas), x_single, sigmas, rng_single)
        assert torch.equal(single[0], batch[k])


@pytest.mark.parametrize("name", [n for n in SAMPLER_NAMES if n not in {"DPM fast", "DPM adaptive"}])
def test_callback_runs_once_per_step_in_order(name, model_sigmas):
    sampler, sigmas, x, rng = start(name, model_sigmas, steps=8, shape=(4, 8, 8))
    calls = []
    out = sd_samplers.sample(sampler, GaussianDenoiser(model_sigmas, consistency=name == "LCM"), x, sigmas, rng,
                             callback=lambda i, xi, denoised, sigma: calls.append((i, sigma, xi, denoised)))
    assert [c[0] for c in calls] == list(range(len(sigmas) - 1))
    assert [c[1] for c in calls] == pytest.approx(sigmas[:-1].tolist())
    assert torch.equal(calls[-1][2], out)
    assert all(c[3].shape == x.shape for c in calls)


@pytest.mark.parametrize("name", ["DPM fast", "DPM adaptive"])
def test_dpm_solvers_walk_from_the_first_to_the_last_sigma(name, model_sigmas):
    sampler, sigmas, x, rng = start(name, model_sigmas, steps=10, shape=(4, 8, 8))
    denoiser = GaussianDenoiser(model_sigmas)
    calls = []
    out = sd_samplers.sample(sampler, denoiser, x, sigmas, rng, callback=lambda i, *rest: calls.append(i))
    assert denoiser.sigmas_seen[0] == pytest.approx(float(sigmas[0]), rel=1e-5)
    assert denoiser.sigmas_seen[-1] == pytest.approx(float(sigmas[-2]), rel=1e-5)  # the final denoise
    assert min(denoiser.sigmas_seen) == pytest.approx(float(sigmas[-2]), rel=1e-5)
    assert max(denoiser.sigmas_seen) == pytest.approx(float(sigmas[0]), rel=1e-5)
    assert calls == list(range(len(calls))) and torch.isfinite(out).all()
    if name == "DPM fast":
        assert len(denoiser.sigmas_seen) == 10  # one evaluation per step of the list
    else:
        assert len(denoiser.sigmas_seen) < 200


def test_img2img_tail_starts_where_the_caller_put_the_noise(model_sigmas):
    sampler = sd_samplers.find_sampler("DPM++ 2M")
    full = sd_samplers.get_sigmas(sampler, "Automatic", 20, model_sigmas, is_sdxl=False)
    tail = full[12:]
    x = torch.full((1, 4, 8, 8), MU) + torch.randn(1, 4, 8, 8, generator=torch.Generator().manual_seed(3)) * tail[0]
    denoiser = GaussianDenoiser(model_sigmas)
    out = sd_samplers.sample(sampler, denoiser, x, tail, None)
    assert denoiser.sigmas_seen == pytest.approx(tail[:-1].tolist())
    assert relative_error(out, ode_solution(x, float(tail[0]))) < 0.01


@pytest.mark.parametrize("name", SAMPLER_NAMES)
def test_interruption_propagates(name, model_sigmas):
    sampler, sigmas, x, rng = start(name, model_sigmas, steps=6, shape=(4, 8, 8))
    with pytest.raises(InterruptedException):
        sd_samplers.sample(sampler, GaussianDenoiser(model_sigmas, interrupt_at_call=3), x, sigmas, rng)


def test_ddim_cfgpp_renoises_along_the_unconditional_prediction(model_sigmas):
    class TwoBranchDenoiser:
        def __init__(self):
            self.model_sigmas = model_sigmas
            self.uncond_denoised = None

        def __call__(self, x, sigma):
            self.uncond_denoised = torch.full_like(x, -1.0)
            return torch.full_like(x, 2.0)

    sampler = sd_samplers.find_sampler("DDIM CFG++")
    x = torch.full((1, 4, 2, 2), 5.0)
    sigmas = torch.tensor([4.0, 1.0])
    out = sd_samplers.sample(sampler, TwoBranchDenoiser(), x, sigmas, None)
    # denoised + sigma_next * (x - uncond) / sigma = 2 + 1 * (5 + 1) / 4
    assert torch.allclose(out, torch.full_like(x, 3.5))
    plain = sd_samplers.sample(sd_samplers.find_sampler("DDIM"), TwoBranchDenoiser(), x, sigmas, None)
    assert torch.allclose(plain, torch.full_like(x, 2.0 + (5.0 - 2.0) / 4))


def test_lcm_jumps_to_the_denoised_estimate_and_renoises(model_sigmas):
    sampler = sd_samplers.find_sampler("LCM")
    rng = CountingRng([5], (4, 2, 2))
    expected_noise = torch.randn((1, 4, 2, 2), generator=torch.Generator().manual_seed(5))
    denoiser = GaussianDenoiser(model_sigmas)
    x = torch.full((1, 4, 2, 2), 3.0)
    sigmas = torch.tensor([2.0, 0.5, 0.0])
    calls = []
    sd_samplers.sample(sampler, denoiser, x, sigmas, rng, callback=lambda i, xi, d, s: calls.append((xi, d)))
    first_denoised = MU + S**2 / (S**2 + 4.0) * (3.0 - MU)
    assert torch.allclose(calls[0][0], first_denoised + 0.5 * expected_noise)
    assert torch.equal(calls[1][0], calls[1][1])  # the last step ends on the denoised estimate
    assert rng.draws == 1


def test_unipc_rejects_an_unsupported_variant(model_sigmas):
    sampler, sigmas, x, rng = start("UniPC", model_sigmas, steps=4, shape=(4, 2, 2))
    with pytest.raises(ValueError, match="UniPC variant not supported: vary_coeff; valid choices: bh1, bh2"):
        sd_samplers.sample(sampler, GaussianDenoiser(model_sigmas), x, sigmas, rng,
                           options={"uni_pc_variant": "vary_coeff"})


def test_unipc_variants_and_orders_all_solve_the_ode(model_sigmas):
    for options in ({"uni_pc_variant": "bh2"}, {"uni_pc_order": 1}, {"uni_pc_order": 2},
                    {"uni_pc_lower_order_final": False, "uni_pc_skip_type": "logSNR"}):
        sampler, sigmas, x, rng = start("UniPC", model_sigmas, steps=30, shape=(4, 8, 8), options=options)
        out = sd_samplers.sample(sampler, GaussianDenoiser(model_sigmas), x, sigmas, rng, options=options)
        assert relative_error(out, ode_solution(x, float(sigmas[0]))) < 0.03, options


def test_sample_needs_two_sigmas(model_sigmas):
    with pytest.raises(ValueError, match="at least two sigmas"):
        sd_samplers.sample(sd_samplers.find_sampler("Euler"), GaussianDenoiser(model_sigmas), torch.zeros(1, 4, 2, 2),
                           torch.tensor([1.0]), None)
