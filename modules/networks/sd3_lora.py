"""SD 3 / 3.5 LoRA files in the hubs' layouts, brought to the layer names our SD 3.5 model is patched by.

Our transformer is diffusers' SD3Transformer2DModel, so its kohya names are `lora_unet_` + the diffusers path. Files
name layers in Stability's layout (the MMDiT's: kohya's sd3 scripts `lora_unet_joint_blocks_0_x_block_attn_qkv`,
ComfyUI `diffusion_model.joint_blocks.0.x_block.attn.qkv.lora_down.weight`) or in diffusers' (PEFT
`transformer.transformer_blocks.0.attn.to_q.lora_A.weight`, kohya on diffusers names). Stability fuses q/k/v, which
Flux.1's machinery (flux_lora: key spelling, row split, expand) splits here too; the modulations whose shift/scale
halves diffusers swaps (the final layer's, and the last block's context modulation: 2 chunks where the others have 6)
get their rows swapped. CLIP-L, CLIP-G and T5 layers are kohya's `lora_te1_`, `lora_te2_`, `lora_te3_`.
"""
from __future__ import annotations

import re

import torch

from modules.networks import flux_lora

# a top-level block: Stability's joint blocks, or diffusers' transformer blocks right behind the model prefix
_TOP = re.compile(r"^(?:lora_unet_|lora_transformer_|transformer\.|diffusion_model\.|model\.diffusion_model\.|"
                  r"base_model\.model\.)?(?:joint_blocks|transformer_blocks)[._]\d")
TEXT_PREFIXES = (("text_encoders.clip_l.transformer.", "lora_te1_"), ("text_encoders.clip_g.transformer.", "lora_te2_"),
                 ("text_encoders.t5xxl.transformer.", "lora_te3_"), ("text_encoder.", "lora_te1_"),
                 ("text_encoder_2.", "lora_te2_"), ("text_encoder_3.", "lora_te3_"))
_QKV = (1, 1, 1)
BLOCK = {  # Stability layer (kohya spelling, after the block number) -> our layers and their shares of the rows
    "x_block_attn_qkv": (("attn_to_q", "attn_to_k", "attn_to_v"), _QKV),
    "context_block_attn_qkv": (("attn_add_q_proj", "attn_add_k_proj", "attn_add_v_proj"), _QKV),
    "x_block_attn2_qkv": (("attn2_to_q", "attn2_to_k", "attn2_to_v"), _QKV),
    "x_block_attn_proj": (("attn_to_out_0",), (1,)), "context_block_attn_proj": (("attn_to_add_out",), (1,)),
    "x_block_attn2_proj": (("attn2_to_out_0",), (1,)),
    "x_block_mlp_fc1": (("ff_net_0_proj",), (1,)), "x_block_mlp_fc2": (("ff_net_2",), (1,)),
    "context_block_mlp_fc1": (("ff_context_net_0_proj",), (1,)), "context_block_mlp_fc2": (("ff_context_net_2",), (1,)),
    "x_block_adaLN_modulation_1": (("norm1_linear",), (1,)),
}
CONTEXT_MODULATION = "context_block_adaLN_modulation_1"
GLOBAL = {"x_embedder_proj": "pos_embed_proj", "context_embedder": "context_embedder",
          "t_embedder_mlp_0": "time_text_embed_timestep_embedder_linear_1",
          "t_embedder_mlp_2": "time_text_embed_timestep_embedder_linear_2",
          "y_embedder_mlp_0": "time_text_embed_text_embedder_linear_1",
          "y_embedder_mlp_2": "time_text_embed_text_embedder_linear_2",
          "final_layer_linear": "proj_out"}
FINAL_MODULATION = "final_layer_adaLN_modulation_1"
_BLOCK = re.compile(r"lora_unet_joint_blocks_(\d+)_(.+)")


def is_sd3(keys) -> bool:
    """Stability's joint blocks, or diffusers' top-level transformer blocks without Flux.1's single blocks."""
    return any(_TOP.match(key) for key in keys) and not flux_lora.is_flux(keys)


def normalize(state_dict: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    return flux_lora.normalize(state_dict, TEXT_PREFIXES)


def _swapped(rows: int) -> list[tuple[int, int]]:
    half = rows // 2
    return [(half, rows), (0, half)]


def targets(layer: str, rows: int, cols: int = 0) -> list[tuple[str, list[tuple[int, int]]]] | None:
    """Our layers for one Stability-named file layer (see flux_lora.targets); None when not in Stability's layout."""
    name = layer.removeprefix("lora_unet_")
    if name == FINAL_MODULATION:
        return [("lora_unet_norm_out_linear", _swapped(rows))]
    if layer.startswith("lora_unet_") and name in GLOBAL:
        return [("lora_unet_" + GLOBAL[name], [(0, rows)])]
    match = _BLOCK.fullmatch(layer)
    if match is None:
        return None
    index, part = match.groups()
    block = f"lora_unet_transformer_blocks_{index}_"
    if part == CONTEXT_MODULATION:  # the last block's has (shift, scale) only, which diffusers keeps as (scale, shift)
        last = cols and rows == 2 * cols
        return [(block + "norm1_context_linear", _swapped(rows) if last else [(0, rows)])]
    ours, shares = BLOCK.get(part, (None, None))
    if ours is None:
        return None
    return [(block + our, [rows_part]) for our, rows_part in zip(ours, flux_lora.row_parts(rows, shares))]
