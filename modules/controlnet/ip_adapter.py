"""IP-Adapter (SD1.x and SDXL; plain, "plus"/"plus-face" and "full-face") from the original layout
(`image_proj.*`, `ip_adapter.{n}.to_k_ip/to_v_ip.*`; .bin files nest the two), on diffusers' public parts: the image
projections (ImageProjection, IPAdapterPlusImageProjection, IPAdapterFullImageProjection) and
IPAdapterAttnProcessor2_0, which the UNet's cross-attention layers use only while a job's IP-Adapter units run.

The image tokens are computed once per job from the unit's image through a CLIP vision encoder (clip_vision.py): the
projected image embedding for plain adapters, the penultimate hidden states for the others; an all-zero image
embedding (plain) or a black image (the others) gives the unconditional rows' tokens, as diffusers does.
"""
from __future__ import annotations

import re
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import torch
from accelerate import init_empty_weights
from diffusers.models.attention_processor import IPAdapterAttnProcessor2_0
from diffusers.models.embeddings import ImageProjection, IPAdapterFullImageProjection, IPAdapterPlusImageProjection
from PIL import Image
from torch import nn

from modules.controlnet import clip_vision
from modules.sd_models_config import FAMILY_LABELS
from modules.sd_models_loader import CheckpointLoadError, materialize

_LAYER = re.compile(r"^ip_adapter\.(\d+)\.(to_k_ip|to_v_ip)\.weight$")
_PLUS_LAYER = {"0.norm1": "ln0", "0.norm2": "ln1", "0.to_q": "attn.to_q", "0.to_out": "attn.to_out.0",
               "1.0": "ff.0", "1.1": "ff.1.net.0.proj", "1.3": "ff.1.net.2"}


def is_ip_adapter(sd: dict) -> bool:
    return any(k.startswith("image_proj.") for k in sd) and any(k.startswith("ip_adapter.") for k in sd)


class IPAdapter(nn.Module):
    """The image projection and, per UNet cross-attention layer in the UNet's order, its image key/value layers."""

    def __init__(self, image_proj: nn.Module, to_k: list[nn.Linear], to_v: list[nn.Linear], kind: str, tokens: int,
                 image_width: int):
        super().__init__()
        self.image_proj = image_proj
        self.to_k, self.to_v = nn.ModuleList(to_k), nn.ModuleList(to_v)
        self.kind = kind  # "plain": projected image embedding; "hidden": penultimate hidden states
        self.tokens = tokens
        self.image_width = image_width  # the CLIP output width the projection takes


