"""The Checkpoint Merger on tiny original-layout checkpoints: formulas key by key, A1111's special cases, metadata,
streaming, atomic writes, the registry, loading and generating, and the tab's handlers."""
from __future__ import annotations

import collections
import hashlib
import json
import os
import re
import shutil
import weakref

import numpy as np
import pytest
import safetensors
import torch
from safetensors.torch import load_file, save_file

from modules import extras_merge, sd_models
from modules.extras_merge import MergeError, run_modelmerger
from modules.shared_cmd_options import cmd_opts
from modules.shared_options import opts
from tests.fixtures.checkpoints import write_ckpt, write_malicious_ckpt, write_sd1, write_truncated, write_vae
from tests.integration.engine_helpers import CPU, pixels, start_engine, txt2img

VAE_PREFIX = "first_stage_model."
CONV_IN = "model.diffusion_model.input_blocks.0.0.weight"
POSITION_IDS = "cond_stage_model.transformer.text_model.embeddings.position_ids"


@pytest.fixture(scope="module")
def sources(tmp_path_factory, sd1_inpaint_ckpt, sdxl_ckpt):
    root = tmp_path_factory.mktemp("merge-sources")
    return {
        "a": write_sd1(root / "a.safetensors", seed=1),
        "b": write_sd1(root / "b.safetensors", seed=2),
        "c": write_sd1(root / "c.safetensors", seed=3),
        "inpaint": sd1_inpaint_ckpt,
        "xl": sdxl_ckpt,
        "vae": write_vae(root / "vae.safetensors", seed=6),
        "vae_path": root / "vae.safetensors",
    }


@pytest.fixture()
def ckpt_dir(sources, tmp_path):
    """A fresh models tree per test (hard links to the session files) with the engine started on it."""
    models = tmp_path / "models"
    (models / "Stable-diffusion").mkdir(parents=True)
    (models / "VAE").mkdir()
    for key in ("a", "b", "c", "inpaint", "xl"):
        os.link(sources[key].path, models / "Stable-diffusion" / sources[key].path.name)
    os.link(sources["vae_path"], models / "VAE" / "vae.safetensors")
    start_engine(models, tmp_path / "data")
    return models / "Stable-diffusion"


def _listing(folder):
    return sorted(p.name for p in folder.iterdir())


def _registered():
    """The files in the checkpoint registry (titles gain a [hash] once a model is hashed)."""
    return sorted(info.filename for info in sd_models.checkpoint_registry.checkpoints_list.values())


def _expected(key, a, b, c, method, m, half):
    """What A1111's merger gives for one key: merged when the name has "model", B has it and it is a float weight."""
    tensor = a[key]
    if "model" in key and key in b and not key.endswith("position_ids") and tensor.is_floating_point():
        if method == "Weighted sum":
            tensor = torch.lerp(tensor.float(), b[key].float(), m)
        elif key in c:
            tensor = tensor.float() + (b[key].float() - c[key].float()) * m
    return tensor.to(torch.float16) if half and tensor.is_floating_point() else tensor


@pytest.mark.parametrize("half", [False, True], ids=["fp32", "fp16"])
@pytest.mark.parametrize("method", ["Weighted sum", "Add difference"])
def test_each_formula_key_by_key(ckpt_dir, sources, method, half):
    a, b, c = (sources[k].state_dict for k in "abc")
    result = run_modelmerger("a", "b", "c", method, 0.3, save_as_half=half)
    out = load_file(result.filename)
    assert set(out) == set(a)
    for key in a:
        assert torch.equal(out[key], _expected(key, a, b, c, method, 0.3, half)), key
    key = "model.diffusion_model.out.2.weight"
    formula = (1 - 0.3) * a[key] + 0.3 * b[key] if method == "Weighted sum" else a[key] + (b[key] - c[key]) * 0.3
    assert torch.allclose(out[key].float(), formula, atol=1e-3 if half else 1e-6)
    assert not torch.equal(out[key].float(), a[key].float())
    assert torch.equal(out["alphas_cumprod"], a["alphas_cumprod"].to(out["alphas_cumprod"].dtype))  # no "model": A's
    assert torch.equal(out[POSITION_IDS], a[POSITION_IDS])
    assert result.kept_from_a == [] and result.left_out == []


