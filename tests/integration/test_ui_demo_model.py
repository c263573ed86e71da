"""--demo: a tiny random SD1 checkpoint written in the original layout, loaded like any real checkpoint."""
from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import load_file

from modules import demo_model, sd_models, ui_txt2img
from modules.shared_options import opts
from tests.integration.engine_helpers import start_engine, txt2img


@pytest.fixture(scope="module")
def demo_dir(tmp_path_factory):
    models = tmp_path_factory.mktemp("demo-models")
    demo_model.ensure_demo_checkpoint(str(models / "Stable-diffusion" / demo_model.DEMO_FILENAME))
    return models


def test_written_once_in_the_sd1_original_layout(demo_dir):
    path = demo_dir / "Stable-diffusion" / demo_model.DEMO_FILENAME
    sd = load_file(str(path))
    prefixes = {key.split(".")[0] for key in sd}
    assert prefixes == {"model", "first_stage_model", "cond_stage_model"}
    assert any(k.startswith("model.diffusion_model.input_blocks.1.1.transformer_blocks.0.attn2.") for k in sd)
    assert "cond_stage_model.transformer.text_model.encoder.layers.11.mlp.fc2.weight" in sd  # 12 layers: any clip skip
    stamp = os.stat(path).st_mtime_ns
    assert demo_model.ensure_demo_checkpoint(str(path)) == str(path)
    assert os.stat(path).st_mtime_ns == stamp  # an existing demo checkpoint is kept
    assert sorted(p.name for p in path.parent.iterdir()) == [demo_model.DEMO_FILENAME]


def test_same_weights_every_time(demo_dir, tmp_path):
    again = demo_model.ensure_demo_checkpoint(str(tmp_path / demo_model.DEMO_FILENAME))
    first = str(demo_dir / "Stable-diffusion" / demo_model.DEMO_FILENAME)
    assert Path(again).read_bytes() == Path(first).read_bytes()


def test_loads_through_the_model_manager_and_generates_noise_with_a_notice(demo_dir, tmp_path):
    manager = start_engine(demo_dir, tmp_path)
    opts.set("samples_save", False)
    [title] = sd_models.checkpoint_registry.titles()
    assert demo_model.is_demo_checkpoint(title)
    model = manager.get(sd_models.get_closet_checkpoint_match(title))
    assert model.family.name == "v1"
    assert model.text_encoders["text_encoder"].config.num_hidden_layers == demo_model.TEXT_LAYERS
    assert not any(t.is_meta for t in model.unet.parameters())
    result = txt2img(title, width=64, height=64, steps=2, override_settings={"CLIP_stop_at_last_layers": 12})
    image = np.asarray(result.images[0])
    assert image.shape == (64, 64, 3) and image.std() > 0
    assert "Clip skip: 12" in result.info and "Model: atelier-demo-sd1" in result.info
    assert demo_model.DEMO_NOTICE in ui_txt2img.checkpoint_notice_html()
    gallery, _, _, log_html = ui_txt2img.txt2img(dict(prompt="noise", sampler_name="Euler", scheduler="Automatic", steps=2,
                                                      width=64, height=64, seed=5))
    assert len(gallery) == 1 and f"<div class='demo-notice'>{demo_model.DEMO_NOTICE}</div>" in log_html


@pytest.mark.parametrize("name, expected", [
    ("atelier-demo-sd1.safetensors [691c59832c]", True),
    ("/data/models/Stable-diffusion/atelier-demo-sd1.safetensors", True),
    ("demo/atelier-demo-sd1.safetensors", True),
    ("v1-5-pruned-emaonly.safetensors [6ce0161689]", False),
    (None, False),
])
def test_is_demo_checkpoint(name, expected):
    assert demo_model.is_demo_checkpoint(name) is expected


def test_state_dict_is_deterministic_and_leaves_the_global_rng_alone():
    torch.manual_seed(123)
    before = torch.rand(1)
    torch.manual_seed(123)
    a = demo_model.demo_state_dict()
    after = torch.rand(1)
    b = demo_model.demo_state_dict()
    assert torch.equal(before, after)
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
