"""Extra networks on the tiny checkpoints: LoRA/LyCORIS weight patches, textual inversion, hypernetworks, hashes."""
from __future__ import annotations

import hashlib
import json

import numpy as np
import pytest
import torch

from modules import infotext_utils, prompt_encoding, sd_models, textual_inversion
from modules.hypernetworks import HypernetworkAttnProcessor, list_hypernetworks
from modules.networks import networks
from modules.shared_cmd_options import cmd_opts
from tests.fixtures import networks as fixtures
from tests.integration.engine_helpers import pixels, start_engine, txt2img

SD1 = "tiny_sd1"
SDXL = "tiny_sdxl"


@pytest.fixture(scope="module")
def dirs(tmp_path_factory):
    """Network folders shared by this module's tests (each test writes files of its own names)."""
    root = tmp_path_factory.mktemp("networks")
    folders = {name: root / name for name in ("Lora", "embeddings", "hypernetworks")}
    for folder in folders.values():
        folder.mkdir()
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(cmd_opts, "lora_dir", str(folders["Lora"]))
        mp.setattr(cmd_opts, "embeddings_dir", str(folders["embeddings"]))
        mp.setattr(cmd_opts, "hypernetwork_dir", str(folders["hypernetworks"]))
        yield folders


@pytest.fixture(scope="module")
def module_engine(tiny_models_dir, tmp_path_factory, dirs):
    """One model manager for the module: loaded models are reused; every job re-applies exactly its own networks."""
    return start_engine(tiny_models_dir, tmp_path_factory.mktemp("data"))


@pytest.fixture()
def engine(module_engine):
    sd_models.model_manager = module_engine
    networks.list_available_networks()
    list_hypernetworks()
    return module_engine


def addnet_hash(path) -> str:
    """kohya's hash, computed here independently: sha256 of the bytes after the safetensors header."""
    data = path.read_bytes()
    header = int.from_bytes(data[:8], "little")
    return hashlib.sha256(data[8 + header:]).hexdigest()


def module_of(model, component: str, path: str) -> torch.nn.Module:
    owner = model.unet if component == "unet" else model.text_encoders[component]
    return owner.get_submodule(path)


def original_weight(ckpt, component: str, path: str) -> torch.Tensor:
    """The weight as written into the checkpoint (the fixture's own modules)."""
    owner = ckpt.unet if component == "unet" else ckpt.text_encoders[["text_encoder", "text_encoder_2"].index(component)]
    return owner.get_submodule(path).weight.detach().float()


def expected_delta(kind: str, t: dict[str, torch.Tensor], w: torch.Tensor) -> torch.Tensor:
    """Each format's formula, written out here: the delta before the multiplier."""
    alpha = float(t["alpha"])
    if kind in ("lora", "locon", "dora"):
        up, down = t["lora_up.weight"].flatten(1), t["lora_down.weight"]
        rank = down.shape[0]
        if "lora_mid.weight" in t:  # conv = 1x1 down, k x k core, 1x1 up
            delta = torch.einsum("abkl,bi,oa->oikl", t["lora_mid.weight"], down.flatten(1), up)
        else:
            delta = (up @ down.flatten(1)).reshape(w.shape)
        delta = delta * (alpha / rank)
        if "dora_scale" in t:
            merged = w + delta
            m = t["dora_scale"]
            if m.shape[0] == 1:
                norm = torch.stack([merged[:, i].norm() for i in range(merged.shape[1])]).reshape(m.shape)
            else:
                norm = torch.stack([merged[o].norm() for o in range(merged.shape[0])]).reshape(m.shape)
            delta = merged * m / norm - w
        return delta
    if kind == "loha":
        def part(i):
            a, b = t[f"hada_w{i}_a"], t[f"hada_w{i}_b"]
            if f"hada_t{i}" in t:
                return torch.einsum("abkl,ao,bi->oikl", t[f"hada_t{i}"], a, b)
            return (a @ b).reshape(w.shape)
        return part(1) * part(2) * (alpha / t["hada_w1_b"].shape[0])
    w1 = t["lokr_w1"]
    w2 = t["lokr_w2"] if "lokr_w2" in t else t["lokr_w2_a"] @ t["lokr_w2_b"]
    if w2.ndim == 2 and w.ndim == 4:
        w2 = w2.reshape(w2.shape[0], -1, *w.shape[2:])
    if w.ndim == 4:
        w1 = w1[:, :, None, None]
    scale = alpha / t["lokr_w2_b"].shape[0] if "lokr_w2_b" in t else 1.0
    return torch.kron(w1, w2).reshape(w.shape) * scale


