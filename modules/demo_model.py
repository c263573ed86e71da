"""`--demo`: a tiny random-weight SD 1.x checkpoint in the original layout, so every control works without a download.

It loads through the same path as a real checkpoint (the loader reads its sizes from its tensors), but its
weights are random: the images it makes are noise, and the UI says so.
"""
from __future__ import annotations

import logging
import os

import torch
from diffusers import AutoencoderKL, UNet2DConditionModel
from safetensors.torch import save_file
from transformers import CLIPTextConfig, CLIPTextModel

from modules import first_start, ldm_layout

log = logging.getLogger(__name__)

DEMO_FILENAME = "atelier-demo-sd1.safetensors"
DEMO_NOTICE = ("This is the --demo checkpoint: its weights are random, so its images are noise. Put a real checkpoint "
               "into models/Stable-diffusion to make real images.")
SEED = 0
TEXT_WIDTH = 64
TEXT_LAYERS = 12  # as many as CLIP-L, so every Clip skip value (1-12) works
SD1_HEADS = 8  # SD 1.x UNets always use 8 attention heads (the loader relies on it)


def demo_checkpoint_path() -> str:
    return os.path.join(first_start.checkpoint_dir(), DEMO_FILENAME)


def is_demo_checkpoint(name: str | None) -> bool:
    """Whether a checkpoint title, name or path is the demo checkpoint."""
    return bool(name) and os.path.basename(name.split(" [")[0].replace("\\", "/")) == DEMO_FILENAME


def _text_encoder() -> CLIPTextModel:
    config = CLIPTextConfig(vocab_size=49408, hidden_size=TEXT_WIDTH, intermediate_size=4 * TEXT_WIDTH,
                            num_hidden_layers=TEXT_LAYERS, num_attention_heads=TEXT_WIDTH // 64,
                            max_position_embeddings=77, hidden_act="quick_gelu", bos_token_id=0, eos_token_id=2,
                            pad_token_id=1)
    return CLIPTextModel(config)


def _unet() -> UNet2DConditionModel:
    return UNet2DConditionModel(in_channels=4, out_channels=4, block_out_channels=(32, 64), layers_per_block=1,
                                down_block_types=("CrossAttnDownBlock2D", "DownBlock2D"),
                                up_block_types=("UpBlock2D", "CrossAttnUpBlock2D"), cross_attention_dim=TEXT_WIDTH,
                                attention_head_dim=SD1_HEADS, norm_num_groups=32)


def _vae() -> AutoencoderKL:
    # four levels, so latents are image / 8 as in every SD model
    return AutoencoderKL(in_channels=3, out_channels=3, down_block_types=("DownEncoderBlock2D",) * 4,
                         up_block_types=("UpDecoderBlock2D",) * 4, block_out_channels=(32,) * 4, layers_per_block=1,
                         latent_channels=4, norm_num_groups=32, scaling_factor=0.18215)


def demo_state_dict(seed: int = SEED) -> dict[str, torch.Tensor]:
    """The demo checkpoint's tensors in the original SD 1.x key layout; the same for the same seed."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        unet, vae, text_encoder = _unet(), _vae(), _text_encoder()
    return {
        **ldm_layout.unet_to_ldm(unet),
        **ldm_layout.vae_to_ldm(vae),
        **ldm_layout.clip_l_to_ldm(text_encoder, "cond_stage_model.transformer."),
    }


def ensure_demo_checkpoint(path: str | None = None) -> str:
    """Write the demo checkpoint unless it exists (through a temporary file, so it is never half written)."""
    path = path or demo_checkpoint_path()
    if os.path.isfile(path):
        return path
    os.makedirs(os.path.dirname(path), exist_ok=True)
    temp_path = f"{path}.{os.getpid()}.tmp"
    try:
        # a single metadata entry: safetensors writes a dict's entries in no fixed order, and the hash must not vary
        save_file(demo_state_dict(), temp_path, metadata={"format": "pt"})
        os.replace(temp_path, path)
    finally:
        if os.path.exists(temp_path):
            os.unlink(temp_path)
    log.info("Wrote the --demo checkpoint %s (random weights: its images are noise)", path)
    return path
