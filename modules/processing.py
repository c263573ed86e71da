"""The one way to make images (A1111's modules.processing names): processing objects, process_images, Processed."""
from __future__ import annotations

import json
import logging
import os
import random
import time
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from PIL import Image

from modules import devices, images, infotext_utils, paths_internal, sd_models, sd_samplers, sd_vae
from modules.prompt_encoding import Conditioning, PromptEncoder
from modules.rng import ImageRNG
from modules.sd_samplers_cfg_denoiser import CFGDenoiser, UNetStage
from modules.sd_samplers_common import InterruptedException
from modules.shared_cmd_options import cmd_opts
from modules.shared_options import opts
from modules.shared_state import state

log = logging.getLogger(__name__)
VERSION = "atelier-0.1.0"
MAX_SEED = 4294967294


def get_fixed_seed(seed) -> int:
    """-1, empty or unparsable -> a random seed (A1111)."""
    try:
        seed = int(seed)
    except (TypeError, ValueError):
        seed = -1
    return random.randrange(MAX_SEED) if seed == -1 else seed


@dataclass(eq=False)
class StableDiffusionProcessing:
    """What a face fills in; attribute names are A1111's, so the API and extensions map 1:1."""

    sd_model: Any = None
    outpath_samples: str | None = None
    outpath_grids: str | None = None
    prompt: str | list[str] = ""
    negative_prompt: str | list[str] = ""
    styles: list[str] = field(default_factory=list)
    seed: int = -1
    subseed: int = -1
    subseed_strength: float = 0.0
    seed_resize_from_h: int = -1
    seed_resize_from_w: int = -1
    seed_enable_extras: bool = True
    sampler_name: str | None = None
    scheduler: str | None = None
    batch_size: int = 1
    n_iter: int = 1
    steps: int = 50
    cfg_scale: float = 7.0
    width: int = 512
    height: int = 512
    restore_faces: bool | None = None
    tiling: bool | None = None
    do_not_save_samples: bool = False
    do_not_save_grid: bool = False
    extra_generation_params: dict = field(default_factory=dict)
    override_settings: dict = field(default_factory=dict)
    override_settings_restore_afterwards: bool = True
    refiner_checkpoint: str | None = None
    refiner_switch_at: float | None = None
    denoising_strength: float | None = None
    eta: float | None = None
    s_churn: float | None = None
    s_tmin: float | None = None
    s_tmax: float | None = None
    s_noise: float | None = None
    script_args: list = field(default_factory=list)
    user: str | None = None
    model_manager: Any = None
    # Filled while processing (A1111 names, read by scripts and filename patterns).
    all_prompts: list[str] = field(default_factory=list)
    all_negative_prompts: list[str] = field(default_factory=list)
    all_seeds: list[int] = field(default_factory=list)
    all_subseeds: list[int] = field(default_factory=list)
    iteration: int = 0
    batch_index: int = 0
    job_timestamp: str = ""
    sd_model_name: str | None = None
    sd_model_hash: str | None = None
    sd_vae_name: str | None = None
    sd_vae_hash: str | None = None
    clip_skip: int = 1
    is_api: bool = False
    denoiser: Any = None  # the last batch's CFGDenoiser: which UNet ran at which step

    def __post_init__(self):
        self.extra_generation_params = dict(self.extra_generation_params or {})

    @property
    def sampling_options(self) -> dict:
        """Sampler knobs: the job's own values first, then the settings (A1111 option names)."""
        keys = ("eta_ancestral", "eta_ddim", "s_churn", "s_tmin", "s_tmax", "s_noise", "sigma_min", "sigma_max", "rho",
                "uni_pc_variant", "uni_pc_skip_type", "uni_pc_order", "uni_pc_lower_order_final")
        options = {k: getattr(opts, k) for k in keys}
        for key in ("s_churn", "s_tmin", "s_tmax", "s_noise"):
            if getattr(self, key) is not None:
                options[key] = getattr(self, key)
        if self.eta is not None:
            options["eta_ancestral"] = options["eta_ddim"] = self.eta
        return options


@dataclass(eq=False)
class StableDiffusionProcessingTxt2Img(StableDiffusionProcessing):
    pass