@pytest.mark.parametrize("m", [0.0, 0.37, 1.0])
def test_a_merged_with_itself_is_a(ckpt_dir, sources, m):
    out = load_file(run_modelmerger("a", "a", None, "Weighted sum", m, custom_name=f"self-{m}").filename)
    a = sources["a"].state_dict
    assert set(out) == set(a) and all(torch.equal(out[k], a[k]) for k in a)


def test_weighted_sum_at_zero_is_a(ckpt_dir, sources):
    out = load_file(run_modelmerger("a", "b", None, "Weighted sum", 0.0).filename)
    a = sources["a"].state_dict
    assert set(out) == set(a) and all(torch.equal(out[k], a[k]) for k in a)


def test_keys_in_only_one_model_are_kept_from_a_and_reported(ckpt_dir, sources):
    a, b = sources["a"].state_dict, dict(sources["b"].state_dict)
    missing, extra = "model.diffusion_model.out.2.bias", "model.diffusion_model.extra.weight"
    del b[missing]
    b[extra] = torch.ones(3)
    save_file(b, str(ckpt_dir / "b_partial.safetensors"))
    sd_models.list_models(cmd_opts)

    result = run_modelmerger("a", "b_partial", None, "Weighted sum", 0.5)
    out = load_file(result.filename)
    assert torch.equal(out[missing], a[missing])
    assert extra not in out and set(out) == set(a)
    assert result.kept_from_a == [missing] and result.left_out == [extra]
    assert "1 weights missing from B were copied from A unchanged" in result.message
    assert "1 weights of B/C that A lacks were left out" in result.message


def test_position_ids_are_never_merged(ckpt_dir, sources):
    """Some checkpoints store the token position ids as floats; they are indices, not weights: always A's."""
    for name, offset in (("a_float_ids", 0.0), ("b_float_ids", 0.25)):
        state_dict = dict(sources[name[0]].state_dict)
        state_dict[POSITION_IDS] = state_dict[POSITION_IDS].float() + offset
        save_file(state_dict, str(ckpt_dir / f"{name}.safetensors"))
    sd_models.list_models(cmd_opts)
    out = load_file(run_modelmerger("a_float_ids", "b_float_ids", None, "Weighted sum", 0.5).filename)
    assert torch.equal(out[POSITION_IDS], torch.arange(77, dtype=torch.float32)[None])


def test_add_difference_with_a_key_missing_from_c_keeps_a(ckpt_dir, sources):
    c = dict(sources["c"].state_dict)
    key = "model.diffusion_model.out.2.weight"
    del c[key]
    save_file(c, str(ckpt_dir / "c_partial.safetensors"))
    sd_models.list_models(cmd_opts)
    out = load_file(run_modelmerger("a", "b", "c_partial", "Add difference", 0.6).filename)
    assert torch.equal(out[key], sources["a"].state_dict[key])
    other = "model.diffusion_model.out.2.bias"
    a, b, cc = sources["a"].state_dict, sources["b"].state_dict, sources["c"].state_dict
    assert torch.equal(out[other], a[other] + (b[other] - cc[other]) * 0.6)


def test_inpainting_a_with_normal_b_merges_first_four_input_channels(ckpt_dir, sources, tmp_path):
    a, b = sources["inpaint"].state_dict, sources["b"].state_dict
    result = run_modelmerger("tiny_sd1_inpainting", "b", None, "Weighted sum", 0.5)
    assert result.filename.endswith("0.5(tiny_sd1_inpainting) + 0.5(b).inpainting.safetensors")
    out = load_file(result.filename)
    assert out[CONV_IN].shape[1] == 9
    assert torch.equal(out[CONV_IN][:, :4], torch.lerp(a[CONV_IN][:, :4], b[CONV_IN], 0.5))
    assert torch.equal(out[CONV_IN][:, 4:], a[CONV_IN][:, 4:])
    key = "model.diffusion_model.out.2.weight"
    assert torch.equal(out[key], torch.lerp(a[key], b[key], 0.5))
    with safetensors.safe_open(result.filename, framework="pt") as f:
        assert json.loads(f.metadata()["sd_merge_recipe"])["is_inpainting"] is True
    model = sd_models.build_model(sd_models.get_closet_checkpoint_match(result.title), CPU, tmp_path / "cache")
    assert model.family.is_inpainting


def test_normal_a_with_inpainting_b_is_refused_before_writing(ckpt_dir):
    before = _listing(ckpt_dir)
    with pytest.raises(MergeError, match="A must be the inpainting model"):
        run_modelmerger("b", "tiny_sd1_inpainting", None, "Weighted sum", 0.5)
    assert _listing(ckpt_dir) == before


