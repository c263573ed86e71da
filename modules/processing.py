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

from modules import (
    devices,
    extra_networks,
    face_restoration,
    generation_parameters,
    images,
    infotext_utils,
    job_context,
    masking,
    model_families,
    paths_internal,
    processing_img2img as i2i,
    prompt_parser,
    script_callbacks,
    scripts,
    sd_hijack,
    sd_models,
    sd_samplers,
    sd_vae,
    sd_vae_taesd,
    styles,
    textual_inversion,
)
from modules.controlnet import apply as controlnet_apply
from modules.model_families import flow_sampling
from modules.prompt_encoding import PromptEncoder
from modules.rng import ImageRNG
from modules.sd_samplers_cfg_denoiser import UNetStage
from modules.sd_samplers_common import InterruptedException
from modules.shared_cmd_options import cmd_opts

log = logging.getLogger(__name__)
VERSION = "atelier-0.1.0"
opt_C = 4  # latent channels of SD1/SD2/SDXL (A1111's name)
opt_f = 8  # the VAE's downscale factor: a latent cell is 8x8 pixels (A1111's name)
create_binary_mask = masking.create_binary_mask  # A1111's home for it
MAX_SEED = 4294967294
# Longest prompt (in characters, after styles) a job accepts: far beyond any normal prompt (A1111's UI counts tokens
# in chunks of 75; 20,000 characters is a few thousand tokens), while a megabyte-sized one, which would tie up the
# encoder and every sampling step for minutes, is refused before any work starts.
MAX_PROMPT_LENGTH = 20_000
PROMPT_FIELDS = ("prompt", "negative_prompt", "hr_prompt", "hr_negative_prompt")


def get_fixed_seed(seed) -> int:
    """-1, empty or unparsable -> a random seed (A1111)."""
    try:
        seed = int(seed)
    except (TypeError, ValueError):
        seed = -1
    return random.randrange(MAX_SEED) if seed == -1 else seed


def fix_seed(p) -> None:
    """Replace -1 seeds of p by the random seeds the job will use, so that scripts see the real values (A1111)."""
    p.seed = get_fixed_seed(p.seed)
    p.subseed = get_fixed_seed(p.subseed)


@dataclass(eq=False)
@generation_parameters.declare_fields("StableDiffusionProcessing")
class StableDiffusionProcessing:
    """What a face fills in; attribute names are A1111's, so the API and extensions map 1:1. The generation
    parameters (prompt, seed, steps, cfg_scale, ...) are fields declared by modules/generation_parameters.py."""

    sd_model: Any = None
    outpath_samples: str | None = None
    outpath_grids: str | None = None
    seed_enable_extras: bool = True
    do_not_save_samples: bool = False
    do_not_save_grid: bool = False
    extra_generation_params: dict = field(default_factory=dict)
    override_settings: dict = field(default_factory=dict)
    override_settings_restore_afterwards: bool = True
    scripts: Any = None  # the tab's scripts.ScriptRunner, whose always-on scripts' hooks run during the job
    script_args: list = field(default_factory=list)  # every script's UI values; each script reads its own slice
    scripts_setup_complete: bool = False
    user: str | None = None
    model_manager: Any = None
    job: Any = None  # the job_context.JobContext while the job runs: its settings, state and model manager
    # Filled while processing (A1111 names, read by scripts and filename patterns).
    all_prompts: list[str] = field(default_factory=list)
    all_negative_prompts: list[str] = field(default_factory=list)
    all_seeds: list[int] = field(default_factory=list)
    all_subseeds: list[int] = field(default_factory=list)
    all_cfg_scales: list[float] = field(default_factory=list)  # per image, for requests batched together; else cfg_scale
    prompts: list[str] = field(default_factory=list)  # the current batch's share of all_prompts, and so on
    negative_prompts: list[str] = field(default_factory=list)
    seeds: list[int] = field(default_factory=list)
    subseeds: list[int] = field(default_factory=list)
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
    sampler: Any = None  # the last run's sampler object (A1111's p.sampler, from sd_samplers.create_sampler)
    controlnet_units: list = field(default_factory=list)  # controlnet.apply.PreparedUnit list set by the ControlNet script
    comments: dict = field(default_factory=dict)  # messages for the result's info, each once, in order

    def __post_init__(self):
        self.extra_generation_params = dict(self.extra_generation_params or {})

    def comment(self, text: str) -> None:
        self.comments[text] = 1

    def setup_scripts(self) -> None:
        """The always-on scripts' setup(): once, right after the job is filled in and before anything runs."""
        self.scripts_setup_complete = True
        self.scripts.setup_scrips(self, is_ui=not self.is_api)

    @property
    def sampling_options(self) -> dict:
        """Sampler knobs: the job's own values first, then the settings (A1111 option names)."""
        keys = ("eta_ancestral", "eta_ddim", "s_churn", "s_tmin", "s_tmax", "s_noise", "sigma_min", "sigma_max", "rho",
                "uni_pc_variant", "uni_pc_skip_type", "uni_pc_order", "uni_pc_lower_order_final")
        settings = job_context.settings(self)
        options = {k: getattr(settings, k) for k in keys}
        for key in ("s_churn", "s_tmin", "s_tmax", "s_noise"):
            if getattr(self, key) is not None:
                options[key] = getattr(self, key)
        if self.eta is not None:
            options["eta_ancestral"] = options["eta_ddim"] = self.eta
        return options


LATENT_UPSCALE_MODES = {  # name -> (interpolation mode, antialias)
    "Latent": ("bilinear", False), "Latent (antialiased)": ("bilinear", True), "Latent (bicubic)": ("bicubic", False),
    "Latent (bicubic antialiased)": ("bicubic", True), "Latent (nearest)": ("nearest", False),
    "Latent (nearest-exact)": ("nearest-exact", False),
}


@dataclass(eq=False)
@generation_parameters.declare_fields("StableDiffusionProcessingTxt2Img", "txt2img")
class StableDiffusionProcessingTxt2Img(StableDiffusionProcessing):
    hr_upscale_to_x: int = 0
    hr_upscale_to_y: int = 0

    def hires_size(self) -> tuple[int, int, int, int]:
        """(upscale-to width, height, latent columns to cut, latent rows to cut), A1111's rules for scale / resize-to."""
        if self.hr_resize_x == 0 and self.hr_resize_y == 0:
            return int(self.width * self.hr_scale), int(self.height * self.hr_scale), 0, 0
        if self.hr_resize_y == 0:
            return self.hr_resize_x, self.hr_resize_x * self.height // self.width, 0, 0
        if self.hr_resize_x == 0:
            return self.hr_resize_y * self.width // self.height, self.hr_resize_y, 0, 0
        if self.width / self.height < self.hr_resize_x / self.hr_resize_y:
            w, h = self.hr_resize_x, self.hr_resize_x * self.height // self.width
        else:
            w, h = self.hr_resize_y * self.width // self.height, self.hr_resize_y
        return w, h, (w - self.hr_resize_x) // 8, (h - self.hr_resize_y) // 8


