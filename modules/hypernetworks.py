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
from contextlib import contextmanager

import torch
import torch.nn.functional as F
from torch import nn

from modules.extra_networks import ExtraNetwork, ExtraNetworkParams
from modules.shared_cmd_options import cmd_opts
from modules.textual_inversion import clean_name

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


WEIGHT_INITS = ("Normal", "KaimingUniform", "KaimingNormal", "XavierUniform", "XavierNormal")
INFO_DEFAULTS = {"layer_structure": [1, 2, 1], "activation_func": "linear", "is_layer_norm": False,
                 "weight_initialization": "Normal", "use_dropout": False, "dropout_structure": None,
                 "activate_output": False, "last_layer_dropout": False, "name": None, "step": 0,
                 "sd_checkpoint": None, "sd_checkpoint_name": None}


def activation_class(activation: str | None) -> type[nn.Module] | None:
    """The activation layer of an A1111 name; None for "linear" (no layer)."""
    name = (activation or "linear").lower()
    if name == "linear":
        return None
    if name not in ACTIVATIONS:
        raise ValueError(f"unknown hypernetwork activation function {activation!r}")
    return ACTIVATIONS[name]


def build_mlp(dims: list[int], activation: str | None, layer_norm: bool, dropout: list[float] | None,
              activate_output: bool) -> nn.Sequential:
    """A1111's layer order, which its `linear.N` keys count: per step Linear, activation (not after the last Linear
    unless activate_output), LayerNorm, Dropout (where the dropout structure gives a probability above 0)."""
    act = activation_class(activation)
    layers: list[nn.Module] = []
    for i in range(len(dims) - 1):
        layers.append(nn.Linear(dims[i], dims[i + 1]))
        if act is not None and (i < len(dims) - 2 or activate_output):
            layers.append(act())
        if layer_norm:
            layers.append(nn.LayerNorm(dims[i + 1]))
        if dropout and dropout[i + 1] > 0:
            layers.append(nn.Dropout(p=dropout[i + 1]))
    return nn.Sequential(*layers)


def dropout_structure_of(info: dict) -> list[float] | None:
    """The per-layer dropout of a file: its `dropout_structure`, else A1111's rule for older files
    (0.3 after each hidden layer, the last one only with last_layer_dropout)."""
    if info.get("dropout_structure"):
        return [float(p) for p in info["dropout_structure"]]
    if not info.get("use_dropout"):
        return None
    count = len(info.get("layer_structure") or INFO_DEFAULTS["layer_structure"])
    return [0.0] + [0.3] * (count - 3) + [0.3 if info.get("last_layer_dropout") else 0.0] + [0.0]


class HypernetworkModule(nn.Module):
    """x + multiplier * mlp(x). The MLP is rebuilt from A1111's `linear.N.*` state dict: 2-D weights are Linear layers,
    1-D weights LayerNorms, filled in key order; the activation follows every Linear but the last (unless
    activate_output); dropout (active in training only) follows the dropout structure."""

    def __init__(self, state: dict[str, torch.Tensor], activation: str | None, activate_output: bool,
                 dropout: list[float] | None = None):
        super().__init__()
        params: dict[int, dict[str, torch.Tensor]] = {}
        for key, tensor in state.items():
            _, index, param = key.split(".")
            params.setdefault(int(index), {})[param] = tensor
        groups = [params[index] for index in sorted(params)]
        linears = [g["weight"] for g in groups if g["weight"].ndim == 2]
        if not linears:
            raise ValueError("a hypernetwork layer without Linear weights")
        dims = [linears[0].shape[1]] + [w.shape[0] for w in linears]
        layer_norm = any(g["weight"].ndim == 1 for g in groups)
        if dropout is not None and len(dropout) != len(dims):
            dropout = None  # a structure for other layers: inference never uses it, and training needs none
        self.linear = build_mlp(dims, activation, layer_norm, dropout, activate_output)
        with_weights = [layer for layer in self.linear if isinstance(layer, (nn.Linear, nn.LayerNorm))]
        if len(with_weights) != len(groups):
            raise ValueError(f"hypernetwork layer has {len(groups)} weight groups, expected {len(with_weights)}")
        for layer, group in zip(with_weights, groups):
            layer.load_state_dict(group)
        self.multiplier = 1.0

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # The MLP runs in its own dtype: a trained one keeps float32 weights under a half-precision UNet.
        dtype = self.linear[0].weight.dtype
        return x + (self.linear(x.to(dtype)) * self.multiplier).to(x.dtype)