class _Counter:
    def __init__(self):
        self.live = self.peak = self.reads = 0

    def released(self):
        self.live -= 1


@pytest.fixture()
def tensor_counter(monkeypatch):
    """Counts tensors handed out by the merger's checkpoint readers and how many are alive at once."""
    counter = _Counter()

    class CountingReader(extras_merge.CheckpointReader):
        def get_tensor(self, key):
            tensor = super().get_tensor(key)
            counter.reads += 1
            counter.live += 1
            counter.peak = max(counter.peak, counter.live)
            weakref.finalize(tensor, counter.released)
            return tensor

    monkeypatch.setattr(extras_merge, "open_checkpoint", CountingReader)
    return counter


def test_sd1_with_sdxl_is_refused_before_any_work(ckpt_dir, tensor_counter):
    before, registered = _listing(ckpt_dir), _registered()
    with pytest.raises(MergeError, match=r"Cannot merge a.safetensors \(SD1\) with tiny_sdxl.safetensors \(SDXL\)"):
        run_modelmerger("a", "tiny_sdxl", None, "Weighted sum", 0.5)
    with pytest.raises(MergeError, match=r"\(SDXL\) with a.safetensors \(SD1\)"):
        run_modelmerger("tiny_sdxl", "tiny_sdxl", "a", "Add difference", 0.5)
    assert tensor_counter.reads == 0
    assert _listing(ckpt_dir) == before
    assert _registered() == registered


def test_streaming_holds_only_one_tensor_per_input(ckpt_dir, sources, tensor_counter):
    a, b, c = (sources[k].state_dict for k in "abc")
    out = load_file(run_modelmerger("a", "b", "c", "Add difference", 0.5).filename)
    merged_keys = [k for k in a if "model" in k and not k.endswith("position_ids")]
    assert tensor_counter.reads == len(a) + 2 * len(merged_keys)  # A for every key, B and C for merged ones
    assert tensor_counter.peak <= 3, "more tensors alive at once than one from each of A, B and C"
    assert tensor_counter.live == 0
    assert all(torch.equal(out[k], _expected(k, a, b, c, "Add difference", 0.5, False)) for k in a)


def test_float16_output_is_all_half_and_about_half_the_size(ckpt_dir):
    full = run_modelmerger("a", "b", None, "Weighted sum", 0.3, custom_name="full")
    half = run_modelmerger("a", "b", None, "Weighted sum", 0.3, save_as_half=True, custom_name="half")
    with safetensors.safe_open(half.filename, framework="pt") as f:
        dtypes = collections.Counter(f.get_slice(k).get_dtype() for k in f.keys())
    assert set(dtypes) == {"F16", "I64"} and dtypes["I64"] == 1  # only the integer position ids stay
    ratio = os.path.getsize(half.filename) / os.path.getsize(full.filename)
    assert 0.49 < ratio < 0.52


def test_no_interpolation_converts_a_alone(ckpt_dir, sources):
    with pytest.raises(MergeError, match="would replace a.safetensors, one of the models being merged"):
        run_modelmerger("a", None, None, "No interpolation", 0.3, save_as_half=True)  # A1111's name: A's own
    result = run_modelmerger("a", "b", "c", "No interpolation", 0.3, save_as_half=True, custom_name="a-fp16")
    out = load_file(result.filename)
    a = sources["a"].state_dict
    assert all(torch.equal(out[k], a[k].half() if a[k].is_floating_point() else a[k]) for k in a)
    with safetensors.safe_open(result.filename, framework="pt") as f:
        recipe = json.loads(f.metadata()["sd_merge_recipe"])
    assert recipe["secondary_model_hash"] is None and recipe["tertiary_model_hash"] is None


def test_discard_regex_removes_exactly_the_matching_keys(ckpt_dir, sources):
    pattern = r"first_stage_model\.decoder\.|^alphas_cumprod$"
    out = load_file(run_modelmerger("a", "b", None, "Weighted sum", 0.3, discard_weights=pattern).filename)
    a = sources["a"].state_dict
    dropped = {k for k in a if re.search(pattern, k)}
    assert "alphas_cumprod" in dropped and any(k.startswith("first_stage_model.decoder.") for k in dropped)
    assert set(out) == set(a) - dropped


