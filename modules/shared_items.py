"""Values modules.shared exposes in A1111's shapes, derived from the engine's own tables (A1111's shared_items)."""
from __future__ import annotations


def latent_upscale_modes() -> dict[str, dict]:
    """Hires fix's latent upscale modes as A1111 lists them: name -> {"mode": interpolation, "antialias": bool}."""
    # processing is the whole engine: imported when an extension asks, not when shared is imported
    from modules import processing

    return {name: {"mode": mode, "antialias": antialias}
            for name, (mode, antialias) in processing.LATENT_UPSCALE_MODES.items()}


def hypernetworks() -> dict[str, str]:
    """The available hypernetworks, name -> file (the engine's own dict), listed from the folder on first use."""
    # imported when an extension asks, not when shared is imported
    from modules import hypernetworks as engine

    return engine.hypernetworks or engine.list_hypernetworks()


def sd_vae_items() -> list[str]:
    """The SD VAE setting's choices, as A1111 lists them: Automatic, None, then the VAE files by name."""
    from modules import sd_vae

    return ["Automatic", "None", *sd_vae.vae_dict]
