"""The tiny checkpoints are real original-layout files: diffusers' own converters read them back exactly."""

import os
import pickle
import pickletools
import zipfile

import pytest
import torch
from diffusers.loaders.single_file_utils import (
    convert_ldm_clip_checkpoint,
    convert_ldm_unet_checkpoint,
    convert_ldm_vae_checkpoint,
    convert_open_clip_checkpoint,
    infer_diffusers_model_type,
)
from safetensors import SafetensorError
from safetensors.torch import load_file
from torch import nn

from tests.fixtures import checkpoints, tiny_models

FAMILY_FIXTURES = ["sd1_ckpt", "sd1_inpaint_ckpt", "sd2v_ckpt", "sdxl_ckpt", "sdxl_refiner_ckpt"]
POSITION_IDS = {"embeddings.position_ids"}
# SD2 files hold the whole OpenCLIP-H tower; the diffusers encoder lacks its last block
SD2_LAST_BLOCK = {
    f"encoder.layers.{tiny_models.TEXT_LAYERS}.{name}.{param}"
    for name in (
        "self_attn.q_proj", "self_attn.k_proj", "self_attn.v_proj", "self_attn.out_proj",
        "layer_norm1", "layer_norm2", "mlp.fc1", "mlp.fc2",
    )
    for param in ("weight", "bias")
}


def _text_encoder_conversions(ck):
    """(module, diffusers-converted dict, keys the file has beyond the module) per text encoder."""
    sd = ck.state_dict
    if ck.family in ("v1", "inpainting"):
        return [(ck.text_encoders[0], convert_ldm_clip_checkpoint(sd), POSITION_IDS)]
    if ck.family == "v2":
        te = ck.text_encoders[0]
        return [(te, convert_open_clip_checkpoint(te, sd, prefix="cond_stage_model.model."), SD2_LAST_BLOCK)]
    if ck.family == "xl_refiner":
        te = ck.text_encoders[0]
        return [(te, convert_open_clip_checkpoint(te, sd, prefix="conditioner.embedders.0.model."), set())]
    te1, te2 = ck.text_encoders
    return [
        (te1, convert_ldm_clip_checkpoint(sd), POSITION_IDS),
        (te2, convert_open_clip_checkpoint(te2, sd, prefix="conditioner.embedders.1.model."), set()),
    ]


def _assert_reproduces(module: nn.Module, converted: dict, extra: set = frozenset()):
    if not hasattr(module, "text_model"):  # flattened CLIPTextModel (stack-notes P2)
        converted = {key.removeprefix("text_model."): value for key, value in converted.items()}
    expected = module.state_dict()
    assert set(expected) - set(converted) == set()
    assert set(converted) - set(expected) == set(extra)
    mismatched = [key for key, value in expected.items() if not torch.equal(converted[key], value)]
    assert mismatched == []


@pytest.mark.parametrize("fixture", FAMILY_FIXTURES)
def test_unet_round_trips_through_diffusers(request, fixture):
    ck = request.getfixturevalue(fixture)
    _assert_reproduces(ck.unet, convert_ldm_unet_checkpoint(ck.state_dict, dict(ck.unet.config)))


@pytest.mark.parametrize("fixture", FAMILY_FIXTURES)
def test_vae_round_trips_through_diffusers(request, fixture):
    ck = request.getfixturevalue(fixture)
    _assert_reproduces(ck.vae, convert_ldm_vae_checkpoint(ck.state_dict, dict(ck.vae.config)))


@pytest.mark.parametrize("fixture", FAMILY_FIXTURES)
def test_text_encoders_round_trip_through_diffusers(request, fixture):
    ck = request.getfixturevalue(fixture)
    conversions = _text_encoder_conversions(ck)
    assert len(conversions) == len(ck.text_encoders)
    for module, converted, extra in conversions:
        _assert_reproduces(module, converted, extra)


@pytest.mark.parametrize("fixture", FAMILY_FIXTURES)
def test_file_on_disk_is_the_returned_state_dict(request, fixture):
    ck = request.getfixturevalue(fixture)
    on_disk = load_file(ck.path)
    assert set(on_disk) == set(ck.state_dict)
    assert all(torch.equal(on_disk[key], value) for key, value in ck.state_dict.items())
    # every key has an original-layout prefix (or is a known top-level buffer/marker)
    prefixes = ("model.diffusion_model.", "first_stage_model.", "cond_stage_model.", "conditioner.embedders.")
    assert {key for key in on_disk if not key.startswith(prefixes)} <= {"alphas_cumprod", "v_pred"}


