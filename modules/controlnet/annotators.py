"""The model-based preprocessors built in so far: softedge_hed (ControlNetHED.pth) and lineart_realistic / coarse
(sk_model.pth, sk_model2.pth), as our own torch modules whose parameter names match the annotator files (widths and
depths read from the files' tensors).

Annotator files come from models/ControlNetAnnotators/<folder>/ or the extension's annotator/downloads/<folder>/;
a missing one is downloaded once into models/ControlNetAnnotators from lllyasviel/Annotators (a log line says so),
and offline an error names the file and where to put it. Every annotator network is built through `cached`: once per
(file, mtime, device, dtype), on the job's device, kept by the model manager beside the control models.
"""
from __future__ import annotations

import re
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

from modules import job_context, modelloader
from modules.sd_models_loader import materialize, read_state_dict

URL = "https://huggingface.co/lllyasviel/Annotators/resolve/main/{file}"
URLS = {"depth_anything_v2_vitl.pth":  # not among lllyasviel's: the authors' own repository
        "https://huggingface.co/depth-anything/Depth-Anything-V2-Large/resolve/main/depth_anything_v2_vitl.pth",
        # DWPose's, from its authors as the extension fetches them
        "yolox_l.onnx": "https://huggingface.co/yzd-v/DWPose/resolve/main/yolox_l.onnx",
        "dw-ll_ucoco_384.onnx": "https://huggingface.co/yzd-v/DWPose/resolve/main/dw-ll_ucoco_384.onnx"}


class AnnotatorMissingError(FileNotFoundError):
    pass


def annotator_file(name: str, folder: str, file: str, dirs: list[Path]) -> Path:
    """The annotator file from the first folder that has it, else downloaded into the first folder."""
    for d in dirs:
        if (d / folder / file).is_file():
            return d / folder / file
    try:
        url = URLS.get(file, URL.format(file=file))
        return Path(modelloader.load_file_from_url(url, model_dir=str(dirs[0] / folder)))
    except modelloader.DownloadError as e:
        where = " or ".join(str(d / folder / file) for d in dirs)
        raise AnnotatorMissingError(f"Preprocessor {name} needs the annotator file {file}, which could not be "
                                    f"downloaded ({e}): put it at {where}") from e


def pad64(img: np.ndarray) -> np.ndarray:
    """The image grown right and down to multiples of 64 by repeating its edge, as the extension feeds annotators
    (the caller crops the map back)."""
    h, w = img.shape[:2]
    return np.pad(img, ((0, -h % 64), (0, -w % 64), (0, 0)), mode="edge")


def cached(path: Path, build: Callable[[Path], nn.Module]) -> nn.Module:
    """The network build(path) makes, in float32 on the model manager's device, kept in its auxiliary cache: the next
    detect with the same file reads nothing, a changed file (mtime, size) is read again. Without a model manager (before
    the app starts) it is built on the CPU each time."""
    manager = job_context.model_manager()
    if manager is None:
        return build(path).eval()
    device, stat = manager.plan.device, path.stat()
    key = ("annotator", str(path), stat.st_mtime_ns, stat.st_size, str(device), torch.float32,
           f"{build.__module__}.{build.__qualname__}")
    return manager.auxiliary_model(key, lambda: build(path).to(device=device, dtype=torch.float32).eval())


def device_of(model: nn.Module) -> torch.device:
    return next(model.parameters()).device


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
    materialize(module, sd, f"annotator {path.name}")
    return module.eval()


def load_hed(path: Path) -> Hed:
    return _load(lambda sd: Hed(tuple(int(sd[f"block{i}.convs.0.weight"].shape[0]) for i in range(1, 6)),
                                tuple(len({k.split(".")[2] for k in sd if k.startswith(f"block{i}.convs.")})
                                      for i in range(1, 6))), path)


