"""Read a single-file checkpoint in its original layout and build diffusers components from it, fully offline."""
from __future__ import annotations

import pickle
from pathlib import Path

import safetensors
import safetensors.torch
import torch
from accelerate import init_empty_weights
from diffusers import AutoencoderKL, UNet2DConditionModel
from diffusers.loaders.single_file_utils import (
    convert_ldm_clip_checkpoint,
    convert_ldm_unet_checkpoint,
    convert_ldm_vae_checkpoint,
    convert_open_clip_checkpoint,
)
from transformers import CLIPTextConfig, CLIPTextModel, CLIPTextModelWithProjection

from modules import quantized_weights, sd_models_config as cfgs


class CheckpointLoadError(RuntimeError):
    pass


def read_state_dict(path: str | Path) -> tuple[dict[str, torch.Tensor], dict]:
    """Tensors and metadata of a .safetensors (scaled fp8 weights dequantized), a .gguf (quantized tensors kept as
    they are stored), or a .ckpt/.pt through weights-only unpickling (never runs code)."""
    path = Path(path)
    try:
        if path.suffix.lower() == ".safetensors":
            with safetensors.safe_open(str(path), framework="pt") as f:
                metadata = f.metadata() or {}
            return quantized_weights.dequantize_scaled_fp8(safetensors.torch.load_file(str(path))), metadata
        if path.suffix.lower() == ".gguf":
            return quantized_weights.read_gguf(path), {}
        data = torch.load(str(path), map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as e:
        raise CheckpointLoadError(
            f"Refused to load {path.name}: it contains pickled code, not only tensors; "
            f"convert it to .safetensors with a tool you trust ({str(e).splitlines()[0]})"
        ) from e
    except Exception as e:  # corrupt or truncated files raise many different types
        raise CheckpointLoadError(f"Could not read {path.name}: the file is corrupt, truncated or not a checkpoint ({e})") from e
    if isinstance(data, dict) and isinstance(data.get("state_dict"), dict):
        data = data["state_dict"]
    if isinstance(data, dict) and data and all(isinstance(v, dict) for v in data.values()):  # IP-Adapter's .bin
        data = {f"{part}.{key}": value for part, tensors in data.items() for key, value in tensors.items()}
    if not isinstance(data, dict) or not all(isinstance(v, torch.Tensor) for v in data.values()):
        raise CheckpointLoadError(f"Could not read {path.name}: it holds no state dict of tensors")
    return data, {}


def materialize(module: torch.nn.Module, state: dict[str, torch.Tensor], what: str, ignore_extra: tuple[str, ...] = ()) -> None:
    """Load tensors into a module built on the meta device; every parameter must be filled. GGUF-quantized tensors
    go into diffusers' GGUF layers as they are stored."""
    quantized_weights.quantize_for_load(module, state)
    expected = set(module.state_dict())
    missing = expected - set(state)
    extra = {k for k in set(state) - expected if not k.startswith(ignore_extra)}
    if missing or extra:
        sample = sorted(missing)[:3] or sorted(extra)[:3]
        raise CheckpointLoadError(f"{what}: {len(missing)} missing and {len(extra)} unexpected weights (e.g. {sample})")
    quantized = {k for k in expected if quantized_weights.is_gguf(state[k])}
    for key in quantized:  # blocks, not the layer's shape: load_state_dict would refuse them
        owner, name = key.rsplit(".", 1)
        setattr(module.get_submodule(owner), name, state[key])
    module.load_state_dict({k: state[k] for k in expected - quantized}, strict=not quantized, assign=True)
    leftover = [n for n, t in list(module.named_parameters()) + list(module.named_buffers()) if t.is_meta]
    if leftover:
        raise CheckpointLoadError(f"{what}: weights left on the meta device: {leftover[:3]}")


def build_unet(sd: dict, family: cfgs.ModelFamily, pooled_dim: int | None) -> UNet2DConditionModel:
    config = cfgs.unet_config(sd, family, pooled_dim)
    with init_empty_weights(include_buffers=False):
        unet = UNet2DConditionModel.from_config(config)
    materialize(unet, convert_ldm_unet_checkpoint(sd, config), "UNet")
    return unet


def build_vae(sd: dict, family: str, prefix: str = cfgs.VAE) -> AutoencoderKL:
    config = cfgs.vae_config(sd, family, prefix)
    with init_empty_weights(include_buffers=False):
        vae = AutoencoderKL.from_config(config)
    part = {k: v for k, v in sd.items() if k.startswith(prefix)} if prefix else sd
    materialize(vae, convert_ldm_vae_checkpoint(part, config), "VAE")
    return vae


def build_text_encoder(sd: dict, family: str, component: str, kind: str, prefix: str) -> torch.nn.Module:
    if kind == "clip_l":
        config = CLIPTextConfig(**cfgs.clip_l_config(sd, family, prefix))
        with init_empty_weights(include_buffers=False):
            model = CLIPTextModel(config)
        state = convert_ldm_clip_checkpoint({k: v for k, v in sd.items() if k.startswith(prefix)}, prefix)
        if not hasattr(model, "text_model"):  # transformers >= 5.6 flattened CLIPTextModel
            state = {k.removeprefix("text_model."): v for k, v in state.items()}
        materialize(model, state, component, ignore_extra=("embeddings.position_ids", "text_model.embeddings.position_ids"))
        return model
    config = CLIPTextConfig(**cfgs.open_clip_config(sd, family, component, prefix))
    cls = CLIPTextModelWithProjection if family != "v2" else CLIPTextModel
    with init_empty_weights(include_buffers=False):
        model = cls(config)
    state = convert_open_clip_checkpoint(model, {k: v for k, v in sd.items() if k.startswith(prefix)}, prefix)
    if not hasattr(model, "text_model"):
        state = {k.removeprefix("text_model."): v for k, v in state.items()}
    if cls is CLIPTextModel:
        state.pop("text_projection.weight", None)
    # SD2 drops the last block (penultimate-layer conditioning); its weights are present in the file but unused.
    last = config.num_hidden_layers
    materialize(model, state, component, ignore_extra=(f"encoder.layers.{last}.", f"text_model.encoder.layers.{last}."))
    return model


def alphas_cumprod(sd: dict, scheduler_config: dict) -> torch.Tensor:
    """The training schedule: the checkpoint's own buffer when present, else the family's betas."""
    if "alphas_cumprod" in sd and sd["alphas_cumprod"].numel() == scheduler_config["num_train_timesteps"]:
        return sd["alphas_cumprod"].to(torch.float64)
    n = scheduler_config["num_train_timesteps"]
    betas = torch.linspace(scheduler_config["beta_start"] ** 0.5, scheduler_config["beta_end"] ** 0.5, n, dtype=torch.float64) ** 2
    return torch.cumprod(1.0 - betas, dim=0)
