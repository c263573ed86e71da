"""The sampler list, name resolution, the sigmas a sampler walks, and running a sampler (A1111's public names)."""

from __future__ import annotations

import functools
from collections.abc import Callable

import torch

from modules import job_context, sd_samplers_kdiffusion as kd, sd_samplers_timesteps as ts, sd_schedulers
from modules.sd_samplers_common import ModelSigmas, Sampler, SamplerData, SamplerOptions
from modules.sd_schedulers import Scheduler

AUTOMATIC = "Automatic"


def _entry(name: str, function: Callable, aliases, options: dict) -> SamplerData:
    return SamplerData(name, functools.partial(Sampler, function), tuple(aliases), options)


def _k_diffusion_sampler(label: str, funcname: str, aliases: list[str], options: dict) -> SamplerData:
    """One row of A1111's samplers_k_diffusion table as a SamplerData."""
    function = getattr(kd, funcname)
    if "solver_type" in options:
        function = functools.partial(function, solver_type=options["solver_type"])
    return _entry(label, function, aliases, options)


_TIMESTEPS = {"scheduler": "ddim", "timestep_based": True}
all_samplers: list[SamplerData] = [
    *(_k_diffusion_sampler(*row) for row in kd.samplers_k_diffusion),
    _entry("DDIM", ts.sample_ddim, ["ddim"], _TIMESTEPS),
    _entry("DDIM CFG++", ts.sample_ddim_cfgpp, ["ddim_cfgpp"], _TIMESTEPS),
    _entry("PLMS", ts.sample_plms, ["plms"], _TIMESTEPS),
    _entry("UniPC", ts.sample_unipc, ["unipc"], {"scheduler": "uniform", "timestep_based": True}),
    _entry("LCM", kd.sample_lcm, ["k_lcm"], {}),
]
# name or alias -> SamplerData; extensions add entries (a wrapped constructor under a new name) and remove them
all_samplers_map: dict[str, SamplerData] = {key: s for s in all_samplers for key in (s.name, *s.aliases)}
# A1111's samplers_map: lower-case name or alias -> name
samplers_map: dict[str, str] = {key.lower(): s.name for key, s in all_samplers_map.items()}
# A1111's approximation indexes (sample_to_image) as live preview methods
APPROXIMATIONS = ("Full", "Approx NN", "Approx cheap", "TAESD")


def visible_samplers() -> list[SamplerData]:
    """The samplers the UI offers: all but those of the hide_samplers setting."""
    hidden = set(job_context.settings().hide_samplers)
    return [s for s in all_samplers if s.name not in hidden]


def __getattr__(name):
    # A1111's `samplers` / `samplers_for_img2img`, read at access time so a change of hide_samplers shows at once
    if name in ("samplers", "samplers_for_img2img"):
        return visible_samplers()
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def find_sampler(name: str) -> SamplerData | None:
    """Lookup by name or alias in all_samplers_map (with what extensions added), exact first, then ignoring case."""
    if not name:
        return None
    found = all_samplers_map.get(name)
    if found is not None:
        return found
    key = name.strip().lower()
    return next((s for k, s in all_samplers_map.items() if k.lower() == key), None)


def create_sampler(name: str, model) -> Sampler:
    """A1111's: the sampler object for one run; its model_wrap_cfg is the CFG denoiser the run calls."""
    config = find_sampler(name)
    if config is None:
        raise ValueError(f"Sampler not found: {name}")
    sampler = config.constructor(model)
    sampler.config = config
    return sampler


def _scheduler_not_found(name: str) -> ValueError:
    labels = ", ".join([AUTOMATIC, *(s.label for s in sd_schedulers.schedulers)])
    return ValueError(f"Scheduler not found: {name}; valid choices: {labels}")


def _split_scheduler_suffix(name: str) -> tuple[SamplerData, Scheduler] | None:
    """An old combined name such as "DPM++ 2M Karras": (sampler, scheduler) when it ends in " <scheduler key>"."""
    lower = name.strip().lower()
    for key, scheduler in sd_schedulers.schedulers_map.items():
        suffix = " " + key.lower()
        if lower.endswith(suffix):
            sampler = find_sampler(lower[: -len(suffix)])
            if sampler is not None:
                return sampler, scheduler
    return None


def resolve_sampler_scheduler(sampler_name: str | None, scheduler: str | None) -> tuple[str, str]:
    """(canonical sampler name, scheduler label) from user input, API requests or infotext.

    An old combined name's suffix ("DPM++ 2M Karras") sets the scheduler, as in A1111; no sampler name means the
    first sampler; no scheduler means Automatic. Raises ValueError naming the valid choices for unknown names.
    """
    if not sampler_name:
        sampler_name = all_samplers[0].name
    sampler = find_sampler(sampler_name)
    if sampler is None:
        split = _split_scheduler_suffix(sampler_name)
        if split is None:
            names = ", ".join(s.name for s in all_samplers)
            raise ValueError(f"Sampler not found: {sampler_name}; valid choices: {names}")
        return split[0].name, split[1].label
    if not scheduler or scheduler.strip().lower() == AUTOMATIC.lower():
        return sampler.name, AUTOMATIC
    found = sd_schedulers.find_scheduler(scheduler)
    if found is None:
        raise _scheduler_not_found(scheduler)
    return sampler.name, found.label


