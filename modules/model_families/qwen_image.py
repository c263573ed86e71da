"""Qwen-Image (and its 2512 update): detection, the parts built from their files, one model evaluation, its VAE.

An MMDiT of 60 double-stream blocks over Flux-style 2x2-packed latents; the caption is Qwen2.5-VL-7B's last hidden
state of the prompt in Qwen-Image's chat template, the template's 34 first tokens dropped (qwen_prompts).
Files as ComfyUI repackages them: the transformer in diffusers' own keys (`qwen_image_bf16.safetensors`:
`transformer_blocks.N.attn.to_q`, `img_in`, `txt_in`, `txt_norm`, optionally under `model.diffusion_model.`),
Qwen2.5-VL-7B (`qwen_2.5_vl_7b.safetensors`: `model.layers.N.*`, `visual.*`, `lm_head`) in models/text_encoder and
the Wan-2.1-layout VAE (`qwen_image_vae.safetensors`: `encoder.conv1`, `decoder.upsamples.N`, `conv1`/`conv2`) in
models/VAE.

QwenImagePipeline's conventions, followed here: the transformer takes t = sigma and predicts v; the schedule is
Flux's dynamic shift from the image's token count, stretched so that its last sigma is 0.02 (`shift_terminal`);
true CFG (its true_cfg_scale is A1111's CFG scale) rescales each packed token of the guided v to the norm of the
conditional v; the VAE's latents are normalised per channel (latents_mean / latents_std), one video frame.
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

import torch
from accelerate import init_empty_weights
from diffusers import AutoencoderKLQwenImage, QwenImageTransformer2DModel
from diffusers.loaders.single_file_utils import convert_wan_vae_to_diffusers

from modules import sd_models_config as cfgs, sd_models_loader
from modules.model_families import flow_sampling, flux_loader, qwen_encoders, qwen_tokenizer

TRANSFORMER_PREFIXES = ("model.diffusion_model.", "")
_MARKER = "transformer_blocks.0.img_mod.1.weight"
_TEXT_NORM = "txt_norm.weight"  # Qwen-Image 2.1 names it txt_in.text_norm: another architecture
PARTS = flux_loader.PartSpec("Qwen-Image", {
    "qwen25vl": ("text_encoders.qwen25_7b.transformer.",
                 "a Qwen2.5-VL-7B text encoder (qwen_2.5_vl_7b.safetensors) in {text_encoder}"),
    "qwen_vae": ("vae.", "the Qwen-Image VAE (qwen_image_vae.safetensors) in {vae}"),
})


@dataclass(frozen=True)
class QwenImageFamily:
    """The family object of a Qwen-Image file (see modules.model_families for the interface)."""

    name: str = "qwen_image"
    label: str = "Qwen-Image"
    in_channels: int = 16
    prediction_type: str = "flow"
    is_sdxl: bool = False
    is_inpainting: bool = False
    is_flow: bool = True
    distilled_guidance: bool = False  # real CFG, QwenImagePipeline's true_cfg_scale
    uses_dynamic_shift: bool = True
    shift: float | None = None
    train_spacing: bool = False
    recommended_steps: int = 50  # QwenImagePipeline's num_inference_steps and the model card's
    recommended_cfg_scale: float = 4.0  # its true_cfg_scale


def transformer_prefix(sd: dict) -> str | None:
    return next((p for p in TRANSFORMER_PREFIXES if p + _MARKER in sd and p + _TEXT_NORM in sd), None)


def detect(sd: dict) -> QwenImageFamily | None:
    return None if transformer_prefix(sd) is None else QwenImageFamily()


def rope_axes(head_dim: int) -> list[int]:
    """Rotary axes (frame, height, width) summing to the head width: the released 16/56/56 of 128, kept even."""
    first = max(2, head_dim // 8 // 2 * 2)
    rest = (head_dim - first) // 2 // 2 * 2
    return [head_dim - 2 * rest, rest, rest]


def transformer_config(sd: dict, prefix: str) -> dict:
    cfg = cfgs.skeleton("qwen_image", "transformer")
    cfg.pop("_class_name")
    img_in = sd[prefix + "img_in.weight"]
    head_dim = int(sd[prefix + "transformer_blocks.0.attn.norm_q.weight"].shape[0])
    rx = re.compile(re.escape(prefix) + r"transformer_blocks\.(\d+)\.")
    cfg.update(
        in_channels=int(img_in.shape[1]),
        out_channels=int(sd[prefix + "proj_out.weight"].shape[0]) // (cfg["patch_size"] ** 2),
        num_layers=len({m.group(1) for k in sd for m in [rx.match(k)] if m}),
        attention_head_dim=head_dim,
        num_attention_heads=int(img_in.shape[0]) // head_dim,
        joint_attention_dim=int(sd[prefix + "txt_in.weight"].shape[1]),
        axes_dims_rope=rope_axes(head_dim),
    )
    return cfg


def build_transformer(sd: dict, prefix: str) -> QwenImageTransformer2DModel:
    with init_empty_weights(include_buffers=False):
        transformer = QwenImageTransformer2DModel.from_config(transformer_config(sd, prefix))
    weights = {k[len(prefix):]: v for k, v in sd.items() if k.startswith(prefix)}
    sd_models_loader.materialize(transformer, weights, "Qwen-Image transformer")
    return transformer


def vae_config(sd: dict) -> dict:
    cfg = cfgs.skeleton("qwen_image", "vae")
    cfg.pop("_class_name")
    cfg.update(base_dim=int(sd["encoder.conv1.weight"].shape[0]), z_dim=int(sd["conv2.weight"].shape[0]))
    return cfg


def build_vae(part: flux_loader.Part) -> AutoencoderKLQwenImage:
    sd = {k[len(part.prefix):]: v for k, v in part.state_dict.items() if k.startswith(part.prefix)}
    with init_empty_weights(include_buffers=False):
        vae = AutoencoderKLQwenImage.from_config(vae_config(sd))
    sd_models_loader.materialize(vae, convert_wan_vae_to_diffusers(sd), "Qwen-Image VAE")
    return vae


def _latent_stats(vae, like: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    shape = (1, vae.config.z_dim, 1, 1)
    return (torch.tensor(vae.config.latents_mean).view(shape).to(like.device, like.dtype),
            torch.tensor(vae.config.latents_std).view(shape).to(like.device, like.dtype))


def vae_decode(vae, latents: torch.Tensor) -> torch.Tensor:
    """Normalised latents [B, 16, h, w] -> the VAE's image [B, 3, H, W] (one frame, as QwenImagePipeline decodes)."""
    mean, std = _latent_stats(vae, latents)
    z = (latents * std + mean).to(next(vae.parameters()).dtype)
    return vae.decode(z.unsqueeze(2)).sample[:, :, 0]


