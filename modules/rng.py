"""Per-image noise (A1111's ImageRNG): each image owns a generator seeded with its seed, so a batch reproduces singles."""
from __future__ import annotations

import torch


def generator_device(source: str, device: torch.device) -> torch.device:
    # "GPU" draws on the compute device (A1111's default), "CPU" on the CPU for results that match across vendors.
    return device if source == "GPU" else torch.device("cpu")


def slerp(val: float, low: torch.Tensor, high: torch.Tensor) -> torch.Tensor:
    """Spherical interpolation along dim 1, with A1111's near-parallel fallback (kept for identical variation seeds)."""
    low_norm = low / torch.norm(low, dim=1, keepdim=True)
    high_norm = high / torch.norm(high, dim=1, keepdim=True)
    dot = (low_norm * high_norm).sum(1)
    if dot.mean() > 0.9995:
        return low * val + high * (1 - val)
    omega = torch.acos(dot)
    so = torch.sin(omega)
    return (torch.sin((1.0 - val) * omega) / so).unsqueeze(1) * low + (torch.sin(val * omega) / so).unsqueeze(1) * high


class ImageRNG:
    """Initial noise (with variation seed and seed resize) and the later ancestral noise, one generator per image."""

    def __init__(self, shape: tuple[int, int, int], seeds: list[int], *, subseeds: list[int] | None = None,
                 subseed_strength: float = 0.0, seed_resize_from_h: int = 0, seed_resize_from_w: int = 0,
                 source: str = "GPU", device: torch.device = torch.device("cpu"), eta_noise_seed_delta: int = 0):
        self.shape = tuple(shape)
        self.seeds = list(seeds)
        self.subseeds = subseeds
        self.subseed_strength = subseed_strength
        self.resize_from = (int(seed_resize_from_h) // 8, int(seed_resize_from_w) // 8)
        self.gen_device = generator_device(source, device)
        self.device = device
        self.eta_noise_seed_delta = eta_noise_seed_delta
        self.generators = [self._generator(s) for s in self.seeds]
        self.is_first = True

    def _generator(self, seed: int) -> torch.Generator:
        return torch.Generator(self.gen_device).manual_seed(int(seed))

    def _randn(self, shape, generator: torch.Generator) -> torch.Tensor:
        return torch.randn(shape, generator=generator, device=self.gen_device)

    def first(self) -> torch.Tensor:
        self.is_first = False
        resized = self.resize_from[0] > 0 and self.resize_from[1] > 0
        noise_shape = (self.shape[0], *self.resize_from) if resized else self.shape
        xs = []
        for i, (seed, generator) in enumerate(zip(self.seeds, self.generators)):
            noise = self._randn(noise_shape, self._generator(seed) if resized else generator)
            if self.subseeds is not None and self.subseed_strength != 0:
                subseed = self.subseeds[i] if i < len(self.subseeds) else 0
                noise = slerp(self.subseed_strength, noise, self._randn(noise_shape, self._generator(subseed)))
            if resized:
                noise = _paste_centered(noise, self._randn(self.shape, generator))
            xs.append(noise)
        if self.eta_noise_seed_delta:
            # ENSD: later (ancestral) noise comes from generators re-seeded with seed + delta.
            self.generators = [self._generator(s + self.eta_noise_seed_delta) for s in self.seeds]
        return torch.stack(xs).to(self.device)

    def next(self) -> torch.Tensor:
        """The next draw of every image's generator; the very first call is `first()` (A1111)."""
        if self.is_first:
            return self.first()
        return torch.stack([self._randn(self.shape, g) for g in self.generators]).to(self.device)


def _paste_centered(small: torch.Tensor, full: torch.Tensor) -> torch.Tensor:
    """Centre the noise drawn at the old size in (or crop it from) the full-size noise, keeping the composition."""
    _, fh, fw = full.shape
    _, sh, sw = small.shape
    dy, dx = (fh - sh) // 2, (fw - sw) // 2
    h, w = (sh if dy >= 0 else sh + 2 * dy), (sw if dx >= 0 else sw + 2 * dx)
    ty, tx, sy, sx = max(dy, 0), max(dx, 0), max(-dy, 0), max(-dx, 0)
    full[:, ty:ty + h, tx:tx + w] = small[:, sy:sy + h, sx:sx + w]
    return full
