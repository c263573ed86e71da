"""CLIP image encoders for IP-Adapter: found in models/clip_vision (and the extension's annotator/downloads/clip_vision),
read in transformers' CLIPVisionModelWithProjection layout (`vision_model.*`, `visual_projection.*`) or open_clip's
(`visual.*`), sized from their tensors, and run on an image as CLIPImageProcessor prepares it.
"""
from __future__ import annotations

import os
import re
from pathlib import Path

import numpy as np
import torch
from accelerate import init_empty_weights
from PIL import Image
from transformers import CLIPVisionConfig, CLIPVisionModelWithProjection

from modules.sd_models_loader import CheckpointLoadError, materialize, read_state_dict

EXTENSIONS = (".safetensors", ".pth", ".pt", ".bin")
# encoder -> words in its file names: the extension's clip_h.pth / clip_g.pth and the released names
ENCODERS = {"clip_h": ("clip_h", "vit-h", "vit_h"), "clip_g": ("clip_g", "bigg", "vit-g", "vit_g")}
_MEAN = np.array([0.48145466, 0.4578275, 0.40821073], dtype=np.float32)  # CLIP's image normalisation
_STD = np.array([0.26862954, 0.26130258, 0.27577711], dtype=np.float32)


class ClipVisionMissingError(FileNotFoundError):
    pass


def dirs(models_path: str, data_path: str) -> list[Path]:
    return [Path(models_path) / "clip_vision",
            Path(data_path) / "extensions" / "sd-webui-controlnet" / "annotator" / "downloads" / "clip_vision"]


def default_dirs() -> list[Path]:
    from modules import paths_internal

    return dirs(paths_internal.models_path, paths_internal.data_path)


def find(encoder: str, folders: list[Path]) -> Path:
    """The first file of `encoder` ("clip_h" or "clip_g") by name, or an error saying where to put one."""
    for folder in folders:
        if not folder.is_dir():
            continue
        for root, _, files in os.walk(folder):
            for file in sorted(files):
                if file.lower().endswith(EXTENSIONS) and any(w in file.lower() for w in ENCODERS[encoder]):
                    return Path(root) / file
    raise ClipVisionMissingError(
        f"IP-Adapter needs the CLIP vision encoder {encoder} ({'ViT-H/14' if encoder == 'clip_h' else 'ViT-bigG/14'}): "
        f"put {encoder}.pth or a .safetensors with {' or '.join(ENCODERS[encoder])} in its name in "
        f"{' or '.join(str(f) for f in folders)} (it is not downloaded automatically)")


def from_open_clip(sd: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """open_clip's `visual.*` names -> transformers' (q, k and v split out of in_proj; proj transposed)."""
    top = {"visual.conv1.weight": "vision_model.embeddings.patch_embedding.weight",
           "visual.class_embedding": "vision_model.embeddings.class_embedding",
           "visual.positional_embedding": "vision_model.embeddings.position_embedding.weight",
           "visual.ln_pre.weight": "vision_model.pre_layrnorm.weight", "visual.ln_pre.bias": "vision_model.pre_layrnorm.bias",
           "visual.ln_post.weight": "vision_model.post_layernorm.weight",
           "visual.ln_post.bias": "vision_model.post_layernorm.bias"}
    layer = {"ln_1": "layer_norm1", "ln_2": "layer_norm2", "attn.out_proj": "self_attn.out_proj", "mlp.c_fc": "mlp.fc1",
             "mlp.c_proj": "mlp.fc2"}
    out = {}
    for key, value in sd.items():
        m = re.match(r"visual\.transformer\.resblocks\.(\d+)\.(.+?)[._](weight|bias)$", key)
        if key in top:
            out[top[key]] = value
        elif key == "visual.proj":
            out["visual_projection.weight"] = value.t().contiguous()
        elif m and m.group(2) == "attn.in_proj":
            for name, part in zip(("q_proj", "k_proj", "v_proj"), value.chunk(3)):
                out[f"vision_model.encoder.layers.{m.group(1)}.self_attn.{name}.{m.group(3)}"] = part
        elif m and m.group(2) in layer:
            out[f"vision_model.encoder.layers.{m.group(1)}.{layer[m.group(2)]}.{m.group(3)}"] = value
    return out


def config_from_tensors(sd: dict[str, torch.Tensor]) -> CLIPVisionConfig:
    patch = sd["vision_model.embeddings.patch_embedding.weight"]
    width, positions = int(patch.shape[0]), int(sd["vision_model.embeddings.position_embedding.weight"].shape[0])
    layers = len({k.split(".")[3] for k in sd if k.startswith("vision_model.encoder.layers.")})
    # ViT-L/H/bigG use 16 heads (64-, 80- and 104-wide); smaller ones 64-wide heads
    heads = 16 if width >= 1024 else max(width // 64, 1)
    return CLIPVisionConfig(hidden_size=width, intermediate_size=int(sd["vision_model.encoder.layers.0.mlp.fc1.weight"].shape[0]),
                            num_hidden_layers=layers, num_attention_heads=heads, patch_size=int(patch.shape[-1]),
                            image_size=int(patch.shape[-1] * round((positions - 1) ** 0.5)), hidden_act="gelu",
                            projection_dim=int(sd["visual_projection.weight"].shape[0]), layer_norm_eps=1e-5)


def load(path: Path, device, dtype) -> CLIPVisionModelWithProjection:
    sd = read_state_dict(path)[0]
    if any(k.startswith("visual.") for k in sd):
        sd = from_open_clip(sd)
    if "vision_model.embeddings.patch_embedding.weight" not in sd:
        raise CheckpointLoadError(f"{path.name} is not a CLIP vision encoder (no vision_model.* or visual.* weights)")
    with init_empty_weights(include_buffers=False):
        model = CLIPVisionModelWithProjection(config_from_tensors(sd))
    expected = set(model.state_dict())  # position ids are a buffer, made with the model
    materialize(model, {k: v.to(device=device, dtype=dtype) for k, v in sd.items() if k in expected},
                 f"CLIP vision {path.name}")
    model.to(device)
    return model.eval()


def pixels(image: Image.Image, size: int, device, dtype) -> torch.Tensor:
    """[1, 3, size, size]: short side resized to `size` (bicubic), centre crop, CLIP's normalisation."""
    image = image.convert("RGB")
    scale = size / min(image.size)
    image = image.resize((max(round(image.width * scale), size), max(round(image.height * scale), size)),
                         Image.Resampling.BICUBIC)
    left, top = (image.width - size) // 2, (image.height - size) // 2
    array = (np.asarray(image.crop((left, top, left + size, top + size)), dtype=np.float32) / 255.0 - _MEAN) / _STD
    return torch.from_numpy(array).permute(2, 0, 1)[None].to(device=device, dtype=dtype)