class Processed:
    """The result of a job, in A1111's shape (`js()` is what the API's `info` field carries)."""

    def __init__(self, p: StableDiffusionProcessing, images_list: list[Image.Image], infotexts: list[str],
                 index_of_first_image: int = 0, comments: str = ""):
        self.images = images_list
        self.infotexts = infotexts
        self.info = infotexts[0] if infotexts else ""
        self.prompt = p.all_prompts[0] if p.all_prompts else p.prompt
        self.negative_prompt = p.all_negative_prompts[0] if p.all_negative_prompts else p.negative_prompt
        self.seed = p.all_seeds[0] if p.all_seeds else p.seed
        self.subseed = p.all_subseeds[0] if p.all_subseeds else p.subseed
        self.all_prompts, self.all_negative_prompts = p.all_prompts, p.all_negative_prompts
        self.all_seeds, self.all_subseeds = p.all_seeds, p.all_subseeds
        self.subseed_strength = p.subseed_strength
        self.width, self.height = p.width, p.height
        self.sampler_name, self.scheduler = p.sampler_name, p.scheduler
        self.cfg_scale, self.steps, self.batch_size = p.cfg_scale, p.steps, p.batch_size
        self.styles = p.styles
        self.sd_model_name, self.sd_model_hash = p.sd_model_name, p.sd_model_hash
        self.seed_resize_from_w, self.seed_resize_from_h = p.seed_resize_from_w, p.seed_resize_from_h
        self.denoising_strength = p.denoising_strength
        self.extra_generation_params = p.extra_generation_params
        self.index_of_first_image = index_of_first_image
        self.clip_skip = p.clip_skip
        self.job_timestamp = p.job_timestamp
        self.comments = comments

    def js(self) -> str:
        return json.dumps({
            "prompt": self.prompt, "all_prompts": self.all_prompts, "negative_prompt": self.negative_prompt,
            "all_negative_prompts": self.all_negative_prompts, "seed": self.seed, "all_seeds": self.all_seeds,
            "subseed": self.subseed, "all_subseeds": self.all_subseeds, "subseed_strength": self.subseed_strength,
            "width": self.width, "height": self.height, "sampler_name": self.sampler_name, "scheduler": self.scheduler,
            "cfg_scale": self.cfg_scale, "steps": self.steps, "batch_size": self.batch_size, "restore_faces": False,
            "face_restoration_model": None, "sd_model_name": self.sd_model_name, "sd_model_hash": self.sd_model_hash,
            "seed_resize_from_w": self.seed_resize_from_w, "seed_resize_from_h": self.seed_resize_from_h,
            "denoising_strength": self.denoising_strength, "extra_generation_params": self.extra_generation_params,
            "index_of_first_image": self.index_of_first_image, "infotexts": self.infotexts, "styles": self.styles,
            "job_timestamp": self.job_timestamp, "clip_skip": self.clip_skip, "is_using_inpainting_conditioning": False,
            "version": VERSION,
        }, ensure_ascii=False)


@contextmanager
def overridden_settings(p: StableDiffusionProcessing):
    """Apply override_settings for this job and put the old values back afterwards (unless asked not to)."""
    saved = {}
    for key, value in (p.override_settings or {}).items():
        if key not in opts.data_labels:
            raise ValueError(f"Unknown setting in override_settings: {key}")
        saved[key] = getattr(opts, key)
        setattr(opts, key, value)
    try:
        yield
    finally:
        if p.override_settings_restore_afterwards:
            for key, value in saved.items():
                setattr(opts, key, value)


@contextmanager
def seamless_tiling(model, enabled: bool):
    """Circular padding in every UNet/VAE convolution makes opposite edges continue into each other."""
    convs = [m for part in (model.unet, model.vae) for m in part.modules() if isinstance(m, torch.nn.Conv2d)]
    saved = [m.padding_mode for m in convs]
    if enabled:
        for m in convs:
            m.padding_mode = "circular"
    try:
        yield
    finally:
        for m, mode in zip(convs, saved):
            m.padding_mode = mode


def manager_for(p: StableDiffusionProcessing) -> sd_models.ModelManager:
    manager = p.model_manager or sd_models.model_manager
    if manager is None:
        raise RuntimeError("The model manager is not started")
    return manager


def resolve_checkpoint(title: str) -> sd_models.CheckpointInfo:
    info = sd_models.get_closet_checkpoint_match(title)
    if info is None:
        raise ValueError(f"Checkpoint not found: {title}. Available: {', '.join(sd_models.checkpoint_registry.titles()) or 'none'}")
    return info


def main_model(p: StableDiffusionProcessing):
    manager = manager_for(p)
    wanted = opts.sd_model_checkpoint
    if p.sd_model is not None:
        return p.sd_model
    if wanted and (manager.current is None or wanted not in manager.current.sd_checkpoint_info.ids):
        return manager.get(resolve_checkpoint(wanted))
    if manager.current is None:
        titles = sd_models.checkpoint_registry.titles()
        if not titles:
            raise ValueError(f"No checkpoint found: put a .safetensors checkpoint into "
                             f"{os.path.join(paths_internal.models_path, 'Stable-diffusion')}")
        return manager.get(resolve_checkpoint(titles[0]))
    return manager.current


