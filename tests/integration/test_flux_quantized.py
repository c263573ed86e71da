"""fp8 and GGUF Flux.1 files load through the real path (registry -> model manager -> family detection from the
tensors) and compute what the same weights compute upcast: fp8 layers stay fp8 in memory, GGUF layers keep their
blocks. On the CPU the compute dtype is float32, and casting fp8 up or dequantizing GGUF blocks is exact, so the
tolerance is the pixels themselves (identical) unless a test says otherwise."""
from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch
from diffusers.quantizers.gguf.utils import GGUFLinear, GGUFParameter

from modules import quantized_weights, sd_models, sd_models_loader
from modules.shared_options import opts
from tests.fixtures import quantized
from tests.integration.engine_helpers import CPU, pixels, start_engine, txt2img

REF_MODULES = ["clip_l.safetensors", "t5xxl_fp16.safetensors", "ae.safetensors"]
FP8_MODULES = ["clip_l.safetensors", "t5xxl_fp8_e4m3fn.safetensors", "ae.safetensors"]


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    return quantized.write_flux_files(tmp_path_factory.mktemp("quantized"))


@pytest.fixture()
def engine(files):
    return start_engine(files / "models", files / "data")


def generate(checkpoint: str, modules: list[str] = REF_MODULES, **kwargs):
    opts.set("forge_additional_modules", modules)
    defaults = dict(cfg_scale=1.0, negative_prompt="", steps=2, width=64, height=64, seed=21)
    return pixels(txt2img(checkpoint, **(defaults | kwargs)).images[0])


def test_fp8_transformer_and_t5_stay_fp8_and_give_the_upcast_pixels(engine):
    reference = generate("flux-ref")
    ours = generate("flux1-dev-fp8", FP8_MODULES)
    model = sd_models.model_manager.current
    block = model.unet.transformer_blocks[0]
    assert block.attn.to_q.weight.dtype == block.ff.net[2].weight.dtype == torch.float8_e4m3fn
    assert block.attn.to_q.bias.dtype == torch.float8_e4m3fn
    assert block.norm1.linear.weight.dtype == torch.float32  # diffusers' skip list: norms run from wide weights
    assert block.attn.norm_q.weight.dtype == torch.float32
    t5 = model.text_encoders["text_encoder_2"]
    assert t5.encoder.block[0].layer[0].SelfAttention.q.weight.dtype == torch.float8_e4m3fn
    assert t5.encoder.block[0].layer[1].DenseReluDense.wo.weight.dtype == torch.float32  # T5 casts wo's input to it
    assert t5.shared.weight.dtype == torch.float32
    assert np.array_equal(ours, reference)


def test_upcast_fp8_on_load_gives_the_same_pixels(files):
    manager = start_engine(files / "models", files / "data")
    manager.plan = dataclasses.replace(CPU, keep_fp8=False)
    ours = generate("flux1-dev-fp8", FP8_MODULES)
    assert all(p.dtype == torch.float32 for p in manager.current.unet.parameters())
    assert np.array_equal(ours, generate("flux-ref"))


def test_fp8_transformer_output_equals_the_upcast_transformer(engine):
    """One transformer call, no sampler: the fp8 model's output is the upcast model's."""
    generate("flux-ref")
    generate("flux1-dev-fp8", FP8_MODULES)
    fp8 = sd_models.model_manager.loaded[sd_models.get_closet_checkpoint_match("flux1-dev-fp8").filename].unet
    ref = sd_models.model_manager.loaded[sd_models.get_closet_checkpoint_match("flux-ref").filename].unet
    gen = torch.Generator().manual_seed(0)
    args = dict(hidden_states=torch.randn(1, 16, 64, generator=gen), encoder_hidden_states=torch.randn(1, 5, 32, generator=gen),
                pooled_projections=torch.randn(1, 64, generator=gen), timestep=torch.tensor([0.5]),
                img_ids=torch.zeros(16, 3), txt_ids=torch.zeros(5, 3), guidance=torch.tensor([3.5]))
    with torch.no_grad():
        assert torch.equal(fp8(**args).sample, ref(**args).sample)
    assert fp8.transformer_blocks[0].attn.to_k.weight.dtype == torch.float8_e4m3fn  # cast back after the forward


