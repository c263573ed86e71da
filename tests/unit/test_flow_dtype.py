"""Flow transformers (Flux, Chroma, SD 3.5) run in bf16 on CUDA where the card has it, fp16 where it does not, and in
the dtype the flags force; the plan a flow model is built with carries that dtype (its VAE too, unless kept fp32)."""
from __future__ import annotations

import argparse

import pytest
import torch

from modules import devices

BF16, FP16, FP32 = torch.bfloat16, torch.float16, torch.float32


@pytest.mark.parametrize("dtype, forced, bf16, expected", [
    (FP16, False, True, BF16),   # the default on an Ampere+ card
    (FP16, False, False, FP16),  # Turing/Pascal: no bf16
    (FP32, True, True, FP32),    # --no-half / --precision full
    (FP16, True, True, FP16),    # --precision half
])
def test_flow_dtype(dtype, forced, bf16, expected):
    assert devices.flow_dtype(dtype, forced, bf16) == expected


def flags(**kw):
    base = dict(no_half=False, no_half_vae=False, precision="autocast", lowvram=False, medvram=False,
                medvram_sdxl=False, no_torch_compile=True, device_id=None)
    return argparse.Namespace(**{**base, **kw})


@pytest.fixture
def cuda_card(monkeypatch):
    """plan_from_flags as on a CUDA card whose bf16 capability the test sets (no GPU needed)."""
    monkeypatch.setattr(devices, "get_optimal_device", lambda device_id=None: torch.device("cuda"))
    return lambda bf16: monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda *a, **k: bf16)


@pytest.mark.parametrize("kw, bf16, unet, vae, flow, flow_vae", [
    ({}, True, FP16, FP16, BF16, BF16),
    ({}, False, FP16, FP16, FP16, FP16),
    ({"no_half_vae": True}, True, FP16, FP32, BF16, FP32),
    ({"no_half": True}, True, FP32, FP32, FP32, FP32),
    ({"precision": "full"}, True, FP32, FP32, FP32, FP32),
    ({"precision": "half"}, True, FP16, FP16, FP16, FP16),
])
def test_plan_from_flags(cuda_card, kw, bf16, unet, vae, flow, flow_vae):
    cuda_card(bf16)
    plan = devices.plan_from_flags(flags(**kw))
    assert (plan.dtype, plan.dtype_vae) == (unet, vae)  # SD1/SDXL keep A1111's fp16
    flow_plan = plan.for_flow()
    assert (flow_plan.dtype, flow_plan.dtype_vae) == (flow, flow_vae)
    assert flow_plan.device == plan.device and flow_plan.memory_mode == plan.memory_mode


def test_cpu_plan_stays_fp32():
    plan = devices.DevicePlan(torch.device("cpu"), FP32, FP32)
    assert plan.for_flow() is plan
