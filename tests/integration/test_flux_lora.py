"""Flux.1 LoRA in the hubs' layouts (kohya, ComfyUI, BFL, XLabs, diffusers/PEFT/ai-toolkit, kohya on diffusers names):
each patches the weights by its format's formula (fused BFL layers computed fused, then compared with our split
layers), weight 0 is no LoRA bit for bit, restore is exact, and the Lora page shows a model's family's networks only."""
from __future__ import annotations

from types import SimpleNamespace

import pytest
import torch
from safetensors.torch import save_file

from modules import sd_models, ui_extra_networks
from modules.networks import networks
from modules.networks.network import SdVersion
from modules.shared_cmd_options import cmd_opts
from modules.shared_options import opts
from tests.fixtures import flux as tiny_flux
from tests.integration.engine_helpers import pixels, start_engine, txt2img

CHECKPOINT = "flux1-dev"
RANK = 4
D, S = "transformer_blocks.0.", "single_transformer_blocks.1."
# BFL layer -> our layers in the order BFL concatenates them; "swap": BFL's (shift, scale) is our (scale, shift)
FUSED = {
    "double_blocks.0.img_attn.qkv": [D + "attn.to_q", D + "attn.to_k", D + "attn.to_v"],
    "double_blocks.0.txt_attn.qkv": [D + "attn.add_q_proj", D + "attn.add_k_proj", D + "attn.add_v_proj"],
    "double_blocks.0.txt_mlp.0": [D + "ff_context.net.0.proj"],
    "double_blocks.0.img_attn.proj": [D + "attn.to_out.0"],
    "single_blocks.1.linear1": [S + "attn.to_q", S + "attn.to_k", S + "attn.to_v", S + "proj_mlp"],
    "single_blocks.1.linear2": [S + "proj_out"],
    "img_in": ["x_embedder"],
    "final_layer.adaLN_modulation.1": ["swap", "norm_out.linear"],
}
XLABS = {  # XLabs' layer -> BFL layer it trains (single blocks: q/k/v only, the first three parts of linear1)
    "double_blocks.0.processor.qkv_lora1": "double_blocks.0.img_attn.qkv",
    "double_blocks.0.processor.qkv_lora2": "double_blocks.0.txt_attn.qkv",
    "double_blocks.0.processor.proj_lora1": "double_blocks.0.img_attn.proj",
    "single_blocks.1.processor.qkv_lora": "single_blocks.1.qkv",
    "single_blocks.1.processor.proj_lora": "single_blocks.1.linear2",
}
OURS = [D + "attn.to_q", D + "attn.add_v_proj", S + "attn.to_k", S + "proj_mlp", "proj_out"]  # diffusers-named files
CLIP_LAYER = "text_model.encoder.layers.0.self_attn.q_proj"
T5_LAYER = "encoder.block.1.layer.1.DenseReluDense.wo"


@pytest.fixture(scope="module")
def engine(tmp_path_factory):
    root = tmp_path_factory.mktemp("fluxlora")
    models = root / "models"
    tiny = tiny_flux.make(seed=11)
    tiny_flux.write_transformer_only(models / "Stable-diffusion" / f"{CHECKPOINT}.safetensors", tiny)
    tiny_flux.write_parts(models, tiny)
    (models / "Lora").mkdir()
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(cmd_opts, "lora_dir", str(models / "Lora"))
        manager = start_engine(models, root / "data")
        yield SimpleNamespace(manager=manager, lora=models / "Lora",
                              model=manager.get(sd_models.get_closet_checkpoint_match(CHECKPOINT)))


def rand(g: torch.Generator, *shape: int) -> torch.Tensor:
    return torch.randn(*shape, generator=g) * 0.3


def our_weight(model, path: str) -> torch.Tensor:
    return model.unet.get_submodule(path).weight


def bfl_rows(model, bfl: str) -> int:
    if bfl == "single_blocks.1.qkv":
        return sum(our_weight(model, p).shape[0] for p in FUSED["single_blocks.1.linear1"][:3])
    return sum(our_weight(model, p).shape[0] for p in FUSED[bfl] if p != "swap")


def bfl_in(model, bfl: str) -> int:
    return our_weight(model, FUSED.get(bfl, FUSED["single_blocks.1.linear1"])[-1]).shape[1]