class Hypernetwork:
    def __init__(self, name: str, filename: str):
        self.name = name
        self.filename = filename
        self.mtime = os.path.getmtime(filename)
        self.multiplier = 1.0
        data = torch.load(filename, map_location="cpu", weights_only=True)
        if not isinstance(data, dict):
            raise ValueError(f"{filename} is not an A1111 hypernetwork")
        self.info = {key: value for key, value in data.items() if not isinstance(key, int)}
        activation, activate_output = data.get("activation_func"), bool(data.get("activate_output", False))
        dropout = dropout_structure_of(self.info)
        self.layer_structure = data.get("layer_structure")
        self.step = int(data.get("step") or 0)
        self.layers: dict[int, tuple[HypernetworkModule, HypernetworkModule]] = {}
        for size, pair in data.items():
            if isinstance(size, int):
                k, v = (HypernetworkModule(sd, activation, activate_output, dropout).eval().requires_grad_(False)
                        for sd in pair)
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

    def modules(self) -> list[HypernetworkModule]:
        return [module for pair in self.layers.values() for module in pair]

    def parameters(self) -> list[torch.Tensor]:
        return [param for module in self.modules() for param in module.parameters()]

    def train_mode(self) -> None:
        for module in self.modules():
            module.train().requires_grad_(True)

    def eval_mode(self) -> None:
        for module in self.modules():
            module.eval().requires_grad_(False)

    def save(self, filename: str, **info) -> None:
        """Write A1111's format (context width -> (k, v) state dicts, plus the file's settings updated with `info`),
        atomically."""
        data: dict = {size: tuple({k: t.detach().to("cpu").clone() for k, t in module.state_dict().items()} for module in pair)
                      for size, pair in self.layers.items()}
        data.update({**self.info, "step": self.step, **info})
        tmp = f"{filename}.tmp"
        torch.save(data, tmp)
        os.replace(tmp, filename)


def parse_structure(text, what: str) -> list[float]:
    """"1, 2, 1" -> [1.0, 2.0, 1.0]; ValueError naming `what` otherwise."""
    if isinstance(text, (list, tuple)):
        return [float(x) for x in text]
    try:
        return [float(x.strip()) for x in str(text).split(",")]
    except ValueError:
        raise ValueError(f"{what} must be numbers separated by commas, like \"1, 2, 1\"; got {text!r}") from None


def init_weights(mlp: nn.Sequential, weight_init: str, activation: str | None) -> None:
    """A1111's initialisation: Normal(0, 0.01) weights (always for LayerNorm), or Xavier/Kaiming; zero biases."""
    nonlinearity = "leaky_relu" if (activation or "").lower() == "leakyrelu" else "relu"
    for layer in mlp:
        if not isinstance(layer, (nn.Linear, nn.LayerNorm)):
            continue
        w = layer.weight.data
        if weight_init == "Normal" or isinstance(layer, nn.LayerNorm):
            nn.init.normal_(w, mean=0.0, std=0.01)
        elif weight_init == "XavierUniform":
            nn.init.xavier_uniform_(w)
        elif weight_init == "XavierNormal":
            nn.init.xavier_normal_(w)
        elif weight_init == "KaimingUniform":
            nn.init.kaiming_uniform_(w, nonlinearity=nonlinearity)
        elif weight_init == "KaimingNormal":
            nn.init.kaiming_normal_(w, nonlinearity=nonlinearity)
        else:
            raise ValueError(f"Unknown weight initialization {weight_init!r}: one of {', '.join(WEIGHT_INITS)}")
        nn.init.zeros_(layer.bias.data)


