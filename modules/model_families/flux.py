"""Flux.1 (dev, schnell and their finetunes): detection, file layouts and the transformer's config from its tensors.

Layouts as users download them: BFL's transformer-only file (`double_blocks.*`, `single_blocks.*`, ...) and the
ComfyUI/Forge all-in-one file (`model.diffusion_model.*` + `text_encoders.clip_l.transformer.*` +
`text_encoders.t5xxl.transformer.*` + `vae.*`). Sizes come from the tensors; the skeleton in configs/flux fills the rest.
"""
from __future__ import annotations

import re
from dataclasses import dataclass

import torch
from diffusers.loaders.single_file_utils import convert_flux_transformer_checkpoint_to_diffusers

from modules import sd_models_config as cfgs

TRANSFORMER_PREFIXES = ("model.diffusion_model.", "")
CLIP_L_PREFIX = "text_encoders.clip_l.transformer."
T5_PREFIX = "text_encoders.t5xxl.transformer."
VAE_PREFIX = "vae."
_MARKER = "double_blocks.0.img_attn.qkv.weight"
# diffusers' converter splits each single block's fused linear1 at the released width (3072, MLP 4x)
_CONVERTER_WIDTH = 3072
_CONVERTER_MLP = 4 * _CONVERTER_WIDTH
MLP_RATIO = 4  # diffusers' Flux blocks have no MLP-width setting


@dataclass(frozen=True)
class FluxFamily:
    """The family object of a Flux.1 file (see modules.model_families for the interface)."""

    name: str = "flux"
    in_channels: int = 16  # latent channels; the transformer sees them packed 2x2 (64)
    prediction_type: str = "flow"
    guidance_embeds: bool = True  # dev and its finetunes: distilled guidance; schnell: none
    is_sdxl: bool = False
    is_inpainting: bool = False
    is_flow: bool = True
    shift: float | None = None  # no fixed shift: dev shifts by the image size, schnell not at all
    default_cfg_scale: float = 1.0  # distilled: real CFG off unless asked for (Forge's Flux preset)
    train_spacing: bool = False

    @property
    def label(self) -> str:
        return "Flux.1" if self.guidance_embeds else "Flux.1 schnell"

    @property
    def distilled_guidance(self) -> bool:
        """Whether the transformer takes Forge's `Distilled CFG Scale` as an input."""
        return self.guidance_embeds

    @property
    def uses_dynamic_shift(self) -> bool:
        """dev shifts its schedule by the image size (diffusers' FluxPipeline mu); schnell uses it unshifted."""
        return self.guidance_embeds


def transformer_prefix(sd: dict) -> str | None:
    return next((p for p in TRANSFORMER_PREFIXES if p + _MARKER in sd), None)


def detect(sd: dict) -> FluxFamily | None:
    """Flux.1 from BFL's block names; Chroma (no vector_in) and Flux.2 (shared modulation) are other families."""
    prefix = transformer_prefix(sd)
    if prefix is None or prefix + "vector_in.in_layer.weight" not in sd:
        return None
    in_channels = int(sd[prefix + "img_in.weight"].shape[1])
    if in_channels != 64:
        raise cfgs.UnknownModelError(f"Flux transformer with {in_channels} input channels (Fill/Depth/Canny variants) "
                                     "is not supported yet: only text-to-image Flux.1 files (64)")
    return FluxFamily(guidance_embeds=prefix + "guidance_in.in_layer.weight" in sd)


def _count(sd: dict, pattern: str) -> int:
    rx = re.compile(pattern)
    return len({m.group(1) for k in sd for m in [rx.match(k)] if m})


