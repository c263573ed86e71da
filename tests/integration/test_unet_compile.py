"""The UNet fast path: on CUDA the sampling loop calls a view of the UNet that compiles it in the background and
switches to the compiled graph when it is ready (default; --no-torch-compile and the offloading modes turn it off);
everything else keeps the plain module."""
from __future__ import annotations

import logging
import threading

import numpy as np
import pytest
import torch

from modules import devices, sd_models, sd_unet_compile
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


class FakeCompiler:
    """Stands in for torch.compile: records which thread ran the "compiled" module with which inputs; `gate` holds
    the compilation back until the test releases it."""

    def __init__(self, fail=False):
        self.runs = []
        self.gate = threading.Event()
        self.fail = fail

    def __call__(self, module):
        def compiled(*args, **kwargs):
            self.gate.wait(10)
            self.runs.append((threading.current_thread().name, args, kwargs))
            if self.fail:
                raise RuntimeError("inductor broke")
            return module(*args, **kwargs) + 100
        return compiled


class FirstInput(torch.nn.Module):
    def forward(self, x, **kwargs):
        return x


def test_compiling_unet_runs_eagerly_until_the_graph_is_ready():
    compiler = FakeCompiler()
    view = sd_unet_compile.CompilingUNet(FirstInput(), compiler)
    x = torch.ones(2, 4)
    assert torch.equal(view(x), x)  # eager while the graph compiles in the background
    assert torch.equal(view(x), x)  # a second call at the same shape starts no second compilation
    compiler.gate.set()
    assert view.wait(10)
    assert [name for name, _, _ in compiler.runs] == ["unet-compile"]
    assert torch.equal(view(x), x + 100)  # the compiled graph from now on
    assert [name for name, _, _ in compiler.runs][-1] == threading.current_thread().name


def test_compiling_unet_compiles_each_new_shape_and_grad_mode_once():
    compiler = FakeCompiler()
    compiler.gate.set()
    view = sd_unet_compile.CompilingUNet(FirstInput(), compiler)
    small, large = torch.ones(2, 4), torch.ones(4, 4)
    view(small)
    view.wait(10)
    assert torch.equal(view(large), large)  # a new shape: eager, and a compilation of its own
    with torch.no_grad():
        assert torch.equal(view(small), small)  # the graph is guarded on grad mode
    view.wait(10)
    assert torch.equal(view(large), large + 100)
    assert [args[0].shape[0] for name, args, _ in compiler.runs if name == "unet-compile"] == [2, 4, 2]


def test_the_compiling_thread_gets_copies_of_the_inputs():
    compiler = FakeCompiler()
    view = sd_unet_compile.CompilingUNet(FirstInput(), compiler)
    x = torch.ones(3)
    view(x, extra={"time_ids": torch.zeros(2)})
    x.fill_(7)  # the sampling loop goes on writing its tensors
    compiler.gate.set()
    view.wait(10)
    _, args, kwargs = compiler.runs[0]
    assert args[0] is not x and torch.equal(args[0], torch.ones(3))
    assert torch.equal(kwargs["extra"]["time_ids"], torch.zeros(2))


def test_a_failed_compilation_leaves_the_loop_eager(caplog):
    compiler = FakeCompiler(fail=True)
    compiler.gate.set()
    view = sd_unet_compile.CompilingUNet(FirstInput(), compiler)
    x = torch.ones(2)
    with caplog.at_level(logging.ERROR, logger="modules.sd_unet_compile"):
        view(x)
        assert view.wait(10)
    assert "torch.compile of the UNet failed" in caplog.text
    assert torch.equal(view(x), x) and torch.equal(view(x), x)
    assert len(compiler.runs) == 1  # never tried again at these shapes


def test_dynamo_compiles_in_the_background_while_the_engine_samples(tiny_models_dir, tmp_path):
    """The real torch.compile front end (Dynamo and AOTAutograd; Inductor's code generation is left out to keep the
    test quick) traces the SDXL UNet in the background thread: the first image runs eagerly, later ones through
    the compiled graph, with the same pixels."""
    start_engine(tiny_models_dir, tmp_path)
    plain = pixels(txt2img("tiny_sdxl", sampler_name="Euler a", steps=3).images[0])
    model = sd_models.model_manager.current
    graph_calls = []

    def compiler(module):
        graph = torch.compile(module, backend="aot_eager", dynamic=False)
        return lambda *args, **kwargs: graph_calls.append(threading.current_thread().name) or graph(*args, **kwargs)

    model.sampling_unet = sd_unet_compile.CompilingUNet(model.unet, compiler)
    try:
        first = pixels(txt2img("tiny_sdxl", sampler_name="Euler a", steps=3).images[0])
        assert model.sampling_unet.wait(120) and model.sampling_unet.ready and not model.sampling_unet.failed
        assert graph_calls == ["unet-compile"]
        compiled = pixels(txt2img("tiny_sdxl", sampler_name="Euler a", steps=3).images[0])
        assert graph_calls[1:] == [threading.current_thread().name] * 3  # one CFG batch per step
    finally:
        model.sampling_unet = model.unet
    assert np.array_equal(first, plain)
    assert np.abs(compiled - plain).max() <= 1


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
    """Once the background compilation is done, the compiled UNet's images equal the plain UNet's within fp16
    tolerance after a few steps."""
    start_engine(tiny_models_dir, tmp_path)
    results = {}
    for compiled in (False, True):
        monkeypatch.setattr(cmd_opts, "no_torch_compile", not compiled)
        sd_models.model_manager = sd_models.ModelManager(devices.plan_from_flags(cmd_opts), tmp_path / "cache", limit=1)
        results[compiled] = pixels(txt2img("tiny_sdxl", sampler_name="Euler a", steps=4).images[0])
        model = sd_models.model_manager.current
        assert (model.sampling_unet is not model.unet) == compiled
        if compiled:
            assert np.array_equal(results[True], results[False])  # the first image ran eagerly
            assert model.sampling_unet.wait(600) and model.sampling_unet.ready and not model.sampling_unet.failed
            results[True] = pixels(txt2img("tiny_sdxl", sampler_name="Euler a", steps=4).images[0])
    difference = np.abs(results[True] - results[False])
    print(f"compiled vs plain: max pixel difference {difference.max()}, mean {difference.mean():.4f}")
    assert difference.max() <= 3
