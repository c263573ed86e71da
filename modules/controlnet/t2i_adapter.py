"""T2I-Adapters (SD1.x and SDXL) from TencentARC's original layout or diffusers' T2IAdapter layout, into diffusers'
T2IAdapter. Their features are computed once per job from the map and added inside the UNet's down blocks through
its `down_intrablock_additional_residuals` argument, as the extension adds them to the input blocks.

Original layout: `conv_in.*`, then `body.{k}.{in_conv,block1,block2}.*` with the resnets of all levels in one
flat list; diffusers': `adapter.conv_in.*`, `adapter.body.{level}.resnets.{j}.*`, `adapter.body.{level}.in_conv.*`.
The pixel-unshuffle factor (8 for SD1, 16 for SDXL) and the map's channels come from conv_in's input width.
"""
from __future__ import annotations

import re
from pathlib import Path

import torch
from accelerate import init_empty_weights
from diffusers import T2IAdapter

from modules.sd_models_config import FAMILY_LABELS
from modules.sd_models_loader import CheckpointLoadError, materialize

# conv_in input width -> (map channels, unshuffle factor, family): 3-channel maps, or 1 for sketch adapters
_INPUTS = {3 * 64: (3, 8, "v1"), 64: (1, 8, "v1"), 3 * 256: (3, 16, "xl_base"), 256: (1, 16, "xl_base")}
_FLAT = re.compile(r"^body\.(\d+)\.(in_conv|block1|block2)\.(weight|bias)$")
_NESTED = re.compile(r"^adapter\.body\.(\d+)\.(?:resnets\.(\d+)\.)?(in_conv|block1|block2)\.(weight|bias)$")


def is_t2i_adapter(sd: dict) -> bool:
    return any(k.endswith("conv_in.weight") for k in sd) and \
        any(_FLAT.match(k) or _NESTED.match(k) for k in sd)


def diffusers_layout(sd: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Either layout as diffusers' T2IAdapter keys."""
    if any(_NESTED.match(k) for k in sd):
        return sd
    flat = sorted({int(m.group(1)) for k in sd for m in [_FLAT.match(k)] if m})
    changes = sorted({int(m.group(1)) for k in sd for m in [_FLAT.match(k)] if m and m.group(2) == "in_conv"})
    per_level = changes[0] if changes else 2  # the first level's resnets come before the first in_conv
    out = {}
    for key, value in sd.items():
        m = _FLAT.match(key)
        if key.startswith("conv_in."):
            out["adapter." + key] = value
        elif m:
            k, part, param = int(m.group(1)), m.group(2), m.group(3)
            level, j = divmod(k, per_level)
            out[f"adapter.body.{level}.in_conv.{param}" if part == "in_conv"
                else f"adapter.body.{level}.resnets.{j}.{part}.{param}"] = value
    if len(flat) % per_level:
        raise CheckpointLoadError(f"T2I-Adapter: {len(flat)} resnets do not split into levels of {per_level}")
    return out


def config_from_tensors(sd: dict[str, torch.Tensor]) -> tuple[dict, str]:
    """(T2IAdapter config, family) from diffusers-layout tensors."""
    width = int(sd["adapter.conv_in.weight"].shape[1])
    if width not in _INPUTS:
        raise CheckpointLoadError(f"T2I-Adapter: conv_in takes {width} channels; not a full SD1/SDXL adapter "
                                  f"(light, style and CoAdapters are not supported)")
    channels_in, factor, family = _INPUTS[width]
    levels = sorted({int(m.group(1)) for k in sd for m in [_NESTED.match(k)] if m})
    resnets = {int(m.group(2)) for k in sd for m in [_NESTED.match(k)] if m and m.group(2) is not None}
    channels = [int(sd[f"adapter.body.{i}.resnets.0.block1.weight"].shape[0]) for i in levels]
    return {"in_channels": channels_in, "channels": channels, "num_res_blocks": len(resnets),
            "downscale_factor": factor, "adapter_type": "full_adapter_xl" if family == "xl_base" else "full_adapter"}, family


def check_family(name: str, family: str, channels: list[int], model) -> None:
    from modules.controlnet.models import ControlNetFamilyError, model_family

    unet_channels = list(model.unet.config.block_out_channels)
    if family != model_family(model) or channels[:len(unet_channels)] != unet_channels:
        raise ControlNetFamilyError(
            f"T2I-Adapter {name} is for {FAMILY_LABELS[family]} (widths {channels}), but the checkpoint "
            f"{model.sd_checkpoint_info.short_title} is {model.family.label} (widths {unet_channels})")


def load(path: Path, sd: dict[str, torch.Tensor], model) -> T2IAdapter:
    sd = diffusers_layout(sd)
    config, family = config_from_tensors(sd)
    check_family(path.stem, family, config["channels"], model)
    with init_empty_weights(include_buffers=False):
        adapter = T2IAdapter(**config)
    dtype = next(model.unet.parameters()).dtype
    materialize(adapter, {k: v.to(device=model.device, dtype=dtype) for k, v in sd.items()},
                 f"T2I-Adapter {path.name}")
    return adapter.eval()


def features(adapter: T2IAdapter, hint: torch.Tensor) -> list[torch.Tensor]:
    """The adapter's features of a [1, 3, H, W] 0..1 map; sketch adapters take its first channel."""
    channels = adapter.config.in_channels
    with torch.inference_mode():
        return list(adapter(hint[:, :channels] if channels < hint.shape[1] else hint))