@pytest.mark.parametrize(
    ("fixture", "model_type"),
    [
        ("sd1_ckpt", "v1"),
        ("sd1_inpaint_ckpt", "inpainting"),
        ("sdxl_ckpt", "xl_base"),
        ("sdxl_refiner_ckpt", "xl_refiner"),
    ],
)
def test_diffusers_infers_the_family(request, fixture, model_type):
    ck = request.getfixturevalue(fixture)
    assert ck.family == model_type
    assert infer_diffusers_model_type(ck.state_dict) == model_type


def test_sd1_markers(sd1_ckpt):
    sd = sd1_ckpt.state_dict
    assert "cond_stage_model.transformer.text_model.encoder.layers.0.self_attn.q_proj.weight" in sd
    assert torch.equal(sd["cond_stage_model.transformer.text_model.embeddings.position_ids"], torch.arange(77)[None])
    assert sd["model.diffusion_model.input_blocks.0.0.weight"].shape[1] == 4
    assert "model.diffusion_model.output_blocks.1.1.conv.weight" in sd  # upsampler of an up level without attention
    assert sd["first_stage_model.decoder.mid.attn_1.q.weight"].shape == (32, 32, 1, 1)
    assert not any(key.startswith(("conditioner.", "cond_stage_model.model.")) for key in sd)
    assert "v_pred" not in sd
    assert sd1_ckpt.vae.config.scaling_factor == 0.18215


def test_sd_alphas_cumprod_is_the_scaled_linear_schedule(sd1_ckpt, sd2v_ckpt):
    alphas = sd1_ckpt.state_dict["alphas_cumprod"]
    assert alphas.shape == (1000,) and alphas.dtype == torch.float32
    assert alphas[0].item() == pytest.approx(1 - 0.00085, abs=1e-7)
    assert alphas[-1].item() == pytest.approx(0.0046601, abs=1e-6)
    assert bool((alphas[1:] < alphas[:-1]).all())
    assert torch.equal(sd2v_ckpt.state_dict["alphas_cumprod"], alphas)


def test_inpainting_markers(sd1_inpaint_ckpt):
    assert sd1_inpaint_ckpt.state_dict["model.diffusion_model.input_blocks.0.0.weight"].shape[1] == 9
    assert sd1_inpaint_ckpt.unet.config.in_channels == 9


def test_sd2_markers(sd2v_ckpt):
    sd = sd2v_ckpt.state_dict
    prefix = "cond_stage_model.model."
    assert sd[prefix + "transformer.resblocks.0.attn.in_proj_weight"].shape == (3 * 64, 64)
    assert sd[prefix + "text_projection"].shape == (64, 64)
    assert sd[prefix + "positional_embedding"].shape == (77, 64)
    assert sd[prefix + "token_embedding.weight"].shape == (49408, 64)
    assert prefix + "ln_final.weight" in sd
    blocks = {key.split(".")[4] for key in sd if key.startswith(prefix + "transformer.resblocks.")}
    assert len(blocks) == tiny_models.TEXT_LAYERS + 1
    assert sd2v_ckpt.text_encoders[0].config.num_hidden_layers == tiny_models.TEXT_LAYERS
    assert sd["v_pred"].numel() == 0
    assert sd2v_ckpt.prediction_type == "v_prediction"
    assert not any(key.startswith("cond_stage_model.transformer.") for key in sd)


def test_sd2_eps_has_no_v_pred_marker(tmp_path):
    ck = checkpoints.write_sd2(tmp_path / "eps.safetensors", v_prediction=False)
    assert "v_pred" not in load_file(ck.path)
    assert ck.prediction_type == "epsilon" and ck.family == "v2"


def test_sdxl_markers(sdxl_ckpt):
    sd = sdxl_ckpt.state_dict
    assert sd["conditioner.embedders.1.model.transformer.resblocks.0.attn.in_proj_weight"].shape == (3 * 128, 128)
    assert "conditioner.embedders.1.model.transformer.resblocks.9.mlp.c_proj.bias" in sd  # stack-notes P4
    assert sd["conditioner.embedders.1.model.text_projection"].shape == (128, 128)
    assert "conditioner.embedders.0.transformer.text_model.encoder.layers.0.self_attn.q_proj.weight" in sd
    assert sd["model.diffusion_model.label_emb.0.0.weight"].shape == (4 * 64, 6 * 8 + 128)  # time embed = 4 x ch0
    assert "model.diffusion_model.output_blocks.2.2.conv.weight" in sd  # upsampler after an attention
    assert sd["model.diffusion_model.input_blocks.4.1.transformer_blocks.0.attn2.to_k.weight"].shape[1] == 192
    assert sdxl_ckpt.vae.config.scaling_factor == 0.13025
    assert not any(key.startswith("cond_stage_model.") for key in sd)


