"""Chroma and SD 3.5 LoRA in the hubs' layouts (Chroma: Flux.1's BFL layout in kohya's spelling, diffusers/PEFT; SD 3.5:
kohya's and ComfyUI's on Stability's fused layout, diffusers/PEFT, kohya's text-encoder prefixes): each patches the
weights by its format's formula (fused layers computed fused, modulations with diffusers' swapped halves), weight 0 is
no LoRA bit for bit, restore is exact, and the Lora page shows each family its networks."""
from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest
import torch
from safetensors.torch import save_file

from modules import sd_models, ui_extra_networks
from modules.networks import networks
from modules.networks.network import SdVersion
from modules.shared_cmd_options import cmd_opts
from tests.fixtures import chroma as tiny_chroma, sd3 as tiny_sd3
from tests.integration.engine_helpers import pixels, start_engine, txt2img

RANK = 4
CHECKPOINTS = {"chroma": "chroma-unlocked", "sd3": "sd3.5_medium"}
D, S, B0, B1 = "transformer_blocks.0.", "single_transformer_blocks.1.", "transformer_blocks.0.", "transformer_blocks.1."
# original-layout layer -> our layers in the order the original concatenates them; "swap": halves swapped in ours
FUSED = {
    "chroma": {
        "double_blocks.0.img_attn.qkv": [D + "attn.to_q", D + "attn.to_k", D + "attn.to_v"],
        "double_blocks.0.txt_mlp.0": [D + "ff_context.net.0.proj"],
        "single_blocks.1.linear1": [S + "attn.to_q", S + "attn.to_k", S + "attn.to_v", S + "proj_mlp"],
        "single_blocks.1.linear2": [S + "proj_out"],
        "img_in": ["x_embedder"],
    },
    "sd3": {
        "joint_blocks.0.x_block.attn.qkv": [B0 + "attn.to_q", B0 + "attn.to_k", B0 + "attn.to_v"],
        "joint_blocks.0.context_block.attn.qkv": [B0 + "attn.add_q_proj", B0 + "attn.add_k_proj", B0 + "attn.add_v_proj"],
        "joint_blocks.0.x_block.attn2.qkv": [B0 + "attn2.to_q", B0 + "attn2.to_k", B0 + "attn2.to_v"],
        "joint_blocks.0.x_block.mlp.fc1": [B0 + "ff.net.0.proj"],
        "joint_blocks.0.context_block.attn.proj": [B0 + "attn.to_add_out"],
        "joint_blocks.0.context_block.adaLN_modulation.1": [B0 + "norm1_context.linear"],
        "joint_blocks.1.context_block.adaLN_modulation.1": ["swap", B1 + "norm1_context.linear"],  # the last block
        "final_layer.adaLN_modulation.1": ["swap", "norm_out.linear"],
        "y_embedder.mlp.0": ["time_text_embed.text_embedder.linear_1"],
        "context_embedder": ["context_embedder"],
    },
}
OURS = {"chroma": [D + "attn.to_q", D + "attn.add_v_proj", S + "attn.to_k", S + "proj_mlp", "proj_out"],
        "sd3": [B0 + "attn.to_q", B0 + "attn2.to_v", B1 + "attn.add_k_proj", B0 + "ff_context.net.2", "proj_out"]}
CLIP_LAYER = "text_model.encoder.layers.0.self_attn.q_proj"
T5_LAYER = "encoder.block.1.layer.1.DenseReluDense.wo"
TEXT = {  # family -> (text encoder component, layer, kohya prefix, PEFT prefix)
    "chroma": [("text_encoder", T5_LAYER, "lora_te3_", "text_encoder.")],
    "sd3": [("text_encoder", CLIP_LAYER, "lora_te1_", "text_encoder."),
            ("text_encoder_2", CLIP_LAYER, "lora_te2_", "text_encoder_2."),
            ("text_encoder_3", T5_LAYER, "lora_te3_", "text_encoder_3.")],
}
FORMATS = [("chroma", "kohya"), ("chroma", "peft"), ("sd3", "kohya"), ("sd3", "comfy"), ("sd3", "peft")]


