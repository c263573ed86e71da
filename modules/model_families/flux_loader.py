"""Build a Flux.1 model's parts from its file and, for the parts the file lacks, from models/text_encoder and models/VAE.

Every part is built on the meta device from a config derived from its tensors and then filled; an unfilled or unknown
weight is an error, as for SD checkpoints. The T5 tokenizer is not shipped (its vocabulary is not in any package this
app installs): it is read from models/text_encoder/t5_tokenizer/tokenizer.json (FLUX.1-dev's tokenizer_2 folder).
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import safetensors
import torch
from accelerate import init_empty_weights
from diffusers import AutoencoderKL, FluxTransformer2DModel
from transformers import CLIPTextConfig, CLIPTextModel, PreTrainedTokenizerFast, T5Config, T5EncoderModel

from modules import quantized_weights, sd_models_config as cfgs, sd_models_loader
from modules.model_families import flux
from modules.model_families.qwen_encoders import QWEN3_MARKER, QWEN25VL_MARKERS
from modules.sd_models_loader import CheckpointLoadError

TEXT_ENCODER_DIR = "text_encoder"
VAE_DIR = "VAE"
T5_TOKENIZER_DIR = "t5_tokenizer"
CLIP_MARKER = "text_model.embeddings.token_embedding.weight"
T5_MARKER = "encoder.block.0.layer.0.SelfAttention.q.weight"
VAE_MARKER = "decoder.conv_in.weight"
WAN_VAE_MARKER = "decoder.upsamples.0.residual.0.gamma"  # Qwen-Image's VAE, in the Wan 2.1 layout
FLOW_LATENT_CHANNELS = 16  # Flux.1's ae and SD 3.5's VAE: same shapes, told apart by name only (vae_hint)
CLIP_G_WIDTH, CLIP_L_WIDTH = 1280, 768


@dataclass
class Part:
    """Where one part's tensors are: a state dict and the key prefix of the part in it."""

    state_dict: dict
    prefix: str
    source: str  # the file it came from, for messages and the infotext


@dataclass(frozen=True)
class PartSpec:
    """The parts a family needs besides its transformer: part name -> (prefix in an all-in-one file, what to put
    where, said when missing); `vae_hint`: a word in the names of the family's own VAE files, tried first."""

    label: str
    parts: dict[str, tuple[str, str]]
    vae_hint: str = ""


FLUX_PARTS = PartSpec("Flux.1", {
    "clip_l": (flux.CLIP_L_PREFIX, "a CLIP-L text encoder (clip_l.safetensors) in {text_encoder}"),
    "t5": (flux.T5_PREFIX, "a T5-XXL text encoder (t5xxl_fp16.safetensors) in {text_encoder}"),
    "vae": (flux.VAE_PREFIX, "the Flux VAE (ae.safetensors) in {vae}"),
})


def module_files(models_dir: str | Path, folders: tuple[str, ...] = (TEXT_ENCODER_DIR, VAE_DIR)) -> list[Path]:
    """Candidate part files: models/text_encoder and models/VAE, sorted by name."""
    out = []
    for sub in folders:
        folder = Path(models_dir) / sub
        if folder.is_dir():
            out += sorted((p for p in folder.rglob("*.safetensors") if p.is_file()), key=lambda p: p.name.lower())
    return out


def part_kind(path: Path) -> str | None:
    """clip_l | clip_g | t5 | qwen3 | qwen25vl | vae (16 latent channels) | qwen_vae | None, from the file's header alone. CLIP-G is CLIP-L's
    architecture wider; widths other than the released ones (pruned, tiny) go by the file's name."""
    with safetensors.safe_open(str(path), framework="pt") as f:
        keys = set(f.keys())
        if CLIP_MARKER in keys:
            width = f.get_slice(CLIP_MARKER).get_shape()[1]
            if width == CLIP_G_WIDTH or (width != CLIP_L_WIDTH and "clip_g" in path.name.lower()):
                return "clip_g"
            return "clip_l"
        if T5_MARKER in keys:
            return "t5"
        if QWEN3_MARKER in keys:
            return "qwen3"
        if any(m in keys for m in QWEN25VL_MARKERS):
            return "qwen25vl"
        if WAN_VAE_MARKER in keys:
            return "qwen_vae"
        if VAE_MARKER in keys and f.get_slice(VAE_MARKER).get_shape()[1] == FLOW_LATENT_CHANNELS:
            return "vae"
    return None


