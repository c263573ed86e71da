"""The checkpoint registry and the model manager (A1111's modules.sd_models names).

The registry finds checkpoints under models/Stable-diffusion (+ --ckpt-dir); the manager loads them onto one device,
keeps an LRU of `sd_checkpoints_limit` loaded models, and keeps the previous model when a load fails.
"""
from __future__ import annotations

import collections
import contextlib
import json
import logging
import os
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import safetensors
import torch

from modules import (
    devices,
    hashes,
    job_context,
    lowvram,
    model_families,
    paths_internal,
    quantized_weights,
    script_callbacks,
    sd_models_config,
    sd_models_loader,
    sd_unet_compile,
)
from modules.clip_tokenizer import load_tokenizer
from modules.model_families import flow_sampling
from modules.sd_models_loader import CheckpointLoadError
from modules.sd_samplers_common import ModelSigmas
from modules.shared_cmd_options import cmd_opts

log = logging.getLogger(__name__)
# models/Stable-diffusion (A1111); unet and diffusion_models: where Forge and ComfyUI users keep transformer-only files
TRANSFORMER_DIRS = ("Stable-diffusion", "unet", "diffusion_models")
CHECKPOINT_EXTENSIONS = (".safetensors", ".ckpt", ".gguf")  # .gguf: quantized flow transformers


class CheckpointInfo:
    """One checkpoint file and every name it answers to (A1111's ids)."""

    def __init__(self, filename: str, root: str | None = None):
        self.filename = os.path.abspath(filename)
        root = root or os.path.dirname(self.filename)
        rel = os.path.relpath(self.filename, root) if self.filename.startswith(os.path.abspath(root) + os.sep) else os.path.basename(filename)
        self.name = rel.replace(os.sep, "/")
        self.name_for_extra = os.path.splitext(os.path.basename(filename))[0]
        self.model_name = os.path.splitext(self.name.replace("/", "_"))[0]
        self.hash = hashes.legacy_model_hash(self.filename)
        self.sha256 = hashes.sha256_from_cache(self.filename, f"checkpoint/{self.name}")
        self.metadata: dict = {}

    @property
    def shorthash(self) -> str | None:
        return self.sha256[:10] if self.sha256 else None

    @property
    def title(self) -> str:
        return f"{self.name} [{self.shorthash}]" if self.shorthash else self.name

    @property
    def short_title(self) -> str:
        return f"{self.name_for_extra} [{self.shorthash}]" if self.shorthash else self.name_for_extra

    @property
    def ids(self) -> list[str]:
        ids = [self.hash, self.model_name, self.title, self.name, self.name_for_extra, f"{self.name} [{self.hash}]"]
        if self.shorthash:
            ids += [self.shorthash, self.sha256, f"{self.name} [{self.shorthash}]", f"{self.name_for_extra} [{self.shorthash}]"]
        return ids

    def calculate_shorthash(self) -> str | None:
        self.sha256 = hashes.sha256(self.filename, f"checkpoint/{self.name}")
        checkpoint_registry.register(self)
        return self.shorthash


class CheckpointRegistry:
    def __init__(self):
        self.checkpoints_list: dict[str, CheckpointInfo] = {}
        self.checkpoint_aliases: dict[str, CheckpointInfo] = {}

    def register(self, info: CheckpointInfo) -> None:
        for title in [t for t, i in self.checkpoints_list.items() if i.filename == info.filename]:
            del self.checkpoints_list[title]
        self.checkpoints_list[info.title] = info
        for alias in info.ids:
            self.checkpoint_aliases[alias] = info

    def scan(self, dirs: list[str], extra_files: list[str] = ()) -> None:
        self.checkpoints_list.clear()
        self.checkpoint_aliases.clear()
        for root in dirs:
            if not root or not os.path.isdir(root):
                continue
            for dirpath, _, files in sorted(os.walk(root, followlinks=True)):
                for fn in sorted(files, key=str.lower):
                    if fn.lower().endswith(CHECKPOINT_EXTENSIONS) and ".vae." not in fn.lower():
                        self.register(CheckpointInfo(os.path.join(dirpath, fn), root))
        for fn in extra_files:
            if fn and os.path.isfile(fn):
                self.register(CheckpointInfo(fn))

    def titles(self) -> list[str]:
        return sorted(self.checkpoints_list, key=str.lower)

    def get_closet_checkpoint_match(self, search: str) -> CheckpointInfo | None:
        """Exact alias first, then the shortest title containing the text, then the same without a [hash]."""
        if not search:
            return None
        if search in self.checkpoint_aliases:
            return self.checkpoint_aliases[search]
        found = sorted((i for t, i in self.checkpoints_list.items() if search in t), key=lambda i: len(i.title))
        if found:
            return found[0]
        bare = search.rsplit(" [", 1)[0]
        found = sorted((i for t, i in self.checkpoints_list.items() if bare in t), key=lambda i: len(i.title))
        return found[0] if found else None