def test_sdxl_inpainting_variant(tmp_path):
    ck = checkpoints.write_sdxl(tmp_path / "inpaint.safetensors", inpainting=True)
    assert ck.state_dict["model.diffusion_model.input_blocks.0.0.weight"].shape[1] == 9
    assert infer_diffusers_model_type(ck.state_dict) == ck.family == "xl_inpaint"


def test_refiner_markers(sdxl_refiner_ckpt):
    sd = sdxl_refiner_ckpt.state_dict
    assert "conditioner.embedders.0.model.ln_final.weight" in sd
    assert "conditioner.embedders.0.model.text_projection" in sd
    assert not any(key.startswith(("conditioner.embedders.1.", "conditioner.embedders.0.transformer.")) for key in sd)
    assert sd["model.diffusion_model.label_emb.0.0.weight"].shape[1] == 5 * 8 + 128
    assert sd["model.diffusion_model.input_blocks.4.1.transformer_blocks.0.attn2.to_k.weight"].shape[1] == 128


def _attention_widths(unet):
    from diffusers.models.attention_processor import Attention

    return {(m.heads, m.inner_dim // m.heads) for m in unet.modules() if isinstance(m, Attention)}


def test_family_rules(sd1_ckpt, sd2v_ckpt, sdxl_ckpt, sdxl_refiner_ckpt):
    assert {heads for heads, _ in _attention_widths(sd1_ckpt.unet)} == {8}
    for ck in (sd2v_ckpt, sdxl_ckpt, sdxl_refiner_ckpt):
        assert {width for _, width in _attention_widths(ck.unet)} == {64}
        assert ck.unet.config.use_linear_projection is True
    for ck in (sd1_ckpt, sd2v_ckpt, sdxl_ckpt, sdxl_refiner_ckpt):
        groups = {m.num_groups for m in [*ck.unet.modules(), *ck.vae.modules()] if isinstance(m, nn.GroupNorm)}
        assert groups == {32}
        assert ck.vae.config.block_out_channels == (32, 32, 32, 32) and ck.vae.config.latent_channels == 4
        for te in ck.text_encoders:
            c = te.config
            assert c.hidden_size // c.num_attention_heads == 64 and c.intermediate_size == 4 * c.hidden_size
            assert (c.vocab_size, c.max_position_embeddings) == (49408, 77)
            assert c.num_hidden_layers >= 3
    acts = [te.config.hidden_act for ck in (sd1_ckpt, sd2v_ckpt, sdxl_ckpt) for te in ck.text_encoders]
    assert acts == ["quick_gelu", "gelu", "quick_gelu", "gelu"]


def test_weights_are_nontrivial(sd1_ckpt, sdxl_ckpt):
    for module in (sd1_ckpt.unet, sd1_ckpt.vae, *sd1_ckpt.text_encoders, *sdxl_ckpt.text_encoders):
        constant = [name for name, p in module.named_parameters() if bool(p.min() == p.max())]
        assert constant == []
    unet = sdxl_ckpt.unet
    gen = torch.Generator().manual_seed(0)
    context = torch.randn(1, 4, 192, generator=gen)
    cond = {"text_embeds": torch.randn(1, 128, generator=gen), "time_ids": torch.tensor([[64.0, 64, 0, 0, 64, 64]])}
    with torch.no_grad():
        a, b = (unet(torch.randn(1, 4, 8, 8, generator=gen), 10, context, added_cond_kwargs=cond).sample for _ in "ab")
    assert not torch.allclose(a, b)


def test_vae_file_is_a_bare_sd_vae(vae_file, sd1_ckpt):
    sd = load_file(vae_file)
    assert {key.split(".")[0] for key in sd} == {"encoder", "decoder", "quant_conv", "post_quant_conv"}
    converted = convert_ldm_vae_checkpoint(sd, dict(sd1_ckpt.vae.config))
    reference = sd1_ckpt.vae.state_dict()
    assert {key: v.shape for key, v in converted.items()} == {key: v.shape for key, v in reference.items()}
    assert not torch.equal(converted["decoder.conv_out.weight"], reference["decoder.conv_out.weight"])


def test_vae_pt_wraps_state_dict(tmp_path, vae_file):
    sd = checkpoints.write_vae(tmp_path / "vae.pt")
    loaded = torch.load(tmp_path / "vae.pt", weights_only=True)
    assert set(loaded) == {"state_dict"}
    assert all(torch.equal(loaded["state_dict"][key], value) for key, value in sd.items())
    safetensors_sd = load_file(vae_file)  # same seed, same weights
    assert set(safetensors_sd) == set(sd)
    assert all(torch.equal(value, safetensors_sd[key]) for key, value in sd.items())
    with pytest.raises(ValueError, match="not '.bin'"):
        checkpoints.write_vae(tmp_path / "vae.bin")


def test_ckpt_loads_weights_only(tmp_path, sd1_ckpt):
    path = tmp_path / "sd1.ckpt"
    checkpoints.write_ckpt(path, sd1_ckpt.state_dict)
    loaded = torch.load(path, weights_only=True)
    assert loaded["global_step"] == 1
    assert set(loaded["state_dict"]) == set(sd1_ckpt.state_dict)
    assert all(torch.equal(loaded["state_dict"][key], value) for key, value in sd1_ckpt.state_dict.items())


def _pickle_ops(path) -> list[tuple[str, object]]:
    with zipfile.ZipFile(path) as archive:
        data = archive.read(next(name for name in archive.namelist() if name.endswith("data.pkl")))
    return [(op.name, arg) for op, arg, _ in pickletools.genops(data)]


def test_malicious_ckpt_is_refused_without_running(tmp_path):
    path = tmp_path / "evil.ckpt"
    marker = checkpoints.write_malicious_ckpt(path)
    assert marker == checkpoints.malicious_marker(path)
    ops = _pickle_ops(path)  # inspected statically: the payload must never run in tests
    assert ("GLOBAL", f"{os.system.__module__} system") in ops
    assert ("BINUNICODE", f"touch {marker}") in ops
    with pytest.raises(pickle.UnpicklingError, match=rf"{os.system.__module__}\.system"):
        torch.load(path, weights_only=True)
    assert not marker.exists()


def test_truncated_and_corrupt_files_fail_to_load(tmp_path, sd1_ckpt):
    truncated, corrupt = tmp_path / "cut.safetensors", tmp_path / "noise.safetensors"
    checkpoints.write_truncated(truncated, sd1_ckpt.path)
    assert truncated.stat().st_size == sd1_ckpt.path.stat().st_size // 2
    assert truncated.read_bytes() == sd1_ckpt.path.read_bytes()[: truncated.stat().st_size]
    checkpoints.write_corrupt(corrupt)
    first = corrupt.read_bytes()
    checkpoints.write_corrupt(corrupt)
    assert corrupt.read_bytes() == first and len(first) == 4096
    for path in (truncated, corrupt):
        with pytest.raises(SafetensorError):
            load_file(path)


def test_tiny_models_dir_layout(tiny_models_dir, sd1_ckpt, sdxl_refiner_ckpt):
    files = sorted(p.relative_to(tiny_models_dir).as_posix() for p in tiny_models_dir.rglob("*") if p.is_file())
    assert files == [
        "Stable-diffusion/refiners/tiny_sdxl_refiner.safetensors",
        "Stable-diffusion/tiny_sd1.safetensors",
        "Stable-diffusion/tiny_sdxl.safetensors",
        "VAE/tiny_vae.safetensors",
    ]
    copied = tiny_models_dir / "Stable-diffusion" / "refiners" / "tiny_sdxl_refiner.safetensors"
    assert copied.read_bytes() == sdxl_refiner_ckpt.path.read_bytes()


def test_whole_set_builds_deterministically(tmp_path, sd1_ckpt, sd2v_ckpt, sdxl_ckpt, sdxl_refiner_ckpt):
    rng_before = torch.get_rng_state()
    rebuilt = [
        checkpoints.write_sd1(tmp_path / "sd1.safetensors"),
        checkpoints.write_sd1(tmp_path / "inpaint.safetensors", inpainting=True),
        checkpoints.write_sd2(tmp_path / "sd2.safetensors"),
        checkpoints.write_sdxl(tmp_path / "sdxl.safetensors"),
        checkpoints.write_sdxl_refiner(tmp_path / "refiner.safetensors"),
    ]
    checkpoints.write_vae(tmp_path / "vae.safetensors")
    assert torch.equal(torch.get_rng_state(), rng_before)
    for new, old in zip(rebuilt[:1] + rebuilt[2:], (sd1_ckpt, sd2v_ckpt, sdxl_ckpt, sdxl_refiner_ckpt)):
        assert new.path.read_bytes() == old.path.read_bytes()
    other_seed = checkpoints.write_sd1(tmp_path / "seed1.safetensors", seed=1)
    key = "model.diffusion_model.out.2.weight"
    assert not torch.equal(other_seed.state_dict[key], sd1_ckpt.state_dict[key])