def layer_tensors(network: fixtures.TinyNetwork, name: str) -> dict[str, torch.Tensor]:
    return {k[len(name) + 1:]: v for k, v in network.tensors.items() if k.startswith(name + ".")}


def snapshot(model) -> dict[str, torch.Tensor]:
    parts = {"unet": model.unet, **model.text_encoders}
    return {f"{c}.{k}": v.detach().clone() for c, m in parts.items() for k, v in m.state_dict().items()}


def test_lora_weight_zero_gives_pixels_identical_to_no_lora(engine, dirs, sd1_ckpt):
    fixtures.write_network(dirs["Lora"] / "tiny_lora.safetensors", sd1_ckpt, "lora")
    plain = txt2img(SD1, prompt="a red cube").images[0]
    zero = txt2img(SD1, prompt="a red cube <lora:tiny_lora:0>").images[0]
    full = txt2img(SD1, prompt="a red cube <lora:tiny_lora:1>").images[0]
    assert np.array_equal(pixels(plain), pixels(zero))
    assert not np.array_equal(pixels(plain), pixels(full))


@pytest.mark.parametrize("kind", fixtures.KINDS)
def test_patched_weight_equals_the_formats_formula(engine, dirs, sd1_ckpt, kind):
    network = fixtures.write_network(dirs["Lora"] / f"tiny_{kind}.safetensors", sd1_ckpt, kind, seed=3)
    result = txt2img(SD1, prompt=f"a cube <lora:tiny_{kind}:0.5:1.5>", steps=1)
    assert not result.comments
    model = engine.current
    for name, (component, path) in network.layers.items():
        w = original_weight(sd1_ckpt, component, path)
        multiplier = 0.5 if component != "unet" else 1.5
        expected = w + multiplier * expected_delta(kind, layer_tensors(network, name), w)
        patched = module_of(model, component, path).weight.detach()
        assert torch.allclose(patched, expected, atol=1e-5, rtol=1e-5), f"{kind}: {name}"
        assert not torch.equal(patched, w), f"{kind}: {name} was not patched"


def test_sdxl_lora_in_sgm_names_reaches_unet_and_both_text_encoders(engine, dirs, sdxl_ckpt):
    network = fixtures.write_network(dirs["Lora"] / "tiny_xl.safetensors", sdxl_ckpt, "lora", seed=4)
    assert any(n.startswith("lora_unet_input_blocks_") for n in network.layers)
    txt2img(SDXL, prompt="a cube <lora:tiny_xl:1>", steps=1)
    components = set()
    for name, (component, path) in network.layers.items():
        w = original_weight(sdxl_ckpt, component, path)
        expected = w + expected_delta("lora", layer_tensors(network, name), w)
        assert torch.allclose(module_of(engine.current, component, path).weight, expected, atol=1e-5), name
        components.add(component)
    assert components == {"unet", "text_encoder", "text_encoder_2"}


def test_weights_are_restored_bit_for_bit_when_the_lora_is_gone(engine, dirs, sd1_ckpt):
    fixtures.write_network(dirs["Lora"] / "tiny_locon.safetensors", sd1_ckpt, "locon")
    plain = txt2img(SD1).images[0]
    before = snapshot(engine.current)
    txt2img(SD1, prompt="a red cube <lora:tiny_locon:0.8>")
    changed = snapshot(engine.current)
    assert any(not torch.equal(before[k], changed[k]) for k in before)
    after_image = txt2img(SD1).images[0]
    after = snapshot(engine.current)
    assert all(torch.equal(before[k], after[k]) for k in before), "every weight must equal its original exactly"
    assert np.array_equal(pixels(plain), pixels(after_image))


def test_same_lora_next_job_patches_nothing_and_a_change_only_its_layers(engine, dirs, sd1_ckpt):
    a = fixtures.write_network(dirs["Lora"] / "lora_a.safetensors", sd1_ckpt, "lora", seed=1)
    b = fixtures.write_network(dirs["Lora"] / "lora_b.safetensors", sd1_ckpt, "loha", seed=2)
    txt2img(SD1, prompt="x", steps=1)  # whatever an earlier test left is restored
    patcher = networks.patcher_for(engine.current)
    start = patcher.layers_written
    txt2img(SD1, prompt="x <lora:lora_a:1>", steps=1)
    written = patcher.layers_written
    assert written == start + len(a.layers)
    txt2img(SD1, prompt="x <lora:lora_a:1>", steps=1)
    assert patcher.layers_written == written, "the same network set must not patch again"
    txt2img(SD1, prompt="x <lora:lora_a:1.0:0.5>", steps=1)  # only the UNet weight changed
    unet_layers = sum(1 for component, _ in a.layers.values() if component == "unet")
    assert patcher.layers_written == written + unet_layers
    written = patcher.layers_written
    txt2img(SD1, prompt="x <lora:lora_a:1.0:0.5> <lora:lora_b:1>", steps=1)
    assert patcher.layers_written == written + len(b.layers)


