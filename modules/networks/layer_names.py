"""kohya layer names -> the model's torch layers, for SD1, SD2, SDXL and the flow transformers (diffusers' names;
modules.networks.flux_lora maps BFL's, sd3_lora Stability's).

kohya names a layer by its module path with "." -> "_" behind a prefix: `lora_unet_` + the diffusers path (SD1/SD2)
or the original LDM/SGM path (SDXL, some LyCORIS files), `lora_te_` (SD1/SD2), `lora_te1_`/`lora_te2_` (SDXL) + the
transformers path `text_model.encoder.layers...`. Every patchable layer is mapped under each name it can have.
"""
from __future__ import annotations

import torch

from modules import ldm_layout

PATCHABLE = (torch.nn.Linear, torch.nn.Conv2d)
TEXT_ENCODER_PREFIXES = {  # family -> (text encoder component, kohya prefix)
    "v1": [("text_encoder", "lora_te_")],
    "v2": [("text_encoder", "lora_te_")],
    "xl_base": [("text_encoder", "lora_te1_"), ("text_encoder_2", "lora_te2_")],
    "xl_refiner": [],
    # Flux: kohya's CLIP-L and T5 prefixes (ComfyUI writes CLIP-L's as lora_te_)
    "flux": [("text_encoder", "lora_te1_"), ("text_encoder", "lora_te_"), ("text_encoder_2", "lora_te3_")],
    "chroma": [("text_encoder", "lora_te3_"), ("text_encoder", "lora_te1_")],  # T5 only: kohya's, PEFT's text_encoder.
    "sd3": [("text_encoder", "lora_te1_"), ("text_encoder_2", "lora_te2_"), ("text_encoder_3", "lora_te3_")],
}


def ldm_unet_names(unet) -> dict[str, str]:
    """diffusers module path -> original-layout path, for the UNet's weighted modules (the checkpoint writer's mapping)."""
    layers = unet.config.layers_per_block
    if not isinstance(layers, int):  # per-level layer counts have no original layout
        return {}
    up_attention = {i for i, block in enumerate(unet.up_blocks) if getattr(block, "attentions", None)}
    names = {}
    for key in unet.state_dict():
        if key.endswith(".weight"):
            names[key.removesuffix(".weight")] = ldm_layout.unet_key(key, layers, up_attention).removesuffix(".weight")
    return names


def kohya(prefix: str, path: str) -> str:
    return prefix + path.replace(".", "_")


def network_layer_mapping(model) -> dict[str, torch.nn.Module]:
    """Every kohya name of every patchable layer of the model's UNet and text encoders."""
    mapping: dict[str, torch.nn.Module] = {}
    ldm_names = {} if model.family.is_flow else ldm_unet_names(model.unet)  # flow transformers: diffusers names only
    for name, module in model.unet.named_modules():
        if isinstance(module, PATCHABLE):
            mapping[kohya("lora_unet_", name)] = module
            if name in ldm_names:
                mapping[kohya("lora_unet_", ldm_names[name])] = module
    for component, prefix in TEXT_ENCODER_PREFIXES.get(model.family.name, []):
        encoder = model.text_encoders[component]
        is_clip = encoder.config.model_type.startswith("clip")
        for name, module in encoder.named_modules():
            if isinstance(module, PATCHABLE):
                # transformers >= 5.6 dropped CLIPTextModel's `text_model.` level; kohya names keep it
                path = name if not is_clip or name.startswith(("text_model.", "text_projection")) else f"text_model.{name}"
                mapping[kohya(prefix, path)] = module
    return mapping