@dataclass(eq=False)
@generation_parameters.declare_fields("StableDiffusionProcessingImg2Img", "img2img")
class StableDiffusionProcessingImg2Img(StableDiffusionProcessing):
    init_images: list = field(default_factory=list)
    mask: Any = None
    mask_round: bool = True
    latent_mask: Any = None
    include_init_images: bool = False

    def __post_init__(self):
        super().__post_init__()
        self.image_mask = self.mask  # A1111 keeps the constructor's `mask` as `image_mask`
        if self.mask_blur is not None:
            self.mask_blur_x = self.mask_blur_y = self.mask_blur
        self.prepared: i2i.PreparedImages | None = None


class Processed:
    """The result of a job, in A1111's shape (`js()` is what the API's `info` field carries). Scripts build their own
    with A1111's arguments, e.g. Processed(p, [grid], p.seed, info) for a grid of several jobs."""

    def __init__(self, p: StableDiffusionProcessing, images_list: list[Image.Image], seed=-1, info: str = "", subseed=None,
                 all_prompts=None, all_negative_prompts=None, all_seeds=None, all_subseeds=None,
                 index_of_first_image: int = 0, infotexts: list[str] | None = None, comments: str | None = None,
                 extra_images_list=None):
        settings = job_context.settings(p)
        self.images = images_list
        self.extra_images = extra_images_list or []
        self.infotexts = infotexts or [info] * len(images_list)
        self.info = info or (self.infotexts[0] if self.infotexts else "")
        self.all_prompts = all_prompts or p.all_prompts or [p.prompt]
        self.all_negative_prompts = all_negative_prompts or p.all_negative_prompts or [p.negative_prompt]
        self.all_seeds = all_seeds or p.all_seeds or [p.seed]
        self.all_subseeds = all_subseeds or p.all_subseeds or [p.subseed]
        self.prompt, self.negative_prompt = self.all_prompts[0], self.all_negative_prompts[0]
        self.seed = int(seed) if seed not in (None, -1) else int(self.all_seeds[0])
        self.subseed = int(subseed) if subseed not in (None, -1) else int(self.all_subseeds[0])
        self.subseed_strength = p.subseed_strength
        self.width, self.height = p.width, p.height
        self.sampler_name, self.scheduler = p.sampler_name, p.scheduler
        self.cfg_scale, self.steps, self.batch_size = p.cfg_scale, p.steps, p.batch_size
        self.image_cfg_scale = getattr(p, "image_cfg_scale", None)
        self.restore_faces = bool(settings.face_restoration if p.restore_faces is None else p.restore_faces)
        self.face_restoration_model = settings.face_restoration_model if self.restore_faces else None
        self.styles = p.styles
        self.sd_model_name, self.sd_model_hash = p.sd_model_name, p.sd_model_hash
        self.sd_vae_name, self.sd_vae_hash = p.sd_vae_name, p.sd_vae_hash
        self.seed_resize_from_w, self.seed_resize_from_h = p.seed_resize_from_w, p.seed_resize_from_h
        self.denoising_strength = p.denoising_strength
        self.extra_generation_params = p.extra_generation_params
        self.index_of_first_image = index_of_first_image
        self.clip_skip = p.clip_skip
        self.eta, self.s_churn, self.s_tmin, self.s_tmax, self.s_noise = p.eta, p.s_churn, p.s_tmin, p.s_tmax, p.s_noise
        self.job_timestamp = p.job_timestamp
        self.comments = "".join(f"{c}\n" for c in p.comments) if comments is None else comments
        self.version = VERSION

    def infotext(self, p: StableDiffusionProcessing, index: int) -> str:
        """The infotext of image `index` of the job (not counting a grid in front)."""
        return self.infotexts[index + self.index_of_first_image]

    def js(self) -> str:
        return json.dumps({
            "prompt": self.prompt, "all_prompts": self.all_prompts, "negative_prompt": self.negative_prompt,
            "all_negative_prompts": self.all_negative_prompts, "seed": self.seed, "all_seeds": self.all_seeds,
            "subseed": self.subseed, "all_subseeds": self.all_subseeds, "subseed_strength": self.subseed_strength,
            "width": self.width, "height": self.height, "sampler_name": self.sampler_name, "scheduler": self.scheduler,
            "cfg_scale": self.cfg_scale, "steps": self.steps, "batch_size": self.batch_size,
            "restore_faces": self.restore_faces, "face_restoration_model": self.face_restoration_model,
            "sd_model_name": self.sd_model_name, "sd_model_hash": self.sd_model_hash,
            "seed_resize_from_w": self.seed_resize_from_w, "seed_resize_from_h": self.seed_resize_from_h,
            "denoising_strength": self.denoising_strength, "extra_generation_params": self.extra_generation_params,
            "index_of_first_image": self.index_of_first_image, "infotexts": self.infotexts, "styles": self.styles,
            "job_timestamp": self.job_timestamp, "clip_skip": self.clip_skip, "is_using_inpainting_conditioning": False,
            "version": VERSION,
        }, ensure_ascii=False)


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
    manager = job_context.model_manager(p)
    if manager is None:
        raise RuntimeError("The model manager is not started")
    return manager


def resolve_checkpoint(title: str) -> sd_models.CheckpointInfo:
    info = sd_models.get_closet_checkpoint_match(title)
    if info is None:
        raise ValueError(f"Checkpoint not found: {title}. Available: {', '.join(sd_models.checkpoint_registry.titles()) or 'none'}")
    return info


def main_model(p: StableDiffusionProcessing):
    settings = job_context.settings(p)
    manager = manager_for(p)
    if p.sd_model is not None:
        return p.sd_model
    titles = sd_models.checkpoint_registry.titles()
    # no setting: the first checkpoint, never the one an earlier job's override_settings left loaded
    wanted = settings.sd_model_checkpoint or (titles[0] if titles else None)
    if wanted and (manager.current is None or wanted not in manager.current.sd_checkpoint_info.ids):
        return manager.get(resolve_checkpoint(wanted))
    if manager.current is None:
        raise ValueError(f"No checkpoint found: put a .safetensors checkpoint into "
                         f"{os.path.join(paths_internal.models_path, 'Stable-diffusion')}")
    return manager.get(manager.current.sd_checkpoint_info)  # a flow model is reloaded if its chosen modules changed


