"""--medvram / --lowvram on a real GPU: less peak memory than the normal mode for the same image (fp16)."""
from __future__ import annotations

import gc

import numpy as np
import pytest
import torch

from modules import devices, lowvram, sd_models
from tests.integration.engine_helpers import pixels, start_engine, txt2img

pytestmark = pytest.mark.cuda


def generate(models_dir, data_dir, mode: str) -> tuple[np.ndarray, int, sd_models.StableDiffusionModel]:
    """SDXL + refiner from a cold start under `mode`: the image and the peak bytes allocated for load and job."""
    start_engine(models_dir, data_dir)
    gc.collect()
    torch.cuda.empty_cache()
    torch.cuda.reset_peak_memory_stats()
    before = torch.cuda.memory_allocated()
    plan = devices.DevicePlan(torch.device("cuda"), torch.float16, torch.float16, mode)
    manager = sd_models.ModelManager(plan, data_dir / f"cache-{mode}", limit=3)
    sd_models.model_manager = manager
    result = txt2img("tiny_sdxl", refiner_checkpoint="tiny_sdxl_refiner", refiner_switch_at=0.5, steps=4,
                     sampler_name="Euler a", width=128, height=128)
    peak = torch.cuda.max_memory_allocated() - before
    model = manager.current
    manager.unload_all()
    lowvram.send_everything_to_cpu()
    return pixels(result.images[0]), peak, model


def test_offloaded_modes_peak_below_normal_with_the_same_image(tiny_models_dir, tmp_path):
    normal, normal_peak, _ = generate(tiny_models_dir, tmp_path, "normal")
    for mode in ("medvram", "lowvram"):
        image, peak, model = generate(tiny_models_dir, tmp_path, mode)
        assert lowvram.is_enabled(model) and model.device.type == "cuda"
        assert peak < normal_peak, f"{mode}: peak {peak} bytes, normal {normal_peak}"
        assert np.abs(image - normal).max() <= 2, mode
    assert normal.std() > 0


def test_weights_wait_in_ram_and_a_dropped_model_leaves_nothing_on_the_card(tiny_models_dir, tmp_path):
    start_engine(tiny_models_dir, tmp_path)
    gc.collect()
    torch.cuda.empty_cache()
    before = torch.cuda.memory_allocated()
    plan = devices.DevicePlan(torch.device("cuda"), torch.float16, torch.float16, "lowvram")
    manager = sd_models.ModelManager(plan, tmp_path / "cache", limit=3)
    sd_models.model_manager = manager
    txt2img("tiny_sdxl", steps=2)
    model = manager.current
    offload = model.extra["lowvram"]
    waiting = [t for part in offload.parts if not part.resident for t in part.tensors]
    assert waiting and all(t.device.type == "cpu" and t.dtype in (torch.float16, torch.int64) for t in waiting)
    assert all(t.is_pinned() for t in waiting), "page-locked, so uploads are asynchronous and fast"
    assert next(model.unet.parameters()).device.type == "cuda", "conv_in stays on the card"
    manager.unload_all()
    del model, offload, waiting
    gc.collect()
    assert torch.cuda.memory_allocated() == before
