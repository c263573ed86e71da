"""ControlNet files: where they are, what family they are for, and loading them into diffusers' ControlNetModel.

Sizes come from the file's own tensors plus the family's rules (SD1: 8 heads; SD2/SDXL: 64-wide heads), as for
checkpoints (sd_models_config), so tiny test files load through the same path as released ones.
"""
from __future__ import annotations

import hashlib
import inspect
import os
import re
from dataclasses import dataclass
from pathlib import Path

import torch
from accelerate import init_empty_weights
from diffusers import ControlNetModel, ControlNetUnionModel

from modules import ldm_layout
from modules.controlnet import ip_adapter, t2i_adapter
from modules.sd_models_config import FAMILY_LABELS
from modules.sd_models_loader import CheckpointLoadError, materialize, read_state_dict

EXTENSIONS = (".safetensors", ".pth", ".pt", ".ckpt", ".bin")
_CONFIG_KEYS = set(inspect.signature(ControlNetModel.__init__).parameters)
_UNION_CONFIG_KEYS = set(inspect.signature(ControlNetUnionModel.__init__).parameters)
# what the SDXL union ControlNets (xinsir's "union"/"promax", diffusers layout) have beyond a ControlNet
_UNION_PARTS = ("task_embedding", "transformer_layes.", "spatial_ch_projs.", "control_add_embedding.")
# the union model's control types, in its task_embedding's order, and the preprocessor words that pick each
UNION_TYPES = {"openpose": 0, "depth": 1, "softedge": 2, "hed": 2, "pidi": 2, "scribble": 2, "canny": 3,
               "lineart": 3, "mlsd": 3, "normal": 4, "seg": 5, "tile": 6, "blur": 6, "inpaint": 7}


class ControlNetFamilyError(ValueError):
    """A ControlNet made for another model family than the checkpoint it is used with."""


@dataclass(frozen=True)
class ControlNetInfo:
    path: Path

    @property
    def name(self) -> str:
        return self.path.stem

    @property
    def shorthash(self) -> str:
        """A1111's old model hash, the one the extension shows: sha256 of 64 KiB at 1 MiB, 8 digits."""
        with open(self.path, "rb") as file:
            file.seek(0x100000)
            return hashlib.sha256(file.read(0x10000)).hexdigest()[:8]

    @property
    def title(self) -> str:
        return f"{self.name} [{self.shorthash}]"


def model_dirs(cmd_opts, models_path: str, data_path: str) -> list[Path]:
    """models/ControlNet, --controlnet-dir, and an A1111 install's extension folder when it exists."""
    dirs = [Path(models_path) / "ControlNet"]
    if getattr(cmd_opts, "controlnet_dir", None):
        dirs.append(Path(cmd_opts.controlnet_dir))
    dirs.append(Path(data_path) / "extensions" / "sd-webui-controlnet" / "models")
    return dirs


def list_models(dirs: list[Path]) -> list[ControlNetInfo]:
    found: dict[str, ControlNetInfo] = {}
    for folder in dirs:
        if not folder.is_dir():
            continue
        for root, _, files in os.walk(folder):
            for file in sorted(files):
                path = Path(root) / file
                if path.suffix.lower() in EXTENSIONS and path.stem not in found:
                    found[path.stem] = ControlNetInfo(path)
    return sorted(found.values(), key=lambda info: info.name.lower())


def find_model(name: str, dirs: list[Path]) -> ControlNetInfo:
    """By title, bare name, or name with a stale hash (`name [hash]` from an infotext of another copy)."""
    bare = re.sub(r"\s*\[[0-9a-fA-F]+\]$", "", name.strip())
    for info in list_models(dirs):
        if info.name == bare:
            return info
    raise FileNotFoundError(f"ControlNet model {name!r} not found in {', '.join(str(d) for d in dirs)}")