checkpoint_registry = CheckpointRegistry()
checkpoints_list = checkpoint_registry.checkpoints_list
checkpoint_aliases = checkpoint_registry.checkpoint_aliases
get_closet_checkpoint_match = checkpoint_registry.get_closet_checkpoint_match
model_manager: ModelManager | None = None  # the faces' default manager; engine code can be handed another


def model_dirs(cmd_opts) -> list[str]:
    dirs = [os.path.join(paths_internal.models_path, name) for name in TRANSFORMER_DIRS]
    if getattr(cmd_opts, "ckpt_dir", None):
        dirs.append(cmd_opts.ckpt_dir)
    return dirs


def list_models(cmd_opts=cmd_opts) -> list[str]:
    """Scan the checkpoint folders again; A1111's callers pass nothing."""
    checkpoint_registry.scan(model_dirs(cmd_opts), [getattr(cmd_opts, "ckpt", None)])
    return checkpoint_registry.titles()


def checkpoint_tiles(use_short: bool = False) -> list[str]:
    """The checkpoint titles in UI order; with use_short, file names without folder and extension."""
    return [checkpoints_list[t].short_title if use_short else t for t in checkpoint_registry.titles()]


model_hash = hashes.legacy_model_hash  # A1111's name for the legacy 8-hex checkpoint hash


def read_state_dict(checkpoint_file, print_global_state=False, map_location=None) -> dict[str, torch.Tensor]:
    """A checkpoint's tensors through the safe loader (.ckpt by weights-only unpickling; pickled code is refused with
    CheckpointLoadError), on the CPU unless map_location names a device. print_global_state is accepted for A1111
    callers: the safe loader keeps only the state dict, not the training step."""
    state_dict, _ = sd_models_loader.read_state_dict(checkpoint_file)
    if map_location is not None:
        state_dict = {key: tensor.to(map_location) for key, tensor in state_dict.items()}
    return state_dict


def decode_metadata(metadata: dict[str, str]) -> dict:
    """Safetensors metadata with JSON-looking values decoded, as A1111 shows and reuses them."""
    out = {}
    for key, value in metadata.items():
        if isinstance(value, str) and value[:1] in "{[":
            with contextlib.suppress(ValueError):
                value = json.loads(value)
        out[key] = value
    return out


def read_metadata_from_safetensors(filename: str) -> dict:
    """A .safetensors file's metadata, decoded (A1111's: the merge recipe, training tags...)."""
    with safetensors.safe_open(filename, framework="pt") as f:
        return decode_metadata(f.metadata() or {})


def _manager_and_checkpoint(manager: ModelManager | None, info: CheckpointInfo | None) -> tuple:
    """The manager to use (default: the running one) and the checkpoint (default: select_checkpoint())."""
    manager = manager or model_manager
    if manager is None:
        raise RuntimeError("The model manager is not started")
    info = info or select_checkpoint()
    if info is None:
        raise FileNotFoundError(no_checkpoint_message())
    return manager, info


def load_model(checkpoint_info: CheckpointInfo | None = None, already_loaded_state_dict: dict | None = None,
               manager: ModelManager | None = None) -> StableDiffusionModel:
    """A1111's: load `checkpoint_info` (default: select_checkpoint()) and make it the current model; with
    already_loaded_state_dict (e.g. a merge made in memory) the model is built from those tensors, not the file."""
    manager, info = _manager_and_checkpoint(manager, checkpoint_info)
    if already_loaded_state_dict is not None:
        manager.unload(info.filename)
    return manager.get(info, state_dict=already_loaded_state_dict)


class ModelData:
    """A1111's sd_models.model_data: the current model and the loaded ones, as the model manager holds them."""

    @property
    def sd_model(self) -> StableDiffusionModel | None:
        return model_manager.current if model_manager is not None else None

    @sd_model.setter
    def sd_model(self, model: StableDiffusionModel | None) -> None:
        self.set_sd_model(model)

    @property
    def loaded_sd_models(self) -> list[StableDiffusionModel]:
        return list(model_manager.loaded.values()) if model_manager is not None else []

    def get_sd_model(self) -> StableDiffusionModel | None:
        return self.sd_model

    def set_sd_model(self, model: StableDiffusionModel | None, already_loaded: bool = False) -> None:
        """Make a loaded model current (None: no current model; the loaded ones stay)."""
        if model_manager is None:
            raise RuntimeError("The model manager is not started")
        with model_manager.lock:
            if model is not None and model_manager.loaded.get(model.sd_checkpoint_info.filename) is not model:
                raise ValueError(f"{model.sd_checkpoint_info.title} is not loaded")
            model_manager.current = model