@pytest.fixture(scope="module")
def roots(tmp_path_factory):
    out = {}
    for family, name in CHECKPOINTS.items():
        root = tmp_path_factory.mktemp(f"{family}lora")
        fixture = tiny_chroma if family == "chroma" else tiny_sd3
        tiny = fixture.make(seed=51)
        fixture.write_transformer_only(root / "models" / "Stable-diffusion" / f"{name}.safetensors", tiny)
        fixture.write_parts(root / "models", tiny)
        (root / "models" / "Lora").mkdir()
        out[family] = root
    return out


def engine_for(family, roots, monkeypatch):
    models = roots[family] / "models"
    monkeypatch.setattr(cmd_opts, "lora_dir", str(models / "Lora"))
    manager = start_engine(models, roots[family] / "data")
    return SimpleNamespace(manager=manager, lora=models / "Lora", family=family,
                           model=manager.get(sd_models.get_closet_checkpoint_match(CHECKPOINTS[family])))


def submodule(module, path: str) -> torch.nn.Module:
    if path.startswith("text_model.") and not hasattr(module, "text_model"):  # transformers >= 5.6: flattened CLIP
        path = path.removeprefix("text_model.")
    return module.get_submodule(path)


def weight(model, where: str, path: str) -> torch.Tensor:
    return submodule(model.unet if where == "unet" else model.text_encoders[where], path).weight


def write_lora(engine, name: str, fmt: str, seed: int = 0, metadata: dict | None = None) -> dict:
    """A LoRA file of `fmt`; returns {(where, layer): (down, up, scale)}: where "fused" (an original-layout layer),
    "unet" (one of ours) or a text encoder component."""
    g = torch.Generator().manual_seed(seed)
    model, family = engine.model, engine.family
    layers, sd = {}, {}
    alpha = 2.0 if fmt in ("kohya", "comfy") else None
    kohya = {"down": "lora_down.weight", "up": "lora_up.weight", "alpha": "alpha"}
    peft = {"down": "lora_A.weight", "up": "lora_B.weight"}

    def add(key_of, layer, rows, cols):
        down, up = torch.randn(RANK, cols, generator=g) * 0.3, torch.randn(rows, RANK, generator=g) * 0.3
        sd[key_of("down")], sd[key_of("up")] = down, up
        if alpha is not None:
            sd[key_of("alpha")] = torch.tensor(alpha)
        layers[layer] = (down, up, alpha / RANK if alpha is not None else 1.0)

    if fmt in ("kohya", "comfy"):
        spell = (lambda o, p: f"lora_unet_{o.replace('.', '_')}.{kohya[p]}") if fmt == "kohya" else \
            (lambda o, p: f"diffusion_model.{o}.{kohya[p]}")
        for original, ours in FUSED[family].items():
            ws = [weight(model, "unet", p) for p in ours if p != "swap"]
            add(lambda p, o=original: spell(o, p), ("fused", original), sum(w.shape[0] for w in ws), ws[0].shape[1])
    if fmt == "peft":
        for path in OURS[family]:
            w = weight(model, "unet", path)
            add(lambda p, q=path: f"transformer.{q}.{peft[p]}", ("unet", path), *w.shape)
    for component, path, kohya_prefix, peft_prefix in TEXT[family]:
        w = weight(model, component, path)
        key = (lambda p, c=kohya_prefix, q=path: f"{c}{q.replace('.', '_')}.{kohya[p]}") if fmt == "kohya" else \
            (lambda p, c=peft_prefix, q=path: f"{c}{q}.{peft[p]}") if fmt == "peft" else None
        if key is not None:
            add(key, (component, path), *w.shape)
    save_file({k: v.contiguous() for k, v in sd.items()}, str(engine.lora / f"{name}.safetensors"), metadata=metadata)
    networks.list_available_networks()
    return layers


def swap_halves(t: torch.Tensor) -> torch.Tensor:
    a, b = t.chunk(2)
    return torch.cat([b, a])


def current_and_formula(engine, layer, originals, down, up, scale, te_m, unet_m):
    """(the layer's weight now in the file layer's layout, the format's formula over its original weight)."""
    where, path = layer
    if where != "fused":
        mult = unet_m if where == "unet" else te_m
        return weight(engine.model, where, path), originals[layer] + mult * scale * (up @ down)
    paths = FUSED[engine.family][path]
    swap = paths[0] == "swap"
    paths = [p for p in paths if p != "swap"]
    now = torch.cat([weight(engine.model, "unet", p) for p in paths])
    fused = torch.cat([originals[("unet", p)] for p in paths])
    patched = (swap_halves(fused) if swap else fused) + unet_m * scale * (up @ down)
    return now, swap_halves(patched) if swap else patched


