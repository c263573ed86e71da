"""The LoRA/LyCORIS files of the Lora folder and applying a set of them to a model (A1111's networks.py names)."""
from __future__ import annotations

import logging
import os
import re

import safetensors.torch
import torch

from modules.networks import flux_lora, sd3_lora
from modules.networks.network import Network, NetworkOnDisk, SdVersion
from modules.networks.network_hada import ModuleTypeHada
from modules.networks.network_lokr import ModuleTypeLokr
from modules.networks.network_lora import ModuleTypeLora
from modules.networks.patcher import NetworkPatcher
from modules.shared_cmd_options import cmd_opts

log = logging.getLogger(__name__)
NETWORK_EXTENSIONS = (".pt", ".ckpt", ".safetensors")
module_types = [ModuleTypeLora(), ModuleTypeHada(), ModuleTypeLokr()]

available_networks: dict[str, NetworkOnDisk] = {}
available_network_aliases: dict[str, NetworkOnDisk] = {}
forbidden_network_aliases: dict[str, int] = {}  # lowercased aliases that two files share
available_network_hash_lookup: dict[str, NetworkOnDisk] = {}
loaded_networks: list[Network] = []  # the networks of the last activation
_parsed: dict[tuple[str, float], Network] = {}  # (file, mtime) -> parsed network, for the networks in use


def lora_dirs() -> list[str]:
    return [cmd_opts.lora_dir]


def list_available_networks() -> None:
    """Scan the Lora folder (recursively) for .safetensors / .pt / .ckpt files."""
    for registry in (available_networks, available_network_aliases, forbidden_network_aliases,
                     available_network_hash_lookup):
        registry.clear()
    for root in lora_dirs():
        if not root or not os.path.isdir(root):
            continue
        for dirpath, _, files in sorted(os.walk(root, followlinks=True)):
            for fn in sorted(files, key=str.lower):
                if not fn.lower().endswith(NETWORK_EXTENSIONS):
                    continue
                path = os.path.join(dirpath, fn)
                try:
                    entry = NetworkOnDisk(os.path.splitext(fn)[0], path)
                except (OSError, ValueError) as e:
                    log.error("Could not read LoRA %s: %s", path, e)
                    continue
                available_networks[entry.name] = entry
                if entry.alias in available_network_aliases:
                    forbidden_network_aliases[entry.alias.lower()] = 1
                available_network_aliases[entry.name] = entry
                available_network_aliases[entry.alias] = entry
                if entry.shorthash:
                    available_network_hash_lookup[entry.shorthash] = entry


def read_network_weights(filename: str) -> dict[str, torch.Tensor]:
    if filename.lower().endswith(".safetensors"):
        return safetensors.torch.load_file(filename)
    data = torch.load(filename, map_location="cpu", weights_only=True)
    return data.get("state_dict", data) if isinstance(data, dict) else {}


def flow_layout(keys):
    """The module that maps a flow transformer's LoRA file (flux_lora: Flux.1 and Chroma; sd3_lora: SD 3.5), or None."""
    if flux_lora.is_flux(keys):
        return flux_lora
    return sd3_lora if sd3_lora.is_sd3(keys) else None


def load_network(name: str, network_on_disk: NetworkOnDisk) -> Network:
    """Parse a file into layers; layers of a type no module type accepts are reported and left out."""
    net = Network(name, network_on_disk)
    net.mtime = os.path.getmtime(network_on_disk.filename)
    groups: dict[str, dict[str, torch.Tensor]] = {}
    weights = read_network_weights(network_on_disk.filename)
    layout = flow_layout(weights)
    if layout is not None:  # the hubs' Flux.1 / Chroma / SD 3.5 layouts in kohya's spelling
        weights = layout.normalize(weights)
    for key, tensor in weights.items():
        layer, _, param = key.partition(".")
        groups.setdefault(layer, {})[param] = tensor
    unsupported = []
    for layer, weights in groups.items():
        module = next((m for t in module_types if (m := t.create_module(net, layer, weights)) is not None), None)
        if module is None:
            unsupported.append(layer)
        else:
            net.modules[layer] = module
    if layout is not None:
        net.modules, unmapped = flux_lora.expand(net.modules, layout.targets)
        unsupported += unmapped
    if unsupported:
        log.warning("LoRA %s: %d layers of an unsupported type left out (e.g. %s)", name, len(unsupported), unsupported[0])
    return net


