"""lineart_anime: the anime line-art generator (netG.pth), a pix2pix-style U-Net with instance norms (no affine
parameters), built level by level from the file's nested names (`model.model.1.model.3...`) and tensor shapes."""
from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

from modules.controlnet import annotators
from modules.sd_models_loader import materialize, read_state_dict


def _down(sd, key: str) -> nn.Conv2d:
    w = sd[f"{key}.weight"]
    return nn.Conv2d(w.shape[1], w.shape[0], 4, 2, 1, bias=f"{key}.bias" in sd)


def _up(sd, key: str) -> nn.ConvTranspose2d:
    w = sd[f"{key}.weight"]
    return nn.ConvTranspose2d(w.shape[0], w.shape[1], 4, 2, 1, bias=f"{key}.bias" in sd)


class _Level(nn.Module):
    """One level of the U: a stride-2 conv down, the inner levels, a transposed conv up; all but the outermost give
    their input beside their output (the skip). Layer positions in `model` follow the file's numbering."""

    def __init__(self, sd, prefix: str, outermost: bool = False):
        super().__init__()
        self.outermost = outermost
        p = f"{prefix}model."
        if outermost:
            layers = [_down(sd, f"{p}0"), _Level(sd, f"{p}1."), nn.ReLU(), _up(sd, f"{p}3"), nn.Tanh()]
        elif f"{p}5.weight" in sd:
            inner, outer = sd[f"{p}1.weight"].shape[0], sd[f"{p}5.weight"].shape[1]
            layers = [nn.LeakyReLU(0.2), _down(sd, f"{p}1"), nn.InstanceNorm2d(inner), _Level(sd, f"{p}3."),
                      nn.ReLU(), _up(sd, f"{p}5"), nn.InstanceNorm2d(outer)]
        else:  # innermost: no norm at the bottom
            layers = [nn.LeakyReLU(0.2), _down(sd, f"{p}1"), nn.ReLU(), _up(sd, f"{p}3"),
                      nn.InstanceNorm2d(sd[f"{p}3.weight"].shape[1])]
        self.model = nn.Sequential(*layers)

    def forward(self, x):
        return self.model(x) if self.outermost else torch.cat([x, self.model(x)], 1)


class UnetGenerator(nn.Module):
    def __init__(self, sd: dict[str, torch.Tensor]):
        super().__init__()
        self.model = _Level(sd, "model.", outermost=True)
        self.levels = sum(isinstance(m, _Level) for m in self.modules())  # each halves the size

    def forward(self, x):
        return self.model(x)


def load(path: Path) -> UnetGenerator:
    sd = {re.sub(r"^module\.", "", k): v.float() for k, v in read_state_dict(path)[0].items()}
    with torch.device("meta"):
        model = UnetGenerator(sd)
    materialize(model, sd, f"annotator {path.name}")
    return model.eval()


def lineart_anime(path: Path, img: np.ndarray) -> np.ndarray:
    """White lines on black: the image (padded as the extension pads it) resized up to multiples of 2^levels, the
    generator's dark lines on white in -1..1, back at the image's size, inverted."""
    h, w = img.shape[:2]
    padded = annotators.pad64(img)
    model = annotators.cached(path, load)
    multiple = 2 ** model.levels
    ph, pw = padded.shape[:2]
    x = torch.from_numpy(padded.astype(np.float32) / 127.5 - 1.0).permute(2, 0, 1)[None].to(annotators.device_of(model))
    x = F.interpolate(x, size=(-(-ph // multiple) * multiple, -(-pw // multiple) * multiple), mode="bicubic",
                      align_corners=False)
    with torch.inference_mode():
        line = model(x)[:, :1] * 127.5 + 127.5
    line = F.interpolate(line, size=(ph, pw), mode="bicubic", align_corners=False)[0, 0, :h, :w]
    return 255 - line.cpu().numpy().clip(0, 255).astype(np.uint8)
