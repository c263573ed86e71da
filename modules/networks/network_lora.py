"""kohya LoRA and LyCORIS LoCon layers: delta = up @ down (convolutions included; `lora_mid` = CP-decomposed conv)."""
from __future__ import annotations

import torch

from modules.networks.network import ModuleType, Network, NetworkModule


class ModuleTypeLora(ModuleType):
    def create_module(self, net: Network, key: str, weights: dict[str, torch.Tensor]) -> NetworkModule | None:
        if "lora_up.weight" in weights and "lora_down.weight" in weights:
            return NetworkModuleLora(net, key, weights)
        return None


class NetworkModuleLora(NetworkModule):
    def __init__(self, net: Network, key: str, weights: dict[str, torch.Tensor]):
        super().__init__(net, key, weights)
        self.up = weights["lora_up.weight"]
        self.down = weights["lora_down.weight"]
        self.mid = weights.get("lora_mid.weight")
        self.dim = self.down.shape[0]

    def raw_updown(self, orig_weight: torch.Tensor) -> torch.Tensor:
        up = self.up.to(orig_weight).flatten(1)  # [out, rank]
        down = self.down.to(orig_weight).flatten(1)  # [rank, in * kh * kw]
        if self.mid is not None:
            # CP decomposition: 1x1 down, kh x kw core, 1x1 up; W[o, i, k, l] = sum up[o, a] mid[a, b, k, l] down[b, i]
            return torch.einsum("abkl,bi,oa->oikl", self.mid.to(orig_weight), down, up)
        dyn_dim = self.network.dyn_dim
        if dyn_dim is not None:  # DyLoRA: use only the first dyn_dim ranks
            up, down = up[:, :dyn_dim], down[:dyn_dim]
        return up @ down