model_data = ModelData()
# A1111's RAM cache of checkpoint state dicts: Atelier keeps loaded models (model_manager.loaded), never state dicts,
# so this stays empty and clearing it, as merging extensions do, frees nothing
checkpoints_loaded: collections.OrderedDict = collections.OrderedDict()


def __getattr__(name):
    if name == "model_path":  # A1111's models/Stable-diffusion, following --data-dir / --models-dir
        return os.path.abspath(os.path.join(paths_internal.models_path, "Stable-diffusion"))
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def no_checkpoint_message() -> str:
    places = [f"file {os.path.abspath(cmd_opts.ckpt)}"] if getattr(cmd_opts, "ckpt", None) else []
    places += [f"directory {os.path.abspath(d)}" for d in model_dirs(cmd_opts)]
    return ("No checkpoints found. When searching for checkpoints, looked at:\n"
            + "".join(f" - {place}\n" for place in places)
            + "Can't run without a checkpoint. Find and place a .ckpt or .safetensors file into any of those locations.")


def select_checkpoint() -> CheckpointInfo | None:
    """The checkpoint of the sd_model_checkpoint setting, else the first one (with a warning), else None (logged)."""
    wanted = job_context.settings().sd_model_checkpoint
    info = get_closet_checkpoint_match(wanted) if wanted else None
    if info is not None:
        return info
    titles = checkpoint_registry.titles()
    if not titles:
        log.error(no_checkpoint_message())
        return None
    info = checkpoints_list[titles[0]]
    if wanted:
        log.warning("Checkpoint %s not found; loading fallback %s", wanted, info.title)
    return info


def reload_model_weights(sd_model=None, info: CheckpointInfo | None = None, forced_reload: bool = False,
                         manager: ModelManager | None = None) -> StableDiffusionModel:
    """Make `info` (default: select_checkpoint()) the current model of the manager and the sd_model_checkpoint
    setting, loading it if needed; forced_reload reads it from disk again. sd_model (A1111's model being replaced) is
    accepted for A1111 callers: the manager knows what is loaded."""
    manager, info = _manager_and_checkpoint(manager, info)
    if forced_reload:
        manager.unload(info.filename)
    model = manager.get(info)
    job_context.settings().data["sd_model_checkpoint"] = info.title  # as A1111: recorded without running the setting's callbacks
    return model


def unload_model_weights(sd_model=None, info: CheckpointInfo | None = None, manager: ModelManager | None = None):
    """Drop a loaded checkpoint (`info`'s, else `sd_model`'s, else all of them) from the manager and free its memory;
    the next job loads its checkpoint again."""
    manager = manager or model_manager
    if manager is None:
        return sd_model
    if info is None and sd_model is None:
        manager.unload_all()
    else:
        manager.unload((info or sd_model.sd_checkpoint_info).filename)
    return sd_model


@dataclass
class StableDiffusionModel:
    """A loaded checkpoint: diffusers components plus what the engine needs to drive them."""

    sd_checkpoint_info: CheckpointInfo
    family: sd_models_config.ModelFamily
    unet: torch.nn.Module
    vae: torch.nn.Module
    text_encoders: dict[str, torch.nn.Module]
    tokenizers: dict[str, object]
    model_sigmas: ModelSigmas
    plan: devices.DevicePlan
    base_vae: torch.nn.Module = None
    loaded_vae_file: str | None = None
    load_time: float = 0.0
    extra: dict = field(default_factory=dict)
    sampling_unet: Callable | None = None  # what the sampling loop calls: the UNet, or its compiling view

    @property
    def is_sdxl(self) -> bool:
        return self.family.name == "xl_base"

    @property
    def is_sdxl_refiner(self) -> bool:
        return self.family.name == "xl_refiner"

    @property
    def is_sd2(self) -> bool:
        return self.family.name == "v2"

    @property
    def is_sd1(self) -> bool:
        return self.family.name == "v1"

    @property
    def cond_stage_model(self) -> torch.nn.Module:
        """A1111's name for the prompt encoder: the first text encoder (SDXL: CLIP-L; the refiner: its OpenCLIP)."""
        return next(iter(self.text_encoders.values()))

    @property
    def sd_model_checkpoint(self) -> str:
        return self.sd_checkpoint_info.filename

    @property
    def sd_model_hash(self) -> str | None:
        return self.sd_checkpoint_info.shorthash

    @property
    def latent_space(self) -> str:
        """Models that can hand a latent to each other (refiner switch) share this."""
        return self.family.name if self.family.is_flow else "sdxl" if self.family.is_sdxl else "sd"

    @property
    def device(self) -> torch.device:
        """Where the model computes (and inputs are made), even while --medvram keeps its weights in RAM."""
        return self.plan.device

    def __setattr__(self, name, value):
        super().__setattr__(name, value)
        if name == "vae":  # a VAE swapped in (Settings: SD VAE) is offloaded like the checkpoint's own
            lowvram.adopt_vae(self, value)


