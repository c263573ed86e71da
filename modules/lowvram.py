"""--medvram / --lowvram (A1111's modules.lowvram names): weights wait in RAM and go to the GPU only while they run.

A model is cut into parts. --medvram: the text encoder(s), the UNet's blocks, the VAE. --lowvram: the same, with the
UNet's blocks cut further into each resnet, transformer, down- and upsampler, in the order the UNet calls them.
Flow-matching transformers (Flux.1, Chroma, SD 3.5) the same way: the text encoders, the transformer's blocks, the VAE
(--medvram); --lowvram moves the transformer and the text encoders (T5-XXL is 9 GB in bf16) one block at a time.
A forward pre-hook on a part's modules asks the device's `Offloader` for it; the offloader sends the part that is on
the device back first, so one part at a time occupies the device. The UNet's small layers outside its blocks (conv_in,
time and added embeddings, the output convolution) stay on the device: they are tiny and run every step.

Each part keeps a stored copy of its weights in RAM. Going to the device copies them there; going back drops the device
copy unless something wrote into it in place (a LoRA patch while the part was resident): then the new values are
copied back first. A tensor replaced while stored or resident (a cast, e.g. the VAE's float32 retry) becomes the new
stored copy. So network patches and their exact restores work whether a part is resident or not. An fp8 layer
(modules.quantized_weights) casts its own weights up before its forward and back after it: the values after are those
before, so the part takes the new device copies as its own (`settle` before, `adopt` after), and goes on knowing
whether anything else wrote into them.

For a CUDA device a part's stored weights share one page-locked buffer (cudaHostRegister on ordinary memory: torch's
pinned allocator would round each buffer up to a power of two), so uploads run asynchronously at full bus speed:
55 GB/s instead of 8 GB/s from pageable memory, measured on an H200.
"""
from __future__ import annotations

import itertools
import logging
import threading
import weakref

import torch

from modules import quantized_weights

log = logging.getLogger(__name__)
STORAGE = torch.device("cpu")  # where offloaded weights wait
ALIGN = 512  # bytes; each tensor's start in a part's buffer


