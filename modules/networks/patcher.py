"""Networks merged into one model's weights, with exact restore.

A patched layer's original weight is kept on the CPU and copied back bit for bit before the layer is patched again or
left alone. Each layer remembers the signature of what was merged into it, so asking for the same networks again
writes nothing and a changed set rewrites only the layers whose networks or multipliers changed. Sampling then runs on
plain weights: a network costs nothing per step.
"""
from __future__ import annotations

import logging

import torch

from modules.networks.layer_names import network_layer_mapping
from modules.networks.network import Network, NetworkModule

log = logging.getLogger(__name__)


class NetworkPatcher:
    def __init__(self, model):
        self.layers = network_layer_mapping(model)
        first_names: dict[int, str] = {}
        # one id per torch layer, whichever of its kohya names a file uses
        self.layer_ids = {key: first_names.setdefault(id(layer), key) for key, layer in self.layers.items()}
        self.backups: dict[str, torch.Tensor] = {}
        self.applied: dict[str, tuple] = {}
        self.layers_written = 0  # how many layer weights were rewritten so far (patched or restored)

    def apply(self, nets: list[Network]) -> dict[str, int]:
        """Make the weights equal the originals plus these networks; returns network name -> layers it failed on."""
        wanted: dict[str, list[NetworkModule]] = {}
        for net in nets:
            for key, module in net.modules.items():
                if key in self.layers and module.multiplier() != 0:
                    wanted.setdefault(self.layer_ids[key], []).append(module)
        errors: dict[str, int] = {}
        for layer_id in list(self.applied) + [k for k in wanted if k not in self.applied]:
            modules = wanted.get(layer_id, [])
            if self.applied.get(layer_id, ()) != tuple(m.signature() for m in modules):
                for failed in self._write(layer_id, modules):
                    errors[failed.network.name] = errors.get(failed.network.name, 0) + 1
        return errors

    def restore_all(self) -> None:
        """Every patched weight back to its original."""
        self.apply([])

    def _write(self, layer_id: str, modules: list[NetworkModule]) -> list[NetworkModule]:
        weight = self.layers[layer_id].weight
        failed = []
        with torch.no_grad():
            if layer_id in self.backups:
                weight.copy_(self.backups[layer_id])
            if not modules:
                del self.backups[layer_id], self.applied[layer_id]
                self.layers_written += 1
                return failed
            original = weight.detach().to(torch.float32, copy=True)
            merged = original.clone()
            for module in modules:
                try:
                    merged += module.calc_updown(original)
                except ValueError as e:
                    log.error("Network %s: %s", module.network.name, e)
                    failed.append(module)
            self.backups.setdefault(layer_id, weight.detach().to("cpu", copy=True))
            weight.copy_(merged.to(weight.dtype))
        self.applied[layer_id] = tuple(m.signature() for m in modules)
        self.layers_written += 1
        return failed