def test_bad_discard_regex_is_refused(ckpt_dir):
    with pytest.raises(MergeError, match="not a valid regular expression"):
        run_modelmerger("a", "b", None, "Weighted sum", 0.3, discard_weights="(unclosed")


@pytest.mark.parametrize("half", [False, True], ids=["fp32", "fp16"])
def test_bake_in_vae_replaces_exactly_the_first_stage_model_keys(ckpt_dir, sources, half):
    a, b, vae = sources["a"].state_dict, sources["b"].state_dict, sources["vae"]
    assert {k.removeprefix(VAE_PREFIX) for k in a if k.startswith(VAE_PREFIX)} == set(vae)
    out = load_file(run_modelmerger("a", "b", None, "Weighted sum", 0.3, bake_in_vae="vae.safetensors",
                                    save_as_half=half).filename)
    assert set(out) == set(a)
    for key in a:
        if key.startswith(VAE_PREFIX):
            expected = vae[key.removeprefix(VAE_PREFIX)]
            assert torch.equal(out[key], expected.half() if half else expected), key
        else:
            assert torch.equal(out[key], _expected(key, a, b, None, "Weighted sum", 0.3, half)), key


def _sha256(path):
    return hashlib.sha256(open(path, "rb").read()).hexdigest()


def test_metadata_as_a1111_writes_it(ckpt_dir):
    result = run_modelmerger("a", "b", None, "Weighted sum", 0.25, custom_name="meta", config_source=3,
                             metadata_json='{"author": "me", "tags": ["x", "y"]}')
    with safetensors.safe_open(result.filename, framework="pt") as f:
        metadata = f.metadata()
    assert metadata["format"] == "pt" and metadata["author"] == "me" and json.loads(metadata["tags"]) == ["x", "y"]
    sha_a, sha_b = _sha256(ckpt_dir / "a.safetensors"), _sha256(ckpt_dir / "b.safetensors")
    assert json.loads(metadata["sd_merge_recipe"]) == {
        "type": "webui", "primary_model_hash": sha_a, "secondary_model_hash": sha_b, "tertiary_model_hash": None,
        "interp_method": "Weighted sum", "multiplier": 0.25, "save_as_half": False, "custom_name": "meta",
        "config_source": 3, "bake_in_vae": "None", "discard_weights": "", "is_inpainting": False,
        "is_instruct_pix2pix": False,
    }
    models = json.loads(metadata["sd_merge_models"])
    assert models == {
        sha_a: {"name": "a.safetensors", "legacy_hash": sd_models.get_closet_checkpoint_match("a").hash, "sd_merge_recipe": None},
        sha_b: {"name": "b.safetensors", "legacy_hash": sd_models.get_closet_checkpoint_match("b").hash, "sd_merge_recipe": None},
    }
    again = run_modelmerger(result.title, "c", None, "Weighted sum", 0.5, custom_name="meta2")
    with safetensors.safe_open(again.filename, framework="pt") as f:
        nested = json.loads(f.metadata()["sd_merge_models"])
    assert set(nested) == {sha_a, sha_b, _sha256(result.filename), _sha256(ckpt_dir / "c.safetensors")}
    assert nested[_sha256(result.filename)]["sd_merge_recipe"]["custom_name"] == "meta"


def test_without_save_metadata_there_is_none(ckpt_dir):
    result = run_modelmerger("a", "b", None, "Weighted sum", 0.25, save_metadata=False)
    with safetensors.safe_open(result.filename, framework="pt") as f:
        assert f.metadata() is None


def test_merged_model_is_registered_loads_and_generates(ckpt_dir, tmp_path):
    registered = _registered()
    result = run_modelmerger("a", "b", None, "Weighted sum", 0.0, custom_name="merged")
    assert result.title == f"merged.safetensors [{_sha256(result.filename)[:10]}]"
    assert result.title in sd_models.checkpoint_registry.titles()
    assert _registered() == sorted([*registered, result.filename])
    info = sd_models.get_closet_checkpoint_match("merged")
    assert info.filename == result.filename
    model = sd_models.build_model(info, CPU, tmp_path / "cache")
    assert model.family.name == "v1"
    merged_image = txt2img(result.title).images[0]
    assert merged_image.size == (64, 64)
    assert np.array_equal(pixels(merged_image), pixels(txt2img("a").images[0]))  # M=0: A's weights, A's image