def process_images(p: StableDiffusionProcessing) -> Processed:
    """Run p as a job, in a job context of its own (or over the job it is part of): see job_context."""
    if p.scripts is not None:
        if not p.scripts_setup_complete:
            p.setup_scripts()
        p.scripts.before_process(p)
    with job_context.job(p, sd_models.model_manager) as job:
        model = main_model(p)
        p.sd_model = model
        sd_vae.apply_vae(model, sd_vae.resolve_vae(model.sd_model_checkpoint, job.settings.sd_vae, cmd_opts.vae_path))
        with seamless_tiling(model, bool(job.settings.tiling if p.tiling is None else p.tiling)):
            return process_images_inner(p)


def job_kind(p: StableDiffusionProcessing) -> str:
    return "img2img" if isinstance(p, StableDiffusionProcessingImg2Img) else "txt2img"


def run_with_scripts(p: StableDiffusionProcessing) -> Processed:
    """What a face runs: the script chosen in the Script dropdown (p.script_args[0]) does the job, perhaps as several
    process_images calls inside one job; with none chosen (or one that returns nothing), process_images."""
    processed = None
    if p.scripts is not None and not p.scripts_setup_complete:
        p.setup_scripts()
    if p.scripts is not None and p.script_args and p.script_args[0]:
        with job_context.job(p, sd_models.model_manager) as job, job_in_state(job.state, job_kind(p)):
            processed = p.scripts.run(p, *p.script_args)
    return processed if processed is not None else process_images(p)


def prepare(p: StableDiffusionProcessing) -> None:
    settings = job_context.settings(p)
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
    database = styles.prompt_styles()
    p.all_prompts = [database.apply_styles_to_prompt(x, p.styles) for x in prompts]
    p.all_negative_prompts = [database.apply_negative_styles_to_prompt(x, p.styles) for x in negatives]
    for name, texts in (("prompt", p.all_prompts), ("negative_prompt", p.all_negative_prompts),
                        ("hr_prompt", [getattr(p, "hr_prompt", "")]),
                        ("hr_negative_prompt", [getattr(p, "hr_negative_prompt", "")])):
        longest = max((len(t or "") for t in texts), default=0)
        if longest > MAX_PROMPT_LENGTH:
            raise ValueError(f"{name} is {longest} characters long; at most {MAX_PROMPT_LENGTH} are accepted")
    if settings.enable_prompt_comments:
        p.all_prompts = [prompt_parser.strip_comments(x) for x in p.all_prompts]
        p.all_negative_prompts = [prompt_parser.strip_comments(x) for x in p.all_negative_prompts]
    varied = p.subseed_strength > 0
    if isinstance(p.seed, list):  # A1111: a list gives every image its seed (requests batched together)
        p.all_seeds = [int(seed) for seed in p.seed]
    else:
        p.seed = get_fixed_seed(p.seed)
        p.all_seeds = [p.seed if varied else p.seed + i for i in range(count)]
    if isinstance(p.subseed, list):
        p.all_subseeds = [int(seed) for seed in p.subseed]
    else:
        p.subseed = get_fixed_seed(p.subseed)
        p.all_subseeds = [p.subseed + i for i in range(count)]
    p.clip_skip = int(settings.CLIP_stop_at_last_layers)
    if p.sd_model.family.is_flow and p.scheduler == sd_samplers.AUTOMATIC:
        p.scheduler = "Simple"  # a flow family's own schedule, as Forge labels it
    if p.cfg_scale is None:  # an API request without cfg_scale
        p.cfg_scale = model_families.default_cfg_scale(p.sd_model.family)
    info = p.sd_model.sd_checkpoint_info
    p.sd_model_name, p.sd_model_hash = info.name_for_extra, info.shorthash
    vae_file = p.sd_model.loaded_vae_file
    p.sd_vae_name = os.path.basename(vae_file) if vae_file else None
    p.sd_vae_hash = sd_vae.vae_hash(vae_file) if vae_file and not cmd_opts.no_hashing else None
    p.job_timestamp = time.strftime("%Y%m%d%H%M%S")
    samples_dir, grids_dir = p.job.output_dirs(job_kind(p))
    p.outpath_samples = p.outpath_samples or samples_dir
    p.outpath_grids = p.outpath_grids or grids_dir


def prepare_mode(p: StableDiffusionProcessing) -> None:
    """img2img's init images and mask, or txt2img's hires pass: after the scripts' process() had their say."""
    if isinstance(p, StableDiffusionProcessingImg2Img):
        prepare_img2img(p)
    elif p.enable_hr:
        prepare_hires(p)


def prepare_img2img(p: StableDiffusionProcessingImg2Img) -> None:
    settings = job_context.settings(p)
    if not p.init_images:
        raise ValueError("img2img needs an init image")
    if len(p.init_images) > 1:
        if len(p.init_images) > p.batch_size:
            raise ValueError(f"Too many images passed: {len(p.init_images)}; expecting {p.batch_size} or less")
        p.batch_size = len(p.init_images)
    if p.denoising_strength is None or not 0 <= p.denoising_strength <= 1:
        raise ValueError(f"Denoising strength must be between 0 and 1, got {p.denoising_strength}")
    p.prepared = i2i.prepare_images(p)
    if p.initial_noise_multiplier is None:
        p.initial_noise_multiplier = settings.initial_noise_multiplier
    rows = generation_parameters.params_for("img2img", ["img2img", "inpaint"])
    values = {row.name: getattr(p, row.name) for row in rows}
    values["mask_blur"] = p.mask_blur_x if p.mask_blur_x == p.mask_blur_y else None  # else Mask blur x / y
    groups = ["inpaint", "img2img"] if p.image_mask is not None else ["img2img"]
    p.extra_generation_params.update(generation_parameters.infotext_params(values, "img2img", groups, base=False))


