"""A1111 hypernetworks, `<hypernet:name:weight>`: small MLPs that transform an attention's context before k and v.

A file maps a context width to two MLPs, one for the keys and one for the values. Every UNet attention whose context
has a width the file names (cross-attention: the text width; self-attention: the layer's own width) computes
k = to_k(c + w * mlp_k(c)) and v = to_v(c + w * mlp_v(c)). This runs in our own attention processor, installed with
diffusers' public `set_attn_processor` and replaced by the model's original processors when no hypernetwork is asked for.
"""
from __future__ import annotations

import inspect
import logging
import os

import torch
import torch.nn.functional as F
from torch import nn

from modules.extra_networks import ExtraNetwork, ExtraNetworkParams
from modules.shared_cmd_options import cmd_opts

log = logging.getLogger(__name__)
HYPERNETWORK_EXTENSIONS = (".pt",)
# A1111's names: its own few, then every torch activation class by lowercase name ("swish" is Hardswish there).
ACTIVATIONS: dict[str, type[nn.Module]] = {
    name.lower(): cls for name, cls in inspect.getmembers(nn.modules.activation, inspect.isclass)
    if cls.__module__ == "torch.nn.modules.activation"
}
ACTIVATIONS.update({"relu": nn.ReLU, "leakyrelu": nn.LeakyReLU, "elu": nn.ELU, "swish": nn.Hardswish, "tanh": nn.Tanh,
                    "sigmoid": nn.Sigmoid})

hypernetworks: dict[str, str] = {}  # name -> file, A1111's shared.hypernetworks
_loaded: dict[tuple[str, float], Hypernetwork] = {}


class HypernetworkModule(nn.Module):
    """x + multiplier * mlp(x). The MLP is rebuilt from A1111's `linear.N.*` state dict: 2-D weights are Linear layers,
    1-D weights LayerNorms; the activation follows every Linear but the last (unless activate_output); dropout layers
    only take indices."""

    def __init__(self, state: dict[str, torch.Tensor], activation: str | None, activate_output: bool):
        super().__init__()
        params: dict[int, dict[str, torch.Tensor]] = {}
        for key, tensor in state.items():
            _, index, param = key.split(".")
            params.setdefault(int(index), {})[param] = tensor
        act_name = (activation or "linear").lower()
        act = None if act_name == "linear" else ACTIVATIONS.get(act_name)
        if act_name != "linear" and act is None:
            raise ValueError(f"unknown hypernetwork activation function {activation!r}")
        linear_count = sum(1 for p in params.values() if p["weight"].ndim == 2)
        layers, seen = [], 0
        for index in sorted(params):
            weight, bias = params[index]["weight"], params[index].get("bias")
            if weight.ndim == 2:
                layer = nn.Linear(weight.shape[1], weight.shape[0], bias=bias is not None)
                seen += 1
            else:
                layer = nn.LayerNorm(weight.shape[0])
            layer.load_state_dict(params[index])
            layers.append(layer)
            if weight.ndim == 2 and act is not None and (seen < linear_count or activate_output):
                layers.append(act())
        self.linear = nn.Sequential(*layers)
        self.multiplier = 1.0

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.linear(x) * self.multiplier


class Hypernetwork:
    def __init__(self, name: str, filename: str):
        self.name = name
        self.filename = filename
        self.mtime = os.path.getmtime(filename)
        self.multiplier = 1.0
        data = torch.load(filename, map_location="cpu", weights_only=True)
        if not isinstance(data, dict):
            raise ValueError(f"{filename} is not an A1111 hypernetwork")
        activation, activate_output = data.get("activation_func"), bool(data.get("activate_output", False))
        self.layer_structure = data.get("layer_structure")
        self.layers: dict[int, tuple[HypernetworkModule, HypernetworkModule]] = {}
        for size, pair in data.items():
            if isinstance(size, int):
                k, v = (HypernetworkModule(sd, activation, activate_output).eval().requires_grad_(False) for sd in pair)
                self.layers[size] = (k, v)
        if not self.layers:
            raise ValueError(f"{filename} holds no hypernetwork layers")

    def set_multiplier(self, multiplier: float) -> None:
        self.multiplier = multiplier
        for pair in self.layers.values():
            for module in pair:
                module.multiplier = multiplier

    def to(self, device, dtype) -> Hypernetwork:
        for pair in self.layers.values():
            for module in pair:
                module.to(device, dtype)
        return self


