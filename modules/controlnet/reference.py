"""sd-webui-controlnet's "Reference" units (reference_only, reference_adain, reference_adain+attn) on the diffusers UNet.

At each UNet evaluation where such a unit is active, the reference image's latent, noised to the evaluation's sigma,
first goes through the UNet in a "write" pass: every self-attention (attn1) records its input, and (AdaIN) the
outputs of the extension's chosen UNet blocks record their per-channel means and variances. The real evaluation then
"reads": self-attention attends to [own tokens, recorded tokens] and the blocks' outputs are renormalised to the
recorded statistics. As in the extension:
- the unit's weight picks how many layers take part: a self-attention writes when weight > its rank among the
  layers widest-first (i / count), a block when weight > its AdaIN weight (below);
- style fidelity (threshold_a, default 0.5; cubed on SDXL; 1 for "ControlNet is more important", 0 for "My prompt is
  more important" and in the Hires. fix pass) keeps the uncond rows partly plain: out = fidelity * plain-for-uncond +
  (1 - fidelity) * referenced, which pushes CFG towards the reference.
Self-attention is changed through attention processors wrapping the UNet's current ones (so IP-Adapter's stay in
place), the blocks through forward hooks; both are installed for one evaluation and removed after it.
"""
from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field

import numpy as np
import torch

from modules.controlnet.units import CONTROL_MODES, ControlNetUnit

EPS = 1e-6
# The extension's AdaIN blocks in LDM's numbering of input_blocks / output_blocks (the middle block always takes part)
_ADAIN_BLOCKS = {False: ([4, 5, 7, 8, 10, 11], list(range(8))), True: ([4, 5, 7, 8], list(range(6)))}


@dataclass
class Reference:
    """One active reference unit bound to a model at one size."""

    index: int
    unit: ControlNetUnit
    latent: torch.Tensor  # [1, C, h, w]: the reference's scaled VAE latent at the generation size
    noise: torch.Tensor   # [images, C, h, w]: fixed for the job, image k's from its seed
    fidelity: float

    @property
    def attention(self) -> bool:
        return self.unit.module in ("reference_only", "reference_adain+attn")

    @property
    def adain(self) -> bool:
        return self.unit.module in ("reference_adain", "reference_adain+attn")


def style_fidelity(unit: ControlNetUnit, default: float, sdxl: bool, hires: bool) -> float:
    """threshold_a clamped to 0..1 (its default when unset), by the extension's rules for SDXL and control modes."""
    value = float(unit.threshold_a) if unit.threshold_a is not None and unit.threshold_a >= 0 else default
    value = min(max(value, 0.0), 1.0)
    if sdxl:  # the extension: "sdxl's attention hacking is highly unstable", so less fidelity
        value **= 3.0
    if unit.control_mode == CONTROL_MODES[2]:
        return 1.0
    if unit.control_mode == CONTROL_MODES[1] or hires:
        return 0.0
    return value


def noise(seeds: list[int], shape: tuple[int, ...], device) -> torch.Tensor:
    """[len(seeds), *shape] standard normal noise, one per image from its seed (on the CPU, so every device agrees),
    from a stream of its own: not the image's initial noise."""
    rows = []
    for seed in seeds:
        stream = int(np.random.SeedSequence([int(seed) & 0xFFFFFFFFFFFFFFFF, 0x52454646]).generate_state(1, np.uint64)[0])
        rows.append(torch.randn(shape, generator=torch.Generator("cpu").manual_seed(stream & 0x7FFFFFFFFFFFFFFF)))
    return torch.stack(rows).to(device)


def noised(ref: Reference, sigma: torch.Tensor, c_in: torch.Tensor, images: list[int]) -> torch.Tensor:
    """The write pass's UNet input for rows of images `images`: (latent + sigma * noise) * c_in."""
    rows = ref.noise if images == list(range(len(ref.noise))) else ref.noise[images]
    return (ref.latent + sigma * rows) * c_in


def ldm_blocks(unet) -> tuple[list[torch.nn.Module], list[torch.nn.Module]]:
    """The modules whose outputs are LDM's input_blocks and output_blocks outputs, in LDM's numbering: a level's
    layer is its attention when it has one, else its resnet; a down level's sampler is a block of its own, an up
    level's belongs to its last layer."""
    inputs: list[torch.nn.Module] = [unet.conv_in]
    for block in unet.down_blocks:
        attentions = getattr(block, "attentions", None)
        inputs += [attentions[i] if attentions else resnet for i, resnet in enumerate(block.resnets)]
        if block.downsamplers:
            inputs.append(block.downsamplers[0])
    outputs: list[torch.nn.Module] = []
    for block in unet.up_blocks:
        attentions = getattr(block, "attentions", None)
        for i, resnet in enumerate(block.resnets):
            last = i == len(block.resnets) - 1
            outputs.append(block.upsamplers[0] if last and block.upsamplers else attentions[i] if attentions else resnet)
    return inputs, outputs