def prepare_hires(p: StableDiffusionProcessingTxt2Img) -> None:
    settings = job_context.settings(p)
    if p.denoising_strength is None or not 0 <= p.denoising_strength <= 1:
        raise ValueError(f"Denoising strength must be between 0 and 1, got {p.denoising_strength}")
    p.hr_upscaler = p.hr_upscaler or "Latent"
    if p.hr_upscaler not in LATENT_UPSCALE_MODES and p.hr_upscaler not in image_upscaler_names():
        raise ValueError(f"Upscaler not found: {p.hr_upscaler}. Available: "
                         f"{', '.join(list(LATENT_UPSCALE_MODES) + image_upscaler_names())}")
    p.hr_upscale_to_x, p.hr_upscale_to_y, _, _ = p.hires_size()
    hr_checkpoint = p.hr_checkpoint_name not in (None, "", generation_parameters.SAME_CHECKPOINT)
    hr_sampler = hr_scheduler = None
    if p.hr_sampler_name and p.hr_sampler_name != generation_parameters.SAME_SAMPLER:
        hr_sampler, hr_scheduler = sd_samplers.resolve_sampler_scheduler(p.hr_sampler_name, p.hr_scheduler)
    # the hires keys name only what differs from the first pass (A1111)
    values = {row.name: getattr(p, row.name) for row in generation_parameters.params_for("txt2img", ["hires"])} | dict(
        hr_checkpoint_name=resolve_checkpoint(p.hr_checkpoint_name).short_title if hr_checkpoint else None,
        hr_sampler_name=hr_sampler if hr_sampler != p.sampler_name else None,
        hr_scheduler=hr_scheduler if hr_scheduler != p.scheduler else None,
        hr_prompt=p.hr_prompt if p.hr_prompt and p.hr_prompt != p.prompt else None,
        hr_negative_prompt=p.hr_negative_prompt if p.hr_negative_prompt and p.hr_negative_prompt != p.negative_prompt
        else None)
    params = p.extra_generation_params
    params.update(generation_parameters.infotext_params(values, "txt2img", ["hires"]))
    if p.refiner_checkpoint and settings.hires_fix_refiner_pass != "second pass":
        params["Hires refiner"] = settings.hires_fix_refiner_pass


def image_upscaler_names() -> list[str]:
    """None, Lanczos, Nearest and every image upscaler the Extras tab knows."""
    from modules import upscaler  # the Extras tab's registry of image upscalers

    return list(dict.fromkeys(["None", "Lanczos", "Nearest"] + [u.name for u in upscaler.sd_upscalers]))


def sdxl_time_ids(model, batch: int, width: int, height: int) -> torch.Tensor | None:
    """SDXL size/crop conditioning (refiner: aesthetic score instead of the target size); cond rows, then uncond rows."""
    settings = job_context.settings()
    if not model.family.is_sdxl:
        return None
    crop = [settings.sdxl_crop_top, settings.sdxl_crop_left]
    if model.is_sdxl_refiner:
        rows = [[height, width, *crop, settings.sdxl_refiner_high_aesthetic_score]] * batch
        rows += [[height, width, *crop, settings.sdxl_refiner_low_aesthetic_score]] * batch
    else:
        rows = [[height, width, *crop, height, width]] * (2 * batch)
    return torch.tensor(rows, dtype=torch.float32, device=model.device)


def txt2img_image_conditioning(model, batch: int, height: int, width: int) -> torch.Tensor | None:
    """Inpainting UNets get a full mask and a blank (grey) masked image in txt2img, as A1111 does."""
    if not model.family.is_inpainting:
        return None
    grey = torch.zeros(1, 3, height, width, device=model.device, dtype=next(model.vae.parameters()).dtype)
    latent = model.vae.encode(grey).latent_dist.mode() * model.vae.config.scaling_factor
    mask = torch.ones_like(latent[:, :1])
    return torch.cat([mask, latent.float()], dim=1).repeat(batch, 1, 1, 1)


def make_stage(model, p: StableDiffusionProcessing, prompts: list[str], negatives: list[str], width: int, height: int,
               image_conditioning: torch.Tensor | None = None, hires_steps: int | None = None,
               refiner: bool = False) -> UNetStage:
    """One model's conditioning schedules for a batch; inpainting UNets without image conditioning get txt2img's."""
    settings = job_context.settings(p)
    state = job_context.state(p)
    should_stop = lambda: state.interrupted or state.skipped  # noqa: E731
    if model.family.is_flow:
        encoder = model_families.prompt_encoder(model, should_stop=should_stop)
    else:
        encoder = PromptEncoder(model, clip_skip=p.clip_skip, emphasis=settings.emphasis,
                                comma_backtrack=settings.comma_padding_backtrack,
                                embeddings=textual_inversion.embedding_db().usable_for(model), should_stop=should_stop)
    # prompt editing counts UNet evaluations, two per step for second-order samplers (A1111's total_steps)
    steps = p.steps * (2 if sd_samplers.find_sampler(p.sampler_name).second_order else 1)
    schedule = dict(steps=steps, hires_steps=hires_steps, use_old_scheduling=settings.use_old_scheduling)
    with torch.inference_mode():
        cond = prompt_parser.get_multicond_learned_conditioning(encoder.get_learned_conditioning, prompts, **schedule)
        uncond = prompt_parser.get_learned_conditioning(
            lambda texts: encoder.get_learned_conditioning(texts, is_negative=True), negatives, **schedule)
        if image_conditioning is None:
            image_conditioning = txt2img_image_conditioning(model, len(prompts), height, width)
    p.extra_generation_params.update(encoder.infotext_params(prompts + negatives, settings.textual_inversion_add_hashes_to_infotext))
    guidance = None
    if model.family.is_flow and model.family.distilled_guidance:
        guidance = float(p.distilled_cfg_scale)
        p.extra_generation_params["Distilled CFG Scale"] = guidance
    for i, name in enumerate(model.extra.get("modules", ()), 1):  # Forge's keys for the separate parts used
        p.extra_generation_params[f"Module {i}"] = os.path.splitext(name)[0]
    control = controlnet_apply.stack_for(p.controlnet_units, model, width, height, manager_for(p), refiner=refiner,
                                         hires=hires_steps is not None, seeds=p.seeds) if p.controlnet_units else None
    return UNetStage(model, cond, uncond, sdxl_time_ids(model, len(prompts), width, height),
                     image_conditioning if model.family.is_inpainting else None, control, guidance=guidance)


def refiner_model(p: StableDiffusionProcessing, base):
    if not p.refiner_checkpoint or p.refiner_checkpoint == "None" or (p.refiner_switch_at or 1.0) >= 1.0:
        return None
    info = resolve_checkpoint(p.refiner_checkpoint)
    refiner = manager_for(p).get(info, make_current=False)
    if refiner.latent_space != base.latent_space:
        raise ValueError(f"Refiner {info.short_title} ({refiner.family.label}) cannot continue a "
                         f"{base.family.label} image: the two models do not share a latent space")
    return refiner


def decode_latents(model, latents: torch.Tensor, method: str | None = None) -> list[Image.Image]:
    return batch_to_images(decode_to_tensor(model, latents, method))


def batch_to_images(batch: torch.Tensor) -> list[Image.Image]:
    """[B, 3, H, W] in 0..1 -> PIL images."""
    arr = batch.mul(255).round().to(torch.uint8).permute(0, 2, 3, 1).cpu().numpy()
    return [Image.fromarray(np.ascontiguousarray(a)) for a in arr]


