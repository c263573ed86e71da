"""--medvram / --lowvram on the CPU: the compute device is the CPU too, but every move still makes a real copy, so the
tests see which part is on the "device", in which order parts move, and that nothing is lost on the way."""
from __future__ import annotations

import logging

import numpy as np
import pytest
import torch

from modules import devices, hypernetworks, lowvram, processing, sd_models
from modules.networks import networks
from modules.shared_cmd_options import cmd_opts
from modules.shared_options import opts
from tests.fixtures import networks as network_fixtures
from tests.integration.engine_helpers import pixels, start_engine, txt2img
from tests.integration.test_img2img import picture, square_mask

SD1 = "tiny_sd1"
SDXL = "tiny_sdxl"
REFINER = "tiny_sdxl_refiner"
MODES = ("normal", "medvram", "medvram-sdxl", "lowvram")


def cpu_plan(mode: str) -> devices.DevicePlan:
    return devices.DevicePlan(torch.device("cpu"), torch.float32, torch.float32, mode)


@pytest.fixture()
def engines(tiny_models_dir, tmp_path):
    """One model manager per memory mode over the same models; `engines(mode)` makes that one current."""
    start_engine(tiny_models_dir, tmp_path)
    managers = {mode: sd_models.ModelManager(cpu_plan(mode), tmp_path / "cache", limit=3) for mode in MODES}

    def use(mode: str) -> sd_models.ModelManager:
        sd_models.model_manager = managers[mode]
        return managers[mode]

    yield use
    lowvram.send_everything_to_cpu()


def image(engines, mode: str, checkpoint: str, **kwargs):
    engines(mode)
    return txt2img(checkpoint, **kwargs).images[0]


def parts_of(*models) -> list[lowvram.Part]:
    return [part for model in models for part in model.extra["lowvram"].parts]


def watch(parts: list[lowvram.Part]):
    """Hooks after Atelier's own: each trigger records its part (once per arrival) and whether exactly that part held
    device copies of its weights at that moment."""
    arrivals, wrong = [], []

    def check(part):
        def hook(module, args):
            on_device = [p for p in parts if all(t.data_ptr() != s.data_ptr() for t, s in zip(p.tensors, p.stored))]
            if on_device != [part] or [p for p in parts if p.resident] != [part]:
                wrong.append((part.name, [p.name for p in on_device]))
            if not arrivals or arrivals[-1] is not part:
                arrivals.append(part)
        return hook

    handles = [module.register_forward_pre_hook(check(part)) for part in parts for module in part.triggers]
    return arrivals, wrong, handles


def weights(model) -> dict[str, torch.Tensor]:
    components = {"unet": model.unet, "vae": model.vae, **model.text_encoders}
    return {f"{c}.{k}": v.detach().clone() for c, m in components.items() for k, v in m.state_dict().items()}


# --- same pixels as the normal path -------------------------------------------------------------------------------


def test_images_are_pixel_identical_to_the_normal_path(engines):
    """SD1 here; SDXL with its refiner in the refiner test below."""
    normal = image(engines, "normal", SD1, sampler_name="Euler a", steps=2)
    for mode in ("medvram", "lowvram"):
        offloaded = image(engines, mode, SD1, sampler_name="Euler a", steps=2)
        model = engines(mode).current
        assert lowvram.is_enabled(model) and model.plan.memory_mode == mode
        assert model.device == torch.device("cpu")
        assert np.array_equal(pixels(normal), pixels(offloaded)), mode


def test_img2img_encode_under_medvram_and_lowvram(engines):
    def run(mode):
        engines(mode)
        opts.set("sd_model_checkpoint", SD1)
        p = processing.StableDiffusionProcessingImg2Img(
            prompt="a red cube", steps=4, width=64, height=64, seed=7, sampler_name="Euler", init_images=[picture(0)],
            mask=square_mask(), mask_blur=2, denoising_strength=0.6, do_not_save_samples=True, do_not_save_grid=True)
        return processing.process_images(p).images[0]

    normal = run("normal")
    assert np.array_equal(pixels(normal), pixels(run("medvram")))
    assert np.array_equal(pixels(normal), pixels(run("lowvram")))


