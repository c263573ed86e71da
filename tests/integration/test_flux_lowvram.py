"""--medvram / --lowvram for flow models (Flux.1 here, fp8 and GGUF included) on the CPU, as tests/integration/
test_lowvram.py does for SD: every move is a real copy, so the tests see which part is on the "device" in each phase
(text encoders while encoding, the transformer while sampling, the VAE while decoding) and that the pixels are the
normal mode's."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from modules import devices, lowvram, processing, sd_models
from modules.shared_options import opts
from tests.fixtures import quantized
from tests.integration.engine_helpers import pixels, start_engine, txt2img
from tests.integration.test_lowvram import parts_of, watch

MODES = ("normal", "medvram", "lowvram")
FP8_MODULES = ["clip_l.safetensors", "t5xxl_fp8_e4m3fn.safetensors", "ae.safetensors"]


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    return quantized.write_flux_files(tmp_path_factory.mktemp("flux_lowvram"))


@pytest.fixture()
def engines(files):
    start_engine(files / "models", files / "data")
    managers = {mode: sd_models.ModelManager(devices.DevicePlan(torch.device("cpu"), torch.float32, torch.float32, mode),
                                             files / "data" / "cache", limit=3) for mode in MODES}

    def use(mode: str) -> sd_models.ModelManager:
        sd_models.model_manager = managers[mode]
        return managers[mode]

    yield use
    lowvram.send_everything_to_cpu()


def generate(checkpoint: str, **kwargs):
    opts.set("forge_additional_modules", FP8_MODULES)
    defaults = dict(cfg_scale=1.0, negative_prompt="", steps=2, width=64, height=64, seed=33, sampler_name="Euler")
    return txt2img(checkpoint, **(defaults | kwargs))


@pytest.mark.parametrize("checkpoint", ["flux-ref", "flux1-dev-fp8", "flux1-dev-Q8_0"])
def test_medvram_and_lowvram_give_the_normal_pixels(engines, checkpoint):
    engines("normal")
    normal = pixels(generate(checkpoint).images[0])
    for mode in ("medvram", "lowvram"):
        manager = engines(mode)
        offloaded = pixels(generate(checkpoint).images[0])
        assert lowvram.is_enabled(manager.current) and manager.current.plan.memory_mode == mode
        assert np.array_equal(normal, offloaded), mode


def _phases(engines, mode: str, checkpoint: str) -> tuple[list[str], list, sd_models.StableDiffusionModel]:
    opts.set("forge_additional_modules", FP8_MODULES)
    model = engines(mode).get(processing.resolve_checkpoint(checkpoint))
    arrivals, wrong, handles = watch(parts_of(model))
    try:
        generate(checkpoint)
    finally:
        for handle in handles:
            handle.remove()
    return [p.name for p in arrivals], wrong, model


def test_medvram_moves_the_text_encoders_then_the_transformer_then_the_vae(engines):
    names, wrong, model = _phases(engines, "medvram", "flux1-dev-fp8")
    assert names == ["text_encoders", "transformer", "vae"]
    assert not wrong, f"more than its own part on the device: {wrong[:3]}"
    offload = model.extra["lowvram"]
    assert offload.offloader.resident is offload.vae_parts[id(model.vae)][1]  # the decode ran last


def test_lowvram_moves_encoder_layers_then_transformer_blocks_in_call_order_each_step_then_the_vae(engines):
    names, wrong, model = _phases(engines, "lowvram", "flux1-dev-fp8")
    t5, clip = model.text_encoders["text_encoder_2"], model.text_encoders["text_encoder"]
    t5_blocks = [f"text_encoder_2.{i}" for i in range(len(t5.encoder.block))]
    clip_layers = [f"text_encoder.{i}" for i in range(clip.config.num_hidden_layers)]
    blocks = ["transformer.transformer_blocks.0", "transformer.single_transformer_blocks.0",
              "transformer.single_transformer_blocks.1"]
    encode = t5_blocks + clip_layers  # each prompt (the negative one too): T5 first, then CLIP-L's pooled vector
    tail = blocks * 2 + ["vae"]  # two steps
    head = names[:-len(tail)]
    assert names[-len(tail):] == tail and head and head == encode * (len(head) // len(encode)), names
    assert not wrong, f"more than its own part on the device: {wrong[:3]}"


def test_fp8_layers_under_lowvram_stay_fp8_and_go_back_without_a_copy(engines):
    """The fp8 layers cast themselves up and back around each forward; their part still drops its device copies on
    the way back instead of copying them to storage: the stored tensors are the ones made at load."""
    opts.set("forge_additional_modules", FP8_MODULES)
    model = engines("lowvram").get(processing.resolve_checkpoint("flux1-dev-fp8"))
    block = next(p for p in parts_of(model) if p.name == "transformer.transformer_blocks.0")
    stored = [s.data_ptr() for s in block.stored]
    generate("flux1-dev-fp8")
    assert [s.data_ptr() for s in block.stored] == stored
    to_q = model.unet.transformer_blocks[0].attn.to_q
    assert to_q.weight.dtype == torch.float8_e4m3fn and to_q.weight.data_ptr() in stored


def test_a_patch_written_while_an_fp8_part_is_on_the_device_is_kept(engines):
    """A weight written in place while its part is resident (as a LoRA patch is) survives the layer's casts and the
    trip back to storage."""
    opts.set("forge_additional_modules", FP8_MODULES)
    manager = engines("medvram")
    model = manager.get(processing.resolve_checkpoint("flux1-dev-fp8"))
    generate("flux1-dev-fp8")
    transformer_part = next(p for p in parts_of(model) if p.name == "transformer")
    manager.current.extra["lowvram"].offloader.load(transformer_part)
    weight = model.unet.transformer_blocks[0].attn.to_q.weight
    with torch.no_grad():
        weight.copy_(torch.zeros_like(weight))
    generate("flux1-dev-fp8")  # the transformer casts to_q up and back at each step, then goes back for the VAE
    assert not transformer_part.resident
    assert weight.dtype == torch.float8_e4m3fn and not weight.to(torch.float32).any()
