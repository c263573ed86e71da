"""Weights stored below the compute precision, as users download them: fp8 safetensors and GGUF transformers.

- fp8 (`float8_e4m3fn` / `float8_e5m2`: flux1-dev-fp8, t5xxl_fp8_e4m3fn, the fp8 all-in-one files): each Linear whose
  weight (and bias) the file holds in fp8 stays fp8 in memory and is computed in the compute dtype one layer at a time
  by diffusers' layerwise casting hook; the rest (norms, embeddings, layers the file keeps wider) is cast to the compute
  dtype as usual. The model's own skip list is honoured (diffusers' patterns: norms and embeddings; transformers'
  `_keep_in_fp32_modules`: T5's `wo`, whose input T5 casts to the weight's dtype). `--upcast-fp8` casts all on load.
- Scaled fp8 (ComfyUI's `scaled_fp8` marker with a `scale_weight` per Linear, sometimes `scale_input`): the layerwise
  hook has no scale, so these weights become weight x scale in bf16 when read.
- GGUF (`*.gguf`: Q8_0, Q5_K, Q4_K, ... transformers in BFL's or Stability's keys): read by diffusers' GGUF reader; the
  quantized tensors keep their blocks and diffusers' GGUFLinear dequantizes each at its forward. Their logical shapes
  (`logical_view`) let the family detection and the config-from-tensors code read them like any file.
"""
from __future__ import annotations

import itertools
import re
from pathlib import Path

import torch
from diffusers import GGUFQuantizationConfig
from diffusers.hooks import apply_layerwise_casting_hook
from diffusers.hooks.layerwise_casting import DEFAULT_SKIP_MODULES_PATTERN

FP8 = (torch.float8_e4m3fn, torch.float8_e5m2)
SCALED_FP8_MARKER = "scaled_fp8"
_SCALE_SUFFIXES = (".scale_weight", ".scale_input")


def dequantize_scaled_fp8(sd: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """A scaled fp8 state dict's real weights (weight x scale_weight, bf16) without the scale keys and the marker;
    any other state dict unchanged."""
    scales = [k for k in sd if k.endswith(".scale_weight")]
    if not scales and not any(k.endswith(SCALED_FP8_MARKER) for k in sd):
        return sd
    out = {k: v for k, v in sd.items() if not k.endswith(_SCALE_SUFFIXES) and not k.endswith(SCALED_FP8_MARKER)}
    for key in scales:
        weight = key[: -len(".scale_weight")] + ".weight"
        if weight in out:
            out[weight] = (out[weight].to(torch.float32) * sd[key].to(torch.float32)).to(torch.bfloat16)
    return out


def skip_patterns(module: torch.nn.Module) -> tuple[str, ...]:
    """Layers computed from compute-dtype weights even in fp8 files: diffusers' defaults and the model's own list."""
    keep = getattr(module, "_keep_in_fp32_modules", None) or []
    return (*DEFAULT_SKIP_MODULES_PATTERN, *(getattr(module, "_skip_layerwise_casting_patterns", None) or []),
            *(rf"(^|\.){re.escape(name)}$" for name in keep))


def fp8_layers(module: torch.nn.Module) -> list[torch.nn.Linear]:
    """The Linear layers the file holds in fp8 (weight, and bias if any, of one fp8 dtype), minus the skipped ones."""
    patterns = skip_patterns(module)
    return [m for name, m in module.named_modules()
            if type(m) is torch.nn.Linear and m.weight.dtype in FP8
            and (m.bias is None or m.bias.dtype == m.weight.dtype)
            and not any(re.search(p, name) for p in patterns)]


def store(module: torch.nn.Module, device: torch.device, dtype: torch.dtype, keep_fp8: bool = True) -> int:
    """Move a frozen inference module to `device` in `dtype`, keeping its fp8 layers fp8 (upcast at each forward)
    unless keep_fp8 is False, and running GGUF layers in `dtype`; returns how many layers stay fp8. Tensor by tensor,
    so an fp8 model never exists in the compute dtype as a whole."""
    layers = fp8_layers(module) if keep_fp8 else []
    kept = {id(p) for m in layers for p in m.parameters(recurse=False)}
    with torch.no_grad():
        for t in itertools.chain(module.parameters(), module.buffers()):
            cast = dtype if t.is_floating_point() and id(t) not in kept else None
            t.data = t.data.to(device, cast)
    module.eval().requires_grad_(False)
    for m in module.modules():
        if hasattr(m, "compute_dtype") and is_gguf(m.weight):  # diffusers' GGUFLinear
            m.compute_dtype = dtype
    for m in layers:
        apply_layerwise_casting_hook(m, m.weight.dtype, dtype, non_blocking=False)
    return len(layers)


def compute_dtype(module: torch.nn.Module) -> torch.dtype:
    """The dtype a module computes in: its first floating-point weight not stored in fp8 (GGUF blocks are bytes)."""
    return next(p.dtype for p in module.parameters() if p.is_floating_point() and p.dtype not in FP8)


def is_cast(module: torch.nn.Module) -> bool:
    """Whether the module casts its own weights around its forward (diffusers' layerwise casting)."""
    registry = getattr(module, "_diffusers_hook", None)
    return registry is not None and registry.get_hook("layerwise_casting") is not None


# GGUF ----------------------------------------------------------------------------------------------------------------

def is_gguf(tensor) -> bool:
    from diffusers.quantizers.gguf.utils import GGUFParameter  # needs the gguf package: imported when used

    return isinstance(tensor, GGUFParameter)


def read_gguf(path: str | Path) -> dict[str, torch.Tensor]:
    """A GGUF file's tensors: quantized ones as diffusers' GGUFParameter (blocks as stored), F16/F32 ones plain."""
    from diffusers.models.model_loading_utils import load_gguf_checkpoint

    return load_gguf_checkpoint(str(path))


def logical_view(sd: dict) -> dict:
    """The state dict with each quantized tensor replaced by an empty meta tensor of its dequantized shape: what family
    detection and the configs read (they look at shapes only)."""
    if not any(is_gguf(v) for v in sd.values()):
        return sd
    return {k: torch.empty(v.quant_shape, device="meta") if is_gguf(v) else v for k, v in sd.items()}


def quantize_for_load(module: torch.nn.Module, state: dict) -> None:
    """Replace the Linear layers whose weights are GGUF-quantized in `state` with diffusers' GGUFLinear (through its
    GGUF quantizer), so that `state`'s blocks are assigned as they are. No-op for other state dicts."""
    if not any(is_gguf(v) for v in state.values()):
        return
    from diffusers.quantizers.gguf import GGUFQuantizer

    quantizer = GGUFQuantizer(GGUFQuantizationConfig(compute_dtype=torch.bfloat16))
    quantizer.preprocess_model(module, device_map=None, keep_in_fp32_modules=[], state_dict=state)
    for name, value in state.items():
        if is_gguf(value):
            quantizer.check_quantized_param_shape(name, module.get_parameter(name), value)