def place(module: torch.nn.Module, device: torch.device, dtype: torch.dtype) -> None:
    """Move and cast a frozen inference module. torch's own `to`: diffusers' override warns about fp32-only
    submodules on every cast, and SD's components have none."""
    torch.nn.Module.to(module, device, dtype).eval().requires_grad_(False)


def build_model(info: CheckpointInfo, plan: devices.DevicePlan, cache_dir: Path,
                state_dict: dict | None = None) -> StableDiffusionModel:
    """The model of `info`'s file, or of state_dict's tensors (in the file's layout) when given."""
    started = time.perf_counter()
    if state_dict is None:
        sd, metadata = sd_models_loader.read_state_dict(info.filename)
    else:
        sd, metadata = state_dict, dict(info.metadata or {})
    try:
        flow_family = model_families.detect_flow_family(quantized_weights.logical_view(sd))
        if flow_family is not None:
            return build_flow_model(info, flow_family, sd, metadata, plan, cache_dir, started)
        if info.filename.lower().endswith(".gguf"):
            raise CheckpointLoadError("GGUF files load for Flux.1, Chroma and SD 3.5 transformers only")
        family = sd_models_config.detect_family(sd, metadata)
        encoders = {}
        for component, kind, prefix in sd_models_config.TEXT_ENCODERS[family.name]:
            encoders[component] = sd_models_loader.build_text_encoder(sd, family.name, component, kind, prefix)
        pooled = encoders["text_encoder_2"].config.projection_dim if family.is_sdxl else None
        unet = sd_models_loader.build_unet(sd, family, pooled)
        vae = sd_models_loader.build_vae(sd, family.name)
        scheduler = sd_models_config.skeleton(family.name, "scheduler")
        sigmas = ModelSigmas(sd_models_loader.alphas_cumprod(sd, scheduler))
    except (KeyError, StopIteration, ValueError, RuntimeError) as e:
        if isinstance(e, CheckpointLoadError):
            raise CheckpointLoadError(f"Could not load {info.name}: {e}") from e
        raise CheckpointLoadError(f"Could not load {info.name}: unexpected layout ({type(e).__name__}: {e})") from e
    finally:
        del sd
    tokenizers = {name: load_tokenizer(cache_dir, pad) for name, pad in sd_models_config.tokenizer_pads(family.name).items()}
    plan = plan.for_model(family.is_sdxl)
    home = lowvram.STORAGE if plan.offloads else plan.device
    place(unet, home, plan.dtype)
    place(vae, home, plan.dtype_vae)
    for te in encoders.values():
        place(te, home, plan.dtype)
    info.metadata = metadata
    model = StableDiffusionModel(info, family, unet, vae, encoders, tokenizers, sigmas, plan, base_vae=vae,
                                 sampling_unet=sd_unet_compile.sampling_unet(unet) if plan.compiles else unet)
    if plan.offloads:
        lowvram.setup_for_low_vram(model, use_medvram=plan.memory_mode == "medvram")
    model.load_time = time.perf_counter() - started
    return model