def test_missing_lora_is_named_and_the_job_goes_on(engine, dirs):
    plain = txt2img(SD1).images[0]
    result = txt2img(SD1, prompt="a red cube <lora:no_such_lora:1>")
    assert "Lora not found: no_such_lora" in result.comments
    assert np.array_equal(pixels(plain), pixels(result.images[0]))
    assert "Lora hashes" not in result.info


def test_bad_lora_weight_is_reported_and_the_previous_lora_does_not_linger(engine, dirs, sd1_ckpt):
    fixtures.write_network(dirs["Lora"] / "tiny_lora.safetensors", sd1_ckpt, "lora")
    plain = txt2img(SD1).images[0]
    txt2img(SD1, prompt="a red cube <lora:tiny_lora:1>")
    result = txt2img(SD1, prompt="a red cube <lora:tiny_lora:strong>")
    assert "<lora:tiny_lora:strong>: weights must be numbers" in result.comments
    assert np.array_equal(pixels(plain), pixels(result.images[0]))


def test_lora_hashes_are_written_and_read_back_by_name(engine, dirs, sd1_ckpt):
    path = dirs["Lora"] / "tiny_lora.safetensors"
    fixtures.write_network(path, sd1_ckpt, "lora")
    result = txt2img(SD1, prompt="a red cube <lora:tiny_lora:0.6>")
    short = addnet_hash(path)[:12]
    assert f'Lora hashes: "tiny_lora: {short}"' in result.info
    params = infotext_utils.parse_generation_parameters(result.info, skip_fields=[])
    assert params["Lora hashes"] == f"tiny_lora: {short}"
    assert "<lora:tiny_lora:0.6>" in params["Prompt"]  # the tag stays in the prompt, as in A1111

    # A pasted infotext names the LoRA by another alias: the local file with that hash is used instead.
    pasted = {"Prompt": "a red cube <lora:renamed:0.6>", "Lora hashes": f"renamed: {short}"}
    networks.infotext_pasted("", pasted)
    assert pasted["Prompt"] == "a red cube <lora:tiny_lora:0.6>"


def test_lora_alias_from_metadata_and_lyco_tag(engine, dirs, sd1_ckpt):
    fixtures.write_network(dirs["Lora"] / "file_name.safetensors", sd1_ckpt, "loha", metadata={"ss_output_name": "nice"})
    networks.list_available_networks()
    by_alias = txt2img(SD1, prompt="x <lyco:nice:1>").images[0]
    by_name = txt2img(SD1, prompt="x <lora:file_name:1>").images[0]
    assert np.array_equal(pixels(by_alias), pixels(by_name))
    assert not np.array_equal(pixels(by_name), pixels(txt2img(SD1, prompt="x").images[0]))


# --- textual inversion ------------------------------------------------------------------------------------------


def encoder_inputs(encoder, run) -> list[torch.Tensor]:
    """The input embeddings (token + position) the encoder's transformer layers received during run()."""
    seen = []
    layers = getattr(encoder, "text_model", encoder).encoder
    handle = layers.register_forward_pre_hook(
        lambda m, args, kwargs: seen.append(kwargs.get("inputs_embeds", args[0] if args else None)), with_kwargs=True)
    try:
        run()
    finally:
        handle.remove()
    return seen


def position_embedding(encoder) -> torch.Tensor:
    return getattr(encoder, "text_model", encoder).embeddings.position_embedding.weight.detach()


