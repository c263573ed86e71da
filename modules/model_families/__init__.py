"""Model families behind one interface (ARCHITECTURE "Model families").

Two kinds: UNet models (SD1/SD2/SDXL: modules.sd_models_config.ModelFamily, loaded by sd_models.build_model) and
flow-matching transformers (here). A family object answers the same questions for both kinds:

- `name`, `label`, `in_channels`, `prediction_type` ("epsilon" | "v_prediction" | "flow"), `is_sdxl`,
  `is_inpainting`, `is_flow`;
and a flow family also says
- which parts it needs and where they come from (`parts`: its loader module finds and builds them),
- how prompts become conditioning (`prompt_encoder`),
- how sigmas and timesteps map (`sigmas`: the schedule with the family's shift; `denoise`: one model evaluation
  returning the denoised latent, so the shared samplers, CFG and callbacks drive it like a UNet).

`detect_flow_family(sd)` tells a flow family from a state dict's keys, or None (then the SD loader decides).
"""
from __future__ import annotations

from modules.model_families import flux


def detect_flow_family(sd: dict):
    """The flow-matching family of a single-file state dict, or None when it is not one this app knows."""
    return flux.detect(sd)
