"""Flux.1 LoRA files in the layouts found on the hubs, brought to the layer names our Flux model is patched by.

Our Flux transformer is diffusers' FluxTransformer2DModel, so its kohya names are `lora_unet_` + the diffusers path
(`lora_unet_single_transformer_blocks_0_attn_to_q`). The files name layers in one of two layouts:

- BFL's (the original model's): kohya `lora_unet_double_blocks_0_img_attn_qkv`, ComfyUI `diffusion_model.double_blocks.0
  .img_attn.qkv.lora_down.weight`, BFL's own `double_blocks.0.img_attn.qkv.lora_A.weight`, XLabs
  `double_blocks.0.processor.qkv_lora1.down.weight`. BFL fuses what diffusers splits: q/k/v (and, in the single blocks,
  the MLP's input) are one layer there, so one fused LoRA layer patches several of ours, each with its rows of the
  fused delta (`up @ down` for LoRA). The final modulation's shift/scale halves are swapped between the two layouts.
- diffusers' (PEFT, ai-toolkit, kohya trained on diffusers): `transformer.single_transformer_blocks.0.attn.to_q.lora_A
  .weight`, `lora_transformer_single_transformer_blocks_0_attn_to_q.lora_down.weight`: one file layer, one of ours.

diffusers' own converters (lora_conversion_utils) assume the released sizes (19/38 blocks, width 3072) and fold alpha
into the weights; the row split here reads the sizes from each layer's tensors, so pruned and tiny files map too, and
alpha stays a scale as for SD LoRAs. CLIP-L layers are `lora_te1_` (kohya; ComfyUI's `lora_te_`), T5's `lora_te3_`.
"""
from __future__ import annotations

import re

import torch

from modules.networks.network import NetworkModule

MARKERS = ("double_blocks", "single_blocks", "single_transformer_blocks")
UNET_PREFIXES = ("base_model.model.", "model.diffusion_model.", "diffusion_model.", "transformer.", "unet.")
TEXT_PREFIXES = (("text_encoders.clip_l.transformer.", "lora_te1_"), ("text_encoder.", "lora_te1_"),
                 ("text_encoders.t5xxl.transformer.", "lora_te3_"), ("text_encoder_2.", "lora_te3_"))
PARAMS = {"lora_A.weight": "lora_down.weight", "lora_B.weight": "lora_up.weight", "down.weight": "lora_down.weight",
          "up.weight": "lora_up.weight", "lora_down.weight": "lora_down.weight", "lora_up.weight": "lora_up.weight",
          "alpha": "alpha", "dora_scale": "dora_scale", "lora_mid.weight": "lora_mid.weight"}
XLABS = ((r"(double_blocks\.\d+)\.processor\.qkv_lora1", r"\1.img_attn.qkv"),
         (r"(double_blocks\.\d+)\.processor\.qkv_lora2", r"\1.txt_attn.qkv"),
         (r"(double_blocks\.\d+)\.processor\.proj_lora1", r"\1.img_attn.proj"),
         (r"(double_blocks\.\d+)\.processor\.proj_lora2", r"\1.txt_attn.proj"),
         (r"(single_blocks\.\d+)\.processor\.qkv_lora", r"\1.qkv"),  # q/k/v only: linear1's first three parts
         (r"(single_blocks\.\d+)\.processor\.proj_lora", r"\1.linear2"))

# BFL layer (kohya spelling, after the block number) -> our layers, each with its share of the fused rows
_QKV = (1, 1, 1)
DOUBLE = {"img_attn_qkv": (("attn_to_q", "attn_to_k", "attn_to_v"), _QKV),
          "txt_attn_qkv": (("attn_add_q_proj", "attn_add_k_proj", "attn_add_v_proj"), _QKV),
          "img_attn_proj": (("attn_to_out_0",), (1,)), "txt_attn_proj": (("attn_to_add_out",), (1,)),
          "img_mlp_0": (("ff_net_0_proj",), (1,)), "img_mlp_2": (("ff_net_2",), (1,)),
          "txt_mlp_0": (("ff_context_net_0_proj",), (1,)), "txt_mlp_2": (("ff_context_net_2",), (1,)),
          "img_mod_lin": (("norm1_linear",), (1,)), "txt_mod_lin": (("norm1_context_linear",), (1,))}
