"""mlsd: M-LSD's large model (mlsd_large_512_fp32.pth), a MobileNetV2 trunk and a decoder up to half the input's size
whose maps hold, per pixel, a line-centre score and the displacements to the line's two ends. Lines whose centre
scores above threshold a ("MLSD Value Threshold") and whose length exceeds threshold b ("MLSD Distance Threshold")
are drawn white on black. Widths come from the file's tensors.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from PIL import Image, ImageDraw
from torch import nn
from torch.nn import functional as F

from modules.controlnet import annotators
from modules.sd_models_loader import materialize, read_state_dict

TRUNK = 14  # trunk layers used: the stem and MobileNetV2's inverted residuals up to the 96-wide ones
STRIDE_2 = {0, 2, 4, 7}  # layers that halve the size
FEATURES = [1, 3, 6, 10, 13]  # layers whose outputs the decoder reads (sizes /2, /4, /8, /16, /16)
TOP_K, PEAK_WINDOW = 200, 3


def _conv(sd, key: str, depthwise: bool = False, **kwargs) -> nn.Conv2d:
    w = sd[f"{key}.weight"]
    groups = w.shape[0] if depthwise else 1
    return nn.Conv2d(w.shape[1] * groups, w.shape[0], w.shape[-1], groups=groups, bias=f"{key}.bias" in sd, **kwargs)


def _bn(sd, key: str) -> nn.BatchNorm2d:
    return nn.BatchNorm2d(sd[f"{key}.weight"].shape[0])


class _ConvBN(nn.Sequential):
    """Conv, batch norm, ReLU6; a stride-2 one pads right and bottom only (TensorFlow's 'same')."""

    def __init__(self, sd, key: str, stride: int, depthwise: bool = False):
        k = sd[f"{key}.0.weight"].shape[-1]
        super().__init__(_conv(sd, f"{key}.0", depthwise, stride=stride, padding=0 if stride == 2 else k // 2),
                         _bn(sd, f"{key}.1"), nn.ReLU6())
        self.stride = stride

    def forward(self, x):
        return super().forward(F.pad(x, (0, 1, 0, 1)) if self.stride == 2 else x)


class _InvertedResidual(nn.Module):
    """(1x1 expansion,) depthwise 3x3, 1x1 projection with batch norm; the input added when the shape is kept."""

    def __init__(self, sd, key: str, stride: int):
        super().__init__()
        expands = f"{key}.conv.3.weight" in sd
        layers = [_ConvBN(sd, f"{key}.conv.0", 1)] if expands else []
        i = len(layers)
        layers += [_ConvBN(sd, f"{key}.conv.{i}", stride, depthwise=True), _conv(sd, f"{key}.conv.{i + 1}"),
                   _bn(sd, f"{key}.conv.{i + 2}")]
        self.conv = nn.Sequential(*layers)
        first = sd[f"{key}.conv.0.0.weight"]
        width_in = first.shape[1] if expands else first.shape[0]
        self.residual = stride == 1 and width_in == sd[f"{key}.conv.{i + 1}.weight"].shape[0]

    def forward(self, x):
        return x + self.conv(x) if self.residual else self.conv(x)


class _Trunk(nn.Module):
    def __init__(self, sd):
        super().__init__()
        self.features = nn.Sequential(
            _ConvBN(sd, "backbone.features.0", 2),
            *[_InvertedResidual(sd, f"backbone.features.{i}", 2 if i in STRIDE_2 else 1) for i in range(1, TRUNK)])

    def forward(self, x):
        out = []
        for i, layer in enumerate(self.features):
            x = layer(x)
            if i in FEATURES:
                out.append(x)
        return out


def _conv_bn_relu(sd, key: str, padding: int = 0, dilation: int = 1) -> nn.Sequential:
    return nn.Sequential(_conv(sd, f"{key}.0", padding=padding, dilation=dilation), _bn(sd, f"{key}.1"), nn.ReLU())


class _Merge(nn.Module):
    """Block A: 1x1 conv-BN-ReLU on the skip and on the deeper map (then doubled in size), side by side."""

    def __init__(self, sd, key: str, upscale: bool):
        super().__init__()
        self.upscale = upscale
        self.conv1, self.conv2 = _conv_bn_relu(sd, f"{key}.conv1"), _conv_bn_relu(sd, f"{key}.conv2")

    def forward(self, skip, deep):
        deep = self.conv1(deep)
        if self.upscale:
            deep = F.interpolate(deep, scale_factor=2.0, mode="bilinear", align_corners=True)
        return torch.cat([self.conv2(skip), deep], 1)


class _Refine(nn.Module):
    """Block B: a residual 3x3 conv-BN-ReLU, then another to the output width."""

    def __init__(self, sd, key: str):
        super().__init__()
        self.conv1, self.conv2 = _conv_bn_relu(sd, f"{key}.conv1", 1), _conv_bn_relu(sd, f"{key}.conv2", 1)

    def forward(self, x):
        return self.conv2(self.conv1(x) + x)


class _Head(nn.Module):
    """Block C: a dilated 3x3, a 3x3 (conv-BN-ReLU each), a 1x1 to the output maps."""

    def __init__(self, sd, key: str):
        super().__init__()
        self.conv1 = _conv_bn_relu(sd, f"{key}.conv1", 5, 5)
        self.conv2 = _conv_bn_relu(sd, f"{key}.conv2", 1)
        self.conv3 = _conv(sd, f"{key}.conv3")

    def forward(self, x):
        return self.conv3(self.conv2(self.conv1(x)))


class MobileV2MLSDLarge(nn.Module):
    """Gives the maps at half the input's size: channel 0 the centre score (a logit), 1..4 the displacements
    (x, y of one end, x, y of the other) in those pixels."""

    def __init__(self, sd: dict[str, torch.Tensor]):
        super().__init__()
        self.backbone = _Trunk(sd)
        for merge, refine, upscale in ((15, 16, False), (17, 18, True), (19, 20, True), (21, 22, True)):
            self.add_module(f"block{merge}", _Merge(sd, f"block{merge}", upscale))
            self.add_module(f"block{refine}", _Refine(sd, f"block{refine}"))
        self.block23 = _Head(sd, "block23")

    def forward(self, x):
        c1, c2, c3, c4, c5 = self.backbone(x)
        x = c5
        for merge, refine, skip in ((15, 16, c4), (17, 18, c3), (19, 20, c2), (21, 22, c1)):
            x = getattr(self, f"block{refine}")(getattr(self, f"block{merge}")(skip, x))
        return self.block23(x)[:, 7:]  # the large model's last 9 maps are the line maps


def decode_lines(maps: torch.Tensor, score_threshold: float, distance_threshold: float) -> list[tuple[float, ...]]:
    """Segments (x0, y0, x1, y1) in input pixels: the TOP_K local maxima of the centre score (3x3 window) that beat
    `score_threshold`, whose ends lie farther apart than `distance_threshold` (in map pixels)."""
    heat = torch.sigmoid(maps[0, 0])
    peak = F.max_pool2d(heat[None], PEAK_WINDOW, stride=1, padding=PEAK_WINDOW // 2)[0]
    heat = heat * (peak == heat)
    scores, indices = torch.topk(heat.flatten(), min(TOP_K, heat.numel()))
    w = heat.shape[1]
    ends = maps[0, 1:5].permute(1, 2, 0).numpy()
    lines = []
    for score, index in zip(scores.tolist(), indices.tolist()):
        y, x = divmod(index, w)
        dx0, dy0, dx1, dy1 = ends[y, x]
        if score > score_threshold and np.hypot(dx0 - dx1, dy0 - dy1) > distance_threshold:
            lines.append(tuple(2.0 * v for v in (x + dx0, y + dy0, x + dx1, y + dy1)))  # the maps are at half size
    return lines


def draw_lines(lines, height: int, width: int) -> np.ndarray:
    """One-pixel white lines on black (grey, one channel), ends truncated to whole pixels."""
    canvas = Image.new("L", (width, height))
    pen = ImageDraw.Draw(canvas)
    for line in lines:
        x0, y0, x1, y1 = (int(v) for v in line)
        pen.line((x0, y0, x1, y1), fill=255, width=1)
    return np.asarray(canvas)


def load(path: Path) -> MobileV2MLSDLarge:
    sd = {k: v.float() for k, v in read_state_dict(path)[0].items()}
    with torch.device("meta"):
        model = MobileV2MLSDLarge(sd)
    for key in model.state_dict():  # batch-norm counters, unused here, are absent from files saved by old torch
        if key.endswith("num_batches_tracked"):
            sd.setdefault(key, torch.tensor(0))
    materialize(model, sd, f"annotator {path.name}")
    return model.eval()


def mlsd(path: Path, img: np.ndarray, score_threshold: float, distance_threshold: float) -> np.ndarray:
    """The lines of the image (padded as the extension pads it, fed at that size with a fourth channel of ones)."""
    h, w = img.shape[:2]
    padded = annotators.pad64(img)
    x = torch.from_numpy(padded.astype(np.float32)).permute(2, 0, 1)[None]
    x = torch.cat([x, torch.ones_like(x[:, :1])], 1) / 127.5 - 1.0  # the ones channel scaled too, as in training
    model = annotators.cached(path, load)
    with torch.inference_mode():
        maps = model(x.to(annotators.device_of(model))).cpu()
    return draw_lines(decode_lines(maps, score_threshold, distance_threshold), *padded.shape[:2])[:h, :w]
