"""The UNet fast path: on CUDA the sampling loop calls a torch.compile'd view of the UNet (default; --no-torch-compile
and the offloading modes turn it off); everything else keeps the plain module."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from modules import devices, sd_models
from modules.shared_cmd_options import cmd_opts
from tests.integration.engine_helpers import pixels, start_engine, txt2img


def flags(**values):
    defaults = {"lowvram": False, "medvram": False, "medvram_sdxl": False, "no_half": False, "no_torch_compile": False}
    return type("Args", (), {**defaults, **values})()


@pytest.fixture()
def cuda_device(monkeypatch):
    monkeypatch.setattr(devices, "get_optimal_device", lambda device_id=None: torch.device("cuda"))


def test_cuda_compiles_by_default(cuda_device):
    assert devices.plan_from_flags(flags()).compiles


@pytest.mark.parametrize("off", [{"no_torch_compile": True}, {"medvram": True}, {"lowvram": True}])
def test_no_torch_compile_and_offloading_run_eagerly(cuda_device, off):
    assert not devices.plan_from_flags(flags(**off)).compiles


def test_cpu_never_compiles(monkeypatch):
    monkeypatch.setattr(devices, "get_optimal_device", lambda device_id=None: torch.device("cpu"))
    assert not devices.plan_from_flags(flags()).compiles


class CountingUNet(torch.nn.Module):
    """Stands in for the compiled view: the same UNet, counting the sampling loop's calls."""

    def __init__(self, unet):
        super().__init__()
        self.unet = unet
        self.calls = 0

    def forward(self, *args, **kwargs):
        self.calls += 1
        return self.unet(*args, **kwargs)


def test_sampling_loop_calls_the_sampling_unet(tiny_models_dir, tmp_path):
    manager = start_engine(tiny_models_dir, tmp_path)
    plain = txt2img("tiny_sd1", steps=3)
    model = manager.current
    assert model.sampling_unet is model.unet  # on the CPU the view is the module itself
    model.sampling_unet = CountingUNet(model.unet)
    counted = txt2img("tiny_sd1", steps=3)
    assert model.sampling_unet.calls == 3  # one CFG batch (cond + uncond) per step
    assert np.array_equal(pixels(plain.images[0]), pixels(counted.images[0]))


@pytest.mark.cuda
def test_compiled_fast_path_matches_the_plain_path_on_cuda(tiny_models_dir, tmp_path, monkeypatch):
    """Latents of the compiled UNet equal the plain UNet's within fp16 tolerance after a few steps."""
    start_engine(tiny_models_dir, tmp_path)
    results = {}
    for compiled in (False, True):
        monkeypatch.setattr(cmd_opts, "no_torch_compile", not compiled)
        sd_models.model_manager = sd_models.ModelManager(devices.plan_from_flags(cmd_opts), tmp_path / "cache", limit=1)
        results[compiled] = pixels(txt2img("tiny_sdxl", sampler_name="Euler a", steps=4).images[0])
        model = sd_models.model_manager.current
        assert (model.sampling_unet is not model.unet) == compiled
    difference = np.abs(results[True] - results[False])
    print(f"compiled vs plain: max pixel difference {difference.max()}, mean {difference.mean():.4f}")
    assert difference.max() <= 3
