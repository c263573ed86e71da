"""A network file on disk, its loaded layers, and what every layer type shares (A1111's network.py names).

A layer's weight delta is `calc_updown(W)`: the type's raw delta (subclasses), times alpha/dim (or the file's `scale`),
then DoRA's weight decomposition when the file has `dora_scale`, then the te/unet multiplier.
"""
from __future__ import annotations

import enum
import json

import torch

from modules import cache, hashes
from modules.shared_cmd_options import cmd_opts


class SdVersion(enum.Enum):
    Unknown = 1
    SD1 = 2
    SD2 = 3
    SDXL = 4
    Flux = 5
    SD3 = 6


def read_safetensors_header(filename: str) -> dict:
    """The JSON header of a safetensors file (tensor names and `__metadata__`), without reading the tensors."""
    with open(filename, "rb") as f:
        header_size = int.from_bytes(f.read(8), "little")
        header = json.loads(f.read(header_size) or b"{}")
    return header if isinstance(header, dict) else {}


def read_safetensors_metadata(filename: str) -> dict:
    """The `__metadata__` of a safetensors header, without reading the tensors."""
    metadata = read_safetensors_header(filename).get("__metadata__", {})
    metadata.pop("ssmd_cover_images", None)  # embedded cover images are too big to carry around
    return metadata


class NetworkOnDisk:
    """A LoRA/LyCORIS file: names it answers to, its safetensors metadata and its A1111 hash."""

    def __init__(self, name: str, filename: str):
        self.name = name
        self.filename = filename
        self.is_safetensors = filename.lower().endswith(".safetensors")
        self.metadata: dict = {}
        if self.is_safetensors:
            self.metadata = cache.cached_data_for_file("safetensors-metadata", f"lora/{name}", filename,
                                                       lambda: read_safetensors_metadata(filename))
        self.alias = self.metadata.get("ss_output_name") or name
        self.hash = self.metadata.get("sshs_model_hash") or \
            hashes.sha256_from_cache(filename, f"lora/{name}", use_addnet_hash=self.is_safetensors)
        self.sd_version = self.detect_version()

    @property
    def shorthash(self) -> str | None:
        return self.hash[:12] if self.hash else None

    def detect_version(self) -> SdVersion:
        base = str(self.metadata.get("ss_base_model_version", "") or self.metadata.get("modelspec.architecture", ""))
        if base.startswith(("sd3", "stable-diffusion-v3")):
            return SdVersion.SD3
        layers = self.flow_layers() if self.is_safetensors else None
        if base.startswith(("flux", "chroma")) or layers == "flux":
            return SdVersion.Flux
        if layers == "sd3":
            return SdVersion.SD3
        if base.startswith("sdxl_"):
            return SdVersion.SDXL
        if str(self.metadata.get("ss_v2", "")) == "True":
            return SdVersion.SD2
        return SdVersion.SD1 if self.metadata else SdVersion.Unknown

    def flow_layers(self) -> str | None:
        """"flux" (Flux.1, Chroma) or "sd3" when the file's layers are a flow transformer's, from its tensor names (hub
        files often carry no metadata); else None."""
        from modules.networks import flux_lora, sd3_lora  # they build on this module's NetworkModule

        def read():
            keys = read_safetensors_header(self.filename)
            return "flux" if flux_lora.is_flux(keys) else "sd3" if sd3_lora.is_sd3(keys) else None

        return cache.cached_data_for_file("lora-flow-layers", f"lora/{self.name}", self.filename, read)

    def read_hash(self) -> None:
        """kohya's addnet hash for .safetensors (tensor data only), the full sha256 otherwise (A1111's LoRA hash)."""
        if not self.hash and not cmd_opts.no_hashing:
            self.hash = hashes.sha256(self.filename, f"lora/{self.name}", use_addnet_hash=self.is_safetensors)

    def get_alias(self, forbidden_aliases: dict, preferred_name: str = "Alias from file") -> str:
        """The name cards insert: the alias, unless Filename is preferred or the alias is taken by two files."""
        if preferred_name == "Filename" or self.alias.lower() in forbidden_aliases:
            return self.name
        return self.alias


