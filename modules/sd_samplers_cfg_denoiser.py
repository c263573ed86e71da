"""The denoiser the samplers call: UNet + classifier-free guidance + the refiner switch + interrupt checks.

Conditioning is scheduled (prompt editing, alternation) and may be composed with AND: at each UNet evaluation the
denoiser picks every sub-prompt's conditioning for that evaluation and combines
denoised = uncond + sum_i weight_i * cfg * (cond_i - uncond)  (A1111's composable diffusion).
"""
from __future__ import annotations

import contextlib
import dataclasses
from collections.abc import Callable
from dataclasses import dataclass

import torch

from modules import model_families, prompt_parser, script_callbacks
from modules.prompt_encoding import Conditioning
from modules.sd_samplers_common import InterruptedException, ModelSigmas


@dataclass
class UNetStage:
    """One model's part of a run: its UNet, conditioning schedules and extra inputs (SDXL time ids, inpainting channels)."""

    model: object                     # sd_models.StableDiffusionModel
    cond: prompt_parser.MulticondLearnedConditioning
    uncond: list[list[prompt_parser.ScheduledPromptConditioning]]
    time_ids: torch.Tensor | None = None        # [2B, n] cond rows then uncond rows (SDXL)
    image_conditioning: torch.Tensor | None = None  # [B, 5, h, w] for 9-channel inpainting UNets
    control: object | None = None  # controlnet.apply.ControlStack: residuals added to the UNet's skip connections
    guidance: float | None = None  # distilled guidance of flow models that embed it (Flux.1 dev)