def process_images(p: StableDiffusionProcessing) -> Processed:
    with overridden_settings(p):
        model = main_model(p)
        p.sd_model = model
        sd_vae.apply_vae(model, sd_vae.resolve_vae(model.sd_model_checkpoint, opts.sd_vae, cmd_opts.vae_path))
        with seamless_tiling(model, bool(opts.tiling if p.tiling is None else p.tiling)):
            return process_images_inner(p)


def prepare(p: StableDiffusionProcessing) -> None:
    p.sampler_name, p.scheduler = sd_samplers.resolve_sampler_scheduler(p.sampler_name or "DPM++ 2M", p.scheduler)
    if p.width < 8 or p.height < 8 or p.width % 8 or p.height % 8:
        raise ValueError(f"Width and height must be positive multiples of 8, got {p.width}x{p.height}")
    if p.steps < 1:
        raise ValueError(f"Sampling steps must be at least 1, got {p.steps}")
    if p.batch_size < 1 or p.n_iter < 1:
        raise ValueError("Batch size and batch count must be at least 1")
    count = p.batch_size * p.n_iter
    prompts = p.prompt if isinstance(p.prompt, list) else [p.prompt] * count
    negatives = p.negative_prompt if isinstance(p.negative_prompt, list) else [p.negative_prompt or ""] * count
    p.all_prompts, p.all_negative_prompts = list(prompts), list(negatives)
    p.seed = get_fixed_seed(p.seed)
    p.subseed = get_fixed_seed(p.subseed)
    varied = p.subseed_strength > 0
    p.all_seeds = [p.seed if varied else p.seed + i for i in range(count)]
    p.all_subseeds = [p.subseed + i for i in range(count)]
    p.clip_skip = int(opts.CLIP_stop_at_last_layers)
    info = p.sd_model.sd_checkpoint_info
    p.sd_model_name, p.sd_model_hash = info.name_for_extra, info.shorthash
    vae_file = p.sd_model.loaded_vae_file
    p.sd_vae_name = os.path.basename(vae_file) if vae_file else None
    p.sd_vae_hash = sd_vae.vae_hash(vae_file) if vae_file and not cmd_opts.no_hashing else None
    p.job_timestamp = time.strftime("%Y%m%d%H%M%S")
    if not p.outpath_samples:
        p.outpath_samples = opts.outdir_samples or opts.outdir_txt2img_samples
    if not p.outpath_grids:
        p.outpath_grids = opts.outdir_grids or opts.outdir_txt2img_grids


def sdxl_time_ids(model, p: StableDiffusionProcessing, batch: int) -> torch.Tensor | None:
    """SDXL size/crop conditioning (refiner: aesthetic score instead of the target size); cond rows, then uncond rows."""
    if not model.family.is_sdxl:
        return None
    crop = [opts.sdxl_crop_top, opts.sdxl_crop_left]
    if model.is_sdxl_refiner:
        rows = [[p.height, p.width, *crop, opts.sdxl_refiner_high_aesthetic_score]] * batch
        rows += [[p.height, p.width, *crop, opts.sdxl_refiner_low_aesthetic_score]] * batch
    else:
        rows = [[p.height, p.width, *crop, p.height, p.width]] * (2 * batch)
    return torch.tensor(rows, dtype=torch.float32, device=model.device)


def txt2img_image_conditioning(model, batch: int, height: int, width: int) -> torch.Tensor | None:
    """Inpainting UNets get a full mask and a blank (grey) masked image in txt2img, as A1111 does."""
    if not model.family.is_inpainting:
        return None
    grey = torch.zeros(1, 3, height, width, device=model.device, dtype=next(model.vae.parameters()).dtype)
    latent = model.vae.encode(grey).latent_dist.mode() * model.vae.config.scaling_factor
    mask = torch.ones_like(latent[:, :1])
    return torch.cat([mask, latent.float()], dim=1).repeat(batch, 1, 1, 1)


def make_stage(model, p: StableDiffusionProcessing, prompts: list[str], negatives: list[str]) -> UNetStage:
    encoder = PromptEncoder(model, clip_skip=p.clip_skip, emphasis=opts.emphasis)
    with torch.inference_mode():
        cond = encoder.encode(prompts)
        uncond = encoder.encode(negatives, is_negative=True)
        image_cond = txt2img_image_conditioning(model, len(prompts), p.height, p.width)
    return UNetStage(model, _to(cond, model.device), _to(uncond, model.device), sdxl_time_ids(model, p, len(prompts)), image_cond)


