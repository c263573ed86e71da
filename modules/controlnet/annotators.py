"""The model-based preprocessors built in so far: softedge_hed (ControlNetHED.pth) and lineart_realistic / coarse
(sk_model.pth, sk_model2.pth), as our own torch modules whose parameter names match the annotator files (widths and
depths read from the files' tensors).

Annotator files come from models/ControlNetAnnotators/<folder>/ or the extension's annotator/downloads/<folder>/;
a missing one is downloaded once into models/ControlNetAnnotators from lllyasviel/Annotators (a log line says so),
and offline an error names the file and where to put it.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

from modules import modelloader
from modules.sd_models_loader import _materialize, read_state_dict

URL = "https://huggingface.co/lllyasviel/Annotators/resolve/main/{file}"


class AnnotatorMissingError(FileNotFoundError):
    pass


def annotator_file(name: str, folder: str, file: str, dirs: list[Path]) -> Path:
    """The annotator file from the first folder that has it, else downloaded into the first folder."""
    for d in dirs:
        if (d / folder / file).is_file():
            return d / folder / file
    try:
        return Path(modelloader.load_file_from_url(URL.format(file=file), model_dir=str(dirs[0] / folder)))
    except modelloader.DownloadError as e:
        where = " or ".join(str(d / folder / file) for d in dirs)
        raise AnnotatorMissingError(f"Preprocessor {name} needs the annotator file {file}, which could not be "
                                    f"downloaded ({e}): put it at {where}") from e


class _HedBlock(nn.Module):
    """Convolutions with ReLU after an optional 2x max-pool, and a 1x1 projection to one edge channel."""

    def __init__(self, channels_in: int, channels: int, layers: int):
        super().__init__()
        self.convs = nn.Sequential(*[nn.Conv2d(channels_in if i == 0 else channels, channels, 3, padding=1)
                                     for i in range(layers)])
        self.projection = nn.Conv2d(channels, 1, 1)

    def forward(self, x: torch.Tensor, pool: bool) -> tuple[torch.Tensor, torch.Tensor]:
        if pool:
            x = F.max_pool2d(x, 2, 2)
        for conv in self.convs:
            x = F.relu(conv(x))
        return x, self.projection(x)


class Hed(nn.Module):
    """ControlNet 1.1's Apache-2 HED: five VGG-like stages, each projected to an edge map; `norm` is the mean pixel."""

    def __init__(self, widths: tuple[int, ...] = (64, 128, 256, 512, 512), layers: tuple[int, ...] = (2, 2, 3, 3, 3)):
        super().__init__()
        self.norm = nn.Parameter(torch.zeros(1, 3, 1, 1))
        for i, (width, count) in enumerate(zip(widths, layers)):
            self.add_module(f"block{i + 1}", _HedBlock(3 if i == 0 else widths[i - 1], width, count))

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        h, edges = x - self.norm, []
        for i in range(5):
            h, edge = getattr(self, f"block{i + 1}")(h, pool=i > 0)
            edges.append(edge)
        return edges


class _Residual(nn.Module):
    def __init__(self, width: int):
        super().__init__()
        self.conv_block = nn.Sequential(nn.ReflectionPad2d(1), nn.Conv2d(width, width, 3), nn.InstanceNorm2d(width),
                                        nn.ReLU(), nn.ReflectionPad2d(1), nn.Conv2d(width, width, 3),
                                        nn.InstanceNorm2d(width))

    def forward(self, x):
        return x + self.conv_block(x)


class Lineart(nn.Module):
    """The lineart generator: 7x7 in, two stride-2 convs, residual blocks, two transposed convs, 7x7 out, sigmoid."""

    def __init__(self, blocks: int = 3, width: int = 64):
        super().__init__()
        w = width
        self.model0 = nn.Sequential(nn.ReflectionPad2d(3), nn.Conv2d(3, w, 7), nn.InstanceNorm2d(w), nn.ReLU())
        self.model1 = nn.Sequential(nn.Conv2d(w, 2 * w, 3, 2, 1), nn.InstanceNorm2d(2 * w), nn.ReLU(),
                                    nn.Conv2d(2 * w, 4 * w, 3, 2, 1), nn.InstanceNorm2d(4 * w), nn.ReLU())
        self.model2 = nn.Sequential(*[_Residual(4 * w) for _ in range(blocks)])
        self.model3 = nn.Sequential(nn.ConvTranspose2d(4 * w, 2 * w, 3, 2, 1, output_padding=1), nn.InstanceNorm2d(2 * w),
                                    nn.ReLU(), nn.ConvTranspose2d(2 * w, w, 3, 2, 1, output_padding=1),
                                    nn.InstanceNorm2d(w), nn.ReLU())
        self.model4 = nn.Sequential(nn.ReflectionPad2d(3), nn.Conv2d(w, 1, 7), nn.Sigmoid())

    def forward(self, x):
        return self.model4(self.model3(self.model2(self.model1(self.model0(x)))))


def _load(make, path: Path) -> nn.Module:
    """The module make(state dict) gives, with the file's weights."""
    sd = {k: v.float() for k, v in read_state_dict(path)[0].items()}
    module = make(sd)
    _materialize(module, sd, f"annotator {path.name}")
    return module.eval()


def hed(path: Path, img: np.ndarray) -> np.ndarray:
    """Soft edges: the sigmoid of the five stages' edge maps averaged at full size (white edges on black)."""
    model = _load(lambda sd: Hed(tuple(int(sd[f"block{i}.convs.0.weight"].shape[0]) for i in range(1, 6)),
                                 tuple(len({k.split(".")[2] for k in sd if k.startswith(f"block{i}.convs.")})
                                       for i in range(1, 6))), path)
    x = torch.from_numpy(img.astype(np.float32)).permute(2, 0, 1)[None]  # 0..255, as the net was trained
    with torch.inference_mode():
        edges = [F.interpolate(e, size=img.shape[:2], mode="bilinear", align_corners=False) for e in model(x)]
        edge = torch.sigmoid(torch.cat(edges, 1).mean(1))[0]
    return (edge.numpy() * 255.0).clip(0, 255).astype(np.uint8)


def lineart(path: Path, img: np.ndarray) -> np.ndarray:
    """White lines on black: the generator draws dark lines on white, inverted as the extension does."""
    model = _load(lambda sd: Lineart(len({k.split(".")[1] for k in sd if k.startswith("model2.")}),
                                     int(sd["model0.1.weight"].shape[0])), path)
    h, w = img.shape[:2]
    padded = np.pad(img, ((0, -h % 8), (0, -w % 8), (0, 0)), mode="edge")  # two stride-2 levels down and back up
    x = torch.from_numpy(padded.astype(np.float32) / 255.0).permute(2, 0, 1)[None]
    with torch.inference_mode():
        line = model(x)[0, 0, :h, :w]
    return 255 - (line.numpy() * 255.0).clip(0, 255).astype(np.uint8)