def effective_scheduler(sampler: SamplerData, scheduler_label: str) -> Scheduler:
    """The schedule type that runs: the sampler's default for Automatic (accepts labels, names and aliases)."""
    if not scheduler_label or scheduler_label.strip().lower() == AUTOMATIC.lower():
        return sd_schedulers.schedulers_map[sampler.default_scheduler]
    found = sd_schedulers.find_scheduler(scheduler_label)
    if found is None:
        raise _scheduler_not_found(scheduler_label)
    return found


def _positive_or_none(options: dict, key: str) -> float | None:
    """A1111's schedule overrides: 0 (or unset) means the default."""
    value = options.get(key)
    return float(value) if value else None


def get_sigmas(sampler: SamplerData, scheduler_label: str, steps: int, model_sigmas: ModelSigmas, *, is_sdxl: bool,
               options: dict | None = None) -> torch.Tensor:
    """The descending float32 sigmas (ending in 0) that `sample` walks for a txt2img pass of `steps` steps.

    Timestep-based samplers take the DDIM timestep grid (UniPC: its skip type) and ignore the schedule type.
    options: A1111's sigma_min, sigma_max, rho (0 = default), use_old_karras_scheduler_sigmas,
    always_discard_next_to_last_sigma, beta_dist_alpha, beta_dist_beta, uni_pc_skip_type.
    """
    if steps < 1:
        raise ValueError(f"Steps must be at least 1, got {steps}")
    options = options or {}
    if sampler.timestep_based:
        if sampler.name == "UniPC":
            return ts.get_unipc_sigmas(steps, model_sigmas, SamplerOptions.from_options(options).uni_pc_skip_type)
        return sd_schedulers.ddim(steps, model_sigmas.sigma_min, model_sigmas.sigma_max, model_sigmas)
    scheduler = effective_scheduler(sampler, scheduler_label)
    sigma_min, sigma_max = _positive_or_none(options, "sigma_min"), _positive_or_none(options, "sigma_max")
    if scheduler.name == "karras" and options.get("use_old_karras_scheduler_sigmas"):
        sigma_min, sigma_max = 0.1, 10.0
    discard = sampler.discard_penultimate_sigma or bool(options.get("always_discard_next_to_last_sigma"))
    sigmas = sd_schedulers.compute_sigmas(
        scheduler, steps + 1 if discard else steps, model_sigmas, is_sdxl=is_sdxl,
        sigma_min=sigma_min, sigma_max=sigma_max, rho=_positive_or_none(options, "rho"),
        beta_alpha=_positive_or_none(options, "beta_dist_alpha"),
        beta_beta=_positive_or_none(options, "beta_dist_beta"))
    return torch.cat([sigmas[:-2], sigmas[-1:]]) if discard else sigmas


def _no_callback(i: int, x: torch.Tensor, denoised: torch.Tensor, sigma: float) -> None:
    """The callback used when the caller passes none."""


def sample(sampler: Sampler | SamplerData, denoiser, x: torch.Tensor, sigmas: torch.Tensor, rng, *, callback=None,
           options: dict | None = None) -> torch.Tensor:
    """Walk `sigmas` from the noisy start x (already at sigmas[0]) and return the final denoised latent.

    denoiser(x, sigma[B]) -> denoised (CFG applied); rng.next() -> per-image noise, rng.seeds -> per-image seeds.
    callback(i, x, denoised, sigma) runs after each step (DPM fast/adaptive: after each of their own steps).
    options: A1111's eta_ancestral, eta_ddim, s_churn, s_tmin, s_tmax, s_noise and uni_pc_* settings.
    """
    if len(sigmas) < 2:
        raise ValueError(f"A sampler needs at least two sigmas to walk, got {len(sigmas)}")
    if isinstance(sampler, SamplerData):  # an entry of the list: its sampler object, with no model to hold
        sampler = sampler.constructor(None)
    with torch.no_grad():
        return sampler.func(denoiser, x, sigmas, rng, callback or _no_callback, SamplerOptions.from_options(options))


def sample_to_image(samples: torch.Tensor, index: int = 0, approximation: int | None = None):
    """Latent `index` of a batch as a PIL image, decoded with the current model. approximation: A1111's index into
    APPROXIMATIONS; None takes the live preview setting. Full and TAESD decode to the image size, Approx NN to half of
    it, Approx cheap gives one pixel per latent cell (fallbacks: see live_preview.effective_method)."""
    # live_preview imports processing, which imports this module
    from modules import live_preview, sd_models

    method = job_context.settings().show_progress_type if approximation is None else APPROXIMATIONS[approximation]
    model = sd_models.model_manager.current if sd_models.model_manager is not None else None
    return live_preview.latents_to_images(samples[index:index + 1], model, method)[0]