def hed(path: Path, img: np.ndarray) -> np.ndarray:
    """Soft edges: the sigmoid of the five stages' edge maps averaged at full size (white edges on black)."""
    model = cached(path, load_hed)
    x = torch.from_numpy(img.astype(np.float32)).permute(2, 0, 1)[None].to(device_of(model))  # 0..255, as trained
    with torch.inference_mode():
        edges = [F.interpolate(e, size=img.shape[:2], mode="bilinear", align_corners=False) for e in model(x)]
        edge = torch.sigmoid(torch.cat(edges, 1).mean(1))[0]
    return (edge.cpu().numpy() * 255.0).clip(0, 255).astype(np.uint8)


def load_lineart(path: Path) -> Lineart:
    return _load(lambda sd: Lineart(len({k.split(".")[1] for k in sd if k.startswith("model2.")}),
                                    int(sd["model0.1.weight"].shape[0])), path)


def lineart(path: Path, img: np.ndarray) -> np.ndarray:
    """White lines on black: the generator draws dark lines on white, inverted as the extension does."""
    model = cached(path, load_lineart)
    h, w = img.shape[:2]
    padded = np.pad(img, ((0, -h % 8), (0, -w % 8), (0, 0)), mode="edge")  # two stride-2 levels down and back up
    x = torch.from_numpy(padded.astype(np.float32) / 255.0).permute(2, 0, 1)[None].to(device_of(model))
    with torch.inference_mode():
        line = model(x)[0, 0, :h, :w]
    return 255 - (line.cpu().numpy() * 255.0).clip(0, 255).astype(np.uint8)