def _to(c: Conditioning, device) -> Conditioning:
    return Conditioning(c.context.to(device), None if c.pooled is None else c.pooled.to(device))


def refiner_model(p: StableDiffusionProcessing, base):
    if not p.refiner_checkpoint or p.refiner_checkpoint == "None" or (p.refiner_switch_at or 1.0) >= 1.0:
        return None
    info = resolve_checkpoint(p.refiner_checkpoint)
    refiner = manager_for(p).get(info, make_current=False)
    if refiner.latent_space != base.latent_space:
        raise ValueError(f"Refiner {info.short_title} ({refiner.family.label}) cannot continue a "
                         f"{base.family.label} image: the two models do not share a latent space")
    return refiner


def decode_latents(model, latents: torch.Tensor) -> list[Image.Image]:
    """VAE decode; a half-precision NaN (SDXL's VAE) is retried in float32, as A1111's auto VAE precision does."""
    vae = model.vae
    with torch.inference_mode():
        scaled = latents / vae.config.scaling_factor
        out = vae.decode(scaled.to(next(vae.parameters()).dtype)).sample
        if opts.auto_vae_precision and out.dtype != torch.float32 and torch.isnan(out).any():
            log.warning("VAE produced NaN in %s; decoding again in float32", out.dtype)
            vae.to(torch.float32)
            out = vae.decode(scaled.float()).sample
        arr = ((out.float() + 1.0) / 2.0).clamp(0, 1).mul(255).round().to(torch.uint8)
    arr = arr.permute(0, 2, 3, 1).cpu().numpy()
    return [Image.fromarray(np.ascontiguousarray(a)) for a in arr]


def create_infotext(p: StableDiffusionProcessing, index: int, refiner=None) -> str:
    """The generation parameters of image `index`, in A1111's key order (reference §3.3)."""
    model = p.sd_model
    sampler = sd_samplers.find_sampler(p.sampler_name)
    scheduler_label = sd_samplers.effective_scheduler(sampler, p.scheduler).label if p.scheduler == "Automatic" and \
        not sampler.timestep_based and sampler.default_scheduler != "uniform" else p.scheduler
    uses_ensd = sampler.ancestral and opts.eta_noise_seed_delta != 0 and p.sampling_options["eta_ancestral"] != 0
    params = {
        "Steps": p.steps, "Sampler": p.sampler_name, "Schedule type": scheduler_label, "CFG scale": p.cfg_scale,
        "Seed": p.all_seeds[index], "Size": f"{p.width}x{p.height}",
        "Model hash": model.sd_checkpoint_info.shorthash if opts.add_model_hash_to_info else None,
        "Model": model.sd_checkpoint_info.name_for_extra if opts.add_model_name_to_info else None,
        "VAE hash": p.sd_vae_hash if opts.add_vae_hash_to_info else None,
        "VAE": p.sd_vae_name if opts.add_vae_name_to_info else None,
        "Variation seed": None if p.subseed_strength == 0 else p.all_subseeds[index],
        "Variation seed strength": None if p.subseed_strength == 0 else p.subseed_strength,
        "Seed resize from": None if p.seed_resize_from_w <= 0 or p.seed_resize_from_h <= 0
        else f"{p.seed_resize_from_w}x{p.seed_resize_from_h}",
        "Denoising strength": p.denoising_strength,
        "Clip skip": None if p.clip_skip <= 1 else p.clip_skip,
        "ENSD": opts.eta_noise_seed_delta if uses_ensd else None,
        "RNG": opts.randn_source if opts.randn_source != "GPU" else None,
        "Tiling": True if (opts.tiling if p.tiling is None else p.tiling) else None,
    }
    if refiner is not None:
        params["Refiner"] = refiner.sd_checkpoint_info.short_title
        params["Refiner switch at"] = p.refiner_switch_at
        if opts.refiner_switch_by_sample_steps:
            params["Refiner switch by sampling steps"] = True
    for key, value in p.extra_generation_params.items():
        params[key] = value(p) if callable(value) else value
    params["Version"] = VERSION if opts.add_version_to_infotext else None
    return infotext_utils.create_infotext(p.all_prompts[index], p.all_negative_prompts[index], params)