def decode_first_stage(model, latents: torch.Tensor, method: str | None = None) -> torch.Tensor:
    """VAE decode to float32 [B, 3, H, W] around -1..1 by `method`, "Full" or "TAESD" (None: the sd_vae_decode_method
    setting); a half-precision NaN (SDXL's VAE) is retried in float32, as A1111's auto VAE precision does."""
    settings = job_context.settings()
    if (method or settings.sd_vae_decode_method) == "TAESD":
        return sd_vae_taesd.decode(model, latents) * 2.0 - 1.0
    vae = model.vae
    with torch.inference_mode():
        out = model_families.vae_decode(model, latents)
        if settings.auto_vae_precision and out.dtype != torch.float32 and torch.isnan(out).any():
            log.warning("VAE produced NaN in %s; decoding again in float32", out.dtype)
            vae.to(torch.float32)
            out = model_families.vae_decode(model, latents)
        return out.float()


def decode_to_tensor(model, latents: torch.Tensor, method: str | None = None) -> torch.Tensor:
    """VAE decode to [B, 3, H, W] in 0..1 (method: as decode_first_stage)."""
    with torch.inference_mode():
        return ((decode_first_stage(model, latents, method) + 1.0) / 2.0).clamp(0, 1)


def vae_method(p: StableDiffusionProcessing, kind: str) -> str:
    """The setting sd_vae_encode_method / sd_vae_decode_method for kind "encode" / "decode"; TAESD is noted in the
    infotext as `VAE Encoder` / `VAE Decoder`, as A1111 does."""
    method = getattr(job_context.settings(p), f"sd_vae_{kind}_method")
    if method == "TAESD":
        p.extra_generation_params[{"encode": "VAE Encoder", "decode": "VAE Decoder"}[kind]] = method
    return method


def decode_latent_batch(model, batch: torch.Tensor, target_device=None, check_for_nans: bool = False) -> list[torch.Tensor]:
    """A1111's helper: each latent of the batch decoded alone (as A1111 does, to bound VAE memory) to a [3, H, W]
    image around -1..1; check_for_nans refuses NaN latents or images with an error."""
    if check_for_nans and torch.isnan(batch).any():
        raise ValueError("A tensor with NaNs was produced in the UNet: the latents cannot be decoded")
    samples = []
    for i in range(batch.shape[0]):
        sample = decode_first_stage(model, batch[i:i + 1])[0].clone()  # a plain tensor: callers may edit it in place
        if check_for_nans and torch.isnan(sample).any():
            raise ValueError("A tensor with NaNs was produced in the VAE")
        samples.append(sample if target_device is None else sample.to(target_device))
    return samples


def create_random_tensors(shape, seeds, subseeds=None, subseed_strength=0.0, seed_resize_from_h=0, seed_resize_from_w=0,
                          p=None) -> torch.Tensor:
    """A1111's helper: the initial noise the engine draws for these seeds, [len(seeds), *shape], on the device of p's
    model (else of the model manager)."""
    settings = job_context.settings(p)
    model = getattr(p, "sd_model", None)
    if model is not None:
        device = model.device
    else:
        device = sd_models.model_manager.plan.device if sd_models.model_manager is not None else devices.get_optimal_device()
    return ImageRNG(shape, seeds, subseeds=subseeds, subseed_strength=subseed_strength, seed_resize_from_h=seed_resize_from_h,
                    seed_resize_from_w=seed_resize_from_w, source=settings.randn_source, device=device).first()


def apply_overlay(image: Image.Image, paste_loc, overlay: Image.Image | None) -> tuple[Image.Image, Image.Image]:
    """A1111's helper (1.8+ form): (the generated image put back over the original through the overlay, the generated
    image put back in place without it). paste_loc is (x, y, w, h) of "Only masked", or None."""
    if overlay is None:
        return image, image.copy()
    placed = image.copy() if paste_loc is None else masking.apply_overlay(image, paste_loc, Image.new("RGBA", overlay.size))
    return masking.apply_overlay(image, paste_loc, overlay), placed


def gather_job_records(result: Processed, jobs: list) -> Processed:
    """`result` reporting the prompts, negative prompts, seeds and subseeds of all `jobs` (scripts that run several)."""
    result.all_prompts = [prompt for job in jobs for prompt in job.all_prompts]
    result.all_negative_prompts = [prompt for job in jobs for prompt in job.all_negative_prompts]
    result.all_seeds = [seed for job in jobs for seed in job.all_seeds]
    result.all_subseeds = [seed for job in jobs for seed in job.all_subseeds]
    return result


def uses_denoising(p: StableDiffusionProcessing) -> bool:
    return isinstance(p, StableDiffusionProcessingImg2Img) or bool(getattr(p, "enable_hr", False))


# A1111's fixed first block of infotext keys: the table's base keys and the engine's own (model, VAE, settings).
INFOTEXT_BASE_ORDER = ("Steps", "Sampler", "Schedule type", "CFG scale", "Image CFG scale", "Seed", "Face restoration",
                       "Size", "Model hash", "Model", "VAE hash", "VAE", "Variation seed", "Variation seed strength",
                       "Seed resize from", "Denoising strength", "Clip skip", "ENSD", "RNG", "Tiling", "Refiner",
                       "Refiner switch at", "Refiner switch by sampling steps")


def create_infotext(p: StableDiffusionProcessing, index: int, refiner=None) -> str:
    """The generation parameters of image `index`, in A1111's key order (reference §3.3)."""
    model, settings = p.sd_model, job_context.settings(p)
    sampler = sd_samplers.find_sampler(p.sampler_name)
    scheduler_label = sd_samplers.effective_scheduler(sampler, p.scheduler).label if p.scheduler == "Automatic" and \
        not sampler.timestep_based and sampler.default_scheduler != "uniform" else p.scheduler
    uses_ensd = sampler.ancestral and settings.eta_noise_seed_delta != 0 and p.sampling_options["eta_ancestral"] != 0
    values = {name: getattr(p, name) for name in generation_parameters.BY_NAME if hasattr(p, name)}
    if p.all_cfg_scales:
        values["cfg_scale"] = p.all_cfg_scales[index]
    values.update(seed=p.all_seeds[index], subseed=p.all_subseeds[index], scheduler=scheduler_label,
                  image_cfg_scale=None,  # written for instruct-pix2pix models only, which the engine does not run
                  denoising_strength=p.denoising_strength if uses_denoising(p) else None,
                  refiner_checkpoint=refiner.sd_checkpoint_info.short_title if refiner is not None else None)
    engine_keys = {
        "Face restoration": settings.face_restoration_model
        if (settings.face_restoration if p.restore_faces is None else p.restore_faces) else None,
        "Model hash": model.sd_checkpoint_info.shorthash if settings.add_model_hash_to_info else None,
        "Model": model.sd_checkpoint_info.name_for_extra if settings.add_model_name_to_info else None,
        "VAE hash": p.sd_vae_hash if settings.add_vae_hash_to_info else None,
        "VAE": p.sd_vae_name if settings.add_vae_name_to_info else None,
        "Clip skip": None if p.clip_skip <= 1 else p.clip_skip,
        "ENSD": settings.eta_noise_seed_delta if uses_ensd else None,
        "RNG": settings.randn_source if settings.randn_source != "GPU" else None,
        "Tiling": True if (settings.tiling if p.tiling is None else p.tiling) else None,
        "Refiner switch by sampling steps": True if refiner is not None and settings.refiner_switch_by_sample_steps else None,
    }
    tab = "img2img" if isinstance(p, StableDiffusionProcessingImg2Img) else "txt2img"
    table = generation_parameters.infotext_params(values, tab, base=True)
    params = {key: {**table, **engine_keys}.get(key) for key in INFOTEXT_BASE_ORDER}
    params.update(generation_parameters.infotext_params(values, tab, ("base", "seed", "refiner"), base=False))
    for key, value in p.extra_generation_params.items():
        params[key] = value(p) if callable(value) else value
    params["Version"] = VERSION if settings.add_version_to_infotext else None
    return infotext_utils.create_infotext(p.all_prompts[index], p.all_negative_prompts[index], params)


