"""Qwen text encoders from their files, sizes from the tensors, the LM head left out (the image models read hidden
states only): Qwen3 (Z-Image's Qwen3-4B) in the HF causal-LM layout (`model.embed_tokens`,
`model.layers.N.self_attn.{q,k,v,o}_proj`, `q_norm`/`k_norm`, `model.norm`) and Qwen2.5-VL's language model
(Qwen-Image's Qwen2.5-VL-7B: the same keys with q/k/v biases and no q/k norms, beside `visual.*`; transformers >= 4.52
saves it under `model.language_model.`). Text-only, Qwen2.5-VL's 3-axis rotary positions are the token's index on
every axis, so its text model alone gives the full model's hidden states."""
from __future__ import annotations

import re

from accelerate import init_empty_weights
from transformers import Qwen2_5_VLTextConfig, Qwen2_5_VLTextModel, Qwen3Config, Qwen3Model

from modules import sd_models_config as cfgs, sd_models_loader

QWEN3_MARKER = "model.layers.0.self_attn.q_norm.weight"  # Qwen2/2.5 have no q/k norms
QWEN25VL_HEAD_DIM = 128  # every Qwen2.5-VL size (3B to 72B); without q/k norms no tensor tells it
QWEN25VL_MARKERS = ("model.layers.0.self_attn.q_proj.bias", "model.language_model.layers.0.self_attn.q_proj.bias")


def qwen3_config(sd: dict, family: str) -> dict:
    cfg = cfgs.skeleton(family, "text_encoder")
    cfg.pop("architectures")
    emb = sd["model.embed_tokens.weight"]
    head_dim = int(sd[QWEN3_MARKER].shape[0])
    rx = re.compile(r"model\.layers\.(\d+)\.")
    cfg.update(
        vocab_size=int(emb.shape[0]),
        hidden_size=int(emb.shape[1]),
        head_dim=head_dim,
        num_attention_heads=int(sd["model.layers.0.self_attn.q_proj.weight"].shape[0]) // head_dim,
        num_key_value_heads=int(sd["model.layers.0.self_attn.k_proj.weight"].shape[0]) // head_dim,
        intermediate_size=int(sd["model.layers.0.mlp.gate_proj.weight"].shape[0]),
        num_hidden_layers=len({m.group(1) for k in sd for m in [rx.match(k)] if m}),
    )
    return cfg


def build_qwen3(sd: dict, family: str) -> Qwen3Model:
    """Qwen3's decoder stack from a state dict in the HF layout (prefix already stripped)."""
    config = Qwen3Config(**qwen3_config(sd, family))
    with init_empty_weights(include_buffers=False):
        model = Qwen3Model(config)
    weights = {k.removeprefix("model."): v for k, v in sd.items() if k.startswith("model.")}
    sd_models_loader.materialize(model, weights, "Qwen3 text encoder")
    return model


def mrope_section(head_dim: int) -> list[int]:
    """Qwen2.5-VL's rotary split of half the head width over (frame, height, width): the released 16/24/24 of 64.
    Text-only inputs give every axis the same position, so the split changes nothing but must add up."""
    half = head_dim // 2
    rest = (half - half // 4) // 2
    return [half - 2 * rest, rest, rest]


def build_qwen25vl(sd: dict, family: str) -> Qwen2_5_VLTextModel:
    """Qwen2.5-VL's language model from a file in either layout (prefix already stripped); the vision tower and
    the LM head are not read."""
    prefix = "model.language_model." if any(k.startswith("model.language_model.") for k in sd) else "model."
    weights = {k[len(prefix):]: v for k, v in sd.items() if k.startswith(prefix)}
    cfg = cfgs.skeleton(family, "text_encoder")
    cfg.pop("architectures")
    emb = weights["embed_tokens.weight"]
    head_dim = QWEN25VL_HEAD_DIM
    heads = int(weights["layers.0.self_attn.q_proj.weight"].shape[0]) // head_dim
    rx = re.compile(r"layers\.(\d+)\.")
    cfg.update(
        vocab_size=int(emb.shape[0]),
        hidden_size=int(emb.shape[1]),
        num_attention_heads=heads,
        num_key_value_heads=int(weights["layers.0.self_attn.k_proj.weight"].shape[0]) // head_dim,
        intermediate_size=int(weights["layers.0.mlp.gate_proj.weight"].shape[0]),
        num_hidden_layers=len({m.group(1) for k in weights for m in [rx.match(k)] if m}),
        rope_scaling={"type": "mrope", "mrope_section": mrope_section(head_dim)},
    )
    config = Qwen2_5_VLTextConfig(**cfg)
    with init_empty_weights(include_buffers=False):
        model = Qwen2_5_VLTextModel(config)
    sd_models_loader.materialize(model, weights, "Qwen2.5-VL text encoder")
    return model
