"""Model family detection and diffusers configs derived from a single-file checkpoint's own tensors.

Sizes (widths, depths, layer counts, vocabulary) come from the tensors; what tensors do not tell comes from the
family's skeleton in configs/ and the family's fixed rules (SD1: 8 attention heads; SD2/SDXL and text encoders:
64-wide heads). So tiny, pruned and real checkpoints of one family all load through the same path.
"""
from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path

UNET = "model.diffusion_model."
VAE = "first_stage_model."
CONFIGS_DIR = Path(__file__).resolve().parent.parent / "configs"

# Text encoders per family: (component name, kind, key prefix in the original layout).
TEXT_ENCODERS = {
    "v1": [("text_encoder", "clip_l", "cond_stage_model.transformer.")],
    "v2": [("text_encoder", "open_clip", "cond_stage_model.model.")],
    "xl_base": [("text_encoder", "clip_l", "conditioner.embedders.0.transformer."),
                ("text_encoder_2", "open_clip", "conditioner.embedders.1.model.")],
    "xl_refiner": [("text_encoder_2", "open_clip", "conditioner.embedders.0.model.")],
}
FAMILY_LABELS = {"v1": "SD1", "v2": "SD2", "xl_base": "SDXL", "xl_refiner": "SDXL refiner"}


class UnknownModelError(ValueError):
    pass


@dataclass(frozen=True)
class ModelFamily:
    name: str                # v1 | v2 | xl_base | xl_refiner
    in_channels: int         # 4, or 9 for inpainting checkpoints
    prediction_type: str     # epsilon | v_prediction

    @property
    def is_inpainting(self) -> bool:
        return self.in_channels == 9

    @property
    def is_sdxl(self) -> bool:
        return self.name in ("xl_base", "xl_refiner")

    @property
    def is_flow(self) -> bool:  # UNet families; flow-matching ones are in modules.model_families
        return False

    @property
    def label(self) -> str:
        return FAMILY_LABELS[self.name] + (" inpainting" if self.is_inpainting else "")


def detect_family(sd: dict, metadata: dict | None = None) -> ModelFamily:
    """Tell the family from marker keys, as the original loaders do; v-prediction from explicit markers."""
    if "conditioner.embedders.1.model.ln_final.weight" in sd:
        name = "xl_base"
    elif "conditioner.embedders.0.model.ln_final.weight" in sd:
        name = "xl_refiner"
    elif "cond_stage_model.model.ln_final.weight" in sd:
        name = "v2"
    elif any(k.startswith("cond_stage_model.transformer.") for k in sd):
        name = "v1"
    else:
        raise UnknownModelError("not a Stable Diffusion checkpoint this app knows (no SD1, SD2 or SDXL text encoder keys)")
    conv_in = sd.get(UNET + "input_blocks.0.0.weight")
    if conv_in is None:
        raise UnknownModelError("the checkpoint has no UNet (model.diffusion_model.*) weights")
    in_channels = int(conv_in.shape[1])
    if in_channels not in (4, 9):
        raise UnknownModelError(f"UNet with {in_channels} input channels is not supported (4, or 9 for inpainting)")
    return ModelFamily(name, in_channels, "v_prediction" if _marks_v_prediction(sd, metadata or {}) else "epsilon")


def _marks_v_prediction(sd: dict, metadata: dict) -> bool:
    if "v_pred" in sd:
        return True
    return str(metadata.get("modelspec.prediction_type", "")).lower() in ("v", "v_prediction")


def skeleton(family: str, component: str) -> dict:
    return json.loads((CONFIGS_DIR / family / f"{component}.json").read_text())


def tokenizer_pads(family: str) -> dict[str, str]:
    return skeleton(family, "tokenizers")


def _count(sd: dict, pattern: str) -> int:
    rx = re.compile(pattern)
    return len({m.group(1) for k in sd for m in [rx.match(k)] if m})