@contextmanager
def job_in_state(state, name: str):
    """Begin and end a job in `state`; inside a job already running (a script calling process_images several times)
    the calls join it, so progress and interrupt span them all."""
    if state.job:
        yield
        return
    state.begin(job=name)
    try:
        yield
    finally:
        state.end()


def process_images_inner(p: StableDiffusionProcessing) -> Processed:
    settings = job_context.settings(p)
    state = job_context.state(p)
    sd_hijack.model_hijack.clear_comments()
    prepare(p)
    if p.scripts is not None:
        p.scripts.process(p)
    prepare_mode(p)
    model = p.sd_model
    refiner = refiner_model(p, model)
    sampler = sd_samplers.find_sampler(p.sampler_name)
    options = p.sampling_options
    sigmas = schedule(model, sampler, p.scheduler, p.steps, p.width, p.height, options)
    output_images, infotexts = [], []
    with job_in_state(state, job_kind(p)):
        if state.job_count == -1:
            state.job_count = p.n_iter
        try:
            for n in range(p.n_iter):
                p.iteration = n
                if state.interrupted or state.stopping_generation:
                    break
                state.skipped = False
                for image, infotext in process_batch(p, model, refiner, sampler, sigmas, options, n):
                    output_images.append(image)
                    infotexts.append(infotext)
                state.nextjob()
            index_of_first_image = 0
            # A1111: no grid at all for a job that must not save one (the API without save_images, a script's
            # sub-jobs), so such callers get exactly the images generated
            one_picture = len(output_images) < 2 and settings.grid_only_if_multiple  # a grid of one is no grid
            if output_images and not one_picture and (settings.return_grid or settings.grid_save) and not p.do_not_save_grid:
                grid = images.image_grid(output_images, p.batch_size)
                if settings.return_grid:
                    infotexts.insert(0, infotexts[0])
                    output_images.insert(0, grid)
                    index_of_first_image = 1
                if settings.grid_save:
                    images.save_image(grid, p.outpath_grids, "grid", p.all_seeds[0], p.all_prompts[0], settings.grid_format,
                                      info=infotexts[0], short_filename=not settings.grid_extended_filename, p=p, grid=True)
            if infotexts and not cmd_opts.no_prompt_history:
                write_params_txt(infotexts[index_of_first_image])
        finally:
            extra_networks.deactivate(p)
    for text in sd_hijack.model_hijack.comments:  # notes extensions leave there, as A1111 shows them
        p.comment(text)
    processed = Processed(p, output_images, index_of_first_image=index_of_first_image, infotexts=infotexts)
    if p.scripts is not None:
        p.scripts.postprocess(p, processed)
    return processed


def process_batch(p: StableDiffusionProcessing, model, refiner, sampler, sigmas, options, n: int):
    """Batch n: sample, decode, postprocess and save; yields (image, infotext). The scripts' batch hooks run here."""
    settings = job_context.settings(p)
    batch = slice(n * p.batch_size, (n + 1) * p.batch_size)
    p.prompts, p.negative_prompts = p.all_prompts[batch], p.all_negative_prompts[batch]
    p.seeds, p.subseeds = p.all_seeds[batch], p.all_subseeds[batch]
    latents = sample_batch(p, model, refiner, sampler, sigmas, options, batch)
    if p.scripts is not None:
        ps = scripts.PostSampleArgs(latents)
        p.scripts.post_sample(p, ps)
        latents = ps.samples
    decoded = decode_to_tensor(model, latents, vae_method(p, "decode"))
    if p.scripts is not None:
        p.scripts.postprocess_batch(p, decoded, batch_number=n)
        pp = scripts.PostprocessBatchListArgs(list(decoded))
        p.scripts.postprocess_batch_list(p, pp, batch_number=n)
        decoded = torch.stack(pp.images) if pp.images else decoded[:0]
    for i, image in enumerate(batch_to_images(decoded)):
        index = min(batch.start + i, len(p.all_prompts) - 1)
        p.batch_index = i
        image = Image.fromarray(face_restoration.apply_if_enabled(np.asarray(image), settings, p.restore_faces)[0])
        if p.scripts is not None:
            pp = scripts.PostprocessImageArgs(image)
            p.scripts.postprocess_image(p, pp)
            image = pp.image
        image = restore_unmasked(p, image, i)
        if p.scripts is not None:
            pp = scripts.PostprocessImageArgs(image)
            p.scripts.postprocess_image_after_composite(p, pp)
            image = pp.image
        infotext = create_infotext(p, index, refiner)
        if settings.samples_save and not p.do_not_save_samples:
            images.save_image(image, p.outpath_samples, "", p.all_seeds[index], p.all_prompts[index],
                              settings.samples_format, info=infotext, p=p)
        image.info["parameters"] = infotext
        yield image, infotext


