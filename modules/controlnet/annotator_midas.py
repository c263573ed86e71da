"""depth_midas: MiDaS v3 DPT-Hybrid (dpt_hybrid-midas-501f0c75.pt) as transformers' DPTForDepthEstimation in its
hybrid form (ViT-B/16 over a BiT ResNet-50 stem), with the original checkpoint's names mapped onto transformers'.

The network runs at the image's own size (padded to a multiple of 64, as the extension does), so the forward pass
drives the model's parts itself: transformers' hybrid embeddings and neck accept only the square 384x384 input.
"""
from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import torch
from accelerate import init_empty_weights
from torch.nn import functional as F

from modules.controlnet import annotators
from modules.sd_models_loader import materialize, read_state_dict

_VIT = "pretrained.model."
_BIT = "pretrained.model.patch_embed.backbone."
_BLOCK = {"norm1": "layernorm_before", "norm2": "layernorm_after", "attn.proj": "attention.output.dense",
          "mlp.fc1": "intermediate.dense", "mlp.fc2": "output.dense"}
_FUSION = {"out_conv": "projection", "resConfUnit1.conv1": "residual_layer1.convolution1",
           "resConfUnit1.conv2": "residual_layer1.convolution2", "resConfUnit2.conv1": "residual_layer2.convolution1",
           "resConfUnit2.conv2": "residual_layer2.convolution2"}
_TOP = {_VIT + "cls_token": "dpt.embeddings.cls_token", _VIT + "pos_embed": "dpt.embeddings.position_embeddings"}