class Part:
    """Modules whose weights move to the compute device together."""

    def __init__(self, name: str, modules: list[torch.nn.Module], triggers: list[torch.nn.Module], pin: bool = False):
        self.name = name
        self.modules = modules
        self.triggers = triggers  # the modules whose forward needs this part on the device
        unique = {id(t): t for m in modules for t in itertools.chain(m.parameters(), m.buffers())}
        self.tensors = list(unique.values())
        self.stored = self._pinned() if pin else [t.data.to(STORAGE) for t in self.tensors]
        for t, stored in zip(self.tensors, self.stored):
            t.data = stored
        self.on_device: list[tuple[int, int]] | None = None  # (data_ptr, version) of each device copy while resident
        self.index = {id(t): i for i, t in enumerate(self.tensors)}
        self.uploaded: torch.cuda.Event | None = None  # the last upload from page-locked memory, queued on the device

    def _pinned(self) -> list[torch.Tensor]:
        """The tensors copied into one page-locked buffer; unpinned copies when the driver refuses to lock the pages."""
        sizes = [t.numel() * t.element_size() for t in self.tensors]
        starts = list(itertools.accumulate((-(-n // ALIGN) * ALIGN for n in sizes), initial=0))
        buffer = torch.empty(starts[-1], dtype=torch.uint8, device=STORAGE)
        stored = []
        for t, start, n in zip(self.tensors, starts, sizes):
            view = buffer[start:start + n].view(t.dtype).view(t.shape)
            view.copy_(t.data)
            t.data = view  # the original is freed now, not after the whole part is copied
            stored.append(view)
        cudart = torch.cuda.cudart()
        locked = buffer.numel() > 0 and int(cudart.cudaHostRegister(buffer.data_ptr(), buffer.numel(), 0)) == 0
        if locked:
            weakref.finalize(self, cudart.cudaHostUnregister, buffer.data_ptr())  # runs while self.buffer still lives
        elif buffer.numel():
            log.warning("%s: could not page-lock %.0f MiB; its uploads will be slower", self.name, buffer.numel() / 2**20)
        self.buffer = buffer  # the registered memory is freed only after it is unregistered
        return stored

    @property
    def resident(self) -> bool:
        return self.on_device is not None

    @property
    def nbytes(self) -> int:
        return sum(t.numel() * t.element_size() for t in self.tensors)

    def upload(self, device: torch.device) -> None:
        for i, t in enumerate(self.tensors):
            if t.data_ptr() != self.stored[i].data_ptr():  # replaced while stored (e.g. cast): keep the new tensor
                self.stored[i] = t.data.to(STORAGE)
            t.data = self.stored[i].to(device, copy=True, non_blocking=True)
        self.on_device = [(t.data_ptr(), t._version) for t in self.tensors]
        if device.type == "cuda":
            self.uploaded = torch.cuda.Event()
            self.uploaded.record()

    def _keep(self, i: int, t: torch.Tensor) -> None:
        """What happened to device copy i since it was recorded becomes the stored weight."""
        ptr, version = self.on_device[i]
        if t.data_ptr() != ptr:  # replaced on the device (e.g. cast): its value is the weight from now on
            self.stored[i] = t.data.to(STORAGE, copy=True)
        elif t._version != version:  # written in place on the device (a LoRA patch): keep what was written
            self.stored[i].copy_(t.data)

    def _synchronized(self) -> None:
        if self.uploaded is not None:  # the stored copy may be written (a LoRA patch) once the device has read it
            self.uploaded.synchronize()
            self.uploaded = None

    def offload(self) -> None:
        self._synchronized()
        for i, t in enumerate(self.tensors):
            self._keep(i, t)
            t.data = self.stored[i]
        self.on_device = None

    def settle(self, module: torch.nn.Module) -> None:
        """Before a self-casting layer's forward: what was written into its device copies is kept now."""
        if self.on_device is None:
            return
        for t in module.parameters(recurse=False):
            i = self.index[id(t)]
            if t.data_ptr() != self.on_device[i][0] or t._version != self.on_device[i][1]:
                self._synchronized()
                self._keep(i, t)

    def adopt(self, module: torch.nn.Module) -> None:
        """After a self-casting layer's forward: its new device copies hold the values of the ones it had."""
        if self.on_device is None:
            return
        for t in module.parameters(recurse=False):
            self.on_device[self.index[id(t)]] = (t.data_ptr(), t._version)


class Offloader:
    """One compute device's slot: at most one part is on the device at a time, across every model using it."""

    def __init__(self, device: torch.device):
        self.device = torch.device(device)
        self.resident: Part | None = None
        self.lock = threading.RLock()

    def load(self, part: Part) -> None:
        if self.resident is part:
            return
        # Moves must make ordinary tensors even inside inference_mode: patches write into them outside it later.
        with self.lock, torch.inference_mode(False), torch.no_grad():
            if self.resident is not None:
                self.resident.offload()
            self.resident = None
            part.upload(self.device)
            self.resident = part
        log.debug("%s on %s", part.name, self.device)

    def unload(self) -> None:
        with self.lock, torch.inference_mode(False), torch.no_grad():
            if self.resident is not None:
                self.resident.offload()
                self.resident = None

    def hook(self, part: Part) -> None:
        """Before any of its trigger modules runs, the part is on the device."""
        for module in part.triggers:
            module.register_forward_pre_hook(lambda _module, _args: self.load(part))


_offloaders: dict[torch.device, Offloader] = {}  # one per compute device: its memory is what they share


def offloader_for(device: torch.device) -> Offloader:
    device = torch.device(device)
    if device.type == "cuda" and device.index is None:
        device = torch.device("cuda", torch.cuda.current_device())
    return _offloaders.setdefault(device, Offloader(device))


class ModelOffload:
    """One model's parts and the offloader that moves them."""

    def __init__(self, offloader: Offloader):
        self.offloader = offloader
        self.parts: list[Part] = []
        self.vae_parts: dict[int, tuple[torch.nn.Module, Part]] = {}

    def add(self, name: str, modules: list[torch.nn.Module], triggers: list[torch.nn.Module]) -> Part:
        part = Part(name, modules, triggers, pin=self.offloader.device.type == "cuda")
        self.offloader.hook(part)
        for layer in {id(m): m for root in modules for m in root.modules() if quantized_weights.is_cast(m)}.values():
            layer.register_forward_pre_hook(lambda module, _args, part=part: part.settle(module))
            layer.register_forward_hook(lambda module, _args, _out, part=part: part.adopt(module))
        self.parts.append(part)
        return part

    def add_vae(self, vae: torch.nn.Module) -> None:
        """A VAE's encode/decode call its submodules, not its forward: each direct child triggers the load."""
        known = self.vae_parts.get(id(vae))
        if known is None or known[0] is not vae:
            self.vae_parts[id(vae)] = (vae, self.add("vae", [vae], list(vae.children())))


def unet_units(unet: torch.nn.Module, use_medvram: bool) -> list[tuple[str, torch.nn.Module]]:
    """The UNet's parts in call order: its three block groups together (medvram), else every resnet, transformer,
    down- and upsampler of each block (lowvram)."""
    groups = [("down_blocks", unet.down_blocks), ("mid_block", unet.mid_block), ("up_blocks", unet.up_blocks)]
    groups = [(name, g) for name, g in groups if g is not None]
    if use_medvram:
        return [("unet", torch.nn.ModuleList([g for _, g in groups]))]
    units = []
    for group_name, group in groups:
        blocks = list(enumerate(group)) if isinstance(group, torch.nn.ModuleList) else [(None, group)]
        for index, block in blocks:
            prefix = group_name if index is None else f"{group_name}.{index}"
            resnets, attentions = list(getattr(block, "resnets", [])), list(getattr(block, "attentions", None) or [])
            order = []
            for i, resnet in enumerate(resnets):
                if group_name == "mid_block" and 0 < i <= len(attentions):  # the mid block: resnet, (attention, resnet)...
                    order.append((f"attentions.{i - 1}", attentions[i - 1]))
                order.append((f"resnets.{i}", resnet))
                if group_name != "mid_block" and i < len(attentions):  # down/up blocks: (resnet, attention)...
                    order.append((f"attentions.{i}", attentions[i]))
            for sampler_list in ("downsamplers", "upsamplers"):
                for i, sampler in enumerate(getattr(block, sampler_list, None) or []):
                    order.append((f"{sampler_list}.{i}", sampler))
            units += [(f"unet.{prefix}.{name}", module) for name, module in order]
    return units


def transformer_units(transformer: torch.nn.Module, use_medvram: bool) -> list[tuple[str, torch.nn.Module]]:
    """A flow transformer's parts: its block lists (Flux's double and single blocks, SD 3.5's joint blocks) together
    (medvram), else each block."""
    groups = [(name, m) for name, m in transformer.named_children() if isinstance(m, torch.nn.ModuleList)]
    if use_medvram:
        return [("transformer", torch.nn.ModuleList([m for _, m in groups]))]
    return [(f"transformer.{name}.{i}", block) for name, group in groups for i, block in enumerate(group)]


def _encoder_layers(encoder: torch.nn.Module) -> torch.nn.ModuleList | None:
    """A text encoder's layer list (T5's encoder.block, CLIP's encoder.layers): its first ModuleList."""
    return next((m for m in encoder.modules() if isinstance(m, torch.nn.ModuleList)), None)


def _add_encoders(offload: ModelOffload, sd_model, use_medvram: bool) -> list[torch.nn.Module]:
    """The text encoders' parts; returns the encoders whose weights outside any part stay on the device."""
    encoders = list(sd_model.text_encoders.values())
    layered = [(c, te, _encoder_layers(te)) for c, te in sd_model.text_encoders.items()]
    if use_medvram or not sd_model.family.is_flow or any(layers is None for _, _, layers in layered):
        if encoders:  # SDXL's two encoders, Flux's CLIP and T5 run by turns for each prompt: one part
            triggers = encoders + [child for te in encoders for child in te.children()]
            offload.add("text_encoders", encoders, triggers)
        return []
    for component, _, layers in layered:  # a flow model under --lowvram: T5-XXL alone fills a small card
        for i, layer in enumerate(layers):
            offload.add(f"{component}.{i}", [layer], [layer])
    return encoders


def setup_for_low_vram(sd_model, use_medvram: bool, offloader: Offloader | None = None) -> None:
    """Keep the model's weights in RAM and move each part to its device just before it runs."""
    offload = ModelOffload(offloader or offloader_for(sd_model.device))
    resident = _add_encoders(offload, sd_model, use_medvram)
    unet = sd_model.unet
    if sd_model.family.is_flow:
        for name, module in transformer_units(unet, use_medvram):
            offload.add(name, [module], [unet] if use_medvram else [module])
    else:
        for name, module in unet_units(unet, use_medvram):
            offload.add(name, [module], [unet] if use_medvram else [module])
    taken = {id(t) for part in offload.parts for t in part.tensors}
    with torch.no_grad():
        for module in (unet, *resident):
            for t in itertools.chain(module.parameters(), module.buffers()):  # what no part took: the small layers
                if id(t) not in taken:
                    t.data = t.data.to(offload.offloader.device)
    offload.add_vae(sd_model.vae)
    sd_model.extra["lowvram"] = offload
    log.info("%s: %s, weights in RAM until they run; %d parts, the largest %.0f MiB", sd_model.sd_checkpoint_info.title,
             "--medvram" if use_medvram else "--lowvram", len(offload.parts), max(p.nbytes for p in offload.parts) / 2**20)


def adopt_vae(sd_model, vae: torch.nn.Module) -> None:
    """A VAE swapped in later (Settings: SD VAE) is offloaded like the checkpoint's own."""
    if is_enabled(sd_model) and vae is not None:
        sd_model.extra["lowvram"].add_vae(vae)


def is_enabled(sd_model) -> bool:
    return "lowvram" in getattr(sd_model, "extra", {})


def release(sd_model) -> None:
    """The model is being dropped: whichever of its parts is on the device goes back."""
    if not is_enabled(sd_model):
        return
    offload = sd_model.extra["lowvram"]
    if any(offload.offloader.resident is p for p in offload.parts):
        offload.offloader.unload()


def send_everything_to_cpu() -> None:
    for offloader in _offloaders.values():
        offloader.unload()