class Network:
    """A loaded network: its layers by kohya name, and this job's multipliers."""

    def __init__(self, name: str, network_on_disk: NetworkOnDisk):
        self.name = name
        self.network_on_disk = network_on_disk
        self.te_multiplier = 1.0
        self.unet_multiplier = 1.0
        self.dyn_dim: int | None = None
        self.modules: dict[str, NetworkModule] = {}
        self.mtime: float | None = None
        self.mentioned_name: str | None = None  # the name or alias written in the prompt


class NetworkModule:
    """One layer of a network. Subclasses give raw_updown(W): the delta before scale and multiplier."""

    def __init__(self, net: Network, key: str, weights: dict[str, torch.Tensor]):
        self.network = net
        self.network_key = key
        self.dim: int | None = None
        self.alpha = float(weights["alpha"]) if "alpha" in weights else None
        self.scale = float(weights["scale"]) if "scale" in weights else None
        self.dora_scale = weights.get("dora_scale")

    @property
    def is_text_encoder(self) -> bool:
        return self.network_key.startswith("lora_te")

    def multiplier(self) -> float:
        return self.network.te_multiplier if self.is_text_encoder else self.network.unet_multiplier

    def signature(self) -> tuple:
        """What decides this layer's patch: file version, multiplier, dyn dim. Equal signatures mean equal weights."""
        return self.network.network_on_disk.filename, self.network.mtime, self.multiplier(), self.network.dyn_dim

    def calc_scale(self) -> float:
        if self.scale is not None:
            return self.scale
        if self.dim is not None and self.alpha is not None:
            return self.alpha / self.dim
        return 1.0

    def raw_updown(self, orig_weight: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def calc_updown(self, orig_weight: torch.Tensor) -> torch.Tensor:
        """The float32 delta to add to `orig_weight` (float32, the layer's original weight)."""
        updown = self.raw_updown(orig_weight)
        if updown.numel() != orig_weight.numel():
            raise ValueError(f"{self.network_key}: network shape {tuple(updown.shape)} does not fit the layer's "
                             f"{tuple(orig_weight.shape)}")
        updown = updown.reshape(orig_weight.shape) * self.calc_scale()
        if self.dora_scale is not None:
            updown = self.apply_weight_decompose(updown, orig_weight)
        return updown * self.multiplier()

    def apply_weight_decompose(self, updown: torch.Tensor, orig_weight: torch.Tensor) -> torch.Tensor:
        """DoRA: the merged weight W + dW rescaled to the stored magnitudes, as a delta from W.

        Magnitudes shaped (1, in, ...) or (in,) hold one norm per input column (DoRA paper, kohya); (out, 1, ...) or
        (out,) one per output row (LyCORIS' wd_on_out, PEFT).
        """
        merged = orig_weight + updown
        magnitude = self.dora_scale.to(merged)
        out_features, in_features = merged.shape[:2]
        if magnitude.ndim >= 2:
            per_output = magnitude.shape[0] != 1
        else:
            per_output = magnitude.numel() == out_features and magnitude.numel() != in_features
        spatial = [1] * (merged.ndim - 2)
        if per_output:
            norm = merged.reshape(out_features, -1).norm(dim=1).reshape(-1, 1, *spatial)
        else:
            norm = merged.transpose(0, 1).reshape(in_features, -1).norm(dim=1).reshape(1, -1, *spatial)
        return merged * (magnitude.reshape(norm.shape) / norm) - orig_weight


class ModuleType:
    """Recognises one layer type's keys and builds its NetworkModule."""

    def create_module(self, net: Network, key: str, weights: dict[str, torch.Tensor]) -> NetworkModule | None:
        raise NotImplementedError