def find_parts(sd: dict, models_dir: str | Path, source: str, preferred: list[str] = (),
               spec: PartSpec = FLUX_PARTS) -> dict[str, Part]:
    """The parts `spec` names: the module files chosen in `preferred` first (Forge's forge_additional_modules: paths,
    file names or names without extension), then the checkpoint's own, then the first matching file of
    models/text_encoder and models/VAE; a missing part is an error naming what to put where."""
    files = module_files(models_dir)
    chosen = [f for name in preferred for f in files if name in (f.name, f.stem, str(f))]  # infotexts name stems
    if spec.vae_hint:
        files.sort(key=lambda f: spec.vae_hint not in f.name.lower())
    parts: dict[str, Part] = {}

    def take(paths):
        for path in dict.fromkeys(paths):
            part = part_kind(path)
            if part in spec.parts and part not in parts:
                parts[part] = Part(sd_models_loader.read_state_dict(path)[0], "", str(path))

    take(chosen)
    for part, (prefix, _) in spec.parts.items():
        if part not in parts and any(k.startswith(prefix) for k in sd):
            parts[part] = Part(sd, prefix, source)
    take(files)
    absent = [part for part in spec.parts if part not in parts]
    if absent:
        folders = {"text_encoder": Path(models_dir) / TEXT_ENCODER_DIR, "vae": Path(models_dir) / VAE_DIR}
        raise CheckpointLoadError(f"{Path(source).name} is a {spec.label} transformer without its other parts; put "
                                  + " and ".join(spec.parts[p][1].format(**folders) for p in absent))
    return {part: parts[part] for part in spec.parts}  # the spec's order: the infotext's Module N order


def _strip(part: Part) -> dict[str, torch.Tensor]:
    return {k[len(part.prefix):]: v for k, v in part.state_dict.items() if k.startswith(part.prefix)}


def build_transformer(sd: dict, prefix: str) -> FluxTransformer2DModel:
    config = flux.transformer_config(quantized_weights.logical_view(sd), prefix)  # GGUF: shapes as dequantized
    with init_empty_weights(include_buffers=False):
        transformer = FluxTransformer2DModel.from_config(config)
    hidden = config["num_attention_heads"] * config["attention_head_dim"]
    sd_models_loader.materialize(transformer, flux.convert_transformer(sd, prefix, hidden), "Flux transformer")
    return transformer


def module_names(parts: dict[str, Part], source: str) -> list[str]:
    """The separate files used, for the model's `modules` (Forge's infotext `Module N` keys)."""
    return list(dict.fromkeys(os.path.basename(p.source) for p in parts.values() if p.source != source))


def build_clip_l(part: Part) -> CLIPTextModel:
    sd = _strip(part)
    config = CLIPTextConfig(**cfgs.clip_l_config(sd, "v1", ""))  # CLIP-L is SD1's text encoder: same skeleton
    with init_empty_weights(include_buffers=False):
        model = CLIPTextModel(config)
    if not hasattr(model, "text_model"):  # transformers >= 5.6 flattened CLIPTextModel
        sd = {k.removeprefix("text_model."): v for k, v in sd.items()}
    sd_models_loader.materialize(model, sd, "CLIP-L text encoder",
                                 ignore_extra=("text_projection.", "logit_scale", "embeddings.position_ids",
                                               "text_model.embeddings.position_ids"))
    return model


def build_t5(part: Part) -> T5EncoderModel:
    sd = _strip(part)
    config = T5Config(**flux.t5_config(sd, ""))
    with init_empty_weights(include_buffers=False):
        model = T5EncoderModel(config)
    sd = {k: v for k, v in sd.items() if not k.startswith(("decoder.", "lm_head."))}  # full T5 files: encoder only
    if "shared.weight" not in sd:
        sd["shared.weight"] = sd["encoder.embed_tokens.weight"]
    sd.setdefault("encoder.embed_tokens.weight", sd["shared.weight"])  # tied in the model, stored once in files
    sd_models_loader.materialize(model, sd, "T5 text encoder")
    return model


def build_vae(part: Part, family: str = "flux") -> AutoencoderKL:
    """A 16-channel VAE in the LDM layout; the family's skeleton gives its latent scale and shift."""
    return sd_models_loader.build_vae(part.state_dict, family, part.prefix)


def t5_tokenizer(models_dir: str | Path, label: str = "Flux.1") -> PreTrainedTokenizerFast:
    folder = Path(models_dir) / TEXT_ENCODER_DIR / T5_TOKENIZER_DIR
    file = folder / "tokenizer.json"
    if not file.is_file():
        raise CheckpointLoadError(f"{label} needs the T5 tokenizer: put tokenizer.json (with its special_tokens_map.json "
                                  f"and tokenizer_config.json: FLUX.1-dev's tokenizer_2 folder) in {folder}")
    return PreTrainedTokenizerFast(tokenizer_file=str(file), pad_token="<pad>", eos_token="</s>", unk_token="<unk>")


def load(sd: dict, family: flux.FluxFamily, models_dir: str | Path, source: str, preferred: list[str] = ()):
    """(transformer, vae, text encoders, tokenizers besides CLIP's, the module files used) of a Flux.1 state dict."""
    prefix = flux.transformer_prefix(sd)
    parts = find_parts(sd, models_dir, source, preferred)
    tokenizer_2 = t5_tokenizer(models_dir)
    transformer = build_transformer(sd, prefix)
    encoders = {"text_encoder": build_clip_l(parts["clip_l"]), "text_encoder_2": build_t5(parts["t5"])}
    vae = build_vae(parts["vae"])
    return transformer, vae, encoders, {"tokenizer_2": tokenizer_2}, module_names(parts, source)