def midas_names(sd: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """The original MiDaS names (`pretrained.model.*` timm ViT-hybrid, `pretrained.act_postprocess*`, `scratch.*`)
    -> transformers'. The ViT's ImageNet classifier (`pretrained.model.head`) is not part of the depth model."""
    out = {}
    for key, value in sd.items():
        module, _, param = key.rpartition(".")
        if key in _TOP:
            out[_TOP[key]] = value
        elif key.startswith(_VIT + "head."):
            continue
        elif key.startswith(_BIT):
            rest = key[len(_BIT):].replace("stem.conv.", "embedder.convolution.").replace("stem.norm.", "embedder.norm.")
            out["dpt.embeddings.backbone.bit." + re.sub(r"^stages\.(\d+)\.blocks\.", r"encoder.stages.\1.layers.", rest)] = value
        elif module == _VIT + "patch_embed.proj":
            out[f"dpt.embeddings.projection.{param}"] = value
        elif module == _VIT + "norm":
            out[f"dpt.layernorm.{param}"] = value
        elif m := re.match(r"pretrained\.model\.blocks\.(\d+)\.(.+)$", module):
            layer = f"dpt.encoder.layer.{m.group(1)}"
            if m.group(2) == "attn.qkv":
                for name, chunk in zip(("query", "key", "value"), value.chunk(3)):
                    out[f"{layer}.attention.attention.{name}.{param}"] = chunk
            else:
                out[f"{layer}.{_BLOCK.get(m.group(2), m.group(2))}.{param}"] = value
        elif m := re.match(r"pretrained\.act_postprocess(\d)\.0\.project\.0$", module):
            out[f"neck.reassemble_stage.readout_projects.{int(m.group(1)) - 1}.0.{param}"] = value
        elif m := re.match(r"pretrained\.act_postprocess(\d)\.([34])$", module):
            part = "projection" if m.group(2) == "3" else "resize"
            out[f"neck.reassemble_stage.layers.{int(m.group(1)) - 1}.{part}.{param}"] = value
        elif m := re.match(r"scratch\.layer(\d)_rn$", module):
            out[f"neck.convs.{int(m.group(1)) - 1}.{param}"] = value
        elif m := re.match(r"scratch\.refinenet(\d)\.(.+)$", module):
            out[f"neck.fusion_stage.layers.{4 - int(m.group(1))}.{_FUSION.get(m.group(2), m.group(2))}.{param}"] = value
        elif m := re.match(r"scratch\.output_conv\.(\d)$", module):
            out[f"head.head.{m.group(1)}.{param}"] = value
        else:
            out[key] = value  # unknown: reported by materialize
    return out


def midas_config(sd: dict[str, torch.Tensor]):
    """The hybrid DPTConfig sized from the original file's tensors (MiDaS: ViT-B/16, BiT stages of 3, 4, 9 blocks,
    the neck reading stages 1-2 of the BiT and the ViT's blocks 9 and 12)."""
    from transformers import DPTConfig

    width = int(sd[_VIT + "cls_token"].shape[-1])
    layers = len({k.split(".")[3] for k in sd if k.startswith(_VIT + "blocks.")})
    stages = sorted({int(k.split(".")[5]) for k in sd if k.startswith(_BIT + "stages.")})
    depths = [len({k.split(".")[7] for k in sd if k.startswith(f"{_BIT}stages.{s}.blocks.")}) for s in stages]
    bit_widths = [int(sd[f"{_BIT}stages.{s}.blocks.0.conv3.weight"].shape[0]) for s in stages]
    patch = 4 * 2 ** (len(stages) - 1)  # the stem's stride 4, then each later stage halves
    grid = round((sd[_VIT + "pos_embed"].shape[1] - 1) ** 0.5)
    backbone = {"embedding_size": int(sd[_BIT + "stem.conv.weight"].shape[0]), "hidden_sizes": bit_widths,
                "depths": depths, "layer_type": "bottleneck", "global_padding": "same", "embedding_dynamic_padding": True,
                "out_features": [f"stage{s + 1}" for s in stages]}
    return DPTConfig(is_hybrid=True, hidden_size=width, num_hidden_layers=layers,
                     num_attention_heads=max(width // 64, 1), layer_norm_eps=1e-6,
                     intermediate_size=int(sd[_VIT + "blocks.0.mlp.fc1.weight"].shape[0]),
                     image_size=grid * patch, patch_size=patch, backbone_config=backbone,
                     backbone_featmap_shape=[1, bit_widths[-1], grid, grid],
                     backbone_out_indices=[0, 1, layers * 3 // 4 - 1, layers - 1], reassemble_factors=[1, 1, 1, 0.5],
                     neck_hidden_sizes=[int(sd[f"scratch.layer{i}_rn.weight"].shape[1]) for i in range(1, 5)],
                     fusion_hidden_size=int(sd["scratch.layer1_rn.weight"].shape[0]), readout_type="project",
                     use_batch_norm_in_fusion_residual=False)


def load_midas(path: Path):
    sd = {k: v.float() for k, v in read_state_dict(path)[0].items()}
    from transformers import DPTForDepthEstimation

    with init_empty_weights(include_buffers=False):
        model = DPTForDepthEstimation(midas_config(sd))
    materialize(model, midas_names(sd), f"annotator {path.name}")
    return model.eval()


def _position_embeddings(table: torch.Tensor, h: int, w: int) -> torch.Tensor:
    """The class token's embedding and the square grid's, resized (bilinear) to an h x w grid of patches."""
    grid = round((table.shape[1] - 1) ** 0.5)
    patches = table[:, 1:].reshape(1, grid, grid, -1).permute(0, 3, 1, 2)
    patches = F.interpolate(patches, size=(h, w), mode="bilinear", align_corners=False)
    return torch.cat([table[:, :1], patches.flatten(2).transpose(1, 2)], 1)


def predict(model, x: torch.Tensor) -> torch.Tensor:
    """The depth prediction (B, H, W) of pixel values x (B, 3, H, W) of any size that is a multiple of 32."""
    config, emb = model.config, model.dpt.embeddings
    h, w = x.shape[-2] // config.patch_size, x.shape[-1] // config.patch_size
    maps = emb.backbone(x).feature_maps
    tokens = emb.projection(maps[-1]).flatten(2).transpose(1, 2)
    tokens = torch.cat([emb.cls_token.expand(len(x), -1, -1), tokens], 1)
    tokens = tokens + _position_embeddings(emb.position_embeddings, h, w)
    read = set(config.backbone_out_indices[2:])
    states = [maps[0], maps[1]]
    for i, layer in enumerate(model.dpt.encoder.layer):
        tokens = layer(tokens)
        if i in read:
            states.append(tokens)
    return model.head(model.neck(states, h, w))


def depth_midas(path: Path, img: np.ndarray) -> np.ndarray:
    """Relative inverse depth, near bright: the image padded (edge) to a multiple of 64, scaled to -1..1, the
    prediction stretched to 0..255 over the padded map and the padding cut off again, as the extension does."""
    model = annotators.cached(path, load_midas)
    h, w = img.shape[:2]
    padded = np.pad(img, ((0, -h % 64), (0, -w % 64), (0, 0)), mode="edge")
    x = torch.from_numpy(padded.astype(np.float32) / 127.5 - 1.0).permute(2, 0, 1)[None].to(annotators.device_of(model))
    with torch.inference_mode():
        depth = predict(model, x)[0]
    depth = (depth - depth.min()) / max(float(depth.max() - depth.min()), 1e-8)
    return (depth.cpu().numpy() * 255.0).clip(0, 255).astype(np.uint8)[:h, :w]