def model_version(model) -> SdVersion:
    """The SdVersion a network made for `model`'s family carries."""
    if model.family.name in ("flux", "chroma"):  # Chroma is Flux.1 pruned: its LoRAs are in Flux's layouts
        return SdVersion.Flux
    if model.family.name == "sd3":
        return SdVersion.SD3
    if model.family.is_sdxl:
        return SdVersion.SDXL
    return SdVersion.SD2 if model.family.name == "v2" else SdVersion.SD1


def fits_model(entry: NetworkOnDisk, model) -> bool:
    """Whether a network can be meant for `model` (A1111's Lora page filter): Flux networks for Flux.1 and Chroma models,
    SD 3's for SD 3.5, SDXL's
    for SDXL, SD1's and SD2's for either of those; a network of unknown version fits any model."""
    if model is None or entry.sd_version == SdVersion.Unknown:
        return True
    groups = {SdVersion.SD2: SdVersion.SD1}
    return groups.get(entry.sd_version, entry.sd_version) == groups.get(model_version(model), model_version(model))


def patcher_for(model) -> NetworkPatcher:
    """The model's own patcher: it remembers what is merged into that model's weights."""
    if "networks" not in model.extra:
        model.extra["networks"] = NetworkPatcher(model)
    return model.extra["networks"]


def load_networks(model, names: list[str], te_multipliers: list[float] | None = None,
                  unet_multipliers: list[float] | None = None, dyn_dims: list[int | None] | None = None
                  ) -> tuple[list[str], dict[str, int]]:
    """Make `model` carry exactly these networks (an empty list restores its original weights).

    Returns (names found in no file, network name -> number of layers it could not be applied to).
    """
    found = [available_network_aliases.get(name) for name in names]
    if any(entry is None for entry in found):
        list_available_networks()
        found = [available_network_aliases.get(name) for name in names]
    missing, errors, nets = [], {}, []
    for i, (name, entry) in enumerate(zip(names, found)):
        if entry is None:
            missing.append(name)
            continue
        try:
            mtime = os.path.getmtime(entry.filename)
            net = _parsed.get((entry.filename, mtime)) or load_network(entry.name, entry)
            entry.read_hash()
        except Exception as e:  # a broken file must not stop the job: it is reported like A1111's "Networks with errors"
            log.error("Could not load LoRA %s: %s", entry.filename, e)
            errors[name] = errors.get(name, 0) + 1
            continue
        if entry.shorthash:
            available_network_hash_lookup[entry.shorthash] = entry
        net.mentioned_name = name
        net.te_multiplier = te_multipliers[i] if te_multipliers else 1.0
        net.unet_multiplier = unet_multipliers[i] if unet_multipliers else 1.0
        net.dyn_dim = dyn_dims[i] if dyn_dims else None
        nets.append(net)
    _parsed.clear()
    _parsed.update({(net.network_on_disk.filename, net.mtime): net for net in nets})
    loaded_networks[:] = nets
    errors.update(patcher_for(model).apply(nets))
    return missing, errors


def restore_weights(model) -> None:
    """Put the model's original weights back (nothing to do if no network was ever applied to it)."""
    if "networks" in model.extra:
        model.extra["networks"].restore_all()


_lora_tag = re.compile(r"<lora:([^:>]+):")


def infotext_pasted(infotext: str, params: dict) -> None:
    """A pasted infotext's `<lora:alias:` tags are renamed to the local file with the same hash (`Lora hashes`)."""
    value = params.get("Lora hashes")
    if not value or "Prompt" not in params:
        return
    if not available_networks:
        list_available_networks()
    by_alias = {}
    for item in str(value).split(","):
        alias, _, shorthash = item.partition(":")
        by_alias[alias.strip()] = shorthash.strip()

    def rename(m: re.Match) -> str:
        entry = available_network_hash_lookup.get(by_alias.get(m.group(1), ""))
        return m.group(0) if entry is None else f"<lora:{entry.get_alias(forbidden_network_aliases)}:"

    params["Prompt"] = _lora_tag.sub(rename, params["Prompt"])