def _projection(sd: dict[str, torch.Tensor], cross: int) -> tuple[nn.Module, dict, str, int, int]:
    """(projection on meta, its diffusers-named state, kind, tokens, image width) from `image_proj.*` tensors."""
    sd = {k.removeprefix("image_proj."): v for k, v in sd.items() if k.startswith("image_proj.")}
    if "proj.weight" in sd:
        width, tokens = int(sd["proj.weight"].shape[1]), int(sd["proj.weight"].shape[0]) // cross
        with init_empty_weights(include_buffers=False):
            module = ImageProjection(image_embed_dim=width, cross_attention_dim=cross, num_image_text_embeds=tokens)
        return module, {k.replace("proj.", "image_embeds.", 1) if k.startswith("proj.") else k: v
                        for k, v in sd.items()}, "plain", tokens, width
    if "proj.3.weight" in sd:  # full-face: an MLP over the 257 hidden-state tokens
        width = int(sd["proj.0.weight"].shape[1])
        with init_empty_weights(include_buffers=False):
            module = IPAdapterFullImageProjection(image_embed_dim=width, cross_attention_dim=cross)
        names = {"proj.0": "ff.net.0.proj", "proj.2": "ff.net.2", "proj.3": "norm"}
        return module, {names[k.rsplit(".", 1)[0]] + "." + k.rsplit(".", 1)[1]: v for k, v in sd.items()}, \
            "hidden", 0, width
    if "latents" in sd:  # plus / plus-face: the perceiver resampler
        hidden, width = (int(n) for n in sd["proj_in.weight"].shape)
        depth = len({k.split(".")[1] for k in sd if k.startswith("layers.")})
        config = dict(embed_dims=width, output_dims=int(sd["proj_out.weight"].shape[0]), hidden_dims=hidden,
                      depth=depth, dim_head=64, heads=max(int(sd["layers.0.0.to_q.weight"].shape[0]) // 64, 1),
                      num_queries=int(sd["latents"].shape[1]),
                      ffn_ratio=int(sd["layers.0.1.1.weight"].shape[0]) / hidden)
        with init_empty_weights(include_buffers=False):
            module = IPAdapterPlusImageProjection(**config)
        state = {}
        for key, value in sd.items():
            m = re.match(r"layers\.(\d+)\.(0\.norm1|0\.norm2|0\.to_q|0\.to_kv|0\.to_out|1\.0|1\.1|1\.3)\.(.+)$", key)
            if m is None:
                state[key] = value
            elif m.group(2) == "0.to_kv":
                k, v = value.chunk(2)
                state[f"layers.{m.group(1)}.attn.to_k.{m.group(3)}"] = k
                state[f"layers.{m.group(1)}.attn.to_v.{m.group(3)}"] = v
            else:
                state[f"layers.{m.group(1)}.{_PLUS_LAYER[m.group(2)]}.{m.group(3)}"] = value
        return module, state, "hidden", config["num_queries"], width
    raise CheckpointLoadError("IP-Adapter: unknown image projection (FaceID adapters are not supported)")


def cross_attention_layers(unet) -> list[str]:
    """The UNet's cross-attention processor names in its order: the order of `ip_adapter.{1, 3, 5, ...}`."""
    return [name for name in unet.attn_processors if name.endswith("attn2.processor")]


def load(path: Path, sd: dict[str, torch.Tensor], model) -> IPAdapter:
    from modules.controlnet.models import ControlNetFamilyError

    layers = sorted({int(m.group(1)) for k in sd for m in [_LAYER.match(k)] if m})
    cross = int(sd[f"ip_adapter.{layers[0]}.to_k_ip.weight"].shape[1])
    names = cross_attention_layers(model.unet)
    unet_cross = int(model.unet.config.cross_attention_dim)
    if cross != unet_cross or len(layers) != len(names):
        family = "xl_base" if cross == 2048 else "v1" if cross == 768 else None
        made_for = FAMILY_LABELS[family] if family else f"a UNet of context width {cross}"
        raise ControlNetFamilyError(
            f"IP-Adapter {path.stem} is for {made_for} ({len(layers)} cross-attention layers), but the checkpoint "
            f"{model.sd_checkpoint_info.short_title} is {model.family.label} (context width {unet_cross}, "
            f"{len(names)} cross-attention layers)")
    projection, state, kind, tokens, width = _projection(sd, cross)
    dtype = next(model.unet.parameters()).dtype
    materialize(projection, {k: v.to(device=model.device, dtype=dtype) for k, v in state.items()},
                 f"IP-Adapter {path.name}")
    if kind == "hidden" and tokens == 0:
        tokens = 257  # full-face keeps every hidden-state token of a 224-pixel ViT/14
    linear = []
    for n in layers:
        pair = []
        for part in ("to_k_ip", "to_v_ip"):
            weight = sd[f"ip_adapter.{n}.{part}.weight"].to(device=model.device, dtype=dtype)
            layer = nn.Linear(weight.shape[1], weight.shape[0], bias=False, device="meta")
            layer.weight = nn.Parameter(weight, requires_grad=False)
            pair.append(layer)
        linear.append(pair)
    return IPAdapter(projection, [k for k, _ in linear], [v for _, v in linear], kind, tokens, width).eval()


@dataclass
class ImageTokens:
    cond: torch.Tensor    # [1, tokens, context width]
    uncond: torch.Tensor


def image_tokens(adapter: IPAdapter, encoder, image: Image.Image) -> ImageTokens:
    """The adapter's tokens for `image` and for the unconditional rows."""
    dtype = next(encoder.parameters()).dtype
    pixels = clip_vision.pixels(image, encoder.config.image_size, encoder.device, dtype)
    with torch.inference_mode():
        if adapter.kind == "plain":
            embeds = encoder(pixels).image_embeds
            pair = embeds, torch.zeros_like(embeds)
        else:
            pair = tuple(encoder(p, output_hidden_states=True).hidden_states[-2] for p in (pixels, torch.zeros_like(pixels)))
        if pair[0].shape[-1] != adapter.image_width:
            raise ValueError(f"IP-Adapter takes {adapter.image_width}-wide CLIP image features, but the encoder gives "
                             f"{pair[0].shape[-1]}: choose the other ip-adapter_clip_* preprocessor")
        proj_dtype = next(adapter.image_proj.parameters()).dtype
        cond, uncond = (adapter.image_proj(e.to(proj_dtype)) for e in pair)
    return ImageTokens(cond, uncond)


def processors(unet, adapters: list[tuple[IPAdapter, float]]) -> dict:
    """The UNet's processors with its cross-attention ones as IPAdapterAttnProcessor2_0 over `adapters` (each with
    its weight), sharing the adapters' layers."""
    result = dict(unet.attn_processors)
    for index, name in enumerate(cross_attention_layers(unet)):
        first = adapters[0][0].to_k[index]
        with init_empty_weights(include_buffers=False):  # its own layers are replaced by the adapters'
            processor = IPAdapterAttnProcessor2_0(first.weight.shape[0], first.weight.shape[1],
                                                  num_tokens=[a.tokens for a, _ in adapters],
                                                  scale=[float(w) for _, w in adapters])
        processor.to_k_ip = nn.ModuleList([a.to_k[index] for a, _ in adapters])
        processor.to_v_ip = nn.ModuleList([a.to_v[index] for a, _ in adapters])
        result[name] = processor
    return result


@contextmanager
def attention(unet, ip_processors: dict):
    """The UNet runs with `ip_processors` inside the block, with its own processors again after it."""
    original = dict(unet.attn_processors)
    unet.set_attn_processor(dict(ip_processors))  # a copy: set_attn_processor empties the dict it gets
    try:
        yield
    finally:
        unet.set_attn_processor(original)
