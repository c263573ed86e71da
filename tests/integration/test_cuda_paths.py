"""The CUDA paths (half precision, GPU generators): run on the accelerator machine; skipped without CUDA."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from modules import devices, sd_models
from modules.shared_cmd_options import cmd_opts
from tests.integration.engine_helpers import pixels, start_engine, txt2img

pytestmark = pytest.mark.cuda


@pytest.fixture()
def cuda_engine(tiny_models_dir, tmp_path):
    start_engine(tiny_models_dir, tmp_path)
    sd_models.model_manager = sd_models.ModelManager(devices.plan_from_flags(cmd_opts), tmp_path / "cache", limit=3)
    return sd_models.model_manager


@pytest.mark.parametrize("checkpoint", ["tiny_sd1", "tiny_sdxl"])
def test_half_precision_on_cuda_reproduces_and_is_finite(cuda_engine, checkpoint):
    a = txt2img(checkpoint, sampler_name="Euler a")
    b = txt2img(checkpoint, sampler_name="Euler a")
    model = cuda_engine.current
    assert model.device.type == "cuda" and next(model.unet.parameters()).dtype == torch.float16
    assert np.array_equal(pixels(a.images[0]), pixels(b.images[0]))
    assert pixels(a.images[0]).std() > 0


def test_refiner_switch_on_cuda(cuda_engine):
    result = txt2img("tiny_sdxl", refiner_checkpoint="tiny_sdxl_refiner", refiner_switch_at=0.5, steps=6)
    assert "Refiner: tiny_sdxl_refiner" in result.info and pixels(result.images[0]).std() > 0


def test_no_half_keeps_float32(tiny_models_dir, tmp_path, monkeypatch):
    start_engine(tiny_models_dir, tmp_path)
    monkeypatch.setattr(cmd_opts, "no_half", True)
    sd_models.model_manager = sd_models.ModelManager(devices.plan_from_flags(cmd_opts), tmp_path / "cache")
    txt2img("tiny_sd1")
    assert next(sd_models.model_manager.current.unet.parameters()).dtype == torch.float32