SINGLE = {"linear1": (("attn_to_q", "attn_to_k", "attn_to_v", "proj_mlp"), (1, 1, 1, 4)),  # diffusers' MLP is 4x
          "qkv": (("attn_to_q", "attn_to_k", "attn_to_v"), _QKV),
          "linear2": (("proj_out",), (1,)), "modulation_lin": (("norm_linear",), (1,))}
GLOBAL = {"img_in": "x_embedder", "txt_in": "context_embedder",
          "time_in_in_layer": "time_text_embed_timestep_embedder_linear_1",
          "time_in_out_layer": "time_text_embed_timestep_embedder_linear_2",
          "vector_in_in_layer": "time_text_embed_text_embedder_linear_1",
          "vector_in_out_layer": "time_text_embed_text_embedder_linear_2",
          "guidance_in_in_layer": "time_text_embed_guidance_embedder_linear_1",
          "guidance_in_out_layer": "time_text_embed_guidance_embedder_linear_2",
          "final_layer_linear": "proj_out"}
FINAL_MODULATION = "final_layer_adaLN_modulation_1"  # BFL (shift, scale) = our norm_out.linear's (scale, shift)
_BLOCK = re.compile(r"lora_unet_(double|single)_blocks_(\d+)_(.+)")


def is_flux(keys) -> bool:
    return any(marker in key for key in keys for marker in MARKERS)


def _split_param(key: str) -> tuple[str, str] | None:
    for param in sorted(PARAMS, key=len, reverse=True):
        if key.endswith("." + param):
            return key[:-len(param) - 1], PARAMS[param]
    return None


def kohya_key(key: str, text_prefixes=TEXT_PREFIXES) -> str:
    """One file key in the kohya spelling `layer.param` (layer: `lora_unet_`/`lora_te1_`/`lora_te3_` + path with
    `_`); keys already so spelled, and keys of no LoRA parameter, are returned unchanged."""
    if key.startswith("lora_transformer_"):  # kohya keys of a diffusers-layout model
        return "lora_unet_" + key.removeprefix("lora_transformer_")
    if key.startswith("lora_"):
        return key
    split = _split_param(key)
    if split is None:
        return key
    path, param = split
    for old, new in XLABS:
        path = re.sub(old, new, path)
    prefix = "lora_unet_"
    for text_prefix, kohya_prefix in text_prefixes:
        if path.startswith(text_prefix):
            prefix, path = kohya_prefix, path.removeprefix(text_prefix)
            break
    else:
        for unet_prefix in UNET_PREFIXES:
            path = path.removeprefix(unet_prefix)
    return f"{prefix}{path.replace('.', '_')}.{param}"


def normalize(state_dict: dict[str, torch.Tensor], text_prefixes=TEXT_PREFIXES) -> dict[str, torch.Tensor]:
    return {kohya_key(key, text_prefixes): value for key, value in state_dict.items()}


def row_parts(total: int, shares: tuple[int, ...]) -> list[tuple[int, int]]:
    unit, start, out = total // sum(shares), 0, []
    for share in shares:
        out.append((start, start + share * unit))
        start += share * unit
    return out


