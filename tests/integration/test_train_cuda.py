"""Training on CUDA: fp16 weights, autocast with a GradScaler; run on the accelerator machine, skipped without CUDA."""
from __future__ import annotations

import pytest
import torch

from modules import (
    devices,
    hypernetwork_training,
    hypernetworks,
    sd_models,
    textual_inversion,
    textual_inversion_training as tit,
)
from modules.shared_cmd_options import cmd_opts
from tests.integration.test_train_embedding import (
    SD1,
    SDXL,
    changed,
    model_of,
    start_training_engine,
    weights,
    write_dataset,
)

pytestmark = pytest.mark.cuda


@pytest.fixture()
def cuda_engine(monkeypatch, tiny_models_dir, tmp_path):
    start_training_engine(monkeypatch, tiny_models_dir, tmp_path)
    sd_models.model_manager = sd_models.ModelManager(devices.plan_from_flags(cmd_opts), tmp_path / "cache", limit=3)
    return sd_models.model_manager


@pytest.mark.parametrize("checkpoint", [SD1, SDXL])
def test_embedding_trains_in_mixed_precision_with_frozen_half_weights(cuda_engine, tmp_path, checkpoint):
    model = model_of(checkpoint)
    assert model.device.type == "cuda" and next(model.unet.parameters()).dtype == torch.float16
    filename = textual_inversion.create_embedding("gpu", 1, False, init_text="cube", model=model)
    start = textual_inversion.load_embedding_file(filename).vec
    before = weights(model)
    trained, _, message = tit.train_embedding("gpu", learn_rate="0.05", data_root=str(write_dataset(tmp_path / "d")),
                                              training_width=64, training_height=64, steps=3, create_image_every=0,
                                              save_embedding_every=0, template_filename="subject.txt", seed=1)
    assert changed(before, weights(model)) == [] and "finished at 3 steps" in message
    vectors = trained.vec if isinstance(trained.vec, dict) else {"": trained.vec}
    starts = start if isinstance(start, dict) else {"": start}
    for key, vec in vectors.items():
        assert vec.dtype == torch.float32 and torch.isfinite(vec).all() and not torch.equal(vec, starts[key])


def test_hypernetwork_trains_in_float32_under_a_half_unet(cuda_engine, tmp_path):
    model = model_of(SD1)
    hypernetworks.create_hypernetwork("gpu hn", [64], False)
    before = weights(model)
    hypernet, filename, _ = hypernetwork_training.train_hypernetwork(
        "gpu hn", learn_rate="0.001", data_root=str(write_dataset(tmp_path / "d")), training_width=64,
        training_height=64, steps=2, create_image_every=0, save_hypernetwork_every=0,
        template_filename="hypernetwork.txt", seed=1)
    assert changed(before, weights(model)) == []
    assert all(p.dtype == torch.float32 and torch.isfinite(p).all() for p in hypernet.parameters())
    assert torch.load(filename, weights_only=True)["step"] == 2