def unet_config(sd: dict, family: ModelFamily, pooled_dim: int | None) -> dict:
    cfg = skeleton(family.name, "unet")
    conv_in = sd[UNET + "input_blocks.0.0.weight"]
    n_inputs = _count(sd, re.escape(UNET) + r"input_blocks\.(\d+)\.")
    first_down = next(i for i in range(1, n_inputs) if UNET + f"input_blocks.{i}.0.op.weight" in sd)
    per_level = first_down  # L res blocks + 1 downsampler per level
    layers = per_level - 1
    levels = n_inputs // per_level
    channels, depths = [], []
    for b in range(levels):
        block = UNET + f"input_blocks.{1 + b * per_level}."
        channels.append(int(sd[block + "0.out_layers.3.weight"].shape[0]))
        depths.append(_count(sd, re.escape(block) + r"1\.transformer_blocks\.(\d+)\."))
    attn_key = next(k for k in sd if k.startswith(UNET) and k.endswith("attn2.to_k.weight"))
    proj_in = next(k for k in sd if k.startswith(UNET) and k.endswith("proj_in.weight"))
    cfg.update(
        in_channels=int(conv_in.shape[1]),
        out_channels=int(sd[UNET + "out.2.weight"].shape[0]),
        block_out_channels=channels,
        layers_per_block=layers,
        down_block_types=["CrossAttnDownBlock2D" if d else "DownBlock2D" for d in depths],
        up_block_types=["CrossAttnUpBlock2D" if d else "UpBlock2D" for d in reversed(depths)],
        cross_attention_dim=int(sd[attn_key].shape[1]),
        use_linear_projection=sd[proj_in].ndim == 2,
        attention_head_dim=8 if family.name == "v1" else [max(c // 64, 1) for c in channels],
    )
    mid_depth = _count(sd, re.escape(UNET) + r"middle_block\.1\.transformer_blocks\.(\d+)\.")
    # diffusers sizes the middle block by the last entry; levels without attention ignore theirs.
    cfg["transformer_layers_per_block"] = [d or mid_depth for d in depths]
    if family.is_sdxl:
        adm = int(sd[UNET + "label_emb.0.0.weight"].shape[1])
        time_ids = 6 if family.name == "xl_base" else 5  # refiner: aesthetic score replaces the target size
        cfg.update(projection_class_embeddings_input_dim=adm, addition_time_embed_dim=(adm - pooled_dim) // time_ids)
    return cfg


def vae_config(sd: dict, family: str, prefix: str = VAE) -> dict:
    cfg = skeleton(family, "vae")
    levels = _count(sd, re.escape(prefix) + r"encoder\.down\.(\d+)\.")
    channels = [int(sd[prefix + f"encoder.down.{i}.block.0.conv2.weight"].shape[0]) for i in range(levels)]
    cfg.update(
        block_out_channels=channels,
        down_block_types=["DownEncoderBlock2D"] * levels,
        up_block_types=["UpDecoderBlock2D"] * levels,
        layers_per_block=_count(sd, re.escape(prefix) + r"encoder\.down\.0\.block\.(\d+)\."),
        latent_channels=int(sd[prefix + "decoder.conv_in.weight"].shape[1]),
    )
    return cfg


def clip_l_config(sd: dict, family: str, prefix: str) -> dict:
    p = prefix + "text_model."
    emb = sd[p + "embeddings.token_embedding.weight"]
    hidden = int(emb.shape[1])
    cfg = skeleton(family, "text_encoder")
    cfg.update(
        vocab_size=int(emb.shape[0]),
        hidden_size=hidden,
        num_attention_heads=max(hidden // 64, 1),
        num_hidden_layers=_count(sd, re.escape(p) + r"encoder\.layers\.(\d+)\."),
        intermediate_size=int(sd[p + "encoder.layers.0.mlp.fc1.weight"].shape[0]),
        max_position_embeddings=int(sd[p + "embeddings.position_embedding.weight"].shape[0]),
    )
    return cfg


def open_clip_config(sd: dict, family: str, component: str, prefix: str) -> dict:
    emb = sd[prefix + "token_embedding.weight"]
    hidden = int(emb.shape[1])
    layers = _count(sd, re.escape(prefix) + r"transformer\.resblocks\.(\d+)\.")
    cfg = skeleton(family, component)
    cfg.update(
        vocab_size=int(emb.shape[0]),
        hidden_size=hidden,
        num_attention_heads=max(hidden // 64, 1),
        # SD2 conditions on the penultimate layer: its encoder is built without the last block, as diffusers does.
        num_hidden_layers=layers - 1 if family == "v2" else layers,
        intermediate_size=int(sd[prefix + "transformer.resblocks.0.mlp.c_fc.weight"].shape[0]),
        max_position_embeddings=int(sd[prefix + "positional_embedding"].shape[0]),
        projection_dim=int(sd[prefix + "text_projection"].shape[1]) if prefix + "text_projection" in sd else hidden,
    )
    return cfg
