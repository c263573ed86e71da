"""Creating A1111 hypernetworks: the file's keys and layer layout, initialisation, and what the loader rebuilds."""
from __future__ import annotations

import pytest
import torch
from torch import nn

from modules import hypernetworks
from modules.shared_cmd_options import cmd_opts


@pytest.fixture(autouse=True)
def folder(tmp_path, monkeypatch):
    monkeypatch.setattr(cmd_opts, "hypernetwork_dir", str(tmp_path))
    monkeypatch.setattr(hypernetworks, "hypernetworks", {})


def create(tmp_path, name="hn", **kwargs):
    args = {"enable_sizes": [64, 32], "overwrite_old": False}
    args.update(kwargs)
    return hypernetworks.create_hypernetwork(name, **args)


def test_file_has_a1111_keys_and_loads_with_the_loader(tmp_path):
    torch.manual_seed(0)
    filename = create(tmp_path, layer_structure="1, 2, 1", activation_func="relu", weight_init="KaimingUniform",
                      add_layer_norm=True)
    data = torch.load(filename, weights_only=True)
    assert {32, 64} <= set(data)
    assert {"layer_structure", "activation_func", "is_layer_norm", "weight_initialization", "use_dropout",
            "dropout_structure", "activate_output", "last_layer_dropout", "name", "step", "sd_checkpoint",
            "sd_checkpoint_name"} <= set(data)
    assert data["layer_structure"] == [1.0, 2.0, 1.0] and data["activation_func"] == "relu"
    assert data["is_layer_norm"] is True and data["step"] == 0 and data["name"] == "hn"
    k, v = data[64]
    # Linear 0, ReLU 1, LayerNorm 2, Linear 3, LayerNorm 4 (no activation after the last Linear)
    assert sorted(k) == ["linear.0.bias", "linear.0.weight", "linear.2.bias", "linear.2.weight", "linear.3.bias",
                         "linear.3.weight", "linear.4.bias", "linear.4.weight"]
    assert k["linear.0.weight"].shape == (128, 64) and k["linear.3.weight"].shape == (64, 128)
    assert torch.equal(k["linear.0.bias"], torch.zeros(128)) and not torch.equal(k["linear.0.weight"], v["linear.0.weight"])
    loaded = hypernetworks.Hypernetwork("hn", filename)
    layers = list(loaded.layers[64][0].linear)
    assert [type(layer) for layer in layers] == [nn.Linear, nn.ReLU, nn.LayerNorm, nn.Linear, nn.LayerNorm]
    assert torch.equal(loaded.layers[64][0].state_dict()["linear.3.weight"], k["linear.3.weight"])


def test_normal_init_is_small_and_the_module_starts_near_identity(tmp_path):
    torch.manual_seed(0)
    filename = create(tmp_path, enable_sizes=[64], weight_init="Normal")
    weight = torch.load(filename, weights_only=True)[64][0]["linear.0.weight"]
    assert 0.005 < float(weight.std()) < 0.015
    module = hypernetworks.Hypernetwork("hn", filename).layers[64][0]
    x = torch.randn(2, 5, 64)
    assert torch.allclose(module(x), x, atol=0.05)


def test_dropout_structure_is_saved_and_rebuilt_for_training(tmp_path):
    filename = create(tmp_path, enable_sizes=[64], layer_structure="1, 2, 2, 1", activation_func="tanh",
                      use_dropout=True, dropout_structure="0, 0.1, 0.2, 0")
    data = torch.load(filename, weights_only=True)
    assert data["use_dropout"] is True and data["dropout_structure"] == [0.0, 0.1, 0.2, 0.0]
    assert data["last_layer_dropout"] is True
    module = hypernetworks.Hypernetwork("hn", filename).layers[64][0]
    dropouts = [layer.p for layer in module.linear if isinstance(layer, nn.Dropout)]
    assert dropouts == [0.1, 0.2]
    assert sorted({key.split(".")[1] for key in data[64][0]}, key=int) == ["0", "3", "6"]  # Linear, Tanh, Dropout each


@pytest.mark.parametrize("kwargs,message", [
    ({"enable_sizes": []}, "at least one module size"),
    ({"layer_structure": "2, 1"}, "must start and end with 1"),
    ({"layer_structure": "1, x, 1"}, "numbers separated by commas"),
    ({"activation_func": "wiggle"}, "unknown hypernetwork activation function 'wiggle'"),
    ({"weight_init": "Zeros"}, "Unknown weight initialization 'Zeros'"),
    ({"use_dropout": True, "dropout_structure": "0, 0.5"}, "one value per layer structure entry"),
    ({"use_dropout": True, "dropout_structure": "0, 1.5, 0"}, "from 0 to below 1"),
])
def test_bad_settings_are_clear_errors(tmp_path, kwargs, message):
    with pytest.raises(ValueError, match=message):
        create(tmp_path, **kwargs)
    assert list(tmp_path.iterdir()) == []


def test_name_rules_and_overwrite(tmp_path):
    with pytest.raises(ValueError, match="Name cannot be empty"):
        create(tmp_path, name="***")
    first = create(tmp_path, name="a/b*c")
    assert first.endswith("abc.pt") and hypernetworks.hypernetworks == {"abc": first}
    with pytest.raises(ValueError, match="abc.pt already exists"):
        create(tmp_path, name="abc")
    assert create(tmp_path, name="abc", overwrite_old=True) == first
