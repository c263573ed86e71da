"""Which device and dtypes the engine uses, from the command-line flags (A1111's modules.devices names)."""
from __future__ import annotations

import contextlib
import dataclasses
import gc
import logging
from dataclasses import dataclass

import torch

log = logging.getLogger(__name__)


def has_cuda() -> bool:
    return torch.cuda.is_available()


def get_cuda_device_string(device_id: int | None = None) -> str:
    return f"cuda:{device_id}" if device_id is not None else "cuda"


def get_optimal_device(device_id: int | None = None) -> torch.device:
    return torch.device(get_cuda_device_string(device_id)) if has_cuda() else torch.device("cpu")


@dataclass(frozen=True)
class DevicePlan:
    """Where one model manager runs and in which precision; passed around instead of a global 'the GPU'."""

    device: torch.device
    dtype: torch.dtype          # UNet and text encoders
    dtype_vae: torch.dtype
    memory_mode: str = "normal"  # normal | medvram | medvram-sdxl | lowvram; a model's own plan never says medvram-sdxl
    compile_unet: bool = False  # the fast path: the sampling loop calls a torch.compile'd UNet
    keep_fp8: bool = True  # fp8 weights stay fp8 in memory, each layer upcast at its forward (--upcast-fp8: on load)
    dtype_flow: torch.dtype | None = None  # flow transformers' (Flux, Chroma, SD 3.5); None: `dtype`

    @property
    def is_cuda(self) -> bool:
        return self.device.type == "cuda"

    @property
    def offloads(self) -> bool:
        """Weights wait in RAM and go to the device only while they run (modules.lowvram)."""
        return self.memory_mode in ("medvram", "lowvram")

    @property
    def compiles(self) -> bool:
        """Compiled graphs would hold the weights that offloading moves, so offloading models run eagerly."""
        return self.compile_unet and self.is_cuda and not self.offloads

    def for_model(self, is_sdxl: bool) -> DevicePlan:
        """The plan one model runs under: --medvram-sdxl offloads SDXL models (base and refiner) only."""
        if self.memory_mode != "medvram-sdxl":
            return self
        return dataclasses.replace(self, memory_mode="medvram" if is_sdxl else "normal")

    def for_flow(self) -> DevicePlan:
        """The plan a flow-matching model runs under: its transformer, text encoders and (unless kept fp32) VAE in
        `dtype_flow`."""
        if self.dtype_flow is None or self.dtype_flow == self.dtype:
            return self
        vae = self.dtype_flow if self.dtype_vae == self.dtype else self.dtype_vae
        return dataclasses.replace(self, dtype=self.dtype_flow, dtype_vae=vae)


def memory_mode_from_flags(cmd_opts) -> str:
    """--lowvram wins over --medvram, which wins over --medvram-sdxl."""
    for flag, mode in (("lowvram", "lowvram"), ("medvram", "medvram"), ("medvram_sdxl", "medvram-sdxl")):
        if getattr(cmd_opts, flag, False):
            return mode
    return "normal"


def flow_dtype(dtype: torch.dtype, forced: bool, bf16_supported: bool) -> torch.dtype:
    """The dtype flow transformers run in on CUDA: bf16, as they were trained (T5 and Flux overflow fp16), where the card
    has it; fp16 elsewhere; a dtype the flags force (--no-half, --precision full/half) stays."""
    if forced or dtype != torch.float16:
        return dtype
    return torch.bfloat16 if bf16_supported else torch.float16


def plan_from_flags(cmd_opts) -> DevicePlan:
    device = get_optimal_device(getattr(cmd_opts, "device_id", None))
    mode = memory_mode_from_flags(cmd_opts)
    if device.type != "cuda":
        if mode != "normal":
            log.warning("--%s changes nothing without CUDA: on the CPU the model is in RAM anyway", mode)
        # Half precision on the CPU is slow and lossy: A1111 also runs fp32 there.
        return DevicePlan(device, torch.float32, torch.float32, "normal", keep_fp8=not getattr(cmd_opts, "upcast_fp8", False))
    full = getattr(cmd_opts, "no_half", False) or getattr(cmd_opts, "precision", "autocast") == "full"
    dtype = torch.float32 if full else torch.float16
    dtype_vae = torch.float32 if full or getattr(cmd_opts, "no_half_vae", False) else torch.float16
    forced = full or getattr(cmd_opts, "precision", "autocast") == "half"
    return DevicePlan(device, dtype, dtype_vae, mode, compile_unet=not getattr(cmd_opts, "no_torch_compile", False),
                      keep_fp8=not getattr(cmd_opts, "upcast_fp8", False),
                      dtype_flow=flow_dtype(dtype, forced, torch.cuda.is_bf16_supported()))


def torch_gc() -> None:
    gc.collect()
    if has_cuda():
        torch.cuda.empty_cache()


def inference_context():
    return torch.inference_mode()


def without_autocast():
    return contextlib.nullcontext()


# A1111's module-level names, for extensions: `cpu`, and the device/dtypes of the current model manager, read live.
cpu = torch.device("cpu")
_PLAN_FIELDS = {"device": "device", "dtype": "dtype", "dtype_unet": "dtype", "dtype_vae": "dtype_vae"}


def __getattr__(name):
    if name in _PLAN_FIELDS:
        from modules import sd_models  # here, not at the top: sd_models imports this module

        manager = sd_models.model_manager
        return getattr(manager.plan, _PLAN_FIELDS[name]) if manager else \
            (get_optimal_device() if name == "device" else torch.float32)
    raise AttributeError(f"module 'modules.devices' has no attribute {name!r}")


class NansException(Exception):
    """A1111's: a tensor of the job came out as NaN (raised by test_for_nans)."""


def test_for_nans(x: torch.Tensor, where: str) -> None:
    if torch.isnan(x).all().item():
        raise NansException(f"A tensor with all NaNs was produced in {where}.")


def get_optimal_device_name() -> str:
    return str(get_optimal_device())


def get_device_for(task: str) -> torch.device:
    """A1111 can move some tasks to the CPU with --use-cpu; here every task runs on the engine's device."""
    return __getattr__("device")


def cond_cast_unet(tensor: torch.Tensor) -> torch.Tensor:
    return tensor.to(__getattr__("dtype_unet"))


def autocast(disable: bool = False):
    """A1111 runs fp16 models under torch.autocast; Atelier's models run in their own dtype, so nothing to switch."""
    return contextlib.nullcontext()