def write_lora(engine, name: str, fmt: str, seed: int = 0, metadata: dict | None = None) -> dict:
    """A LoRA file of `fmt`; returns {layer: (down, up, scale)} keyed by BFL layer, ("ours", path) or ("clip"|"t5", path)."""
    g = torch.Generator().manual_seed(seed)
    model = engine.model
    layers, sd = {}, {}
    alpha = 2.0 if fmt in ("kohya", "comfy", "kohya_diffusers") else None

    def add(key_of, layer, rows, cols):
        down, up = rand(g, RANK, cols), rand(g, rows, RANK)
        sd[key_of("down")], sd[key_of("up")] = down, up
        if alpha is not None:
            sd[key_of("alpha")] = torch.tensor(alpha)
        layers[layer] = (down, up, alpha / RANK if alpha is not None else 1.0)

    if fmt in ("kohya", "comfy", "bfl"):
        spell = {"kohya": lambda b, p: f"lora_unet_{b.replace('.', '_')}." + {"down": "lora_down.weight", "up": "lora_up.weight", "alpha": "alpha"}[p],
                 "comfy": lambda b, p: f"diffusion_model.{b}." + {"down": "lora_down.weight", "up": "lora_up.weight", "alpha": "alpha"}[p],
                 "bfl": lambda b, p: f"{b}." + {"down": "lora_A.weight", "up": "lora_B.weight"}[p]}[fmt]
        for bfl in FUSED:
            add(lambda p, b=bfl: spell(b, p), bfl, bfl_rows(model, bfl), bfl_in(model, bfl))
    if fmt == "xlabs":
        for xl, bfl in XLABS.items():
            add(lambda p, x=xl: f"{x}.{p}.weight", bfl, bfl_rows(model, bfl), bfl_in(model, bfl))
    if fmt in ("peft", "kohya_diffusers"):
        for path in OURS:
            w = our_weight(model, path)
            spell = (lambda p, q=path: f"transformer.{q}." + {"down": "lora_A.weight", "up": "lora_B.weight"}[p]) \
                if fmt == "peft" else \
                (lambda p, q=path: f"lora_transformer_{q.replace('.', '_')}." + {"down": "lora_down.weight", "up": "lora_up.weight", "alpha": "alpha"}[p])
            add(spell, ("ours", path), w.shape[0], w.shape[1])
    clip_w = model.text_encoders["text_encoder"].get_submodule(CLIP_LAYER.removeprefix("text_model.")
                                                              if not hasattr(model.text_encoders["text_encoder"], "text_model")
                                                              else CLIP_LAYER).weight
    t5_w = model.text_encoders["text_encoder_2"].get_submodule(T5_LAYER).weight
    te = {"kohya": (f"lora_te1_{CLIP_LAYER.replace('.', '_')}", f"lora_te3_{T5_LAYER.replace('.', '_')}"),
          "comfy": (f"text_encoders.clip_l.transformer.{CLIP_LAYER}", f"text_encoders.t5xxl.transformer.{T5_LAYER}"),
          "peft": (f"text_encoder.{CLIP_LAYER}", f"text_encoder_2.{T5_LAYER}")}.get(fmt)
    if te is not None:
        names = {"down": "lora_A.weight", "up": "lora_B.weight"} if fmt == "peft" else \
            {"down": "lora_down.weight", "up": "lora_up.weight", "alpha": "alpha"}
        add(lambda p: f"{te[0]}.{names[p]}", ("clip", CLIP_LAYER), *clip_w.shape)
        add(lambda p: f"{te[1]}.{names[p]}", ("t5", T5_LAYER), *t5_w.shape)
    save_file({k: v.contiguous() for k, v in sd.items()}, str(engine.lora / f"{name}.safetensors"), metadata=metadata)
    networks.list_available_networks()
    return layers


def snapshot(model) -> dict[str, torch.Tensor]:
    out = {f"unet.{k}": v.clone() for k, v in model.unet.state_dict().items()}
    for name, te in model.text_encoders.items():
        out.update({f"{name}.{k}": v.clone() for k, v in te.state_dict().items()})
    return out


def text_weight(model, which: str, path: str) -> torch.Tensor:
    te = model.text_encoders["text_encoder" if which == "clip" else "text_encoder_2"]
    if which == "clip" and not hasattr(te, "text_model"):
        path = path.removeprefix("text_model.")
    return te.get_submodule(path).weight


def swap_halves(t: torch.Tensor) -> torch.Tensor:
    a, b = t.chunk(2)
    return torch.cat([b, a])


def expected_and_actual(model, original: dict, layer, down, up, scale, te_m, unet_m):
    """(the format's formula, the patched weight) for one file layer; BFL layers fused as BFL has them."""
    if isinstance(layer, tuple):
        which, path = layer
        key = f"unet.{path}.weight" if which == "ours" else \
            f"{'text_encoder' if which == 'clip' else 'text_encoder_2'}.{path}.weight"
        if which == "clip" and key not in original:
            key = key.replace("text_encoder.text_model.", "text_encoder.")
        mult = unet_m if which == "ours" else te_m
        actual = our_weight(model, path) if which == "ours" else text_weight(model, which, path)
        return original[key] + mult * scale * (up @ down), actual
    paths = FUSED["single_blocks.1.linear1"][:3] if layer == "single_blocks.1.qkv" else FUSED[layer]
    swap = paths[0] == "swap"
    paths = [p for p in paths if p != "swap"]
    fused = torch.cat([original[f"unet.{p}.weight"] for p in paths])
    fused = swap_halves(fused) if swap else fused
    patched = fused + unet_m * scale * (up @ down)
    patched = swap_halves(patched) if swap else patched
    actual = torch.cat([our_weight(model, p) for p in paths])
    return patched, actual


