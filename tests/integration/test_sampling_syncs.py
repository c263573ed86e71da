"""The sampling loop never waits on the host: no per-step `.item()`, `.tolist()`, `.cpu()`, `bool(tensor)` or
data-dependent shapes, which on CUDA would stall the GPU queue each step (issue 10). Counted on the CPU: the number
of such calls must not grow with the number of steps."""
from __future__ import annotations

import pytest
import torch
from torch.utils._python_dispatch import TorchDispatchMode

from modules import sd_samplers
from modules.shared_options import opts
from tests.integration.engine_helpers import start_engine, txt2img

# reading a tensor's value on the host: what .item(), float(t), bool(t) and data-dependent shapes dispatch to
HOST_READS = {"aten.item.default", "aten.is_nonzero.default", "aten._local_scalar_dense.default", "aten.nonzero.default", "aten.masked_select.default",
              "aten.unique_dim.default", "aten._unique2.default"}
HOST_COPIES = ("cpu", "tolist", "numpy", "item")
# adaptive step-size control reads its error estimate every step by design
ADAPTIVE = {"DPM adaptive"}


class HostReads(TorchDispatchMode):
    def __init__(self):
        super().__init__()
        self.seen = []

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        if str(func) in HOST_READS:
            self.seen.append(str(func))
        return func(*args, **(kwargs or {}))


def host_syncs(monkeypatch, **job) -> list[str]:
    reads = HostReads()
    for name in HOST_COPIES:
        original = getattr(torch.Tensor, name)

        def counted(self, *args, _original=original, _name=name, **kwargs):
            reads.seen.append(f"Tensor.{_name}")
            return _original(self, *args, **kwargs)
        monkeypatch.setattr(torch.Tensor, name, counted)
    with reads:
        txt2img(job.pop("checkpoint", "tiny_sd1"), **job)
    monkeypatch.undo()
    return reads.seen


@pytest.mark.parametrize("sampler", [s.name for s in sd_samplers.all_samplers if s.name not in ADAPTIVE])
def test_no_host_sync_per_step(tiny_models_dir, tmp_path, monkeypatch, sampler):
    start_engine(tiny_models_dir, tmp_path)
    opts.set("show_progress_every_n_steps", 1)  # the preview only keeps a reference to the latent in the loop
    txt2img("tiny_sd1", steps=2, sampler_name=sampler)  # the model loads outside the counted runs
    few = host_syncs(monkeypatch, steps=4, sampler_name=sampler)
    many = host_syncs(monkeypatch, steps=8, sampler_name=sampler)
    assert len(many) == len(few), sorted(set(many) - set(few)) or many


def test_no_host_sync_per_step_with_the_sdxl_refiner(tiny_models_dir, tmp_path, monkeypatch):
    start_engine(tiny_models_dir, tmp_path)
    job = dict(checkpoint="tiny_sdxl", sampler_name="Euler a", refiner_checkpoint="tiny_sdxl_refiner",
               refiner_switch_at=0.5)
    txt2img(steps=2, **job)
    few = host_syncs(monkeypatch, steps=4, **job)
    many = host_syncs(monkeypatch, steps=8, **job)
    assert len(many) == len(few), sorted(set(many) - set(few)) or many