def vae_encode(vae, pixels: torch.Tensor) -> torch.Tensor:
    """The VAE's image [B, 3, H, W] -> normalised latents (the distribution's mode)."""
    latent = vae.encode(pixels.unsqueeze(2)).latent_dist.mode()[:, :, 0].float()
    mean, std = _latent_stats(vae, latent)
    return (latent - mean) / std


def denoise(model, x: torch.Tensor, sigma: torch.Tensor, cond, guidance: float | None) -> torch.Tensor:
    """One Qwen-Image evaluation on latents x [B, C, H, W]: the captions cut to the batch's longest (their padding
    masked, no mask when none is left), the timestep as sigma."""
    transformer, dtype = flow_sampling._transformer(model)
    b, _, h, w = x.shape
    mask = cond.mask.bool()
    length = int(mask.sum(dim=1).max())
    context, mask = cond.context[:, :length], mask[:, :length]
    v = transformer(hidden_states=flow_sampling.pack(x).to(dtype), encoder_hidden_states=context.to(dtype),
                    encoder_hidden_states_mask=None if bool(mask.all()) else mask, timestep=sigma.to(dtype),
                    img_shapes=[[(1, h // 2, w // 2)]] * b, return_dict=False)[0]
    return flow_sampling._denoised(x, flow_sampling.unpack(v.float(), h, w), sigma)


def rescale_cfg(x: torch.Tensor, cond_denoised: torch.Tensor, denoised: torch.Tensor) -> torch.Tensor:
    """QwenImagePipeline's true CFG: each packed token of the guided v takes the norm of the conditional v. With
    v = (x - x0) / sigma the sigma cancels in the ratio."""
    h, w = x.shape[2:]
    guided = flow_sampling.pack(x - denoised)
    ratio = flow_sampling.pack(x - cond_denoised).norm(dim=-1, keepdim=True) / guided.norm(dim=-1, keepdim=True)
    return x - flow_sampling.unpack(guided * ratio, h, w)


def load(sd: dict, family: QwenImageFamily, models_dir: str | Path, source: str, preferred: list[str] = ()):
    """(transformer, vae, text encoders, tokenizers, the module files used): Qwen2.5-VL-7B is the only encoder."""
    parts = flux_loader.find_parts(sd, models_dir, source, preferred, PARTS)
    tokenizer = qwen_tokenizer.load(models_dir, family.label)
    transformer = build_transformer(sd, transformer_prefix(sd))
    te = parts["qwen25vl"]
    encoder = qwen_encoders.build_qwen25vl({k[len(te.prefix):]: v for k, v in te.state_dict.items()
                                            if k.startswith(te.prefix)}, family.name)
    vae = build_vae(parts["qwen_vae"])
    return transformer, vae, {"text_encoder": encoder}, {"tokenizer": tokenizer}, flux_loader.module_names(parts, source)