class CFGDenoiser:
    """denoiser(x, sigma) -> denoised x0 with CFG applied; switches to the refiner stage once, inside the same run."""

    def __init__(self, sampler=None):
        """A1111's signature: made with the run's sampler object (sd_samplers_common.Sampler); prepare() sets the
        run up, so an extension's subclass made by a sampler constructor is the one the run calls."""
        self.sampler = sampler
        self.step = 0  # set by the sampling callback

    def prepare(self, stage: UNetStage, cfg_scale: float | torch.Tensor, state, *, refiner: Callable[[], UNetStage] | None = None,
                switch_at: float = 1.0, switch_by_steps: bool = False, schedule: list[float] | None = None):
        self.stage = stage
        self.cfg_scale = cfg_scale  # a float, or a [B] tensor: one scale per image (requests batched together)
        self.state = state
        self.refiner = refiner
        self.switch_at = switch_at
        self.switch_by_steps = switch_by_steps
        self.schedule = schedule or [0.0]  # the run's sigmas on the host: switch decisions need no GPU sync
        self.model_sigmas: ModelSigmas = stage.model.model_sigmas
        self.uncond_denoised: torch.Tensor | None = None
        self.step = 0
        self.evaluations = 0  # UNet evaluations so far: the clock of prompt editing, as A1111 counts it
        self.switched_at_step: int | None = None
        self.switch_step: int | None = None  # the refiner's first step, decided at the first evaluation
        self.calls: list[tuple[int, str]] = []  # (step, checkpoint title) per UNet evaluation, for tests and logs
        return self

    def __call__(self, x: torch.Tensor, sigma: torch.Tensor) -> torch.Tensor:
        if self.state.interrupted or self.state.skipped:
            raise InterruptedException
        sigma = sigma.reshape(-1).expand(x.shape[0]) if sigma.numel() == 1 else sigma
        self._maybe_switch()
        stage = self.stage
        self.calls.append((self.step, stage.model.sd_checkpoint_info.title))
        conds_list, cond = prompt_parser.reconstruct_multicond_batch(stage.cond, self.evaluations)
        uncond = prompt_parser.reconstruct_cond_batch(stage.uncond, self.evaluations)
        self.evaluations += 1
        if script_callbacks.callbacks("cfg_denoiser"):
            stage, x, sigma, cond, uncond = self._cfg_denoiser_callback(stage, x, sigma, cond, uncond)
        denoised = self._guided(stage, x, sigma, conds_list, cond, uncond)
        if script_callbacks.callbacks("cfg_after_cfg"):
            params = script_callbacks.AfterCFGCallbackParams(denoised, self.step, self.total_steps)
            script_callbacks.cfg_after_cfg_callback(params)
            denoised = params.x
        return denoised

    @property
    def total_steps(self) -> int:
        return max(len(self.schedule) - 1, 1)

    def _cfg_denoiser_callback(self, stage: UNetStage, x, sigma, cond: Conditioning, uncond: Conditioning):
        """on_cfg_denoiser may replace the latents, sigmas, conditioning and image conditioning of this evaluation."""
        params = script_callbacks.CFGDenoiserParams(x, stage.image_conditioning, sigma, self.step, self.total_steps,
                                                    _a1111_cond(cond), _a1111_cond(uncond), self)
        script_callbacks.cfg_denoiser_callback(params)
        if params.image_cond is not stage.image_conditioning:  # for this evaluation only
            stage = dataclasses.replace(stage, image_conditioning=params.image_cond)
        return stage, params.x, params.sigma, _our_cond(params.text_cond), _our_cond(params.text_uncond)

    def _cfg_denoised(self, stage: UNetStage, cond_out: torch.Tensor, uncond_out: torch.Tensor | None):
        """on_cfg_denoised sees the predictions of the cond rows then the uncond rows, before they are combined."""
        n = len(cond_out)
        out = cond_out if uncond_out is None else torch.cat([cond_out, uncond_out])
        params = script_callbacks.CFGDenoisedParams(out, self.step, self.total_steps, stage.model.unet)
        script_callbacks.cfg_denoised_callback(params)
        return params.x[:n], None if uncond_out is None else params.x[n:]

    def _guided(self, stage: UNetStage, x, sigma, conds_list, cond: Conditioning, uncond: Conditioning) -> torch.Tensor:
        b = x.shape[0]
        owners = [i for i, rows in enumerate(conds_list) for _ in rows]  # the image of each cond row
        plain = all(rows == [(i, 1.0)] for i, rows in enumerate(conds_list))  # no AND: one cond per image
        denoised_hook = bool(script_callbacks.callbacks("cfg_denoised"))
        if isinstance(self.cfg_scale, float | int) and self.cfg_scale == 1.0 and plain:
            self.uncond_denoised = None
            out = self._denoise(stage, x, sigma, cond, owners, first_uncond=len(owners))
            return self._cfg_denoised(stage, out, None)[0] if denoised_hook else out
        n = len(owners)
        # Index only when AND repeats images: indexing with a host list would make the GPU wait every step.
        x_cond, sigma_cond = (x, sigma) if plain else (x[owners], sigma[owners])
        if cond.context.shape[1] == uncond.context.shape[1]:
            x_out = self._denoise(stage, torch.cat([x_cond, x]), torch.cat([sigma_cond, sigma]),
                                  _cat_cond(cond, uncond), owners + list(range(b)), first_uncond=n)
        else:  # prompts of different chunk counts cannot share a batch
            x_out = torch.cat([self._denoise(stage, x_cond, sigma_cond, cond, owners, first_uncond=n),
                               self._denoise(stage, x, sigma, uncond, list(range(b)), first_uncond=0)])
        if denoised_hook:
            x_out = torch.cat(self._cfg_denoised(stage, x_out[:n], x_out[n:]))
        self.uncond_denoised = x_out[n:]
        denoised = self.combine_denoised(x_out, conds_list, _a1111_cond(uncond), self.cfg_scale)
        return model_families.rescale_cfg(stage.model, x, x_out[:n], denoised) if plain else denoised

    def combine_denoised(self, x_out: torch.Tensor, conds_list, uncond, cond_scale: float) -> torch.Tensor:
        """A1111's CFG step, the one extensions override (e.g. dynamic thresholding): x_out holds the cond rows then
        one uncond row per image; conds_list[i] lists (cond row, weight) of image i; uncond is the unconditional
        conditioning (its row count is the image count); cond_scale is a float, or a [B] tensor of per-image scales."""
        b = (uncond["crossattn"] if isinstance(uncond, dict) else uncond).shape[0]
        denoised_uncond = x_out[-b:]
        per_image = isinstance(cond_scale, torch.Tensor)
        if all(rows == [(i, 1.0)] for i, rows in enumerate(conds_list)):  # no AND: one batched step
            scale = cond_scale.to(x_out).reshape(-1, *[1] * (x_out.dim() - 1)) if per_image else cond_scale
            return denoised_uncond + (x_out[:b] - denoised_uncond) * scale
        scales = cond_scale.tolist() if per_image else [cond_scale] * b
        denoised = denoised_uncond.clone()
        for i, rows in enumerate(conds_list):
            for row, weight in rows:
                denoised[i] += (x_out[row] - denoised_uncond[i]) * (weight * scales[i])
        return denoised

    def _maybe_switch(self) -> None:
        if self.refiner is None or self.switched_at_step is not None:
            return
        if self.switch_step is None:
            self.switch_step = self._first_refiner_step()
        if self.step >= self.switch_step:
            self.stage = self.refiner()
            self.model_sigmas = self.stage.model.model_sigmas
            self.switched_at_step = self.step

    def _first_refiner_step(self) -> int:
        """The first step whose progress reaches switch_at, from the schedule once: no tensor work in later steps."""
        steps = len(self.schedule)
        if self.switch_by_steps:
            progress = [step / max(steps - 1, 1) for step in range(steps)]
        else:  # A1111 >= 1.9: progress is the nearest training timestep of the step's sigma
            t = self.model_sigmas.sigma_to_t(torch.tensor(self.schedule, dtype=torch.float32))
            progress = ((999 - t.round()) / 1000).tolist()
        return next((step for step, done in enumerate(progress) if done >= self.switch_at), steps)

    def _denoise(self, stage: UNetStage, x: torch.Tensor, sigma: torch.Tensor, cond: Conditioning, images: list[int],
                 first_uncond: int) -> torch.Tensor:
        """UNet on rows of x: row r belongs to image images[r] and is an uncond row from index first_uncond on."""
        model = stage.model
        if model.family.is_flow:
            return model_families.denoise(model, x, sigma, cond, stage.guidance)
        unet = model.unet if model.sampling_unet is None else model.sampling_unet
        dtype = next(model.unet.parameters()).dtype
        s = sigma.to(x.dtype)[:, None, None, None]
        c_in = 1.0 / (s**2 + 1.0) ** 0.5
        t = self.model_sigmas.sigma_to_t(sigma.float())
        x_in = x * c_in
        added = self._added(stage, cond, images, first_uncond, dtype)
        residuals = {}
        if stage.control is not None:  # ControlNets see the 4 latent channels, as in the extension
            residuals = stage.control.residuals(x_in, t, cond.context, added, first_uncond, self.step, self.total_steps)
        if stage.image_conditioning is not None:
            same = images == list(range(len(stage.image_conditioning)))
            x_in = torch.cat([x_in, stage.image_conditioning if same else stage.image_conditioning[images]], dim=1)
        context = cond.context.to(dtype)
        ip_tokens = residuals.pop("ip_adapter_image_tokens", None)  # IP-Adapters read them beside the text's
        hidden = context if ip_tokens is None else (context, ip_tokens)

        def run(x_unet, extra):
            return unet(x_unet.to(dtype), t.to(dtype), encoder_hidden_states=hidden, added_cond_kwargs=added,
                        return_dict=False, **extra)[0]

        # reference units first run the UNet on their noised image ("write"), without ControlNet residuals
        with contextlib.nullcontext() if stage.control is None else stage.control.attention(
                model.unet, lambda ref: run(ref, {}), s, c_in, images, first_uncond, self.step, self.total_steps):
            out = run(x_in, residuals).to(x.dtype)
        if model.family.prediction_type == "v_prediction":
            return x * (1.0 / (s**2 + 1.0)) - out * (s / (s**2 + 1.0) ** 0.5)
        return x - out * s

    @staticmethod
    def _added(stage: UNetStage, cond: Conditioning, images: list[int], first_uncond: int, dtype) -> dict | None:
        """SDXL's pooled text and size/crop ids for these rows."""
        if cond.pooled is None:
            return None
        half = stage.time_ids.shape[0] // 2
        rows = [i + (half if r >= first_uncond else 0) for r, i in enumerate(images)]
        time_ids = stage.time_ids if rows == list(range(len(stage.time_ids))) else stage.time_ids[rows]
        return {"text_embeds": cond.pooled.to(dtype), "time_ids": time_ids.to(dtype)}


def _a1111_cond(c: Conditioning):
    """A1111's form for callbacks: the context tensor, or SDXL's {"crossattn": context, "vector": pooled}."""
    return c.context if c.pooled is None else {"crossattn": c.context, "vector": c.pooled}


def _our_cond(c) -> Conditioning:
    return Conditioning(c["crossattn"], c["vector"]) if isinstance(c, dict) else Conditioning(c, None)


def _cat_cond(a: Conditioning, b: Conditioning) -> Conditioning:
    pooled = None if a.pooled is None else torch.cat([a.pooled, b.pooled])
    mask = None if a.mask is None else torch.cat([a.mask, b.mask])
    return Conditioning(torch.cat([a.context, b.context]), pooled, mask)
