"""normal_bae: Bae et al.'s surface-normal network (normal_bae/scannet.pt) as our own torch module whose parameter
names match the file: an EfficientNet-B5 encoder (gen-efficientnet's tf_efficientnet_b5_ap: TF "same" padding, batch
norm eps 1e-3, swish, squeeze-excite) and a decoder that refines unit normals (with a confidence kappa) from 1/8 of
the size to full size. Widths and depths are read from the file's tensors.
"""
from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

from modules.controlnet import annotators
from modules.sd_models_loader import materialize, read_state_dict

STAGE_STRIDES = (1, 2, 2, 2, 1, 2, 1)  # EfficientNet's seven stages; the first block of each has the stride
TF_BN_EPS = 1e-3


class SameConv2d(nn.Conv2d):
    """TensorFlow's "SAME" padding: the padding a stride needs, the odd pixel on the bottom/right."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        pads = []
        for size, k, s in zip(x.shape[:-3:-1], self.kernel_size[::-1], self.stride[::-1]):
            pad = max((math.ceil(size / s) - 1) * s + k - size, 0)
            pads += [pad // 2, pad - pad // 2]
        return super().forward(F.pad(x, pads))


def _conv(weight: torch.Tensor, stride: int = 1) -> SameConv2d:
    out_ch, in_per_group, k = weight.shape[0], weight.shape[1], weight.shape[-1]
    depthwise = in_per_group == 1 and out_ch > 1
    return SameConv2d(out_ch if depthwise else in_per_group, out_ch, k, stride, groups=out_ch if depthwise else 1,
                      bias=False)


def _bn(width: int) -> nn.BatchNorm2d:
    return nn.BatchNorm2d(width, eps=TF_BN_EPS)


class SqueezeExcite(nn.Module):
    def __init__(self, width: int, reduced: int):
        super().__init__()
        self.conv_reduce = nn.Conv2d(width, reduced, 1)
        self.conv_expand = nn.Conv2d(reduced, width, 1)

    def forward(self, x):
        return x * torch.sigmoid(self.conv_expand(F.silu(self.conv_reduce(x.mean((2, 3), keepdim=True)))))


class Block(nn.Module):
    """An inverted residual (1x1 expand, depthwise, SE, 1x1 project) or, without the expansion (`conv_pwl` absent),
    the depthwise-separable block of the first stage; a shortcut where the shape is kept."""

    def __init__(self, sd: dict[str, torch.Tensor], prefix: str, stride: int):
        super().__init__()
        self.expand = f"{prefix}conv_pwl.weight" in sd
        dw = sd[f"{prefix}conv_dw.weight"]
        out_name = "conv_pwl" if self.expand else "conv_pw"
        if self.expand:
            self.conv_pw, self.bn1 = _conv(sd[f"{prefix}conv_pw.weight"]), _bn(dw.shape[0])
        self.conv_dw = _conv(dw, stride)
        setattr(self, "bn2" if self.expand else "bn1", _bn(dw.shape[0]))
        self.se = SqueezeExcite(dw.shape[0], sd[f"{prefix}se.conv_reduce.weight"].shape[0])
        setattr(self, out_name, _conv(sd[f"{prefix}{out_name}.weight"]))
        out = sd[f"{prefix}{out_name}.weight"].shape[0]
        setattr(self, "bn3" if self.expand else "bn2", _bn(out))
        in_ch = sd[f"{prefix}conv_pw.weight"].shape[1] if self.expand else dw.shape[0]
        self.residual = stride == 1 and in_ch == out

    def forward(self, x):
        if self.expand:
            h = F.silu(self.bn1(self.conv_pw(x)))
            h = self.se(F.silu(self.bn2(self.conv_dw(h))))
            h = self.bn3(self.conv_pwl(h))
        else:
            h = self.se(F.silu(self.bn1(self.conv_dw(x))))
            h = self.bn2(self.conv_pw(h))
        return h + x if self.residual else h


class EfficientNet(nn.Module):
    """The encoder: stem, seven stages, 1x1 head conv. Gives what the decoder reads: stages 1, 2, 3, 5 and the head
    conv before its batch norm (Bae et al. index the original module list so)."""

    def __init__(self, sd: dict[str, torch.Tensor], prefix: str):
        super().__init__()
        self.conv_stem = _conv(sd[f"{prefix}conv_stem.weight"], 2)
        self.bn1 = _bn(sd[f"{prefix}conv_stem.weight"].shape[0])
        self.blocks = nn.Sequential()
        for s, stride in enumerate(STAGE_STRIDES):
            count = len({k.split(".")[len(prefix.split(".")) + 1] for k in sd if k.startswith(f"{prefix}blocks.{s}.")})
            self.blocks.append(nn.Sequential(*[Block(sd, f"{prefix}blocks.{s}.{b}.", stride if b == 0 else 1)
                                               for b in range(count)]))
        self.conv_head = _conv(sd[f"{prefix}conv_head.weight"])
        self.bn2 = _bn(sd[f"{prefix}conv_head.weight"].shape[0])

    def forward(self, x) -> list[torch.Tensor]:
        x = F.silu(self.bn1(self.conv_stem(x)))
        stages = []
        for stage in self.blocks:
            x = stage(x)
            stages.append(x)
        return [stages[0], stages[1], stages[2], stages[4], self.conv_head(x)]


class Encoder(nn.Module):
    def __init__(self, sd: dict[str, torch.Tensor]):
        super().__init__()
        self.original_model = EfficientNet(sd, "encoder.original_model.")


class UpSample(nn.Module):
    """Up to the skip's size (bilinear, corners aligned), concatenated with it, two conv-BN-LeakyReLU."""

    def __init__(self, skip_input: int, width: int):
        super().__init__()
        self._net = nn.Sequential(nn.Conv2d(skip_input, width, 3, padding=1), nn.BatchNorm2d(width), nn.LeakyReLU(),
                                  nn.Conv2d(width, width, 3, padding=1), nn.BatchNorm2d(width), nn.LeakyReLU())

    def forward(self, x, skip):
        x = F.interpolate(x, size=skip.shape[2:], mode="bilinear", align_corners=True)
        return self._net(torch.cat([x, skip], 1))