@dataclass
class Layers:
    """Which layers a unit of a given weight touches: attn1 processor name -> rank weight; AdaIN block -> weight."""

    attention: dict[str, float]
    blocks: list[tuple[torch.nn.Module, float]]

    @staticmethod
    def of(unet, sdxl: bool) -> Layers:
        names = [n for n in unet.attn_processors if n.endswith("attn1.processor")]
        rank = {"down_blocks": 0, "mid_block": 1, "up_blocks": 2}
        names.sort(key=lambda n: rank[n.split(".", 1)[0]])  # LDM's order: input, middle, output blocks
        width = {n: unet.get_submodule(n.removesuffix(".processor")).to_q.in_features for n in names}
        names.sort(key=lambda n: -width[n])  # widest first, stable
        inputs, outputs = ldm_blocks(unet)
        chosen_in, chosen_out = _ADAIN_BLOCKS[sdxl]
        blocks = [(unet.mid_block, 0.0)]
        blocks += [(inputs[i], 2.0 * (1.0 - w / len(chosen_in))) for w, i in enumerate(chosen_in) if i < len(inputs)]
        blocks += [(outputs[i], 2.0 * w / len(chosen_out)) for w, i in enumerate(chosen_out) if i < len(outputs)]
        return Layers({n: i / len(names) for i, n in enumerate(names)}, blocks)


@dataclass
class _Banks:
    """What the write passes of one evaluation recorded, read (and emptied) by its real pass."""

    writing: Reference | None = None
    first_uncond: int = 0
    attention: dict[str, list[tuple[torch.Tensor, float]]] = field(default_factory=dict)
    stats: dict[int, list[tuple[torch.Tensor, torch.Tensor, float]]] = field(default_factory=dict)


def _mix(referenced: torch.Tensor, plain_uncond: Callable[[], torch.Tensor], fidelity: float, first_uncond: int):
    """The extension's style-fidelity mix: uncond rows lean to their plain value by `fidelity`."""
    if fidelity <= 1e-5 or first_uncond >= referenced.shape[0]:
        return referenced
    kept = referenced.clone()
    kept[first_uncond:] = plain_uncond()
    return fidelity * kept + (1.0 - fidelity) * referenced


class ReferenceAttnProcessor:
    """Wraps a self-attention's processor: records its input in a write pass, attends to it too in the read pass."""

    def __init__(self, inner, name: str, rank: float, banks: _Banks):
        self.inner, self.name, self.rank, self.banks = inner, name, rank, banks

    def __call__(self, attn, hidden_states, encoder_hidden_states=None, attention_mask=None, **kwargs):
        banks = self.banks
        if banks.writing is not None:
            if banks.writing.attention and float(banks.writing.unit.weight) > self.rank:
                banks.attention.setdefault(self.name, []).append((hidden_states.detach().clone(),
                                                                  banks.writing.fidelity))
        elif self.name in banks.attention:
            recorded = banks.attention.pop(self.name)
            fidelity = sum(f for _, f in recorded) / len(recorded)
            keys = torch.cat([hidden_states] + [h for h, _ in recorded], dim=1)
            out = self.inner(attn, hidden_states, keys, attention_mask, **kwargs)
            return _mix(out, lambda: self.inner(attn, hidden_states[banks.first_uncond:], None, attention_mask, **kwargs),
                        fidelity, banks.first_uncond)
        return self.inner(attn, hidden_states, encoder_hidden_states, attention_mask, **kwargs)


def _adain_hook(banks: _Banks, weight: float):
    def hook(module, _args, output):
        tensor = output[0] if isinstance(output, tuple) else output
        key = id(module)
        if banks.writing is not None:
            if banks.writing.adain and float(banks.writing.unit.weight) > weight:
                var, mean = torch.var_mean(tensor.float(), dim=(2, 3), keepdim=True, correction=0)
                banks.stats.setdefault(key, []).append((mean, var, banks.writing.fidelity))
            return None
        recorded = banks.stats.pop(key, None)
        if not recorded:
            return None
        fidelity = sum(f for _, _, f in recorded) / len(recorded)
        x = tensor.float()
        var, mean = torch.var_mean(x, dim=(2, 3), keepdim=True, correction=0)
        ref_mean = sum(m for m, _, _ in recorded) / len(recorded)
        ref_std = (sum(v for _, v, _ in recorded) / len(recorded)).clamp_min(EPS) ** 0.5
        y = (x - mean) / var.clamp_min(EPS) ** 0.5 * ref_std + ref_mean
        y = _mix(y, lambda: x[banks.first_uncond:], fidelity, banks.first_uncond).to(tensor.dtype)
        return (y, *output[1:]) if isinstance(output, tuple) else y
    return hook


@contextmanager
def evaluation(unet, layers: Layers, references: list[Reference], write: Callable[[torch.Tensor], object],
               sigma: torch.Tensor, c_in: torch.Tensor, images: list[int], first_uncond: int) -> Iterator[None]:
    """Runs the write pass of each reference (write(unet input) calls the UNet as the real pass will, without
    ControlNet residuals), then the block is the real pass, which reads; the UNet's processors and hooks are
    exactly its own again afterwards, also after an error."""
    banks = _Banks(first_uncond=first_uncond)
    original = dict(unet.attn_processors)
    handles = [module.register_forward_hook(_adain_hook(banks, weight)) for module, weight in layers.blocks] \
        if any(r.adain for r in references) else []
    wrap = any(r.attention for r in references)
    try:
        if wrap:
            unet.set_attn_processor({name: ReferenceAttnProcessor(processor, name, layers.attention[name], banks)
                                     if name in layers.attention else processor for name, processor in original.items()})
        for ref in references:
            x = noised(ref, sigma, c_in, images)
            if unet.config.in_channels == 9:  # an inpainting UNet: an empty mask and the reference as masked image
                latent = ref.latent.expand(x.shape[0], -1, -1, -1)
                x = torch.cat([x, torch.zeros_like(x[:, :1]), latent], dim=1)
            banks.writing = ref
            write(x)
        banks.writing = None
        yield
    finally:
        for handle in handles:
            handle.remove()
        if wrap:
            unet.set_attn_processor(original)