def snapshot(model) -> dict:
    out = {("unet", k.removesuffix(".weight")): v.clone() for k, v in model.unet.state_dict().items()}
    for name, te in model.text_encoders.items():
        for k, m in te.named_modules():
            if isinstance(m, (torch.nn.Linear,)):
                out[(name, k)] = m.weight.detach().clone()
                out[(name, "text_model." + k)] = out[(name, k)]
    return out


@pytest.mark.parametrize("family, fmt", FORMATS)
def test_patched_weight_equals_the_formats_formula_and_restore_is_exact(roots, monkeypatch, family, fmt):
    engine = engine_for(family, roots, monkeypatch)
    original = snapshot(engine.model)
    layers = write_lora(engine, f"{family}_{fmt}", fmt, seed=3)
    missing, errors = networks.load_networks(engine.model, [f"{family}_{fmt}"], [0.5], [0.7])
    assert not missing and not errors
    for layer, (down, up, scale) in layers.items():
        now, expected = current_and_formula(engine, layer, original, down, up, scale, 0.5, 0.7)
        unpatched = current_and_formula(engine, layer, original, down, up, 0.0, 0, 0)[1]
        assert (now - unpatched).abs().max() > 1e-3, layer  # the layer was patched
        torch.testing.assert_close(now, expected, rtol=0, atol=1e-5, msg=lambda m, la=layer: f"{la}: {m}")
    networks.load_networks(engine.model, [])
    after = snapshot(engine.model)
    assert all(torch.equal(after[k], original[k]) for k in original)


@pytest.mark.parametrize("family", list(CHECKPOINTS))
def test_weight_zero_is_no_lora_and_weight_one_changes_the_image(roots, monkeypatch, family):
    engine = engine_for(family, roots, monkeypatch)
    write_lora(engine, f"{family}_style", "kohya" if family == "chroma" else "comfy", seed=5)
    kw = dict(cfg_scale=1.0, negative_prompt="", steps=1, width=32, height=32, seed=9)
    name = CHECKPOINTS[family]
    plain = pixels(txt2img(name, prompt="a red cube", **kw).images[0])
    zero = pixels(txt2img(name, prompt=f"a red cube <lora:{family}_style:0>", **kw).images[0])
    one = txt2img(name, prompt=f"a red cube <lora:{family}_style:1>", **kw)
    assert (zero == plain).all()
    assert np.abs(pixels(one.images[0]) - plain).max() > 0
    assert f"Lora hashes: \"{family}_style:" in one.infotexts[0]
    assert (pixels(txt2img(name, prompt="a red cube", **kw).images[0]) == plain).all()  # restored


def test_lora_page_shows_each_family_its_networks(roots, monkeypatch):
    engine = engine_for("sd3", roots, monkeypatch)
    write_lora(engine, "sd3_comfy_card", "comfy")
    write_lora(engine, "sd3_peft_card", "peft")
    write_lora(engine, "sd3_meta_card", "peft", metadata={"modelspec.architecture": "stable-diffusion-v3-medium/lora"})
    save_file({"lora_unet_double_blocks_0_img_attn_qkv.lora_down.weight": torch.zeros(2, 64),
               "lora_unet_double_blocks_0_img_attn_qkv.lora_up.weight": torch.zeros(192, 2)},
              str(engine.lora / "flux_card.safetensors"))
    networks.list_available_networks()
    mine = {"sd3_comfy_card", "sd3_peft_card", "sd3_meta_card", "flux_card"}
    versions = {name: entry.sd_version for name, entry in networks.available_networks.items() if name in mine}
    assert versions == {"sd3_comfy_card": SdVersion.SD3, "sd3_peft_card": SdVersion.SD3,
                        "sd3_meta_card": SdVersion.SD3, "flux_card": SdVersion.Flux}
    page = ui_extra_networks.ExtraNetworksPageLora()
    engine.manager.current = engine.model
    cards = {item.name for item in page.cards()}
    assert {"sd3_comfy_card", "sd3_peft_card", "sd3_meta_card"} <= cards and "flux_card" not in cards
    engine.manager.current = SimpleNamespace(family=SimpleNamespace(name="chroma", is_sdxl=False))
    assert {item.name for item in page.cards()} == {"flux_card"}  # Chroma: Flux.1's layouts
    engine.manager.current = engine.model