@pytest.mark.parametrize("checkpoint, reference", [("flux1-dev-Q8_0", "flux-q8-ref"), ("flux1-dev-Q4_0", "flux-q4-ref")])
def test_gguf_transformer_keeps_its_blocks_and_gives_the_dequantized_pixels(engine, checkpoint, reference):
    titles = sd_models.checkpoint_tiles()
    assert any(t.startswith(checkpoint + ".gguf") for t in titles), titles  # models/unet, models/diffusion_models
    expected = generate(reference)
    ours = generate(checkpoint)
    model = sd_models.model_manager.current
    assert model.family.label == "Flux.1"
    to_q = model.unet.transformer_blocks[0].attn.to_q
    assert isinstance(to_q, GGUFLinear) and isinstance(to_q.weight, GGUFParameter) and to_q.weight.dtype == torch.uint8
    assert model.unet.transformer_blocks[0].norm1.linear.weight.quant_type is not None
    # dequantizing in torch (diffusers) and in numpy (gguf) gives the same floats; only summation order may differ
    assert np.abs(ours - expected).max() <= 1


def test_scaled_fp8_is_read_as_weight_times_scale(tmp_path):
    weight = torch.randn(8, 4).to(torch.float8_e4m3fn)
    path = quantized.save(tmp_path / "t5xxl_fp8_e4m3fn_scaled.safetensors", {
        "encoder.block.0.layer.0.SelfAttention.q.weight": weight,
        "encoder.block.0.layer.0.SelfAttention.q.scale_weight": torch.tensor(0.25),
        "encoder.block.0.layer.0.SelfAttention.q.scale_input": torch.tensor(1.0),
        "shared.weight": torch.ones(3, 4), "scaled_fp8": torch.empty(0, dtype=torch.float8_e4m3fn)})
    sd, _ = sd_models_loader.read_state_dict(path)
    assert set(sd) == {"encoder.block.0.layer.0.SelfAttention.q.weight", "shared.weight"}
    assert torch.equal(sd["encoder.block.0.layer.0.SelfAttention.q.weight"],
                       (weight.to(torch.float32) * 0.25).to(torch.bfloat16))
    assert quantized_weights.dequantize_scaled_fp8({"a.weight": weight}) == {"a.weight": weight}  # plain fp8: as is


def test_a_gguf_unet_of_an_sd_model_is_a_clear_error(tmp_path):
    models = tmp_path / "models"
    quantized.write_gguf(models / "unet" / "sdxl-Q8_0.gguf", {"input_blocks.0.0.weight": torch.randn(32, 32)}, "Q8_0")
    start_engine(models, tmp_path / "data")
    with pytest.raises(sd_models_loader.CheckpointLoadError, match="GGUF files load for Flux.1, Chroma and SD 3.5"):
        sd_models.model_manager.get(sd_models.get_closet_checkpoint_match("sdxl-Q8_0"))


@pytest.mark.parametrize("family", ["chroma", "sd3"])
def test_chroma_and_sd3_gguf_transformers_load_through_the_same_path(tmp_path, family):
    """Their GGUF files hold the transformer in its original keys, as their safetensors do: the same detection and
    config-from-tensors, quantized layers as GGUFLinear, the other tensors the file's."""
    from tests.fixtures import chroma as tiny_chroma, sd3 as tiny_sd3

    models = tmp_path / "models"
    fixture = tiny_chroma if family == "chroma" else tiny_sd3
    tiny = fixture.make(seed=5)
    fixture.write_parts(models, tiny)
    original = tiny.transformer_bfl if family == "chroma" else tiny.transformer_sai
    dims_ok = {k: v for k, v in original.items() if v.ndim != 2 or v.shape[1] % 32 == 0}
    quantized.write_gguf(models / "unet" / f"{family}-Q8_0.gguf", original, "Q8_0",
                         f16=tuple(k for k in original if k not in dims_ok))
    start_engine(models, tmp_path / "data")
    model = sd_models.model_manager.get(sd_models.get_closet_checkpoint_match(f"{family}-Q8_0"))
    assert model.family.name == family
    layers = [m for m in model.unet.modules() if isinstance(m, GGUFLinear)]
    assert layers and all(isinstance(m.weight, GGUFParameter) for m in layers)
    assert not any(t.is_meta for t in model.unet.parameters())