def test_a_vae_chosen_in_settings_is_offloaded_like_the_checkpoints_own(engines):
    opts.set("sd_vae", "tiny_vae.safetensors")
    normal = image(engines, "normal", SD1, steps=2)
    offloaded = image(engines, "medvram", SD1, steps=2)
    model = engines("medvram").current
    assert model.loaded_vae_file.endswith("tiny_vae.safetensors") and model.vae is not model.base_vae
    part = model.extra["lowvram"].vae_parts[id(model.vae)][1]
    assert part.resident, "the decode ran last: the chosen VAE's part is the one on the device"
    assert np.array_equal(pixels(normal), pixels(offloaded))


# --- what moves, and when ---------------------------------------------------------------------------------------


def test_lowvram_moves_text_encoders_then_unet_blocks_in_call_order_then_vae(engines):
    model = engines("lowvram").get(processing.resolve_checkpoint(SDXL))
    parts = parts_of(model)
    arrivals, wrong, handles = watch(parts)
    try:
        txt2img(SDXL, steps=2, sampler_name="Euler")
    finally:
        for handle in handles:
            handle.remove()
    units = [name for name, _ in lowvram.unet_units(model.unet, use_medvram=False)]
    assert [p.name for p in arrivals] == ["text_encoders"] + units * 2 + ["vae"]
    assert len(units) > 10 and units[0].startswith("unet.down_blocks.0.") and units[-1].startswith("unet.up_blocks.")
    assert not wrong, f"more than its own part on the device: {wrong[:3]}"


def test_refiner_under_medvram_takes_the_same_single_slot_and_gives_the_normal_pixels(engines):
    kwargs = {"refiner_checkpoint": REFINER, "refiner_switch_at": 0.5, "steps": 4}
    normal = image(engines, "normal", SDXL, **kwargs)
    manager = engines("medvram")
    base = manager.get(processing.resolve_checkpoint(SDXL))
    refiner = manager.get(processing.resolve_checkpoint(REFINER), make_current=False)
    arrivals, wrong, handles = watch(parts_of(base, refiner))
    try:
        offloaded = txt2img(SDXL, **kwargs).images[0]
    finally:
        for handle in handles:
            handle.remove()
    owner = {id(p): "base" for p in parts_of(base)} | {id(p): "refiner" for p in parts_of(refiner)}
    assert [(owner[id(p)], p.name) for p in arrivals] == [
        ("base", "text_encoders"), ("base", "unet"), ("refiner", "text_encoders"), ("refiner", "unet"), ("base", "vae")]
    assert not wrong
    assert np.array_equal(pixels(normal), pixels(offloaded))
    assert np.array_equal(pixels(normal), pixels(image(engines, "lowvram", SDXL, **kwargs)))


def test_unet_small_layers_stay_on_the_device_and_blocks_wait_in_storage(engines):
    manager = engines("lowvram")
    txt2img(SD1, steps=1)
    model = manager.current
    offload = model.extra["lowvram"]
    in_parts = {id(t) for part in offload.parts for t in part.tensors}
    small = [name for name, t in model.unet.named_parameters() if id(t) not in in_parts]
    assert small and all(name.split(".")[0] in ("conv_in", "time_embedding", "conv_norm_out", "conv_out") for name in small)
    assert offload.offloader.resident is offload.vae_parts[id(model.vae)][1]
    assert not any(p.resident for p in offload.parts if p.name != "vae")


def test_medvram_sdxl_offloads_sdxl_only(engines):
    manager = engines("medvram-sdxl")
    txt2img(SD1, steps=1)
    sd1 = manager.current
    assert not lowvram.is_enabled(sd1) and sd1.plan.memory_mode == "normal"
    txt2img(SDXL, steps=1, refiner_checkpoint=REFINER, refiner_switch_at=0.5)
    for model in manager.loaded.values():
        assert lowvram.is_enabled(model) == model.family.is_sdxl
        assert model.plan.memory_mode == ("medvram" if model.family.is_sdxl else "normal")


