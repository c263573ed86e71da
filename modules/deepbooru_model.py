"""DeepDanbooru's ResNet ("resnet_custom_v3") in torch, with the parameter names of A1111's port (model-resnet_custom_v3.pt).

That file names its convolutions `n_Conv_0` ... `n_Conv_178` in the order the original graph made them and keeps the
tag list under `tags`. The network is a bottleneck ResNet with TensorFlow's "same" padding: a 7x7 stem and max pool,
then stages of blocks (1x1 reduce, 3x3, 1x1 expand, plus the input); a stage's first block projects the input with a
1x1 convolution, made before the block's own convolutions except in the mid-stage downsampling block of the third
stage, whose projection comes after them. Widths are multiples of the stem's width (64 in the real file), so a file
with a narrower stem (the tests' tiny ones) builds the same graph with the same names.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

TAGS_KEY = "tags"


@dataclass(frozen=True)
class BlockSpec:
    width: int  # channels of the 3x3 convolution, in stem widths
    stride: int
    projection: str  # "" (the input is added as it is), "before" or "after": where the 1x1 projection's name falls


def _stage(width: int, blocks: int, stride: int) -> list[BlockSpec]:
    return [BlockSpec(width, stride, "before")] + [BlockSpec(width, 1, "") for _ in range(blocks - 1)]


# (3 + 8 + 20 + 20 + 3 + 3) blocks: the third stage downsamples again halfway, with its projection named last
BLOCKS = (_stage(1, 3, 1) + _stage(2, 8, 2) + _stage(4, 20, 2) + [BlockSpec(4, 2, "after")] + _stage(4, 20, 1)[1:]
          + _stage(8, 3, 2) + _stage(16, 3, 2))
EXPANSION = 4


class Bottleneck:
    """Which n_Conv modules a block uses, by name; the modules live on the model under those names."""

    def __init__(self, spec: BlockSpec, names: list[str]):
        self.spec = spec
        if spec.projection == "before":
            self.projection, self.reduce, self.conv, self.expand = names
        elif spec.projection == "after":
            self.reduce, self.conv, self.expand, self.projection = names
        else:
            self.projection = None
            self.reduce, self.conv, self.expand = names


class DeepDanbooruModel(nn.Module):
    """Input: a batch of 512x512 RGB images as NHWC floats in 0..1; output: each tag's probability."""

    def __init__(self, stem_width: int = 64, n_tags: int = 9176):
        super().__init__()
        self.tags: list[str] = []
        self.n_Conv_0 = nn.Conv2d(3, stem_width, kernel_size=7, stride=2)
        self.n_MaxPool_0 = nn.MaxPool2d(kernel_size=3, stride=2)
        self.blocks: list[Bottleneck] = []
        index, channels = 1, stem_width
        for spec in BLOCKS:
            width = spec.width * stem_width
            out = width * EXPANSION
            convs = {"reduce": nn.Conv2d(channels, width, 1), "conv": nn.Conv2d(width, width, 3, stride=spec.stride),
                     "expand": nn.Conv2d(width, out, 1)}
            order = ["reduce", "conv", "expand"]
            if spec.projection:
                convs["projection"] = nn.Conv2d(channels, out, 1, stride=spec.stride)
                order = ["projection", *order] if spec.projection == "before" else [*order, "projection"]
            names = []
            for role in order:
                name = f"n_Conv_{index}"
                self.add_module(name, convs[role])
                names.append(name)
                index += 1
            self.blocks.append(Bottleneck(spec, names))
            channels = out
        self.add_module(f"n_Conv_{index}", nn.Conv2d(channels, n_tags, 1, bias=False))
        self.classifier = f"n_Conv_{index}"

    def _block(self, x: torch.Tensor, block: Bottleneck) -> torch.Tensor:
        shortcut = x if block.projection is None else self.get_submodule(block.projection)(x)
        y = F.relu(self.get_submodule(block.reduce)(x))
        # TensorFlow's "same" padding: stride 1 pads both sides, stride 2 only the right and bottom
        y = F.pad(y, [1, 1, 1, 1] if block.spec.stride == 1 else [0, 1, 0, 1])
        y = F.relu(self.get_submodule(block.conv)(y))
        return F.relu(self.get_submodule(block.expand)(y) + shortcut)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        x = images.permute(0, 3, 1, 2).to(self.n_Conv_0.weight.dtype)
        x = F.relu(self.n_Conv_0(F.pad(x, [2, 3, 2, 3])))
        x = self.n_MaxPool_0(F.pad(x, [0, 1, 0, 1], value=float("-inf")))
        for block in self.blocks:
            x = self._block(x, block)
        logits = self.get_submodule(self.classifier)(x).mean(dim=(2, 3))
        return torch.sigmoid(logits)

    @classmethod
    def from_state_dict(cls, state: dict) -> DeepDanbooruModel:
        """A model sized by the file's own tensors, loaded strictly, with the file's tag list."""
        weights = {k: v for k, v in state.items() if k != TAGS_KEY}
        classifier = max((k for k in weights if k.startswith("n_Conv_")), key=lambda k: int(k.split("_")[2].split(".")[0]))
        model = cls(stem_width=weights["n_Conv_0.weight"].shape[0], n_tags=weights[classifier].shape[0])
        model.load_state_dict(weights, strict=True)
        model.tags = list(state.get(TAGS_KEY, []))
        if len(model.tags) != weights[classifier].shape[0]:
            raise ValueError(f"the file lists {len(model.tags)} tags for {weights[classifier].shape[0]} outputs")
        return model
