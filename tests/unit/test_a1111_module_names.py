"""A1111 module-level names extensions import, as they use them: modules.devices' device/dtypes and helpers (adetailer's
NansException, multidiffusion's devices.device/dtype/autocast/test_for_nans, controlnet's get_device_for), modules.patches
(supermerger's patch/undo), modules.textual_inversion.textual_inversion and shared.latent_upscale_default_mode
(supermerger), shared_items.sd_vae_items (adetailer's VAE dropdown) and the built-in Lora extension's top-level modules
(supermerger's `import networks` / `import lora`)."""
from __future__ import annotations

import importlib
import sys
import types

import pytest
import torch

from modules import devices, patches, sd_models


@pytest.fixture()
def manager(monkeypatch):
    """A model manager whose plan differs from the no-manager defaults in every field."""
    plan = devices.DevicePlan(torch.device("cpu"), torch.float16, torch.bfloat16)
    fake = types.SimpleNamespace(plan=plan)
    monkeypatch.setattr(sd_models, "model_manager", fake)
    return fake


# --- modules.devices ---------------------------------------------------------------------------------------------

def test_devices_names_follow_the_current_model_manager_plan(manager):
    from modules.devices import device, dtype, dtype_unet, dtype_vae  # extensions import them by name

    assert (device, dtype, dtype_unet, dtype_vae) == (torch.device("cpu"), torch.float16, torch.float16, torch.bfloat16)
    manager.plan = devices.DevicePlan(torch.device("meta"), torch.float32, torch.float16)  # read live, not at import
    assert (devices.device, devices.dtype, devices.dtype_vae) == (torch.device("meta"), torch.float32, torch.float16)
    assert devices.get_device_for("controlnet") == torch.device("meta")


def test_devices_names_without_a_model_manager(monkeypatch):
    monkeypatch.setattr(sd_models, "model_manager", None)
    assert devices.device == devices.get_optimal_device()
    assert devices.dtype == devices.dtype_unet == devices.dtype_vae == torch.float32
    assert devices.get_optimal_device_name() == str(devices.get_optimal_device())
    assert devices.cpu == torch.device("cpu")
    with pytest.raises(AttributeError, match="no attribute 'dtype_inference'"):
        devices.dtype_inference  # noqa: B018 - an unknown name is still an AttributeError


def test_cond_cast_unet_casts_to_the_unet_dtype(manager):
    assert devices.cond_cast_unet(torch.ones(2, dtype=torch.float32)).dtype == torch.float16


def test_test_for_nans_raises_nans_exception_only_when_all_nan():
    from modules.devices import NansException  # adetailer catches it by this name

    devices.test_for_nans(torch.tensor([1.0, float("nan")]), "unet")
    with pytest.raises(NansException, match="in vae"):
        devices.test_for_nans(torch.full((2, 2), float("nan")), "vae")
    assert issubclass(NansException, Exception)


def test_autocast_is_a_context_manager_with_or_without_disable():
    with devices.autocast():
        x = torch.ones(2) * 2
    with devices.autocast(disable=True):
        y = torch.ones(2) * 2
    assert x.dtype == y.dtype == torch.float32


# --- modules.patches ---------------------------------------------------------------------------------------------

class Target:
    def forward(self):
        return "original"


def test_patch_replaces_keeps_the_original_and_undo_restores_it():
    def replacement(self):
        return "patched"

    original_forward = Target.forward
    try:
        assert patches.patch("ext", Target, "forward", replacement) is original_forward
        assert Target().forward() == "patched"
        assert patches.original("ext", Target, "forward") is original_forward
        assert patches.original("other", Target, "forward") is None
        assert patches.undo("ext", Target, "forward") is None
        assert Target.forward is original_forward and patches.original("ext", Target, "forward") is None
        patches.patch("ext", Target, "forward", replacement)  # patching again after undo is allowed
        assert Target().forward() == "patched"
    finally:
        Target.forward = original_forward
        patches.originals.pop("ext", None)


def test_patching_the_same_field_twice_under_one_key_raises():
    original_forward = Target.forward
    try:
        patches.patch("ext", Target, "forward", lambda self: "one")
        with pytest.raises(RuntimeError, match="patch for forward is already applied"):
            patches.patch("ext", Target, "forward", lambda self: "two")
        assert Target().forward() == "one"
        assert patches.original("ext", Target, "forward") is original_forward
    finally:
        Target.forward = original_forward
        patches.originals.pop("ext", None)


# --- textual_inversion, shared, shared_items -------------------------------------------------------------------------

def test_textual_inversion_imports_by_a1111_module_path():
    import modules.textual_inversion.textual_inversion as by_a1111_path

    import modules.textual_inversion

    assert by_a1111_path is modules.textual_inversion
    assert importlib.import_module("modules.textual_inversion.textual_inversion").Embedding is \
        modules.textual_inversion.Embedding


def test_sd_vae_items_list_automatic_none_then_the_vae_files(monkeypatch):
    from modules import sd_vae, shared_items, shared_options

    monkeypatch.setattr(sd_vae, "vae_dict", {"b.safetensors": "/v/b.safetensors", "a.pt": "/v/a.pt"})
    assert shared_items.sd_vae_items() == ["Automatic", "None", "b.safetensors", "a.pt"]
    assert shared_options.vae_choices() == {"choices": shared_items.sd_vae_items()}


def test_latent_upscale_default_mode_names_a_latent_upscaler():
    from modules import shared

    assert shared.latent_upscale_default_mode == "Latent"
    assert shared.latent_upscale_default_mode in shared.latent_upscale_modes


# --- the built-in Lora extension's top-level modules --------------------------------------------------------------

def test_top_level_names_are_our_networks_modules(monkeypatch):
    from modules import networks
    from modules.networks import extra_networks_lora, lora, network, networks as engine_networks

    for name in networks.A1111_TOP_LEVEL_NAMES:
        monkeypatch.delitem(sys.modules, name, raising=False)
    networks.register_top_level_names()
    assert importlib.import_module("networks") is engine_networks
    assert importlib.import_module("network") is network
    assert importlib.import_module("extra_networks_lora") is extra_networks_lora
    top_lora = importlib.import_module("lora")
    assert top_lora is lora
    # A1111's lora names are the live registries of networks: a refresh fills what `lora` shows
    assert top_lora.available_loras is engine_networks.available_networks
    assert top_lora.available_lora_aliases is engine_networks.available_network_aliases
    assert top_lora.loaded_loras is engine_networks.loaded_networks
    assert top_lora.list_available_loras is engine_networks.list_available_networks
