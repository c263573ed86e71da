"""LyCORIS LoHa layers: delta = (w1a @ w1b) * (w2a @ w2b), element-wise; `hada_t1/t2` = Tucker-decomposed convs."""
from __future__ import annotations

import torch

from modules.networks.network import ModuleType, Network, NetworkModule


class ModuleTypeHada(ModuleType):
    def create_module(self, net: Network, key: str, weights: dict[str, torch.Tensor]) -> NetworkModule | None:
        if all(f"hada_w{i}_{ab}" in weights for i in (1, 2) for ab in "ab"):
            return NetworkModuleHada(net, key, weights)
        return None


def rebuild_tucker(core: torch.Tensor, wa: torch.Tensor, wb: torch.Tensor) -> torch.Tensor:
    """W[o, i, k, l] = sum core[a, b, k, l] wa[a, o] wb[b, i] (LyCORIS stores wa as [rank, out], wb as [rank, in])."""
    return torch.einsum("abkl,ao,bi->oikl", core, wa, wb)


class NetworkModuleHada(NetworkModule):
    def __init__(self, net: Network, key: str, weights: dict[str, torch.Tensor]):
        super().__init__(net, key, weights)
        self.w1a, self.w1b = weights["hada_w1_a"], weights["hada_w1_b"]
        self.w2a, self.w2b = weights["hada_w2_a"], weights["hada_w2_b"]
        self.t1, self.t2 = weights.get("hada_t1"), weights.get("hada_t2")
        self.dim = self.w1b.shape[0]

    def raw_updown(self, orig_weight: torch.Tensor) -> torch.Tensor:
        def factor(wa, wb, core):
            wa, wb = wa.to(orig_weight), wb.to(orig_weight)
            return wa @ wb if core is None else rebuild_tucker(core.to(orig_weight), wa, wb)

        return factor(self.w1a, self.w1b, self.t1) * factor(self.w2a, self.w2b, self.t2)