def apply_hypernetworks(hypernets: list[Hypernetwork], context: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """The contexts the keys and the values are computed from, after every hypernetwork with this context width."""
    context_k = context_v = context
    for hypernet in hypernets:
        pair = hypernet.layers.get(context.shape[-1])
        if pair is not None:
            context_k, context_v = pair[0](context_k), pair[1](context_v)
    return context_k, context_v


class HypernetworkAttnProcessor:
    """diffusers' scaled-dot-product attention, with the hypernetworks applied to the context of k and v."""

    def __init__(self, hypernets: list[Hypernetwork]):
        self.hypernets = hypernets

    def __call__(self, attn, hidden_states: torch.Tensor, encoder_hidden_states: torch.Tensor | None = None,
                 attention_mask: torch.Tensor | None = None, temb: torch.Tensor | None = None, *args,
                 **kwargs) -> torch.Tensor:
        residual = hidden_states
        if attn.spatial_norm is not None:
            hidden_states = attn.spatial_norm(hidden_states, temb)
        input_ndim = hidden_states.ndim
        if input_ndim == 4:
            batch, channel, height, width = hidden_states.shape
            hidden_states = hidden_states.view(batch, channel, height * width).transpose(1, 2)
        batch, sequence_length, _ = (hidden_states if encoder_hidden_states is None else encoder_hidden_states).shape
        if attention_mask is not None:
            attention_mask = attn.prepare_attention_mask(attention_mask, sequence_length, batch)
            attention_mask = attention_mask.view(batch, attn.heads, -1, attention_mask.shape[-1])
        if attn.group_norm is not None:
            hidden_states = attn.group_norm(hidden_states.transpose(1, 2)).transpose(1, 2)
        query = attn.to_q(hidden_states)
        if encoder_hidden_states is None:
            encoder_hidden_states = hidden_states
        elif attn.norm_cross:
            encoder_hidden_states = attn.norm_encoder_hidden_states(encoder_hidden_states)
        context_k, context_v = apply_hypernetworks(self.hypernets, encoder_hidden_states)
        key, value = attn.to_k(context_k), attn.to_v(context_v)
        head_dim = key.shape[-1] // attn.heads
        query, key, value = (t.view(batch, -1, attn.heads, head_dim).transpose(1, 2) for t in (query, key, value))
        if attn.norm_q is not None:
            query = attn.norm_q(query)
        if attn.norm_k is not None:
            key = attn.norm_k(key)
        hidden_states = F.scaled_dot_product_attention(query, key, value, attn_mask=attention_mask, dropout_p=0.0,
                                                       is_causal=False)
        hidden_states = hidden_states.transpose(1, 2).reshape(batch, -1, attn.heads * head_dim).to(query.dtype)
        hidden_states = attn.to_out[1](attn.to_out[0](hidden_states))
        if input_ndim == 4:
            hidden_states = hidden_states.transpose(-1, -2).reshape(batch, channel, height, width)
        if attn.residual_connection:
            hidden_states = hidden_states + residual
        return hidden_states / attn.rescale_output_factor


def list_hypernetworks(path: str | None = None) -> dict[str, str]:
    """Refill `hypernetworks` from the hypernetworks folder (--hypernetwork-dir), recursively."""
    root = path or cmd_opts.hypernetwork_dir
    hypernetworks.clear()
    if root and os.path.isdir(root):
        for dirpath, _, files in sorted(os.walk(root, followlinks=True)):
            for fn in sorted(files, key=str.lower):
                if fn.lower().endswith(HYPERNETWORK_EXTENSIONS):
                    hypernetworks.setdefault(os.path.splitext(fn)[0], os.path.join(dirpath, fn))
    return hypernetworks


def load_hypernetwork(name: str) -> Hypernetwork | None:
    """The named hypernetwork (parsed once per file version); None when no file has that name."""
    if name not in hypernetworks:
        list_hypernetworks()
    filename = hypernetworks.get(name)
    if filename is None:
        return None
    key = (filename, os.path.getmtime(filename))
    if key not in _loaded:
        _loaded[key] = Hypernetwork(name, filename)
    return _loaded[key]


def set_model_hypernetworks(model, hypernets: list[Hypernetwork]) -> None:
    """Install the hypernetwork processor on the model's UNet, or put its original processors back for none."""
    unet = model.unet
    signature = tuple((h.filename, h.mtime, h.multiplier) for h in hypernets)
    if model.extra.get("hypernetworks", ()) == signature:
        return
    if not hypernets:
        unet.set_attn_processor(model.extra.pop("attn_processors"))
        model.extra.pop("hypernetworks")
        return
    model.extra.setdefault("attn_processors", dict(unet.attn_processors))
    parameter = next(unet.parameters())
    unet.set_attn_processor(HypernetworkAttnProcessor([h.to(parameter.device, parameter.dtype) for h in hypernets]))
    model.extra["hypernetworks"] = signature


class ExtraNetworkHypernet(ExtraNetwork):
    def __init__(self):
        super().__init__("hypernet")

    def activate(self, p, params_list: list[ExtraNetworkParams]) -> None:
        hypernets, missing = [], []
        for params in params_list:
            name = params.items[0]
            try:
                multiplier = float(params.items[1]) if len(params.items) > 1 else 1.0
            except ValueError:
                p.comment(f"<hypernet:{':'.join(params.items)}>: the weight must be a number")
                continue
            hypernet = load_hypernetwork(name)
            if hypernet is None:
                missing.append(name)
                continue
            hypernet.set_multiplier(multiplier)
            hypernets.append(hypernet)
        if missing:
            message = f"Hypernetwork not found: {', '.join(missing)}"
            log.warning(message)
            p.comment(message)
        set_model_hypernetworks(p.sd_model, hypernets)

    def deactivate(self, p) -> None:
        """The processor stays until a job asks for other hypernetworks (or none), like merged LoRA weights."""
