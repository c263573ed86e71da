"""Chroma (Flux.1 schnell pruned: T5 only, no CLIP, real CFG): detection, sizes from the tensors and loading.

Its blocks are Flux's without their own modulation: one small MLP, `distilled_guidance_layer`, makes every block's
shift/scale/gate from the timestep. Files: the transformer alone in BFL's key names (`double_blocks.*`,
`distilled_guidance_layer.*`), or the ComfyUI/Forge all-in-one file (`model.diffusion_model.*` + `text_encoders.t5xxl.*`
+ `vae.*`); T5-XXL and Flux's ae otherwise come from models/text_encoder and models/VAE.
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

from accelerate import init_empty_weights
from diffusers import ChromaTransformer2DModel
from diffusers.loaders.single_file_utils import convert_chroma_transformer_checkpoint_to_diffusers

from modules import quantized_weights, sd_models_config as cfgs, sd_models_loader
from modules.model_families import flux, flux_loader

_MARKER = "distilled_guidance_layer.in_proj.bias"
PARTS = flux_loader.PartSpec("Chroma", {
    "t5": (flux.T5_PREFIX, "a T5-XXL text encoder (t5xxl_fp16.safetensors) in {text_encoder}"),
    "vae": (flux.VAE_PREFIX, "the Flux VAE (ae.safetensors) in {vae}"),
})


@dataclass(frozen=True)
class ChromaFamily:
    """The family object of a Chroma file (see modules.model_families for the interface)."""

    name: str = "chroma"
    label: str = "Chroma"
    in_channels: int = 16
    prediction_type: str = "flow"
    is_sdxl: bool = False
    is_inpainting: bool = False
    is_flow: bool = True
    distilled_guidance: bool = False  # real CFG with a negative prompt
    uses_dynamic_shift: bool = True  # ChromaPipeline shifts by the image size as FluxPipeline does
    shift: float | None = None
    train_spacing: bool = False


def detect(sd: dict) -> ChromaFamily | None:
    prefix = flux.transformer_prefix(sd)
    return ChromaFamily() if prefix is not None and prefix + _MARKER in sd else None


def _count(sd: dict, pattern: str) -> int:
    rx = re.compile(pattern)
    return len({m.group(1) for k in sd for m in [rx.match(k)] if m})


def transformer_config(sd: dict, prefix: str) -> dict:
    """ChromaTransformer2DModel's config from the tensors: widths, depths, the modulation MLP's size."""
    hidden = int(sd[prefix + "img_in.weight"].shape[0])
    head_dim = int(sd[prefix + "double_blocks.0.img_attn.norm.query_norm.scale"].shape[0])
    single_mlp = int(sd[prefix + "single_blocks.0.linear1.weight"].shape[0]) - 3 * hidden
    if single_mlp != flux.MLP_RATIO * hidden:
        raise cfgs.UnknownModelError(f"Chroma single blocks with an MLP of {single_mlp} for width {hidden}: "
                                     f"diffusers' Chroma transformer needs {flux.MLP_RATIO}x")
    approximator = prefix + "distilled_guidance_layer."
    return dict(
        patch_size=1,
        in_channels=int(sd[prefix + "img_in.weight"].shape[1]),
        out_channels=int(sd[prefix + "final_layer.linear.weight"].shape[0]),
        num_layers=_count(sd, re.escape(prefix) + r"double_blocks\.(\d+)\."),
        num_single_layers=_count(sd, re.escape(prefix) + r"single_blocks\.(\d+)\."),
        attention_head_dim=head_dim,
        num_attention_heads=hidden // head_dim,
        joint_attention_dim=int(sd[prefix + "txt_in.weight"].shape[1]),
        axes_dims_rope=flux.rope_axes(head_dim),
        approximator_num_channels=int(sd[approximator + "in_proj.weight"].shape[1]),
        approximator_hidden_dim=int(sd[approximator + "in_proj.weight"].shape[0]),
        approximator_layers=_count(sd, re.escape(approximator) + r"layers\.(\d+)\."),
    )


def build_transformer(sd: dict, prefix: str) -> ChromaTransformer2DModel:
    config = transformer_config(quantized_weights.logical_view(sd), prefix)  # GGUF: shapes as dequantized
    with init_empty_weights(include_buffers=False):
        transformer = ChromaTransformer2DModel.from_config(config)
    hidden = config["num_attention_heads"] * config["attention_head_dim"]
    converted = flux.convert_transformer(sd, prefix, hidden, convert_chroma_transformer_checkpoint_to_diffusers)
    sd_models_loader.materialize(transformer, converted, "Chroma transformer")
    return transformer


def load(sd: dict, family: ChromaFamily, models_dir: str | Path, source: str, preferred: list[str] = ()):
    """(transformer, vae, text encoders, tokenizers, the module files used): T5 is ChromaPipeline's only encoder."""
    parts = flux_loader.find_parts(sd, models_dir, source, preferred, PARTS)
    tokenizer = flux_loader.t5_tokenizer(models_dir, family.label)
    transformer = build_transformer(sd, flux.transformer_prefix(sd))
    encoders = {"text_encoder": flux_loader.build_t5(parts["t5"])}
    vae = flux_loader.build_vae(parts["vae"])
    return transformer, vae, encoders, {"tokenizer": tokenizer}, flux_loader.module_names(parts, source)
