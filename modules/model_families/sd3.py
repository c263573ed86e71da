"""Stable Diffusion 3.5 (Medium, Large, Large Turbo): detection, file layouts and the transformer's config from its tensors.

Layouts: Stability's transformer file (`model.diffusion_model.joint_blocks.*`, or without the prefix) with CLIP-L,
CLIP-G and T5-XXL in models/text_encoder and the VAE in models/VAE; and the all-in-one file that adds
`text_encoders.clip_l.transformer.*`, `text_encoders.clip_g.transformer.*`, `text_encoders.t5xxl.transformer.*` and
`first_stage_model.*`. Medium's dual attention (`x_block.attn2`) and the q/k norms are read from the keys.
"""
from __future__ import annotations

import math
import re
from dataclasses import dataclass

import torch
from diffusers.loaders.single_file_utils import convert_sd3_transformer_checkpoint_to_diffusers

from modules import sd_models_config as cfgs

TRANSFORMER_PREFIXES = ("model.diffusion_model.", "")
CLIP_L_PREFIX = "text_encoders.clip_l.transformer."
CLIP_G_PREFIX = "text_encoders.clip_g.transformer."
T5_PREFIX = "text_encoders.t5xxl.transformer."
VAE_PREFIX = "first_stage_model."
_MARKER = "joint_blocks.0.x_block.attn.qkv.weight"
HEAD_DIM = 64  # SD3's rule when no q/k norm tells the head width
MLP_RATIO = 4  # diffusers' SD3 blocks have no MLP-width setting


@dataclass(frozen=True)
class SD3Family:
    """The family object of an SD 3 / 3.5 file (see modules.model_families for the interface)."""

    label: str = "SD 3.5 Large"
    name: str = "sd3"
    in_channels: int = 16
    prediction_type: str = "flow"
    is_sdxl: bool = False
    is_inpainting: bool = False
    is_flow: bool = True
    distilled_guidance: bool = False  # real CFG
    uses_dynamic_shift: bool = False
    shift: float | None = 3.0  # StableDiffusion3Pipeline's scheduler
    train_spacing: bool = True


def transformer_prefix(sd: dict) -> str | None:
    return next((p for p in TRANSFORMER_PREFIXES if p + _MARKER in sd), None)


def dual_attention_layers(sd: dict, prefix: str) -> tuple[int, ...]:
    rx = re.compile(re.escape(prefix) + r"joint_blocks\.(\d+)\.x_block\.attn2\.")
    return tuple(sorted({int(m.group(1)) for k in sd for m in [rx.match(k)] if m}))


def detect(sd: dict) -> SD3Family | None:
    prefix = transformer_prefix(sd)
    if prefix is None:
        return None
    if dual_attention_layers(sd, prefix):
        return SD3Family(label="SD 3.5 Medium")
    return SD3Family(label="SD 3.5 Large" if prefix + "joint_blocks.0.x_block.attn.ln_q.weight" in sd else "SD 3")


def transformer_config(sd: dict, prefix: str) -> dict:
    cfg = cfgs.skeleton("sd3", "transformer")
    cfg.pop("_class_name")
    proj = sd[prefix + "x_embedder.proj.weight"]  # [hidden, in, p, p]
    hidden, patch = int(proj.shape[0]), int(proj.shape[2])
    ln_q = prefix + "joint_blocks.0.x_block.attn.ln_q.weight"
    head_dim = int(sd[ln_q].shape[0]) if ln_q in sd else HEAD_DIM
    mlp = int(sd[prefix + "joint_blocks.0.x_block.mlp.fc1.weight"].shape[0])
    if mlp != MLP_RATIO * hidden:
        raise cfgs.UnknownModelError(f"SD3 blocks with an MLP of {mlp} for width {hidden}: "
                                     f"diffusers' SD3 transformer needs {MLP_RATIO}x")
    rx = re.compile(re.escape(prefix) + r"joint_blocks\.(\d+)\.")
    cfg.update(
        patch_size=patch,
        in_channels=int(proj.shape[1]),
        out_channels=int(sd[prefix + "final_layer.linear.weight"].shape[0]) // (patch * patch),
        num_layers=len({m.group(1) for k in sd for m in [rx.match(k)] if m}),
        attention_head_dim=head_dim,
        num_attention_heads=hidden // head_dim,
        joint_attention_dim=int(sd[prefix + "context_embedder.weight"].shape[1]),
        caption_projection_dim=int(sd[prefix + "context_embedder.weight"].shape[0]),
        pooled_projection_dim=int(sd[prefix + "y_embedder.mlp.0.weight"].shape[1]),
        pos_embed_max_size=math.isqrt(int(sd[prefix + "pos_embed"].shape[1])),
        dual_attention_layers=dual_attention_layers(sd, prefix),
        qk_norm="rms_norm" if ln_q in sd else None,
    )
    return cfg


def convert_transformer(sd: dict, prefix: str) -> dict[str, torch.Tensor]:
    """Stability's keys -> diffusers' through diffusers' converter (it pops from the dict it gets: give it a copy)."""
    return convert_sd3_transformer_checkpoint_to_diffusers({k[len(prefix):]: v for k, v in sd.items()
                                                            if k.startswith(prefix)})


def clip_config(sd: dict, prefix: str, component: str) -> dict:
    """CLIP-L (text_encoder) or CLIP-G (text_encoder_2) with its projection, sizes from the HF-layout tensors."""
    p = prefix + "text_model."
    emb = sd[p + "embeddings.token_embedding.weight"]
    cfg = cfgs.skeleton("sd3", component)
    cfg.pop("architectures")
    rx = re.compile(re.escape(p) + r"encoder\.layers\.(\d+)\.")
    cfg.update(
        vocab_size=int(emb.shape[0]),
        hidden_size=int(emb.shape[1]),
        num_attention_heads=max(int(emb.shape[1]) // 64, 1),
        num_hidden_layers=len({m.group(1) for k in sd for m in [rx.match(k)] if m}),
        intermediate_size=int(sd[p + "encoder.layers.0.mlp.fc1.weight"].shape[0]),
        max_position_embeddings=int(sd[p + "embeddings.position_embedding.weight"].shape[0]),
        projection_dim=int(sd[prefix + "text_projection.weight"].shape[0]),
    )
    return cfg
