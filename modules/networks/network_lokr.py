"""LyCORIS LoKr layers: delta = kron(w1, w2); each factor whole or as a @ b (w2 possibly Tucker-decomposed)."""
from __future__ import annotations

import torch

from modules.networks.network import ModuleType, Network, NetworkModule
from modules.networks.network_hada import rebuild_tucker


class ModuleTypeLokr(ModuleType):
    def create_module(self, net: Network, key: str, weights: dict[str, torch.Tensor]) -> NetworkModule | None:
        has_w1 = "lokr_w1" in weights or ("lokr_w1_a" in weights and "lokr_w1_b" in weights)
        has_w2 = "lokr_w2" in weights or ("lokr_w2_a" in weights and "lokr_w2_b" in weights)
        return NetworkModuleLokr(net, key, weights) if has_w1 and has_w2 else None


class NetworkModuleLokr(NetworkModule):
    def __init__(self, net: Network, key: str, weights: dict[str, torch.Tensor]):
        super().__init__(net, key, weights)
        self.w1, self.w1a, self.w1b = weights.get("lokr_w1"), weights.get("lokr_w1_a"), weights.get("lokr_w1_b")
        self.w2, self.w2a, self.w2b = weights.get("lokr_w2"), weights.get("lokr_w2_a"), weights.get("lokr_w2_b")
        self.t2 = weights.get("lokr_t2")
        # alpha/dim only when a factor is low-rank; two whole factors are used at scale 1 (A1111)
        self.dim = self.w1b.shape[0] if self.w1b is not None else self.w2b.shape[0] if self.w2b is not None else None

    def raw_updown(self, orig_weight: torch.Tensor) -> torch.Tensor:
        w1 = self.w1.to(orig_weight) if self.w1 is not None else self.w1a.to(orig_weight) @ self.w1b.to(orig_weight)
        if self.w2 is not None:
            w2 = self.w2.to(orig_weight)
        elif self.t2 is not None:
            w2 = rebuild_tucker(self.t2.to(orig_weight), self.w2a.to(orig_weight), self.w2b.to(orig_weight))
        else:
            w2 = self.w2a.to(orig_weight) @ self.w2b.to(orig_weight)
        if w2.ndim == 4 and w1.ndim == 2:  # a conv: the first factor spans channels only
            w1 = w1[:, :, None, None]
        return torch.kron(w1, w2)
