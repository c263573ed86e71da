"""Hypernetwork training on the tiny SD1 checkpoint: only the hypernetwork changes; the UNet gets its processors back."""
from __future__ import annotations

import os

import pytest
import torch

from modules import hypernetwork_training, hypernetworks, textual_inversion_training as tit
from modules.shared_state import state
from tests.integration.test_train_embedding import (  # noqa: F401  (engine and dataset are fixtures)
    SD1,
    changed,
    dataset,
    engine,
    grad_flags,
    model_of,
    weights,
)


def train(name, data, **kwargs):
    args = {"learn_rate": "0.001", "batch_size": 2, "data_root": str(data), "training_width": 64, "training_height": 64,
            "steps": 4, "create_image_every": 0, "save_hypernetwork_every": 2, "template_filename": "hypernetwork.txt",
            "seed": 3}
    args.update(kwargs)
    return hypernetwork_training.train_hypernetwork(name, **args)


def test_training_changes_only_the_hypernetwork(engine, dataset):
    model = model_of(SD1)
    # 64: the tiny model's text width (cross-attention context); 32: its first block's width (self-attention)
    filename = hypernetworks.create_hypernetwork("tiny hn", [64, 32], False, activation_func="relu",
                                                 add_layer_norm=True, use_dropout=True, dropout_structure="0, 0.1, 0")
    start = torch.load(filename, weights_only=True)
    processors = dict(model.unet.attn_processors)
    before, flags = weights(model), grad_flags(model)
    hypernet, final, message = train("tiny hn", dataset)
    assert changed(before, weights(model)) == [] and grad_flags(model) == flags == set()
    assert dict(model.unet.attn_processors) == processors and "hypernetworks" not in model.extra
    assert final == filename and "finished at 4 steps" in message and state.job == ""
    end = torch.load(filename, weights_only=True)
    assert end["step"] == 4 and end["sd_checkpoint_name"] == model.sd_checkpoint_info.model_name
    assert end["dropout_structure"] == [0.0, 0.1, 0.0] and end["activation_func"] == "relu"
    for size in (64, 32):
        for k_or_v in (0, 1):
            assert start[size][k_or_v].keys() == end[size][k_or_v].keys()
            assert any(not torch.equal(start[size][k_or_v][key], end[size][k_or_v][key]) for key in start[size][k_or_v])
    assert not any(p.requires_grad for p in hypernet.parameters())
    loaded = hypernetworks.load_hypernetwork("tiny hn")
    assert loaded.step == 4
    assert torch.equal(loaded.layers[64][1].state_dict()["linear.0.weight"], end[64][1]["linear.0.weight"])
    copies = os.path.join(tit.log_folder("textual_inversion", "tiny hn"), "hypernetworks")
    assert sorted(os.listdir(copies)) == ["tiny hn-2.pt", "tiny hn-4.pt"]
    assert torch.load(os.path.join(copies, "tiny hn-2.pt"), weights_only=True)["step"] == 2


def test_hypernetwork_acts_during_training_and_in_previews(engine, dataset, monkeypatch):
    model_of(SD1)
    hypernetworks.create_hypernetwork("seen", [64], False)
    modes = []  # per call of the trained k-MLP: was it in a preview (inference mode)?
    original_init = hypernetworks.Hypernetwork.__init__

    def tracked_init(self, name, filename):
        original_init(self, name, filename)
        self.layers[64][0].register_forward_hook(lambda *_: modes.append(torch.is_inference_mode_enabled()))

    monkeypatch.setattr(hypernetworks.Hypernetwork, "__init__", tracked_init)
    train("seen", dataset, steps=1, save_hypernetwork_every=0, create_image_every=1, preview_from_txt2img=True,
          preview_prompt="x", preview_steps=1, preview_width=64, preview_height=64, preview_sampler_name="Euler")
    assert False in modes and True in modes
    assert os.listdir(os.path.join(tit.log_folder("textual_inversion", "seen"), "images")) == ["seen-1.png"]


def test_unknown_hypernetwork_is_named(engine, dataset):
    with pytest.raises(ValueError, match="Hypernetwork nope not found"):
        train("nope", dataset)