def original_layout(sd: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Any of the layouts as bare original names: `control_model.*`, unprefixed original, or diffusers'."""
    if any(k.startswith(ldm_layout.CONTROLNET_PREFIX) for k in sd):
        return {k.removeprefix(ldm_layout.CONTROLNET_PREFIX): v for k, v in sd.items()
                if k.startswith(ldm_layout.CONTROLNET_PREFIX)}
    if "controlnet_cond_embedding.conv_in.weight" in sd:
        layers = _count(sd, r"down_blocks\.0\.resnets\.(\d+)\.")
        hint_blocks = _count(sd, r"controlnet_cond_embedding\.blocks\.(\d+)\.")
        return {ldm_layout.controlnet_key(k, layers, hint_blocks): v for k, v in sd.items()}
    if "input_hint_block.0.weight" in sd:
        return sd
    raise CheckpointLoadError("not a ControlNet (no input_hint_block / controlnet_cond_embedding weights)")


def _count(sd: dict, pattern: str) -> int:
    rx = re.compile(pattern)
    return len({m.group(1) for k in sd for m in [rx.match(k)] if m})


def family_of(sd: dict[str, torch.Tensor]) -> str:
    """v1 | v2 | xl_base from the keys: SDXL has the size/time embedding; SD2 projects attention linearly."""
    if "label_emb.0.0.weight" in sd:
        return "xl_base"
    proj_in = next((k for k in sd if k.endswith("proj_in.weight")), None)
    return "v2" if proj_in is not None and sd[proj_in].ndim == 2 else "v1"


def context_width(sd: dict[str, torch.Tensor]) -> int:
    return int(next(v for k, v in sd.items() if k.endswith("attn2.to_k.weight")).shape[1])


def config_from_tensors(sd: dict[str, torch.Tensor], family: str, addition_time_embed_dim: int | None) -> dict:
    n_inputs = _count(sd, r"input_blocks\.(\d+)\.")
    per_level = next(i for i in range(1, n_inputs + 1) if f"input_blocks.{i}.0.op.weight" in sd)
    levels = n_inputs // per_level
    channels, depths = [], []
    for b in range(levels):
        block = f"input_blocks.{1 + b * per_level}."
        channels.append(int(sd[block + "0.out_layers.3.weight"].shape[0]))
        depths.append(_count(sd, re.escape(block) + r"1\.transformer_blocks\.(\d+)\."))
    hint = [int(sd["input_hint_block.0.weight"].shape[0])]
    hint_convs = _count(sd, r"input_hint_block\.(\d+)\.weight")
    hint += [int(sd[f"input_hint_block.{2 * (j + 1)}.weight"].shape[0]) for j in range(1, hint_convs - 2, 2)]
    mid_depth = _count(sd, r"middle_block\.1\.transformer_blocks\.(\d+)\.")
    config = {
        "in_channels": int(sd["input_blocks.0.0.weight"].shape[1]),
        "conditioning_channels": int(sd["input_hint_block.0.weight"].shape[1]),
        "block_out_channels": channels,
        "layers_per_block": per_level - 1,
        "down_block_types": ["CrossAttnDownBlock2D" if d else "DownBlock2D" for d in depths],
        "mid_block_type": "UNetMidBlock2DCrossAttn" if mid_depth else "UNetMidBlock2D",
        "transformer_layers_per_block": [d or mid_depth or 1 for d in depths],
        "cross_attention_dim": context_width(sd),
        "use_linear_projection": family != "v1",
        "attention_head_dim": 8 if family == "v1" else [max(c // 64, 1) for c in channels],
        "conditioning_embedding_out_channels": hint,
    }
    if family == "xl_base":
        adm = int(sd["label_emb.0.0.weight"].shape[1])
        config.update(addition_embed_type="text_time", projection_class_embeddings_input_dim=adm,
                      addition_time_embed_dim=addition_time_embed_dim)
    return config


def model_family(model) -> str:
    """The family a ControlNet or adapter must be made for to guide `model` (inpainting variants included)."""
    return "xl_base" if model.family.is_sdxl and model.family.name != "xl_refiner" else model.family.name


def check_family(name: str, family: str, width: int, model) -> None:
    """Refuse a ControlNet for another family than `model` (an sd_models model), naming both."""
    model_width = int(model.unet.config.cross_attention_dim)
    if family != model_family(model) or width != model_width:
        raise ControlNetFamilyError(
            f"ControlNet {name} is for {FAMILY_LABELS[family]} (context width {width}), but the checkpoint "
            f"{model.sd_checkpoint_info.short_title} is {model.family.label} (context width {model_width})")


def union_config(sd: dict[str, torch.Tensor]) -> dict:
    """The union model's own sizes from its tensors (the head count is not in them: xinsir's 8)."""
    tasks, width = sd["task_embedding"].shape
    return {"num_control_type": int(tasks), "num_trans_channel": int(width), "num_trans_head": 8,
            "num_trans_layer": _count(sd, r"transformer_layes\.(\d+)\."),
            "num_proj_channel": int(sd["spatial_ch_projs.weight"].shape[0])}


def load(path: str | Path, model):
    """The ControlNet, union ControlNet, T2I-Adapter or IP-Adapter at `path` (told apart by its keys), built for `model` (the
    checkpoint it will guide); a wrong family is refused."""
    path = Path(path)
    raw = read_state_dict(path)[0]
    if t2i_adapter.is_t2i_adapter(raw):
        return t2i_adapter.load(path, raw, model)
    if ip_adapter.is_ip_adapter(raw):
        return ip_adapter.load(path, raw, model)
    union = "task_embedding" in raw
    sd = original_layout({k: v for k, v in raw.items() if not k.startswith(_UNION_PARTS)})
    family = family_of(sd)
    check_family(path.stem, family, context_width(sd), model)
    config = config_from_tensors(sd, family, model.unet.config.addition_time_embed_dim)
    layers, hint_blocks = config["layers_per_block"], 2 * (len(config["conditioning_embedding_out_channels"]) - 1)
    with init_empty_weights(include_buffers=False):
        if union:
            controlnet = ControlNetUnionModel.from_config(
                {k: v for k, v in {**config, **union_config(raw)}.items() if k in _UNION_CONFIG_KEYS})
        else:
            controlnet = ControlNetModel.from_config({k: v for k, v in config.items() if k in _CONFIG_KEYS})
    if union:  # only released in diffusers' layout
        sd = raw
        names = {key: key for key in controlnet.state_dict()}
    else:
        names = {key: ldm_layout.controlnet_key(key, layers, hint_blocks) for key in controlnet.state_dict()}
    missing = [original for original in names.values() if original not in sd]
    if missing:
        raise CheckpointLoadError(f"ControlNet {path.name}: {len(missing)} missing weights (e.g. {missing[:3]})")
    dtype = next(model.unet.parameters()).dtype
    state = {key: sd[original].to(device=model.device, dtype=dtype) for key, original in names.items()}
    materialize(controlnet, state, f"ControlNet {path.name}")
    return controlnet.eval()


def default_dirs() -> list[Path]:
    from modules import paths_internal
    from modules.shared_cmd_options import cmd_opts

    return model_dirs(cmd_opts, paths_internal.models_path, paths_internal.data_path)