def rope_axes(head_dim: int) -> list[int]:
    """Rotary axes (index, height, width) summing to the head width: the released 16/56/56 of 128, kept even."""
    first = max(2, (head_dim // 8) // 2 * 2)
    rest = (head_dim - first) // 2 // 2 * 2
    return [head_dim - 2 * rest, rest, rest]


def transformer_config(sd: dict, prefix: str) -> dict:
    cfg = cfgs.skeleton("flux", "transformer")
    cfg.pop("_class_name")
    hidden = int(sd[prefix + "img_in.weight"].shape[0])
    head_dim = int(sd[prefix + "double_blocks.0.img_attn.norm.query_norm.scale"].shape[0])
    single_mlp = int(sd[prefix + "single_blocks.0.linear1.weight"].shape[0]) - 3 * hidden
    double_mlp = int(sd[prefix + "double_blocks.0.img_mlp.0.weight"].shape[0])
    if single_mlp != MLP_RATIO * hidden or double_mlp != MLP_RATIO * hidden:
        raise cfgs.UnknownModelError(f"Flux blocks with an MLP of {double_mlp}/{single_mlp} for width {hidden}: "
                                     f"diffusers' Flux transformer needs {MLP_RATIO}x")
    cfg.update(
        in_channels=int(sd[prefix + "img_in.weight"].shape[1]),
        out_channels=int(sd[prefix + "final_layer.linear.weight"].shape[0]),
        num_layers=_count(sd, re.escape(prefix) + r"double_blocks\.(\d+)\."),
        num_single_layers=_count(sd, re.escape(prefix) + r"single_blocks\.(\d+)\."),
        attention_head_dim=head_dim,
        num_attention_heads=hidden // head_dim,
        joint_attention_dim=int(sd[prefix + "txt_in.weight"].shape[1]),
        pooled_projection_dim=int(sd[prefix + "vector_in.in_layer.weight"].shape[1]),
        guidance_embeds=prefix + "guidance_in.in_layer.weight" in sd,
        axes_dims_rope=rope_axes(head_dim),
    )
    return cfg


def convert_transformer(sd: dict, prefix: str, hidden: int,
                        converter=convert_flux_transformer_checkpoint_to_diffusers) -> dict[str, torch.Tensor]:
    """BFL keys -> diffusers keys through diffusers' converter (Flux's, or Chroma's for its pruned blocks). It splits
    the single blocks' fused q/k/v/MLP weight at the released width, so it gets shape-only placeholders for those and
    we split the real tensors at the file's."""
    part = {k[len(prefix):]: v for k, v in sd.items() if k.startswith(prefix)}
    fused = {}
    for key in [k for k in part if k.startswith("single_blocks.") and ".linear1." in k]:
        fused[key] = part[key]
        shape = (3 * _CONVERTER_WIDTH + _CONVERTER_MLP, *part[key].shape[1:])
        part[key] = torch.empty(shape, device="meta")
    converted = converter(part)
    split = (hidden, hidden, hidden, MLP_RATIO * hidden)
    for key, tensor in fused.items():
        block = "single_transformer_blocks." + key.split(".")[1] + "."
        param = key.rsplit(".", 1)[1]
        q, k, v, mlp = torch.split(tensor, split, dim=0)
        for name, value in (("attn.to_q", q), ("attn.to_k", k), ("attn.to_v", v), ("proj_mlp", mlp)):
            converted[f"{block}{name}.{param}"] = value
    return converted


def t5_config(sd: dict, prefix: str) -> dict:
    """T5 v1.1 encoder sizes from its tensors (HF layout: shared, encoder.block.N.layer.{0,1}.*)."""
    cfg = cfgs.skeleton("flux", "text_encoder_2")
    cfg.pop("architectures")
    emb = sd[prefix + "shared.weight"] if prefix + "shared.weight" in sd else sd[prefix + "encoder.embed_tokens.weight"]
    attn = prefix + "encoder.block.0.layer.0.SelfAttention."
    heads = int(sd[attn + "relative_attention_bias.weight"].shape[1])
    layers = _count(sd, re.escape(prefix) + r"encoder\.block\.(\d+)\.")
    cfg.update(
        vocab_size=int(emb.shape[0]),
        d_model=int(emb.shape[1]),
        num_heads=heads,
        d_kv=int(sd[attn + "q.weight"].shape[0]) // heads,
        d_ff=int(sd[prefix + "encoder.block.0.layer.1.DenseReluDense.wo.weight"].shape[1]),
        num_layers=layers,
        num_decoder_layers=layers,
        relative_attention_num_buckets=int(sd[attn + "relative_attention_bias.weight"].shape[0]),
    )
    return cfg
