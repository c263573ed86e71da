"""A1111's old modules.sd_samplers_compvis: its DDIM/PLMS/UniPC ran LDM's CompVis sampler classes.

Atelier's DDIM, PLMS and UniPC are its own sigma-space samplers (sd_samplers_timesteps) over the same CFG denoiser as
the others, so code that wraps LDM's sampler classes has nothing to wrap. The name exists so that extensions which
subclass it still load; making one says what is missing.
"""
from __future__ import annotations


class VanillaStableDiffusionSampler:
    """A1111's wrapper of an LDM sampler class (ldm.models.diffusion.ddim.DDIMSampler, ...): not available."""

    def __init__(self, constructor, sd_model):
        raise NotImplementedError(
            f"{type(self).__name__} wraps LDM's CompVis sampler classes ({getattr(constructor, '__name__', constructor)}), "
            "which Atelier does not have: its DDIM, PLMS and UniPC are sigma-space samplers over the shared "
            "CFG denoiser (sd_samplers_kdiffusion.CFGDenoiserKDiffusion); use a k-diffusion sampler with this extension")