@pytest.mark.parametrize("suffix", [".pt", ".safetensors"])
def test_embedding_with_two_vectors_fills_two_token_positions(engine, dirs, suffix):
    vectors = fixtures.embedding_vectors(2, 64, seed=5)
    name = "duopt" if suffix == ".pt" else "duost"
    if suffix == ".pt":
        fixtures.write_embedding_pt(dirs["embeddings"] / f"{name}.pt", vectors)
    else:
        fixtures.write_embedding_safetensors(dirs["embeddings"] / f"{name}.safetensors", vectors)
    txt2img(SD1, steps=1)
    model = engine.current
    usable = textual_inversion.embedding_db().usable_for(model)
    assert usable[name].vectors == 2
    encoder = prompt_encoding.PromptEncoder(model, embeddings=usable)
    tokenizer = model.tokenizers["tokenizer"]
    lookup = encoder.token_lookup("tokenizer", "text_encoder")
    chunk = prompt_encoding.tokenize_weighted(tokenizer, f"a {name} cat", embeddings=lookup)[0]
    a, cat = (tokenizer(w, add_special_tokens=False)["input_ids"][0] for w in ("a", "cat"))
    assert chunk.ids[:4] == [a, prompt_encoding.EMBEDDING_PLACEHOLDER, prompt_encoding.EMBEDDING_PLACEHOLDER, cat]
    assert [(f.offset, f.embedding.name) for f in chunk.fixes] == [(1, name)]
    te = model.text_encoders["text_encoder"]
    with torch.inference_mode():
        inputs = encoder_inputs(te, lambda: encoder.encode([f"a {name} cat"]))[0]
    positions = position_embedding(te)
    assert torch.allclose(inputs[0, 2:4] - positions[2:4], vectors, atol=1e-6)  # after BOS and "a"
    assert set(encoder.used_embeddings) == {name}


def test_ti_hashes_in_infotext(engine, dirs):
    path = dirs["embeddings"] / "tinyneg.safetensors"
    fixtures.write_embedding_safetensors(path, fixtures.embedding_vectors(1, 64))
    result = txt2img(SD1, negative_prompt="tinyneg, blurry")
    short = hashlib.sha256(path.read_bytes()).hexdigest()[:12]
    assert f"TI hashes: \"tinyneg: {short}\"" in result.info
    params = infotext_utils.parse_generation_parameters(result.info, skip_fields=[])
    assert params["TI hashes"] == f"tinyneg: {short}"
    plain = txt2img(SD1, negative_prompt="blurry")
    assert "TI hashes" not in plain.info


def test_sdxl_embedding_reaches_both_encoders(engine, dirs):
    clip_l, clip_g = fixtures.embedding_vectors(2, 64, seed=6), fixtures.embedding_vectors(2, 128, seed=7)
    fixtures.write_sdxl_embedding(dirs["embeddings"] / "xlemb.safetensors", clip_l, clip_g)
    txt2img(SDXL, steps=1)
    model = engine.current
    encoder = prompt_encoding.PromptEncoder(model, embeddings=textual_inversion.embedding_db().usable_for(model))
    for name, vectors in (("text_encoder", clip_l), ("text_encoder_2", clip_g)):
        te = model.text_encoders[name]
        with torch.inference_mode():
            inputs = encoder_inputs(te, lambda: encoder.encode(["xlemb"]))[0]
        assert torch.allclose(inputs[0, 1:3] - position_embedding(te)[1:3], vectors, atol=1e-6), name


def test_embedding_of_another_family_is_skipped_with_a_note(engine, dirs, caplog):
    fixtures.write_embedding_safetensors(dirs["embeddings"] / "sd1only.safetensors", fixtures.embedding_vectors(1, 64))
    txt2img(SDXL, steps=1)
    db = textual_inversion.embedding_db()
    with caplog.at_level("INFO"):
        usable = db.usable_for(engine.current)
    assert "sd1only" not in usable and "sd1only" in db.skipped_embeddings
    result = txt2img(SDXL, prompt="sd1only", steps=1)
    assert "TI hashes" not in result.info
    assert "sd1only" in db.skipped_embeddings


# --- hypernetworks ----------------------------------------------------------------------------------------------


def reference_mlp(state: dict[str, torch.Tensor], x: torch.Tensor) -> torch.Tensor:
    """The fixture's (1, 2, 1) relu MLP, written out: x + W2 relu(W1 x + b1) + b2."""
    h = torch.relu(x @ state["linear.0.weight"].T + state["linear.0.bias"])
    return x + h @ state["linear.2.weight"].T + state["linear.2.bias"]