def _pointwise_mlp(weights: list[torch.Tensor]) -> nn.Sequential:
    layers = []
    for w in weights:
        layers += [nn.Conv1d(w.shape[1], w.shape[0], 1), nn.ReLU()]
    return nn.Sequential(*layers[:-1])


def normalize(out: torch.Tensor) -> torch.Tensor:
    """Unit normals (x, y, z) and kappa = elu + 1.01 (the confidence)."""
    normal, kappa = out[:, :3], out[:, 3:]
    return torch.cat([normal / (normal.norm(dim=1, keepdim=True) + 1e-10), F.elu(kappa) + 1.01], 1)


class Decoder(nn.Module):
    def __init__(self, sd: dict[str, torch.Tensor]):
        super().__init__()
        p = "decoder."
        self.conv2 = nn.Conv2d(sd[f"{p}conv2.weight"].shape[1], sd[f"{p}conv2.weight"].shape[0], 1)
        for i in range(1, 5):
            w = sd[f"{p}up{i}._net.0.weight"]
            self.add_module(f"up{i}", UpSample(w.shape[1], w.shape[0]))
        w = sd[f"{p}out_conv_res8.weight"]
        self.out_conv_res8 = nn.Conv2d(w.shape[1], w.shape[0], 3, padding=1)
        for res in (4, 2, 1):
            name = f"out_conv_res{res}"
            count = len({k.split(".")[2] for k in sd if k.startswith(f"{p}{name}.")})
            self.add_module(name, _pointwise_mlp([sd[f"{p}{name}.{2 * j}.weight"] for j in range(count)]))

    def forward(self, features: list[torch.Tensor]) -> torch.Tensor:
        block0, block1, block2, block3, head = features
        d1 = self.up1(self.conv2(head), block3)
        d2 = self.up2(d1, block2)
        d3 = self.up3(d2, block1)
        d4 = self.up4(d3, block0)
        pred = normalize(self.out_conv_res8(d2))
        for feature, mlp in ((d2, self.out_conv_res4), (d3, self.out_conv_res2), (d4, self.out_conv_res1)):
            up = [F.interpolate(t, scale_factor=2, mode="bilinear", align_corners=True) for t in (feature, pred)]
            x = torch.cat(up, 1)
            pred = normalize(mlp(x.flatten(2))).view(len(x), -1, *x.shape[2:])
        return pred


class NormalBae(nn.Module):
    def __init__(self, sd: dict[str, torch.Tensor]):
        super().__init__()
        self.encoder = Encoder(sd)
        self.decoder = Decoder(sd)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Unit normals and kappa (B, 4, H, W) at full size, for an ImageNet-normalised image of even size."""
        return self.decoder(self.encoder.original_model(x))


def _names(sd: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """The file is {"model": state dict of a DataParallel}: drop the `model.` and `module.` prefixes."""
    out = {}
    for key, value in sd.items():
        key = key.removeprefix("model.")
        out[key.removeprefix("module.")] = value
    return out


def load_normal_bae(path: Path) -> NormalBae:
    sd = _names({k: v.float() if v.is_floating_point() else v for k, v in read_state_dict(path)[0].items()})
    model = NormalBae(sd)
    materialize(model, sd, f"annotator {path.name}")
    return model.eval()


def normal_bae(path: Path, img: np.ndarray) -> np.ndarray:
    """The normal map as the extension draws it: (n + 1) / 2 as RGB, on the image padded (edge) to a multiple of 64
    and cut back."""
    model = annotators.cached(path, load_normal_bae)
    h, w = img.shape[:2]
    padded = np.pad(img, ((0, -h % 64), (0, -w % 64), (0, 0)), mode="edge")
    x = torch.from_numpy(padded.astype(np.float32) / 255.0).permute(2, 0, 1)[None].to(annotators.device_of(model))
    mean, std = (torch.tensor(v, device=x.device)[:, None, None] for v in ([0.485, 0.456, 0.406], [0.229, 0.224, 0.225]))
    with torch.inference_mode():
        normal = (((model((x - mean) / std))[0, :3] + 1) * 0.5).clip(0, 1)
    return (normal.permute(1, 2, 0).cpu().numpy() * 255.0).clip(0, 255).astype(np.uint8)[:h, :w]
