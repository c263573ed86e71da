"""Build an SD 3.5 model's parts: the transformer from its file; CLIP-L, CLIP-G, T5-XXL and the VAE from the file when it
holds them (all-in-one), else from models/text_encoder and models/VAE (module choice and messages as for Flux.1)."""
from __future__ import annotations

from pathlib import Path

from accelerate import init_empty_weights
from diffusers import SD3Transformer2DModel
from transformers import CLIPTextConfig, CLIPTextModelWithProjection

from modules import quantized_weights, sd_models_loader
from modules.model_families import flux_loader, sd3
from modules.sd_models_loader import CheckpointLoadError

PARTS = flux_loader.PartSpec("SD 3.5", {
    "clip_l": (sd3.CLIP_L_PREFIX, "a CLIP-L text encoder (clip_l.safetensors) in {text_encoder}"),
    "clip_g": (sd3.CLIP_G_PREFIX, "a CLIP-G text encoder (clip_g.safetensors) in {text_encoder}"),
    "t5": (sd3.T5_PREFIX, "a T5-XXL text encoder (t5xxl_fp16.safetensors) in {text_encoder}"),
    "vae": (sd3.VAE_PREFIX, "the SD 3.5 VAE (a name with sd3 in it, e.g. sd3.5_vae.safetensors) in {vae}"),
}, vae_hint="sd3")


def build_transformer(sd: dict, prefix: str) -> SD3Transformer2DModel:
    config = sd3.transformer_config(quantized_weights.logical_view(sd), prefix)  # GGUF: shapes as dequantized
    with init_empty_weights(include_buffers=False):
        transformer = SD3Transformer2DModel.from_config(config)
    sd_models_loader.materialize(transformer, sd3.convert_transformer(sd, prefix), "SD 3.5 transformer")
    return transformer


def build_clip(part: flux_loader.Part, component: str, what: str) -> CLIPTextModelWithProjection:
    sd = {k[len(part.prefix):]: v for k, v in part.state_dict.items() if k.startswith(part.prefix)}
    if "text_projection.weight" not in sd:  # SD 3.5's pooled vector is the projected one
        raise CheckpointLoadError(f"{Path(part.source).name} has no text_projection: SD 3.5 needs its {what} with the "
                                  "projection (Stability's text_encoders/ files have it)")
    config = CLIPTextConfig(**sd3.clip_config(sd, "", component))
    with init_empty_weights(include_buffers=False):
        model = CLIPTextModelWithProjection(config)
    if not hasattr(model, "text_model"):  # transformers >= 5.6 flattened the CLIP text models
        sd = {k.removeprefix("text_model."): v for k, v in sd.items()}
    sd_models_loader.materialize(model, sd, what, ignore_extra=("logit_scale", "embeddings.position_ids",
                                                                "text_model.embeddings.position_ids"))
    return model


def load(sd: dict, family: sd3.SD3Family, models_dir: str | Path, source: str, preferred: list[str] = ()):
    """(transformer, vae, text encoders, tokenizers besides CLIP's, the module files used) of an SD 3.5 state dict."""
    parts = flux_loader.find_parts(sd, models_dir, source, preferred, PARTS)
    tokenizer_3 = flux_loader.t5_tokenizer(models_dir, family.label)
    transformer = build_transformer(sd, sd3.transformer_prefix(sd))
    encoders = {"text_encoder": build_clip(parts["clip_l"], "text_encoder", "CLIP-L text encoder"),
                "text_encoder_2": build_clip(parts["clip_g"], "text_encoder_2", "CLIP-G text encoder"),
                "text_encoder_3": flux_loader.build_t5(parts["t5"])}
    vae = flux_loader.build_vae(parts["vae"], "sd3")
    return transformer, vae, encoders, {"tokenizer_3": tokenizer_3}, flux_loader.module_names(parts, source)