def targets(layer: str, rows: int, cols: int = 0) -> list[tuple[str, list[tuple[int, int]]]] | None:
    """Our layers for one BFL-named file layer with `rows` output rows (and `cols` inputs): (our layer, its row ranges
    of the file layer's delta); None when the layer is not in BFL's layout. Chroma's blocks are Flux's without the
    modulation layers, so its files map the same way."""
    if layer == "lora_unet_" + FINAL_MODULATION:
        half = rows // 2
        return [("lora_unet_norm_out_linear", [(half, rows), (0, half)])]
    if layer.startswith("lora_unet_") and layer.removeprefix("lora_unet_") in GLOBAL:
        return [("lora_unet_" + GLOBAL[layer.removeprefix("lora_unet_")], [(0, rows)])]
    match = _BLOCK.fullmatch(layer)
    if match is None:
        return None
    kind, index, name = match.groups()
    ours, shares = (DOUBLE if kind == "double" else SINGLE).get(name, (None, None))
    if ours is None:
        return None
    block = f"lora_unet_{'transformer_blocks' if kind == 'double' else 'single_transformer_blocks'}_{index}_"
    return [(block + our, [part]) for our, part in zip(ours, row_parts(rows, shares))]


def output_rows(module: NetworkModule) -> int | None:
    """The file layer's output width, from its up factor (LoRA) or its delta's first dimension."""
    up = getattr(module, "up", None)
    return None if up is None else int(up.shape[0])


def input_cols(module: NetworkModule) -> int:
    """The file layer's input width, from its down factor (LoRA); 0 when unknown."""
    down = getattr(module, "down", None)
    return 0 if down is None else int(down.shape[1])


class NetworkModuleRows(NetworkModule):
    """Some rows of a fused file layer's delta, as the delta of one of our layers (scale, multiplier: the file layer's)."""

    def __init__(self, inner: NetworkModule, key: str, rows: list[tuple[int, int]]):
        self.inner = inner
        self.network = inner.network
        self.network_key = key
        self.rows = rows
        self.dim, self.alpha, self.scale = inner.dim, inner.alpha, inner.scale
        self.dora_scale = None

    def multiplier(self) -> float:
        return self.inner.multiplier()

    def signature(self) -> tuple:
        return (*self.inner.signature(), self.inner.network_key, tuple(self.rows))

    def calc_scale(self) -> float:
        return self.inner.calc_scale()

    def raw_updown(self, orig_weight: torch.Tensor) -> torch.Tensor:
        if self.inner.dora_scale is not None:
            raise ValueError(f"{self.inner.network_key}: DoRA on a fused layer is not supported")
        up = getattr(self.inner, "up", None)
        if up is not None and getattr(self.inner, "mid", None) is None and self.network.dyn_dim is None:
            up = up.to(orig_weight).flatten(1)  # LoRA: only our rows of `up` are multiplied
            return torch.cat([up[a:b] for a, b in self.rows]) @ self.inner.down.to(orig_weight).flatten(1)
        full = self.inner.raw_updown(orig_weight)
        return torch.cat([full[a:b] for a, b in self.rows])


def expand(modules: dict[str, NetworkModule], targets=targets) -> tuple[dict[str, NetworkModule], list[str]]:
    """(the file's layers keyed by our layer names, the original-layout layers that could not be mapped). `targets`
    maps one original-layout layer (BFL's here, Stability's in sd3_lora). A layer that is one of ours is renamed; a
    fused one becomes one NetworkModuleRows per layer of ours (LoRA layers only: the other types' factors do not split
    by rows without building the fused delta, which NetworkModuleRows then does)."""
    out: dict[str, NetworkModule] = {}
    unmapped = []
    for key, module in modules.items():
        rows = output_rows(module)
        mapped = targets(key, rows or 0, input_cols(module))
        if mapped is None:
            out[key] = module  # diffusers' names, text encoders: ours already
        elif len(mapped) == 1 and mapped[0][1] == [(0, rows or 0)]:
            out[mapped[0][0]] = module
        elif rows is None:
            unmapped.append(key)
        else:
            out.update((our_key, NetworkModuleRows(module, our_key, parts)) for our_key, parts in mapped)
    return out, unmapped