def test_a_dropped_model_gives_its_device_slot_back(engines, tmp_path):
    manager = sd_models.ModelManager(cpu_plan("medvram-sdxl"), tmp_path / "cache", limit=1)
    sd_models.model_manager = manager
    txt2img(SDXL, steps=1)
    sdxl = manager.current
    offloader = sdxl.extra["lowvram"].offloader
    assert offloader.resident in parts_of(sdxl)
    txt2img(SD1, steps=1)  # the limit of one drops the SDXL model; SD1 runs without offloading
    assert sdxl.sd_checkpoint_info.filename not in manager.loaded
    assert offloader.resident is None and not any(p.resident for p in parts_of(sdxl))


# --- networks keep working ----------------------------------------------------------------------------------------


@pytest.fixture()
def network_dirs(tmp_path, monkeypatch):
    folders = {name: tmp_path / name for name in ("Lora", "hypernetworks")}
    for folder in folders.values():
        folder.mkdir()
    monkeypatch.setattr(cmd_opts, "lora_dir", str(folders["Lora"]))
    monkeypatch.setattr(cmd_opts, "hypernetwork_dir", str(folders["hypernetworks"]))
    return folders


def test_lora_under_lowvram_gives_the_normal_pixels_and_restores_exactly(engines, network_dirs, sd1_ckpt):
    network_fixtures.write_network(network_dirs["Lora"] / "tiny_locon.safetensors", sd1_ckpt, "locon", seed=5)
    networks.list_available_networks()
    prompt = "a red cube <lora:tiny_locon:0.8>"
    expected = image(engines, "normal", SD1, prompt=prompt, steps=2)
    plain = image(engines, "lowvram", SD1, steps=2)
    model = engines("lowvram").current
    before = weights(model)
    with_lora = image(engines, "lowvram", SD1, prompt=prompt, steps=2)
    assert np.array_equal(pixels(expected), pixels(with_lora))
    assert not np.array_equal(pixels(plain), pixels(with_lora))
    patched = weights(model)
    assert any(not torch.equal(before[k], patched[k]) for k in before)
    again = image(engines, "lowvram", SD1, steps=2)
    after = weights(model)
    assert all(torch.equal(before[k], after[k]) for k in before), "every weight must equal its original exactly"
    assert np.array_equal(pixels(plain), pixels(again))


def test_a_patch_written_while_its_part_is_on_the_device_is_kept_when_it_goes_back(engines, network_dirs, sd1_ckpt):
    network = network_fixtures.write_network(network_dirs["Lora"] / "tiny_lora.safetensors", sd1_ckpt, "lora", seed=2)
    networks.list_available_networks()
    manager = engines("lowvram")
    txt2img(SD1, steps=1)
    model = manager.current
    path = next(p for component, p in network.layers.values() if component == "unet")
    weight = model.unet.get_submodule(path).weight
    part = next(p for p in model.extra["lowvram"].parts if any(t is weight for t in p.tensors))
    original = weight.detach().clone()
    offloader = model.extra["lowvram"].offloader
    offloader.load(part)
    networks.load_networks(model, ["tiny_lora"])  # written into the device copy
    patched = weight.detach().clone()
    assert not torch.equal(patched, original)
    offloader.unload()
    assert torch.equal(weight.detach(), patched), "the device copy's patch must reach the stored weights"
    offloader.load(part)
    networks.load_networks(model, [])  # restored while on the device again
    offloader.unload()
    assert torch.equal(weight.detach(), original)