@pytest.mark.parametrize("fmt", ["kohya", "comfy", "bfl", "xlabs", "peft", "kohya_diffusers"])
def test_patched_weight_equals_the_formats_formula_and_restore_is_exact(engine, fmt):
    model = engine.model
    networks.load_networks(model, [])
    original = snapshot(model)
    layers = write_lora(engine, f"flux_{fmt}", fmt, seed=3)
    missing, errors = networks.load_networks(model, [f"flux_{fmt}"], [0.5], [0.7])
    assert not missing and not errors
    for layer, (down, up, scale) in layers.items():
        expected, actual = expected_and_actual(model, original, layer, down, up, scale, 0.5, 0.7)
        assert (actual - original_of(original, model, layer)).abs().max() > 1e-3, layer  # the layer was patched
        torch.testing.assert_close(actual, expected, rtol=0, atol=1e-5, msg=lambda m, la=layer: f"{la}: {m}")
    networks.load_networks(model, [])
    after = snapshot(model)
    assert all(torch.equal(after[k], original[k]) for k in original)


def original_of(original: dict, model, layer) -> torch.Tensor:
    """The layer's weight before patching, in the file layer's layout (a zero delta through the same formula)."""
    return expected_and_actual(model, original, layer, torch.zeros(RANK, 1), torch.zeros(1, RANK), 0.0, 0, 0)[0]


def test_weight_zero_is_no_lora_bit_for_bit_and_weight_one_changes_the_image(engine):
    write_lora(engine, "flux_style", "kohya", seed=5)
    kw = dict(cfg_scale=1.0, negative_prompt="", steps=2, width=64, height=64, seed=9)
    plain = pixels(txt2img(CHECKPOINT, prompt="a red cube", **kw).images[0])
    zero = pixels(txt2img(CHECKPOINT, prompt="a red cube <lora:flux_style:0>", **kw).images[0])
    one = txt2img(CHECKPOINT, prompt="a red cube <lora:flux_style:1>", **kw)
    assert (zero == plain).all()
    assert (pixels(one.images[0]) != plain).any()
    assert "Lora hashes: \"flux_style:" in one.infotexts[0]
    again = pixels(txt2img(CHECKPOINT, prompt="a red cube", **kw).images[0])  # the LoRA left: weights restored
    assert (again == plain).all()


def test_flux_loras_are_recognised_from_metadata_or_layer_names(engine):
    write_lora(engine, "flux_meta", "kohya", metadata={"ss_base_model_version": "flux1", "ss_output_name": "fm"})
    write_lora(engine, "flux_plain", "peft")
    save_file({"lora_unet_down_blocks_0_attentions_0_proj_in.lora_down.weight": torch.zeros(2, 4),
               "lora_unet_down_blocks_0_attentions_0_proj_in.lora_up.weight": torch.zeros(4, 2)},
              str(engine.lora / "sdxl_style.safetensors"), metadata={"ss_base_model_version": "sdxl_base_v1-0"})
    networks.list_available_networks()
    assert networks.available_networks["flux_meta"].sd_version == SdVersion.Flux
    assert networks.available_networks["flux_plain"].sd_version == SdVersion.Flux
    assert networks.available_networks["sdxl_style"].sd_version == SdVersion.SDXL


def test_lora_page_shows_only_the_loaded_familys_networks_unless_all_are_asked_for(engine):
    write_lora(engine, "flux_card", "xlabs")
    save_file({"lora_unet_down_blocks_0_attentions_0_proj_in.lora_down.weight": torch.zeros(2, 4),
               "lora_unet_down_blocks_0_attentions_0_proj_in.lora_up.weight": torch.zeros(4, 2)},
              str(engine.lora / "sd15_card.safetensors"), metadata={"ss_base_model_version": "sd_v1"})
    networks.list_available_networks()
    page = ui_extra_networks.ExtraNetworksPageLora()
    engine.manager.current = engine.model
    names = {item.name: item for item in page.cards()}
    assert "flux_card" in names and "sd15_card" not in names
    assert page.list_items()[0]["sd_version"] in ("Flux", "Unknown")
    sd1 = SimpleNamespace(family=SimpleNamespace(name="v1", is_sdxl=False))
    engine.manager.current = sd1
    try:
        names = {item.name for item in page.cards()}
        assert "sd15_card" in names and "flux_card" not in names
        opts.set("lora_show_all", True)
        assert {"sd15_card", "flux_card"} <= {item.name for item in page.cards()}
    finally:
        opts.set("lora_show_all", False)
        engine.manager.current = engine.model