def test_ckpt_input_and_ckpt_output(ckpt_dir, sources):
    write_ckpt(ckpt_dir / "b_pickled.ckpt", sources["b"].state_dict)
    sd_models.list_models(cmd_opts)
    result = run_modelmerger("a", "b_pickled", None, "Weighted sum", 0.3, checkpoint_format="ckpt")
    assert result.filename.endswith(".ckpt") and result.title.startswith("0.7(a) + 0.3(b_pickled).ckpt [")
    saved = torch.load(result.filename, map_location="cpu", weights_only=True)
    assert set(saved) == {"state_dict"}
    a, b = sources["a"].state_dict, sources["b"].state_dict
    assert set(saved["state_dict"]) == set(a)
    assert all(torch.equal(saved["state_dict"][k], _expected(k, a, b, None, "Weighted sum", 0.3, False)) for k in a)
    # A's unmerged tensors are views of its file: each is saved alone, never the whole mapped file
    assert os.path.getsize(result.filename) < 2 * os.path.getsize(ckpt_dir / "a.safetensors")


def _fail_after(calls, original):
    count = {"n": 0}

    def failing(*args, **kwargs):
        count["n"] += 1
        if count["n"] > calls:
            raise RuntimeError("injected failure")
        return original(*args, **kwargs)
    return failing


@pytest.mark.parametrize("where", ["writer", "merge-safetensors", "merge-ckpt"])
def test_failure_mid_merge_leaves_no_file_and_registry_unchanged(ckpt_dir, monkeypatch, where):
    if where == "writer":
        monkeypatch.setattr(extras_merge.SafetensorsWriter, "write_tensor",
                            _fail_after(50, extras_merge.SafetensorsWriter.write_tensor))
    else:
        monkeypatch.setattr(extras_merge, "_produce", _fail_after(50, extras_merge._produce))
    before, registered = _listing(ckpt_dir), _registered()
    with pytest.raises(RuntimeError, match="injected failure"):
        run_modelmerger("a", "b", "c", "Add difference", 0.5,
                        checkpoint_format="ckpt" if where == "merge-ckpt" else "safetensors")
    assert _listing(ckpt_dir) == before
    assert _registered() == registered


def test_failure_keeps_an_existing_file_of_the_same_name(ckpt_dir, monkeypatch):
    first = run_modelmerger("a", "b", None, "Weighted sum", 0.5, custom_name="keep")
    content = _sha256(first.filename)
    monkeypatch.setattr(extras_merge, "_produce", _fail_after(10, extras_merge._produce))
    with pytest.raises(RuntimeError, match="injected failure"):
        run_modelmerger("a", "c", None, "Weighted sum", 0.5, custom_name="keep")
    assert _sha256(first.filename) == content


def test_not_enough_disk_space_is_refused_before_writing(ckpt_dir, monkeypatch):
    usage = shutil.disk_usage(ckpt_dir)
    monkeypatch.setattr(extras_merge.shutil, "disk_usage", lambda path: usage._replace(free=1024 * 1024))
    before = _listing(ckpt_dir)
    raw = (ckpt_dir / "a.safetensors").read_bytes()
    data_size = len(raw) - 8 - int.from_bytes(raw[:8], "little")  # the result has A's shapes and dtypes
    with pytest.raises(MergeError, match=rf"Not enough free disk space in {re.escape(str(ckpt_dir))}: the merged "
                                         rf"checkpoint needs about {data_size / 2**20:.1f} MiB, 1.0 MiB are free"):
        run_modelmerger("a", "b", None, "Weighted sum", 0.5)
    assert _listing(ckpt_dir) == before


def test_corrupt_and_pickled_inputs_are_refused(ckpt_dir):
    write_truncated(ckpt_dir / "broken.safetensors", ckpt_dir / "b.safetensors")
    marker = write_malicious_ckpt(ckpt_dir / "evil.ckpt")
    sd_models.list_models(cmd_opts)
    before = _listing(ckpt_dir)
    with pytest.raises(MergeError, match="Could not read broken.safetensors: the file is corrupt, truncated"):
        run_modelmerger("a", "broken", None, "Weighted sum", 0.5)
    with pytest.raises(MergeError, match="Refused to read evil.ckpt: it contains pickled code"):
        run_modelmerger("a", "evil", None, "Weighted sum", 0.5)
    assert not marker.exists()
    assert _listing(ckpt_dir) == before


