"""softedge_pidinet / softedge_pidisafe: PiDiNet (table5_pidinet.pth, the "carv4" network with dilation and attention
modules) and its pixel-difference convolutions.

The released file holds the trained 3x3 kernels (names under `module.`, in a `state_dict`), not the converted
vanilla form: each pixel-difference convolution turns its kernel into the equivalent plain one when it runs.
"""
from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

from modules.controlnet import annotators
from modules.sd_models_loader import materialize, read_state_dict

# the kind of difference each of the 16 layers takes (init_block, then the blocks in order): central, angular,
# radial, or none (vanilla)
CARV4 = ["cd", "ad", "rd", "cv"] * 4
BLOCKS = [(1, 3), (2, 4), (3, 4), (4, 4)]  # (stage, blocks); a stage after the first starts with a 2x pool
_CLOCKWISE = [3, 0, 1, 6, 4, 2, 7, 8, 5]  # each 3x3 tap's clockwise neighbour
_RADIAL_OUTER = [0, 2, 4, 10, 14, 20, 22, 24]  # where taps 1..8 of the 3x3 kernel go in the 5x5 one
_RADIAL_INNER = [6, 7, 8, 11, 13, 16, 17, 18]


class PixelDifferenceConv(nn.Module):
    """A 3x3 convolution over differences of pixels: central (pixel - centre), angular (pixel - its clockwise
    neighbour) or radial (ring of 5x5 - ring of 3x3), computed as a plain convolution with the derived kernel."""

    def __init__(self, kind: str, weight: torch.Tensor, groups: int = 1):
        super().__init__()
        self.kind, self.groups = kind, groups
        self.weight = nn.Parameter(torch.empty_like(weight, device="meta"))

    def kernel(self) -> torch.Tensor:
        w = self.weight
        if self.kind == "cd":
            return w - F.pad(w.sum(dim=(2, 3), keepdim=True), (1, 1, 1, 1))
        if self.kind == "ad":
            flat = w.flatten(2)
            return (flat - flat[:, :, _CLOCKWISE]).view_as(w)
        if self.kind == "rd":
            flat, ring = w.flatten(2)[:, :, 1:], w.new_zeros(*w.shape[:2], 25)
            ring[:, :, _RADIAL_OUTER] = flat
            ring[:, :, _RADIAL_INNER] = -flat
            return ring.view(*w.shape[:2], 5, 5)
        return w

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        kernel = self.kernel()
        return F.conv2d(x, kernel, padding=kernel.shape[-1] // 2, groups=self.groups)


def _conv(sd, key: str, **kwargs) -> nn.Conv2d:
    w = sd[f"{key}.weight"]
    return nn.Conv2d(w.shape[1] * kwargs.get("groups", 1), w.shape[0], w.shape[-1], bias=f"{key}.bias" in sd, **kwargs)


class _Block(nn.Module):
    """Depthwise pixel-difference conv, ReLU, 1x1 conv, plus the input (through a 1x1 shortcut after a pool)."""

    def __init__(self, sd, name: str, kind: str, pool: bool):
        super().__init__()
        self.pool = pool
        depthwise = sd[f"{name}.conv1.weight"]
        self.conv1 = PixelDifferenceConv(kind, depthwise, groups=depthwise.shape[0])
        self.conv2 = _conv(sd, f"{name}.conv2")
        if pool:
            self.shortcut = _conv(sd, f"{name}.shortcut")

    def forward(self, x):
        if self.pool:
            x = F.max_pool2d(x, 2, 2)
        y = self.conv2(F.relu(self.conv1(x)))
        return y + (self.shortcut(x) if self.pool else x)


class _Dilation(nn.Module):
    """CDCM: ReLU, 1x1 conv, then four dilated 3x3 convs (5, 7, 9, 11) summed."""

    def __init__(self, sd, name: str):
        super().__init__()
        self.conv1 = _conv(sd, f"{name}.conv1")
        for i, d in enumerate((5, 7, 9, 11), 1):
            self.add_module(f"conv2_{i}", _conv(sd, f"{name}.conv2_{i}", padding=d, dilation=d))

    def forward(self, x):
        x = self.conv1(F.relu(x))
        return sum(getattr(self, f"conv2_{i}")(x) for i in range(1, 5))


class _Attention(nn.Module):
    """CSAM: the input weighted by a sigmoid mask from ReLU, 1x1 conv, 3x3 conv."""

    def __init__(self, sd, name: str):
        super().__init__()
        self.conv1 = _conv(sd, f"{name}.conv1")
        self.conv2 = _conv(sd, f"{name}.conv2", padding=1)

    def forward(self, x):
        return x * torch.sigmoid(self.conv2(self.conv1(F.relu(x))))


class _Reduce(nn.Module):
    def __init__(self, sd, name: str):
        super().__init__()
        self.conv = _conv(sd, f"{name}.conv")

    def forward(self, x):
        return self.conv(x)


class PiDiNet(nn.Module):
    """Four stages of pixel-difference blocks; each stage's features (through the dilation and attention modules
    when the file has them) reduced to an edge map; the classifier fuses the four. Gives the fused map's sigmoid."""

    def __init__(self, sd: dict[str, torch.Tensor]):
        super().__init__()
        self.init_block = PixelDifferenceConv(CARV4[0], sd["init_block.weight"])
        layer = 1
        for stage, count in BLOCKS:
            for i in range(1, count + 1):
                name = f"block{stage}_{i}"
                self.add_module(name, _Block(sd, name, CARV4[layer], pool=stage > 1 and i == 1))
                layer += 1
        self.dilations = nn.ModuleList([_Dilation(sd, f"dilations.{i}") for i in range(4)]
                                       if "dilations.0.conv1.weight" in sd else [])
        self.attentions = nn.ModuleList([_Attention(sd, f"attentions.{i}") for i in range(4)]
                                        if "attentions.0.conv1.weight" in sd else [])
        self.conv_reduces = nn.ModuleList([_Reduce(sd, f"conv_reduces.{i}") for i in range(4)])
        self.classifier = _conv(sd, "classifier")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        size = x.shape[-2:]
        x, edges = self.init_block(x), []
        for i, (stage, count) in enumerate(BLOCKS):
            for j in range(1, count + 1):
                x = getattr(self, f"block{stage}_{j}")(x)
            y = self.dilations[i](x) if self.dilations else x
            y = self.attentions[i](y) if self.attentions else y
            edges.append(F.interpolate(self.conv_reduces[i](y), size, mode="bilinear", align_corners=False))
        return torch.sigmoid(self.classifier(torch.cat(edges, 1)))


def load(path: Path) -> PiDiNet:
    sd = {re.sub(r"^module\.", "", k): v.float() for k, v in read_state_dict(path)[0].items()}
    with torch.device("meta"):
        model = PiDiNet(sd)
    materialize(model, sd, f"annotator {path.name}")
    return model.eval()


def edges(path: Path, img: np.ndarray) -> np.ndarray:
    """Soft edges in 0..1 at the image's size (the net reads BGR in 0..1, on the image padded as the extension does)."""
    h, w = img.shape[:2]
    padded = annotators.pad64(img)
    x = torch.from_numpy(np.ascontiguousarray(padded[..., ::-1]).astype(np.float32) / 255.0).permute(2, 0, 1)[None]
    model = annotators.cached(path, load)
    with torch.inference_mode():
        return model(x.to(annotators.device_of(model)))[0, 0, :h, :w].cpu().numpy()


def pidinet(path: Path, img: np.ndarray) -> np.ndarray:
    return (edges(path, img) * 255.0).clip(0, 255).astype(np.uint8)


def pidinet_safe(path: Path, img: np.ndarray) -> np.ndarray:
    """The edges quantised to three levels (0, 0.5, 1: the extension's safe step), fewer faint lines for the model."""
    stepped = np.floor(edges(path, img) * 3.0) / 2.0
    return (stepped * 255.0).clip(0, 255).astype(np.uint8)