def process_images_inner(p: StableDiffusionProcessing) -> Processed:
    prepare(p)
    model = p.sd_model
    refiner = refiner_model(p, model)
    sampler = sd_samplers.find_sampler(p.sampler_name)
    options = p.sampling_options
    sigmas = sd_samplers.get_sigmas(sampler, p.scheduler, p.steps, model.model_sigmas, is_sdxl=model.family.is_sdxl,
                                    options=options).to(model.device)
    state.begin(job="txt2img")
    state.job_count = p.n_iter
    output_images, infotexts = [], []
    try:
        for n in range(p.n_iter):
            p.iteration = n
            if state.interrupted or state.stopping_generation:
                break
            state.job_no = n
            state.skipped = False
            batch = slice(n * p.batch_size, (n + 1) * p.batch_size)
            latents = sample_batch(p, model, refiner, sampler, sigmas, options, batch)
            for i, image in enumerate(decode_latents(model, latents)):
                index = batch.start + i
                p.batch_index = i
                infotext = create_infotext(p, index, refiner)
                if opts.samples_save and not p.do_not_save_samples:
                    images.save_image(image, p.outpath_samples, "", p.all_seeds[index], p.all_prompts[index],
                                      opts.samples_format, info=infotext, p=p)
                image.info["parameters"] = infotext
                output_images.append(image)
                infotexts.append(infotext)
            state.nextjob()
        index_of_first_image = 0
        if len(output_images) > 1 and (opts.return_grid or opts.grid_save):
            grid = images.image_grid(output_images, p.batch_size)
            if opts.return_grid:
                infotexts.insert(0, infotexts[0])
                output_images.insert(0, grid)
                index_of_first_image = 1
            if opts.grid_save and not p.do_not_save_grid:
                images.save_image(grid, p.outpath_grids, "grid", p.all_seeds[0], p.all_prompts[0], opts.grid_format,
                                  info=infotexts[0], short_filename=not opts.grid_extended_filename, p=p, grid=True)
        if infotexts and not cmd_opts.no_prompt_history:
            write_params_txt(infotexts[index_of_first_image])
    finally:
        state.end()
    return Processed(p, output_images, infotexts, index_of_first_image)


def sample_batch(p, model, refiner, sampler, sigmas, options, batch: slice) -> torch.Tensor:
    prompts, negatives = p.all_prompts[batch], p.all_negative_prompts[batch]
    shape = (model.vae.config.latent_channels, p.height // 8, p.width // 8)
    resize = p.seed_enable_extras and p.seed_resize_from_h > 0 and p.seed_resize_from_w > 0
    rng = ImageRNG(shape, p.all_seeds[batch], subseeds=p.all_subseeds[batch], subseed_strength=p.subseed_strength,
                   seed_resize_from_h=p.seed_resize_from_h if resize else 0,
                   seed_resize_from_w=p.seed_resize_from_w if resize else 0,
                   source=opts.randn_source, device=model.device, eta_noise_seed_delta=int(opts.eta_noise_seed_delta or 0))
    stage = make_stage(model, p, prompts, negatives)
    refiner_stage = (lambda: make_stage(refiner, p, prompts, negatives)) if refiner is not None else None
    steps = len(sigmas) - 1
    # CFG++ guides in the unconditional direction, on a scale A1111 divides by 12.5.
    cfg_scale = p.cfg_scale / 12.5 if sampler.name == "DDIM CFG++" else p.cfg_scale
    denoiser = CFGDenoiser(stage, cfg_scale, state, refiner=refiner_stage, switch_at=p.refiner_switch_at or 1.0,
                           switch_by_steps=bool(opts.refiner_switch_by_sample_steps), total_steps=steps)
    p.denoiser = denoiser
    x = rng.first() * sigmas[0]
    state.sampling_steps = steps
    last = {"x": x}
    preview_every = max(int(opts.show_progress_every_n_steps), 0)

    def callback(i, x_i, denoised, sigma):
        last["x"] = denoised
        denoiser.step = i + 1
        state.sampling_step = i + 1
        if preview_every and (i + 1) % preview_every == 0:
            state.current_latent = denoised

    try:
        with torch.inference_mode():
            return sd_samplers.sample(sampler, denoiser, x, sigmas, rng, callback=callback, options=options)
    except InterruptedException:
        return last["x"]


def write_params_txt(infotext: str) -> None:
    path = os.path.join(paths_internal.data_path, "params.txt")
    tmp = path + ".tmp"
    with open(tmp, "w", encoding="utf8") as f:
        f.write(infotext)
    os.replace(tmp, path)


def setup_model_manager(cmd_opts_, cache_dir) -> sd_models.ModelManager:
    """Start the shared model manager for the device the flags choose."""
    plan = devices.plan_from_flags(cmd_opts_)
    sd_models.model_manager = sd_models.ModelManager(plan, cache_dir, limit=int(opts.sd_checkpoints_limit),
                                                     hashing=not cmd_opts_.no_hashing)
    return sd_models.model_manager