def test_hypernetwork_under_medvram_gives_the_normal_pixels(engines, network_dirs):
    network_fixtures.write_hypernetwork(network_dirs["hypernetworks"] / "tiny_hn.pt", sizes=(64,))
    hypernetworks.list_hypernetworks()
    prompt = "a red cube <hypernet:tiny_hn:1>"
    normal = image(engines, "normal", SD1, prompt=prompt, steps=2)
    offloaded = image(engines, "medvram", SD1, prompt=prompt, steps=2)
    assert np.array_equal(pixels(normal), pixels(offloaded))
    assert not np.array_equal(pixels(offloaded), pixels(image(engines, "medvram", SD1, steps=2)))


# --- the offloader on its own ---------------------------------------------------------------------------------------


def tiny_part(name: str, seed: int) -> tuple[torch.nn.Module, lowvram.Part]:
    torch.manual_seed(seed)
    module = torch.nn.Sequential(torch.nn.Linear(3, 4), torch.nn.LayerNorm(4))
    return module, lowvram.Part(name, [module], [module])


def test_a_cast_on_the_device_or_in_storage_becomes_the_stored_weight():
    offloader = lowvram.Offloader(torch.device("cpu"))
    module, part = tiny_part("a", 0)
    offloader.hook(part)
    x = torch.randn(2, 3)
    expected = module(x).double()
    module.to(torch.float64)  # cast while resident, like the VAE's float32 retry
    offloader.unload()
    assert all(t.dtype == torch.float64 for t in part.stored)
    assert torch.allclose(module(x.double()), expected)  # the next load carries the cast weights
    offloader.unload()
    module.to(torch.float32)  # cast while in storage
    module(x)
    assert all(t.dtype == torch.float32 for t in part.stored)


def test_one_part_at_a_time_and_loading_the_resident_part_again_copies_nothing():
    offloader = lowvram.Offloader(torch.device("cpu"))
    (a, part_a), (b, part_b) = tiny_part("a", 0), tiny_part("b", 1)
    offloader.hook(part_a)
    offloader.hook(part_b)
    a(torch.randn(1, 3))
    copy = a[0].weight.data_ptr()
    a(torch.randn(1, 3))
    assert a[0].weight.data_ptr() == copy and part_a.resident and not part_b.resident
    b(torch.randn(1, 3))
    assert offloader.resident is part_b and not part_a.resident
    assert a[0].weight.data_ptr() == part_a.stored[0].data_ptr()


# --- flags -------------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("flags, mode", [
    ({}, "normal"), ({"medvram_sdxl": True}, "medvram-sdxl"), ({"medvram": True, "medvram_sdxl": True}, "medvram"),
    ({"lowvram": True, "medvram": True}, "lowvram"),
])
def test_memory_mode_from_flags(flags, mode):
    args = type("Args", (), {"medvram": False, "medvram_sdxl": False, "lowvram": False, **flags})()
    assert devices.memory_mode_from_flags(args) == mode


def test_medvram_sdxl_plan_resolves_per_model():
    plan = devices.DevicePlan(torch.device("cuda"), torch.float16, torch.float16, "medvram-sdxl")
    assert plan.for_model(is_sdxl=True).memory_mode == "medvram" and plan.for_model(is_sdxl=True).offloads
    assert plan.for_model(is_sdxl=False).memory_mode == "normal" and not plan.for_model(is_sdxl=False).offloads
    lowvram_plan = devices.DevicePlan(torch.device("cuda"), torch.float16, torch.float16, "lowvram")
    assert lowvram_plan.for_model(is_sdxl=False) is lowvram_plan


def test_without_cuda_the_flags_change_nothing_and_say_so(monkeypatch, caplog):
    monkeypatch.setattr(devices, "has_cuda", lambda: False)
    args = type("Args", (), {"lowvram": True, "medvram": False, "medvram_sdxl": False})()
    with caplog.at_level(logging.WARNING, logger="modules.devices"):
        plan = devices.plan_from_flags(args)
    assert plan.memory_mode == "normal" and plan.device.type == "cpu"
    assert "--lowvram changes nothing without CUDA" in caplog.text
