"""Qwen3 text encoders (Z-Image's Qwen3-4B) from their files: HF causal-LM layout (`model.embed_tokens`,
`model.layers.N.self_attn.{q,k,v,o}_proj`, `q_norm`/`k_norm`, `model.norm`), sizes from the tensors, the LM head
left out (the image models read hidden states only)."""
from __future__ import annotations

import re

from accelerate import init_empty_weights
from transformers import Qwen3Config, Qwen3Model

from modules import sd_models_config as cfgs, sd_models_loader

QWEN3_MARKER = "model.layers.0.self_attn.q_norm.weight"  # Qwen2/2.5 have no q/k norms


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