def test_hypernetwork_changes_cross_attention_keys_and_values(engine, dirs):
    data = fixtures.write_hypernetwork(dirs["hypernetworks"] / "tiny_hn.pt", sizes=(64,))  # 64 = the text width
    list_hypernetworks()
    plain = txt2img(SD1).images[0]
    model = engine.current
    attn2 = model.unet.down_blocks[0].attentions[0].transformer_blocks[0].attn2
    attn1 = model.unet.down_blocks[0].attentions[0].transformer_blocks[0].attn1
    seen: dict[str, list] = {"k2": [], "v2": [], "q2": [], "k1": [], "q1": []}
    hooks = [module.register_forward_pre_hook(lambda m, args, key=key: seen[key].append(args[0].detach().clone()))
             for key, module in (("k2", attn2.to_k), ("v2", attn2.to_v), ("q2", attn2.to_q), ("k1", attn1.to_k),
                                 ("q1", attn1.to_q))]
    try:
        with_hn = txt2img(SD1, prompt="a red cube <hypernet:tiny_hn:1>", steps=1)
    finally:
        for hook in hooks:
            hook.remove()
    assert isinstance(next(iter(model.unet.attn_processors.values())), HypernetworkAttnProcessor)
    k_state, v_state = data[64]
    k_in, v_in = seen["k2"][0], seen["v2"][0]
    # the cross-attention context is the job's text conditioning: cond rows, then uncond rows
    encoder = prompt_encoding.PromptEncoder(model)
    with torch.inference_mode():
        cond = encoder.encode(["a red cube "]).context[0]
        uncond = encoder.encode(["blurry"], is_negative=True).context[0]
    context = torch.stack([cond, uncond])
    assert torch.allclose(k_in, reference_mlp(k_state, context), atol=1e-5)
    assert torch.allclose(v_in, reference_mlp(v_state, context), atol=1e-5)
    assert torch.equal(seen["k1"][0], seen["q1"][0]), "self-attention (width 32) is not named by the file"
    assert not np.array_equal(pixels(plain), pixels(with_hn.images[0]))

    again = txt2img(SD1).images[0]  # no hypernetwork: the original processors are back
    assert not any(isinstance(p, HypernetworkAttnProcessor) for p in model.unet.attn_processors.values())
    assert np.array_equal(pixels(plain), pixels(again))


def test_missing_hypernetwork_is_named(engine):
    result = txt2img(SD1, prompt="x <hypernet:nope:1>", steps=1)
    assert "Hypernetwork not found: nope" in result.comments


# --- Extra Networks cards -----------------------------------------------------------------------------------------


def test_cards_list_networks_with_their_syntax_and_previews(engine, dirs, sd1_ckpt):
    from PIL import Image

    from modules import ui_extra_networks as ui

    fixtures.write_network(dirs["Lora"] / "card_lora.safetensors", sd1_ckpt, "lora",
                           metadata={"ss_output_name": "Card <A>"})
    Image.new("RGB", (300, 200), "red").save(dirs["Lora"] / "card_lora.png")
    networks.list_available_networks()
    items = {item.name: item for item in ui.ExtraNetworksPageLora().cards()}
    item = items["card_lora"]
    assert item.prompt == "<lora:Card <A>:1>"
    a1111 = {entry["name"]: entry for entry in ui.ExtraNetworksPageLora().list_items()}  # A1111's dicts
    assert ui.ExtraNetworksPageLora().name == "lora" and a1111["card_lora"]["filename"] == item.filename
    assert json.loads(a1111["card_lora"]["prompt"]) == "<lora:Card <A>:1>"
    assert item.preview == str(dirs["Lora"] / "card_lora.png")
    html_text = ui.cards_html(ui.ExtraNetworksPageLora())
    assert 'data-prompt="&lt;lora:Card &lt;A&gt;:1&gt;"' in html_text and "data:image/jpeg;base64," in html_text

    saved = ui.save_preview(item.filename, Image.new("RGB", (16, 16), "blue"))
    assert saved == str(dirs["Lora"] / "card_lora.preview.png")
    assert item.preview == saved, "name.png would hide the new preview: it is removed"
    with Image.open(saved) as image:
        assert image.getpixel((0, 0)) == (0, 0, 255)
    assert ui.replace_preview(item.filename, [(saved, None)], 0) == saved


def test_extra_networks_panel_builds_with_a1111_ids(engine):
    import gradio as gr

    from modules import ui_common, ui_extra_networks as ui

    with gr.Blocks():
        panel = ui.create_ui("txt2img")
        output = ui_common.create_output_panel("txt2img", "outputs")
        ui.setup_ui(panel, output.gallery, output.selected_index)
    assert [page.title for page in panel.pages] == ["Checkpoints", "Textual Inversion", "Hypernetworks", "Lora"]
    assert panel.search.elem_id == "txt2img_extra_search"
    assert [c.elem_id for c in panel.cards] == [f"txt2img_{p.id_page}_cards_html" for p in panel.pages]