def create_hypernetwork(name: str, enable_sizes, overwrite_old: bool, layer_structure="1, 2, 1",
                        activation_func: str | None = "linear", weight_init: str | None = "Normal",
                        add_layer_norm: bool = False, use_dropout: bool = False, dropout_structure="0, 0, 0") -> str:
    """Write a new A1111 hypernetwork into the hypernetworks folder (--hypernetwork-dir) and list it; its file."""
    name = clean_name(name)
    sizes = sorted({int(size) for size in enable_sizes or []})
    if not sizes or any(size <= 0 for size in sizes):
        raise ValueError("Choose at least one module size (768, 320, 640, 1024, 1280)")
    structure = parse_structure(layer_structure or "1, 2, 1", "Layer structure")
    if len(structure) < 2 or structure[0] != 1 or structure[-1] != 1:
        raise ValueError(f"Layer structure must start and end with 1, like \"1, 2, 1\"; got {structure}")
    if any(x <= 0 for x in structure):
        raise ValueError(f"Layer structure multipliers must be above 0; got {structure}")
    activation = activation_func or "linear"
    activation_class(activation)
    weight_init = weight_init or "Normal"
    if weight_init not in WEIGHT_INITS:
        raise ValueError(f"Unknown weight initialization {weight_init!r}: one of {', '.join(WEIGHT_INITS)}")
    dropout = parse_structure(dropout_structure, "Dropout structure") if use_dropout and dropout_structure else \
        [0.0] * len(structure)
    if len(dropout) != len(structure):
        raise ValueError(f"Dropout structure needs one value per layer structure entry ({len(structure)}); got {dropout}")
    if any(not 0 <= p < 1 for p in dropout) or dropout[0] != 0:
        raise ValueError(f"Dropout probabilities must be from 0 to below 1, the first 0; got {dropout}")
    folder = cmd_opts.hypernetwork_dir
    os.makedirs(folder, exist_ok=True)
    filename = os.path.join(folder, f"{name}.pt")
    if not overwrite_old and os.path.exists(filename):
        raise ValueError(f"Hypernetwork file {name}.pt already exists in {folder}: choose another name or tick Overwrite")
    data: dict = {}
    for size in sizes:
        pair = []
        for _ in "kv":
            mlp = build_mlp([int(size * x) for x in structure], activation, add_layer_norm, dropout, False)
            init_weights(mlp, weight_init, activation)
            pair.append({f"linear.{key}": t.detach().clone() for key, t in mlp.state_dict().items()})
        data[size] = tuple(pair)
    data.update({**INFO_DEFAULTS, "name": name, "layer_structure": structure, "activation_func": activation,
                 "is_layer_norm": bool(add_layer_norm), "weight_initialization": weight_init,
                 "use_dropout": bool(use_dropout), "dropout_structure": dropout,
                 "last_layer_dropout": len(dropout) > 1 and dropout[-2] != 0})
    tmp = f"{filename}.tmp"
    torch.save(data, tmp)
    os.replace(tmp, filename)
    list_hypernetworks()
    return filename


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
    """Install the hypernetwork processor on the model's UNet, or put its original processors back for none.
    A hypernetwork being trained on the model comes first in every job (its previews), in its own dtype."""
    unet = model.unet
    training = model.extra.get("training_hypernetwork")
    signature = tuple((h.filename, h.mtime, h.multiplier) for h in hypernets) + ((("training", id(training)),) if training else ())
    if model.extra.get("hypernetworks", ()) == signature:
        return
    if not signature:
        unet.set_attn_processor(model.extra.pop("attn_processors"))
        model.extra.pop("hypernetworks")
        return
    model.extra.setdefault("attn_processors", dict(unet.attn_processors))
    parameter = next(unet.parameters())
    cast = [h.to(parameter.device, parameter.dtype) for h in hypernets]
    unet.set_attn_processor(HypernetworkAttnProcessor(([training] if training else []) + cast))
    model.extra["hypernetworks"] = signature


@contextmanager
def training_hypernetwork(model, hypernet: Hypernetwork):
    """Install `hypernet` (trainable, on the model's device) on the model for the duration; the originals after."""
    model.extra["training_hypernetwork"] = hypernet
    try:
        set_model_hypernetworks(model, [])
        yield hypernet
    finally:
        model.extra.pop("training_hypernetwork", None)
        set_model_hypernetworks(model, [])


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