def _depth_anything_names(sd: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Depth Anything (V2)'s original names (`pretrained.*` DINOv2, `depth_head.*` DPT) -> transformers'."""
    block = {"ls1.gamma": "layer_scale1.lambda1", "ls2.gamma": "layer_scale2.lambda1", "attn.proj": "attention.output.dense"}
    fusion = {"out_conv": "projection", "resConfUnit1.conv1": "residual_layer1.convolution1",
              "resConfUnit1.conv2": "residual_layer1.convolution2", "resConfUnit2.conv1": "residual_layer2.convolution1",
              "resConfUnit2.conv2": "residual_layer2.convolution2"}
    head = {"output_conv1": "conv1", "output_conv2.0": "conv2", "output_conv2.2": "conv3"}
    top = {"pretrained.cls_token": "backbone.embeddings.cls_token", "pretrained.mask_token": "backbone.embeddings.mask_token",
           "pretrained.pos_embed": "backbone.embeddings.position_embeddings",
           "pretrained.patch_embed.proj.weight": "backbone.embeddings.patch_embeddings.projection.weight",
           "pretrained.patch_embed.proj.bias": "backbone.embeddings.patch_embeddings.projection.bias",
           "pretrained.norm.weight": "backbone.layernorm.weight", "pretrained.norm.bias": "backbone.layernorm.bias"}
    out = {}
    for key, value in sd.items():
        module, _, param = key.rpartition(".")
        if key in top:
            out[top[key]] = value
        elif m := re.match(r"pretrained\.blocks\.(\d+)\.(.+)$", module if param in ("weight", "bias") else key):
            layer, part = f"backbone.encoder.layer.{m.group(1)}", m.group(2)
            if part == "attn.qkv":
                for name, chunk in zip(("query", "key", "value"), value.chunk(3)):
                    out[f"{layer}.attention.attention.{name}.{param}"] = chunk
            elif part in block:
                out[f"{layer}.{block[part]}" + ("" if part.endswith("gamma") else f".{param}")] = value
            else:  # norm1, norm2, mlp.fc1, mlp.fc2 keep their names
                out[f"{layer}.{part}.{param}"] = value
        elif m := re.match(r"depth_head\.projects\.(\d)$", module):
            out[f"neck.reassemble_stage.layers.{m.group(1)}.projection.{param}"] = value
        elif m := re.match(r"depth_head\.resize_layers\.(\d)$", module):
            out[f"neck.reassemble_stage.layers.{m.group(1)}.resize.{param}"] = value
        elif m := re.match(r"depth_head\.scratch\.refinenet(\d)\.(.+)$", module):
            out[f"neck.fusion_stage.layers.{4 - int(m.group(1))}.{fusion[m.group(2)]}.{param}"] = value
        elif m := re.match(r"depth_head\.scratch\.layer(\d)_rn$", module):
            out[f"neck.convs.{int(m.group(1)) - 1}.{param}"] = value
        elif m := re.match(r"depth_head\.scratch\.(output_conv1|output_conv2\.0|output_conv2\.2)$", module):
            out[f"head.{head[m.group(1)]}.{param}"] = value
    return out


def _depth_anything(sd: dict[str, torch.Tensor]):
    """DepthAnythingForDepthEstimation sized from the original file's tensors (V2's intermediate layers)."""
    from transformers import DepthAnythingConfig, DepthAnythingForDepthEstimation, Dinov2Config

    width = int(sd["pretrained.cls_token"].shape[-1])
    layers = len({k.split(".")[2] for k in sd if k.startswith("pretrained.blocks.")})
    patch = int(sd["pretrained.patch_embed.proj.weight"].shape[-1])
    backbone = Dinov2Config(hidden_size=width, num_hidden_layers=layers, num_attention_heads=max(width // 64, 1),
                            mlp_ratio=int(sd["pretrained.blocks.0.mlp.fc1.weight"].shape[0]) // width, patch_size=patch,
                            image_size=patch * round((sd["pretrained.pos_embed"].shape[1] - 1) ** 0.5),
                            apply_layernorm=True, reshape_hidden_states=False)
    # the layers V2's head reads: vits/vitb 3,6,9,12; vitl 5,12,18,24; vitg 10,20,30,40 (else evenly spaced)
    backbone.out_indices = {12: [3, 6, 9, 12], 24: [5, 12, 18, 24], 40: [10, 20, 30, 40]}.get(
        layers, [round(layers * k / 4) for k in range(1, 5)])
    config = DepthAnythingConfig(backbone_config=backbone, reassemble_hidden_size=width, patch_size=patch,
                                 neck_hidden_sizes=[int(sd[f"depth_head.projects.{i}.weight"].shape[0]) for i in range(4)],
                                 fusion_hidden_size=int(sd["depth_head.scratch.layer1_rn.weight"].shape[0]),
                                 head_hidden_size=int(sd["depth_head.scratch.output_conv2.0.weight"].shape[0]))
    return DepthAnythingForDepthEstimation(config)


def load_depth_anything(path: Path):
    sd = {k: v.float() for k, v in read_state_dict(path)[0].items()}
    model = _depth_anything(sd)
    materialize(model, _depth_anything_names(sd), f"annotator {path.name}")
    return model.eval()


def depth_anything_v2(path: Path, img: np.ndarray) -> np.ndarray:
    """Relative depth, near bright: the short side at 518 (a multiple of the patch), ImageNet normalisation, the
    prediction back at the image's size, stretched to 0..255."""
    model = cached(path, load_depth_anything)
    patch = model.config.patch_size
    h, w = img.shape[:2]
    scale = 518 / min(h, w)
    size = (max(round(h * scale / patch), 1) * patch, max(round(w * scale / patch), 1) * patch)
    x = torch.from_numpy(img.astype(np.float32) / 255.0).permute(2, 0, 1)[None].to(device_of(model))
    x = F.interpolate(x, size=size, mode="bicubic", align_corners=False)
    mean, std = (torch.tensor(v, device=x.device)[:, None, None] for v in ([0.485, 0.456, 0.406], [0.229, 0.224, 0.225]))
    x = (x - mean) / std
    with torch.inference_mode():
        depth = model(pixel_values=x).predicted_depth[:, None]
        depth = F.interpolate(depth, size=(h, w), mode="bilinear", align_corners=False)[0, 0]
    depth = (depth - depth.min()) / max(float(depth.max() - depth.min()), 1e-8)
    return (depth.cpu().numpy() * 255.0).clip(0, 255).astype(np.uint8)
