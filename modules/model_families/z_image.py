"""Z-Image (and Z-Image Turbo): detection, the transformer's config from its tensors, one model evaluation.

A single-stream DiT (Lumina 2's NextDiT line): refiner blocks for the image and for the caption, then joint blocks
over both; the caption is Qwen3-4B's second-to-last hidden state of the chat-templated prompt, its padding removed.
Files: the transformer in the ComfyUI-repackaged keys (`layers.N.attention.qkv`, `x_embedder`, `final_layer`,
`noise_refiner`, `context_refiner`, `cap_embedder`, optionally under `model.diffusion_model.`), Qwen3-4B
(`qwen_3_4b.safetensors`) in models/text_encoder and Flux's ae in models/VAE.

ZImagePipeline's conventions, followed here: the transformer takes t = 1 - sigma and predicts noise-to-image
(-v); its guidance_scale g is CFG as pos + g * (pos - neg), i.e. A1111's CFG scale g + 1 (Turbo: g 0 = CFG scale 1).
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

import torch
from accelerate import init_empty_weights
from diffusers import ZImageTransformer2DModel
from diffusers.loaders.single_file_utils import convert_z_image_transformer_checkpoint_to_diffusers

from modules import sd_models_config as cfgs, sd_models_loader
from modules.model_families import flow_sampling, flux_loader, qwen_encoders, qwen_tokenizer

TRANSFORMER_PREFIXES = ("model.diffusion_model.", "")
_MARKER = "layers.0.adaLN_modulation.0.weight"
_CAPTION = "cap_embedder.1.weight"
ADALN_WIDTH = 256  # the timestep embedding's width (min(dim, 256)); Lumina 2, the same blocks, uses 1024
PATCH = 4  # 2x2 patches, one frame
PARTS = flux_loader.PartSpec("Z-Image", {
    # ComfyUI's saved checkpoints put the encoder under its name and the VAE under `vae.`
    "qwen3": ("text_encoders.qwen3_4b.transformer.", "a Qwen3-4B text encoder (qwen_3_4b.safetensors) in {text_encoder}"),
    "vae": ("vae.", "the Flux VAE (ae.safetensors) in {vae}"),
})


@dataclass(frozen=True)
class ZImageFamily:
    """The family object of a Z-Image file (see modules.model_families for the interface)."""

    name: str = "z_image"
    label: str = "Z-Image"
    in_channels: int = 16
    prediction_type: str = "flow"
    is_sdxl: bool = False
    is_inpainting: bool = False
    is_flow: bool = True
    distilled_guidance: bool = False  # real CFG (Turbo: none, CFG scale 1)
    uses_dynamic_shift: bool = False
    shift: float | None = 3.0  # Z-Image-Turbo's scheduler: a fixed shift over linspace(1, 1/steps)
    train_spacing: bool = False
    recommended_steps: int = 9  # Z-Image-Turbo's model card: 9 steps (8 transformer evaluations of note), CFG off
    recommended_cfg_scale: float = 1.0


def transformer_prefix(sd: dict) -> str | None:
    return next((p for p in TRANSFORMER_PREFIXES if p + _MARKER in sd and p + _CAPTION in sd), None)


def detect(sd: dict) -> ZImageFamily | None:
    prefix = transformer_prefix(sd)
    if prefix is None:
        return None
    dim = int(sd[prefix + "x_embedder.weight"].shape[0])
    return ZImageFamily() if int(sd[prefix + _MARKER].shape[1]) == min(dim, ADALN_WIDTH) else None


def _count(sd: dict, pattern: str) -> int:
    rx = re.compile(pattern)
    return len({m.group(1) for k in sd for m in [rx.match(k)] if m})


def rope_axes(head_dim: int) -> list[int]:
    """Rotary axes (frame, height, width) summing to the head width: the released 32/48/48 of 128, kept even."""
    first = max(2, head_dim // 4 // 2 * 2)
    rest = (head_dim - first) // 2 // 2 * 2
    return [head_dim - 2 * rest, rest, rest]


def transformer_config(sd: dict, prefix: str) -> dict:
    cfg = cfgs.skeleton("z_image", "transformer")
    cfg.pop("_class_name")
    embed = sd[prefix + "x_embedder.weight"]
    dim = int(embed.shape[0])
    head_dim = int(sd[prefix + "layers.0.attention.q_norm.weight"].shape[0])
    ffn = int(sd[prefix + "layers.0.feed_forward.w1.weight"].shape[0])
    if ffn != int(dim / 3 * 8):
        raise cfgs.UnknownModelError(f"Z-Image blocks with a feed-forward of {ffn} for width {dim}: diffusers' "
                                     f"Z-Image transformer needs {int(dim / 3 * 8)}")
    cfg.update(
        in_channels=int(embed.shape[1]) // PATCH,
        dim=dim,
        n_layers=_count(sd, re.escape(prefix) + r"layers\.(\d+)\."),
        n_refiner_layers=_count(sd, re.escape(prefix) + r"noise_refiner\.(\d+)\."),
        n_heads=dim // head_dim,
        n_kv_heads=dim // head_dim,  # the fused qkv splits in three equal parts
        cap_feat_dim=int(sd[prefix + _CAPTION].shape[1]),
        axes_dims=rope_axes(head_dim),
    )
    return cfg


def build_transformer(sd: dict, prefix: str) -> ZImageTransformer2DModel:
    config = transformer_config(sd, prefix)
    with init_empty_weights(include_buffers=False):
        transformer = ZImageTransformer2DModel.from_config(config)
    # the converter pops from the dict it gets: give it this transformer's keys only
    converted = convert_z_image_transformer_checkpoint_to_diffusers(
        {k[len(prefix):]: v for k, v in sd.items() if k.startswith(prefix)})
    sd_models_loader.materialize(transformer, converted, "Z-Image transformer")
    return transformer


def denoise(model, x: torch.Tensor, sigma: torch.Tensor, cond, guidance: float | None) -> torch.Tensor:
    """One Z-Image evaluation on latents x [B, C, H, W]: each image with its own caption (the prompt's tokens only),
    the timestep as 1 - sigma; the transformer predicts -v."""
    transformer, dtype = flow_sampling._transformer(model)
    captions = [cond.context[i][cond.mask[i].bool()].to(dtype) for i in range(x.shape[0])]
    out = transformer(list(x.to(dtype).unsqueeze(2).unbind(0)), (1 - sigma).to(dtype), captions,
                      return_dict=False)[0]
    v = -torch.stack([o.float() for o in out]).squeeze(2)
    return flow_sampling._denoised(x, v, sigma)


def load(sd: dict, family: ZImageFamily, models_dir: str | Path, source: str, preferred: list[str] = ()):
    """(transformer, vae, text encoders, tokenizers, the module files used): Qwen3-4B is the only encoder."""
    parts = flux_loader.find_parts(sd, models_dir, source, preferred, PARTS)
    tokenizer = qwen_tokenizer.load(models_dir, family.label)
    transformer = build_transformer(sd, transformer_prefix(sd))
    te = parts["qwen3"]
    encoder = qwen_encoders.build_qwen3({k[len(te.prefix):]: v for k, v in te.state_dict.items()
                                         if k.startswith(te.prefix)}, family.name)
    vae = flux_loader.build_vae(parts["vae"])  # Flux's ae: its scale and shift
    return transformer, vae, {"text_encoder": encoder}, {"tokenizer": tokenizer}, flux_loader.module_names(parts, source)