def build_flow_model(info: CheckpointInfo, family, sd: dict, metadata: dict, plan: devices.DevicePlan, cache_dir: Path,
                     started: float) -> StableDiffusionModel:
    """A flow-matching transformer (Flux.1, Chroma, SD 3.5) with its text encoders and VAE, from its file or the module folders;
    the transformer is the model's `unet`, the part the sampling loop drives."""
    plan = plan.for_flow()
    chosen = tuple(job_context.settings().forge_additional_modules or ())
    transformer, vae, encoders, tokenizers, modules = model_families.load(family, sd, paths_internal.models_path,
                                                                          info.filename, chosen)
    pads = sd_models_config.tokenizer_pads(family.name)
    tokenizers = {name: load_tokenizer(cache_dir, pad) for name, pad in pads.items()} | tokenizers
    plan = plan.for_model(is_sdxl=False)
    home = lowvram.STORAGE if plan.offloads else plan.device
    for part in (transformer, *encoders.values()):  # fp8 layers stay fp8 unless --upcast-fp8
        quantized_weights.store(part, home, plan.dtype, keep_fp8=plan.keep_fp8)
    place(vae, home, plan.dtype_vae)
    info.metadata = metadata
    model = StableDiffusionModel(info, family, transformer, vae, encoders, tokenizers, flow_sampling.FlowSigmas(), plan,
                                 base_vae=vae, sampling_unet=transformer,
                                 extra={"modules": modules, "modules_chosen": chosen})
    if plan.offloads:
        lowvram.setup_for_low_vram(model, use_medvram=plan.memory_mode == "medvram")
    model.load_time = time.perf_counter() - started
    return model


class ModelManager:
    """Loads checkpoints for one device; an LRU of loaded models; a failed load leaves the current model in place."""

    def __init__(self, plan: devices.DevicePlan, cache_dir: Path, limit: int = 1, hashing: bool = True):
        self.plan = plan
        self.hashing = hashing
        self.cache_dir = Path(cache_dir)
        self.limit = limit
        self.loaded: collections.OrderedDict[str, StableDiffusionModel] = collections.OrderedDict()
        self.current: StableDiffusionModel | None = None
        self.lock = threading.RLock()
        # models that guide a checkpoint (ControlNets, adapters, image encoders, annotators) on this device, by key
        self.auxiliary: collections.OrderedDict[tuple, object] = collections.OrderedDict()
        self.auxiliary_limit = 4

    def get(self, info: CheckpointInfo, make_current: bool = True, state_dict: dict | None = None) -> StableDiffusionModel:
        """The loaded model of `info`, loaded first if needed (from state_dict's tensors when given)."""
        with self.lock:
            model = self.loaded.get(info.filename)
            if model is not None and model.family.is_flow and state_dict is None \
                    and model.extra["modules_chosen"] != tuple(job_context.settings().forge_additional_modules or ()):
                self.unload(info.filename)  # other "VAE / Text Encoder" modules chosen: load it with those
                model = None
            if model is None:
                log.info("Loading weights from %s", "memory" if state_dict is not None else info.filename)
                model = build_model(info, self.plan, self.cache_dir, state_dict)
                if self.hashing and not info.sha256:
                    info.calculate_shorthash()
                self.loaded[info.filename] = model
                log.info("Model %s (%s) loaded in %.1fs", info.title, model.family.label, model.load_time)
                script_callbacks.model_loaded_callback(model)
            self.loaded.move_to_end(info.filename)
            if make_current:
                self.current = model
            self._evict(keep={info.filename, self.current.sd_checkpoint_info.filename if self.current else None})
            return model

    def _evict(self, keep: set) -> None:
        """Drop least recently used models beyond the limit; the current model and the one just asked for stay,
        so a base model and its refiner are both resident even with a limit of 1."""
        evict = [f for f in self.loaded if f not in keep][: max(len(self.loaded) - max(self.limit, 1), 0)]
        for filename in evict:
            lowvram.release(self.loaded.pop(filename))
        if evict:
            devices.torch_gc()

    def unload(self, filename: str) -> None:
        """Drop one loaded checkpoint (the current one too); nothing happens when it is not loaded."""
        with self.lock:
            model = self.loaded.pop(filename, None)
            if model is None:
                return
            lowvram.release(model)
            if self.current is model:
                self.current = None
            del model
            devices.torch_gc()

    def auxiliary_model(self, key: tuple, load):
        """The auxiliary model under `key` (made by load() the first time); of each kind (key[0]: "controlnet",
        "clip_vision", "annotator") the least recently used beyond auxiliary_limit are dropped, so the next job with
        the same units loads nothing and annotators never push out the control models."""
        with self.lock:
            if key not in self.auxiliary:
                same_kind = [k for k in self.auxiliary if k[0] == key[0]]
                while len(same_kind) >= max(self.auxiliary_limit, 1):
                    del self.auxiliary[same_kind.pop(0)]
                self.auxiliary[key] = load()
            self.auxiliary.move_to_end(key)
            return self.auxiliary[key]

    def unload_all(self) -> None:
        with self.lock:
            self.auxiliary.clear()
            for model in self.loaded.values():
                lowvram.release(model)
            self.loaded.clear()
            self.current = None
            devices.torch_gc()