def test_config_is_copied_from_the_chosen_model(ckpt_dir):
    (ckpt_dir / "b.yaml").write_text("model: b\n")
    run_modelmerger("a", "b", None, "Weighted sum", 0.5, custom_name="cfg-any", config_source=0)
    run_modelmerger("a", "b", None, "Weighted sum", 0.5, custom_name="cfg-b", config_source=1)
    run_modelmerger("a", "b", "c", "Add difference", 0.5, custom_name="cfg-c", config_source=2)
    run_modelmerger("a", "b", None, "Weighted sum", 0.5, custom_name="cfg-none", config_source=3)
    assert (ckpt_dir / "cfg-any.yaml").read_text() == "model: b\n"
    assert (ckpt_dir / "cfg-b.yaml").read_text() == "model: b\n"
    assert not (ckpt_dir / "cfg-c.yaml").exists() and not (ckpt_dir / "cfg-none.yaml").exists()


@pytest.mark.parametrize("kwargs,message", [
    (dict(primary_model_name=""), "Merging requires a primary model"),
    (dict(primary_model_name="a", secondary_model_name=None), "Merging requires a secondary model"),
    (dict(primary_model_name="a", secondary_model_name="b", interp_method="Add difference"),
     r"Interpolation method \(Add difference\) requires a tertiary model"),
    (dict(primary_model_name="a", secondary_model_name="nope"), "Checkpoint not found for the secondary model"),
    (dict(primary_model_name="a", secondary_model_name="b", bake_in_vae="missing.pt"), "VAE not found: missing.pt"),
    (dict(primary_model_name="a", secondary_model_name="b", metadata_json="{bad"), "Metadata is not valid JSON"),
    (dict(primary_model_name="a", secondary_model_name="b", custom_name="../escape"), "without folders"),
    (dict(primary_model_name="a", secondary_model_name="b", interp_method="Average"), "Unknown interpolation method"),
    (dict(primary_model_name="a", secondary_model_name="b", checkpoint_format="bin"), "Unknown checkpoint format"),
])
def test_user_errors_are_clear_and_write_nothing(ckpt_dir, kwargs, message):
    before = _listing(ckpt_dir)
    with pytest.raises(MergeError, match=message):
        run_modelmerger(**kwargs)
    assert _listing(ckpt_dir) == before


def test_read_metadata_merges_the_selected_checkpoints(ckpt_dir):
    first = run_modelmerger("a", "b", None, "Weighted sum", 0.5, custom_name="rm", metadata_json='{"author": "me"}')
    metadata = extras_merge.read_metadata(first.title, "c", None)
    assert metadata["author"] == "me" and metadata["format"] == "pt"
    assert metadata["sd_merge_recipe"]["custom_name"] == "rm"  # JSON values decoded, as A1111 shows them


def test_tab_builds_with_a1111_ids_and_its_handlers_merge_and_load(ckpt_dir):
    import gradio as gr

    from modules import ui_checkpoint_merger

    with gr.Blocks() as demo, gr.Tab("Checkpoint Merger"):
        ui = ui_checkpoint_merger.create_ui()
    ids = {c.get("props", {}).get("elem_id") for c in demo.config["components"]}
    for name in ("primary_model_name", "secondary_model_name", "tertiary_model_name", "custom_name", "interp_amount",
                 "interp_method", "checkpoint_format", "save_as_half", "config_method", "bake_in_vae",
                 "discard_weights", "save_metadata", "merge", "result"):
        assert f"modelmerger_{name}" in ids, name
    assert ui.load_button.visible is False

    outputs = ui_checkpoint_merger.merge("a", "b", None, "", 0.3, "Weighted sum", "safetensors", False, 0, "None",
                                         "", True, True, True, "{}")
    title = outputs[4]
    assert title.startswith("0.7(a) + 0.3(b).safetensors [")
    assert all(title in update["choices"] for update in outputs[:3])
    assert [u["value"] for u in outputs[:3]] == [sd_models.get_closet_checkpoint_match(n).title for n in "ab"] + [None]
    assert "Checkpoint saved to" in outputs[3] and outputs[5]["visible"] is True
    assert "Loaded" in ui_checkpoint_merger.load_merged(title)
    assert sd_models.model_manager.current.sd_checkpoint_info.title == title
    assert opts.sd_model_checkpoint == title

    failed = ui_checkpoint_merger.merge("a", "tiny_sdxl", None, "", 0.3, "Weighted sum", "safetensors", False, 0,
                                        "None", "", True, True, True, "{}")
    assert "class='error'" in failed[3] and "(SDXL)" in failed[3] and failed[4] is None