def make_rng(p, model, batch: slice, width: int, height: int) -> ImageRNG:
    settings = job_context.settings(p)
    channels = model.vae.config.get("latent_channels") or model.vae.config.z_dim  # Qwen-Image's VAE says z_dim
    shape = (channels, height // 8, width // 8)
    resize = p.seed_enable_extras and p.seed_resize_from_h > 0 and p.seed_resize_from_w > 0
    return ImageRNG(shape, p.all_seeds[batch], subseeds=p.all_subseeds[batch], subseed_strength=p.subseed_strength,
                    seed_resize_from_h=p.seed_resize_from_h if resize else 0,
                    seed_resize_from_w=p.seed_resize_from_w if resize else 0,
                    source=settings.randn_source, device=model.device,
                    eta_noise_seed_delta=int(settings.eta_noise_seed_delta or 0))


def schedule(model, sampler, scheduler: str, steps: int, width: int, height: int, options) -> torch.Tensor:
    """The sigmas of a run on the model's device: the sampler's schedule, or a flow family's own (shifted by size)."""
    if model.family.is_flow:
        sigmas = flow_sampling.get_sigmas(model.family, sampler.name, scheduler, steps, width, height)
    else:
        sigmas = sd_samplers.get_sigmas(sampler, scheduler, steps, model.model_sigmas, is_sdxl=model.family.is_sdxl,
                                        options=options)
    return sigmas.to(model.device)


def denoising_tail(model, sigmas: torch.Tensor, denoising_strength: float) -> torch.Tensor:
    """The part of the schedule img2img and Hires. fix walk: A1111's cut, or diffusers' for flow families."""
    return (flow_sampling.img2img_sigmas if model.family.is_flow else img2img_sigmas)(sigmas, denoising_strength)


def img2img_sigmas(sigmas: torch.Tensor, denoising_strength: float) -> torch.Tensor:
    """The tail of the schedule that img2img walks: int(strength * steps) + 1 steps from the end (A1111)."""
    steps = len(sigmas) - 1
    t_enc = int(min(denoising_strength, 0.999) * steps)
    return sigmas[steps - t_enc - 1:]


def noised_start(p, start: torch.Tensor, noise: torch.Tensor, sigma: torch.Tensor, flow: bool = False) -> torch.Tensor:
    """img2img / hires start xi = x + noise * sigma_0 (flow families: along the flow, (1 - sigma_0) * x +
    sigma_0 * noise), plus A1111's extra noise (opts.img2img_extra_noise)."""
    settings = job_context.settings(p)
    xi = flow_sampling.noised(start, noise, sigma) if flow else start + noise * sigma
    if settings.img2img_extra_noise > 0:
        p.extra_generation_params["Extra noise"] = settings.img2img_extra_noise
        params = script_callbacks.ExtraNoiseParams(noise, start, xi)
        script_callbacks.extra_noise_callback(params)
        xi = xi + params.noise * settings.img2img_extra_noise
    return xi


def run_sampler(p, model, refiner, sampler, sigmas, options, start, noise, rng, prompts, negatives, width, height,
                image_conditioning=None, keep_latent=None, regen_mask=None, hires_steps=None) -> torch.Tensor:
    """One sampling run over `sigmas` from `start` noised by `noise` (start None: txt2img, from the noise alone); the
    refiner (if any) takes over inside it. Returns the latent."""
    settings = job_context.settings(p)
    state = job_context.state(p)
    try:
        stage = make_stage(model, p, prompts, negatives, width, height, image_conditioning, hires_steps)
    except InterruptedException:  # stopped while encoding: the latent sampling would start from, as A1111's sampler
        return noise * sigmas[0] if start is None else start  # gives back when stopped before its first step
    if p.scripts is not None:  # as A1111: txt2img's x is the noise, img2img's and hires' the latent they start from
        p.scripts.process_before_every_sampling(p, x=noise if start is None else start, noise=noise, c=stage.cond,
                                                uc=stage.uncond)
        options = p.sampling_options  # the hook may have changed the sampler's knobs on p
    x = noise * sigmas[0] if start is None else noised_start(p, start, noise, sigmas[0], model.family.is_flow)
    refiner_stage = (lambda: make_stage(refiner, p, prompts, negatives, width, height, image_conditioning, hires_steps,
                                        refiner=True)) \
        if refiner else None
    steps = len(sigmas) - 1
    # CFG++ guides in the unconditional direction, on a scale A1111 divides by 12.5.
    cfg_scale = batch_cfg_scale(p, len(prompts))
    cfg_scale = cfg_scale / 12.5 if sampler.name == "DDIM CFG++" else cfg_scale
    p.sampler = sd_samplers.create_sampler(sampler.name, model)
    denoiser = p.sampler.model_wrap_cfg.prepare(stage, cfg_scale, state, refiner=refiner_stage,
                                                switch_at=p.refiner_switch_at or 1.0,
                                                switch_by_steps=bool(settings.refiner_switch_by_sample_steps),
                                                schedule=sigmas.tolist())
    p.denoiser = denoiser
    on_blend = (lambda mba: p.scripts.on_mask_blend(p, mba)) \
        if regen_mask is not None and p.scripts is not None and p.scripts.defines("on_mask_blend") else None
    sample_with = denoiser if regen_mask is None else i2i.MaskedDenoiser(denoiser, keep_latent, regen_mask, on_blend)
    state.sampling_steps = steps
    state.sampling_step = 0
    last = {"x": x}
    preview_every = max(int(settings.show_progress_every_n_steps), 0)

    def callback(i, x_i, denoised, sigma):
        last["x"] = denoised
        denoiser.step = i + 1
        state.sampling_step = i + 1
        if preview_every and (i + 1) % preview_every == 0:
            state.current_latent = denoised

    try:
        with torch.inference_mode():
            out = sd_samplers.sample(p.sampler, sample_with, x, sigmas, rng, callback=callback, options=options)
    except InterruptedException:
        out = last["x"]
    if regen_mask is not None:  # the kept area leaves the sampler exactly as it came in
        out = i2i.blend(out, keep_latent, regen_mask, on_blend)
    return out


def batch_cfg_scale(p, rows: int) -> float | torch.Tensor:
    """The CFG scale of the current batch: p.cfg_scale, or a [rows] tensor where batched requests' scales differ."""
    start = p.iteration * p.batch_size
    scales = p.all_cfg_scales[start:start + rows]
    if len(set(scales)) > 1:
        return torch.tensor(scales, dtype=torch.float32)
    return float(scales[0]) if scales else p.cfg_scale


def sample_batch(p, model, refiner, sampler, sigmas, options, batch: slice) -> torch.Tensor:
    settings = job_context.settings(p)
    state = job_context.state(p)
    if p.scripts is not None:  # may change p.prompts before the extra networks are read from them
        p.scripts.before_process_batch(p, batch_number=p.iteration, prompts=p.prompts, seeds=p.seeds, subseeds=p.subseeds)
    p.prompts, extra_network_data = extra_networks.parse_prompts(p.prompts)
    prompts, negatives = p.prompts, p.negative_prompts
    extra_networks.activate(p, extra_network_data)
    if p.scripts is not None:
        hook_args = {"batch_number": p.iteration, "prompts": p.prompts, "seeds": p.seeds, "subseeds": p.subseeds}
        p.scripts.after_extra_networks_activate(p, **hook_args, extra_network_data=extra_network_data)
        p.scripts.process_batch(p, **hook_args)
        # a script may have put in a sampler it registered (e.g. one whose constructor wraps the CFG denoiser)
        sampler = sd_samplers.find_sampler(p.sampler_name) or sampler
    rng = make_rng(p, model, batch, p.width, p.height)
    if isinstance(p, StableDiffusionProcessingImg2Img):
        return sample_img2img(p, model, refiner, sampler, sigmas, options, batch, rng, prompts, negatives)
    first_pass_refiner = refiner if not p.enable_hr or settings.hires_fix_refiner_pass != "second pass" else None
    latents = run_sampler(p, model, first_pass_refiner, sampler, sigmas, options, None, rng.next(), rng, prompts, negatives,
                          p.width, p.height)
    if not p.enable_hr or state.interrupted:
        return latents
    if p.scripts is not None:
        p.scripts.before_hr(p)
    return sample_hires(p, model, refiner, latents, options, batch)


def sample_img2img(p, model, refiner, sampler, sigmas, options, batch, rng, prompts, negatives) -> torch.Tensor:
    prepared = p.prepared
    pixels = prepared.pixels if len(prepared.pixels) > 1 else prepared.pixels * (batch.stop - batch.start)
    encode_method = vae_method(p, "encode")
    init_latent = i2i.encode(model, pixels, encode_method)
    if p.resize_mode == 3 and (init_latent.shape[-1] * 8, init_latent.shape[-2] * 8) != (p.width, p.height):
        init_latent = torch.nn.functional.interpolate(init_latent, size=(p.height // 8, p.width // 8), mode="bilinear")
    regen = None
    if prepared.mask is not None:
        regen = i2i.latent_mask(prepared.mask, init_latent, p.mask_round)
        fill_noise = make_rng(p, model, batch, p.width, p.height).first() if p.inpainting_fill == i2i.LATENT_NOISE else None
        init_latent = i2i.masked_init_latent(init_latent, regen, p.inpainting_fill, fill_noise)
    p.init_latent = init_latent
    p.nmask = regen  # A1111's name: 1 where the latent is regenerated (scripts read it after sampling)
    image_conditioning = i2i.inpainting_conditioning(model, pixels, prepared.mask, init_latent, method=encode_method)
    if image_conditioning is not None:
        p.extra_generation_params["Conditional mask weight"] = 1.0
    tail = denoising_tail(model, sigmas, p.denoising_strength)
    noise = rng.next() * p.initial_noise_multiplier
    return run_sampler(p, model, refiner, sampler, tail, options, init_latent, noise, rng, prompts, negatives, p.width,
                       p.height, image_conditioning, keep_latent=init_latent, regen_mask=regen)


def upscale_for_hires(p, model, latents: torch.Tensor, width: int, height: int) -> torch.Tensor:
    """Latent modes interpolate the latent; image upscalers work on the decoded images, which are encoded again."""
    if p.hr_upscaler in LATENT_UPSCALE_MODES:
        mode, antialias = LATENT_UPSCALE_MODES[p.hr_upscaler]
        return torch.nn.functional.interpolate(latents, size=(height // 8, width // 8), mode=mode, antialias=antialias)
    decoded = decode_latents(model, latents, vae_method(p, "decode"))
    upscaled = [images.resize_image(0, im, width, height, upscaler_name=p.hr_upscaler) for im in decoded]
    return i2i.encode(model, upscaled, vae_method(p, "encode"))


def sample_hires(p, model, refiner, latents, options, batch: slice) -> torch.Tensor:
    """Hires. fix: upscale the first pass and run an img2img-style second pass over it at the new size."""
    settings = job_context.settings(p)
    width, height, cut_x, cut_y = p.hires_size()
    hr_model = model
    if p.hr_checkpoint_name and p.hr_checkpoint_name != "Use same checkpoint":
        hr_model = manager_for(p).get(resolve_checkpoint(p.hr_checkpoint_name), make_current=False)
    samples = upscale_for_hires(p, model, latents, width, height)
    if cut_x or cut_y:  # resize-to with another aspect ratio: trim the overflow evenly
        h, w = samples.shape[-2:]
        samples = samples[..., cut_y // 2: h - (cut_y - cut_y // 2), cut_x // 2: w - (cut_x - cut_x // 2)]
        height, width = samples.shape[-2] * 8, samples.shape[-1] * 8
    same_sampler = not p.hr_sampler_name or p.hr_sampler_name == "Use same sampler"
    name, scheduler = (p.sampler_name, p.scheduler) if same_sampler else \
        sd_samplers.resolve_sampler_scheduler(p.hr_sampler_name, p.hr_scheduler)
    sampler = sd_samplers.find_sampler(name)
    steps = p.hr_second_pass_steps or p.steps
    sigmas = schedule(hr_model, sampler, scheduler, steps, width, height, options)
    tail = denoising_tail(hr_model, sigmas, p.denoising_strength)
    rng = make_rng(p, hr_model, batch, width, height)
    noise = rng.next()
    prompts, hr_network_data = extra_networks.parse_prompts([p.hr_prompt] * (batch.stop - batch.start) if p.hr_prompt
                                                            else p.all_prompts[batch])
    extra_networks.activate(p, hr_network_data)  # the first pass's networks again cost nothing
    negatives = [p.hr_negative_prompt] * (batch.stop - batch.start) if p.hr_negative_prompt else p.all_negative_prompts[batch]
    second_pass_refiner = refiner if settings.hires_fix_refiner_pass != "first pass" else None
    return run_sampler(p, hr_model, second_pass_refiner, sampler, tail, options, samples, noise, rng, prompts, negatives,
                       width, height, hires_steps=steps)


def restore_unmasked(p, image: Image.Image, i: int) -> Image.Image:
    """Inpainting: the result goes back into its crop region and every unmasked pixel is the original's."""
    prepared = getattr(p, "prepared", None)
    if prepared is None or not prepared.overlays:
        return image
    overlay = prepared.overlays[i % len(prepared.overlays)]
    if p.scripts is not None:
        ppmo = scripts.PostprocessMaskOverlayArgs(i, prepared.mask, overlay)
        p.scripts.postprocess_maskoverlay(p, ppmo)
        overlay = ppmo.overlay_image
    return masking.apply_overlay(image, prepared.paste_to, overlay)


def write_params_txt(infotext: str) -> None:
    path = os.path.join(paths_internal.data_path, "params.txt")
    tmp = path + ".tmp"
    with open(tmp, "w", encoding="utf8") as f:
        f.write(infotext)
    os.replace(tmp, path)


def setup_model_manager(cmd_opts_, cache_dir) -> sd_models.ModelManager:
    """Start the shared model manager for the device the flags choose."""
    settings = job_context.settings()
    plan = devices.plan_from_flags(cmd_opts_)
    sd_models.model_manager = sd_models.ModelManager(plan, cache_dir, limit=int(settings.sd_checkpoints_limit),
                                                     hashing=not cmd_opts_.no_hashing)
    return sd_models.model_manager
