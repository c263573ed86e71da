"""A1111 names real extensions import (issue 15, cause 2), each used the way those extensions use it, on tiny models."""
from __future__ import annotations

import collections
import json
import logging
import pickle
import shutil

import numpy as np
import pytest
import safetensors.torch
import torch
from fastapi import HTTPException
from PIL import Image

from modules import (
    processing,
    sd_models,
    sd_samplers,
    sd_samplers_common,
    sd_vae,
    shared,
)
from modules.shared_options import opts
from tests.integration.engine_helpers import pixels, start_engine, txt2img


@pytest.fixture()
def engine(sd1_ckpt, tmp_path):
    """A models tree with the tiny SD1 checkpoint only, and a started engine on it."""
    models = tmp_path / "models"
    (models / "Stable-diffusion").mkdir(parents=True)
    shutil.copyfile(sd1_ckpt.path, models / "Stable-diffusion" / sd1_ckpt.path.name)
    manager = start_engine(models, tmp_path)
    yield manager
    manager.unload_all()


# --- modules.sd_hijack (prompt-all-in-one, tagcomplete, supermerger, multidiffusion) ----------------------------------

def test_get_prompt_lengths_counts_tokens_and_chunk_target():
    from modules.sd_hijack import model_hijack

    assert model_hijack.get_prompt_lengths("a cat") == (2, 75)
    assert model_hijack.get_prompt_lengths("(a cat:1.2)") == (2, 75)  # emphasis is not counted
    assert model_hijack.get_prompt_lengths(" ".join(["cat"] * 80)) == (80, 150)
    assert model_hijack.get_prompt_lengths("a cat", object()) == (2, 75)  # Forge's call passes cond_stage_model


def test_embedding_db_lists_the_embeddings_folder_as_tagcomplete_reads_it(tmp_path, monkeypatch):
    from modules import sd_hijack, textual_inversion
    from modules.shared_cmd_options import cmd_opts

    folder = tmp_path / "embeddings"
    folder.mkdir()
    monkeypatch.setattr(cmd_opts, "embeddings_dir", str(folder))
    db = sd_hijack.model_hijack.embedding_db
    assert db is textual_inversion.embedding_db()
    assert (db.word_embeddings | db.skipped_embeddings) == {}
    torch.save({"string_to_param": {"*": torch.zeros(2, 32)}, "name": "shiny"}, folder / "shiny.pt")
    loaded = sd_hijack.model_hijack.embedding_db.word_embeddings  # read again: the folder changed
    assert list(loaded) == ["shiny"]
    assert loaded["shiny"].shape == 32 and loaded["shiny"].filename == str(folder / "shiny.pt")


def test_hijack_and_undo_hijack_patch_nothing_and_say_so(caplog):
    from modules.sd_hijack import model_hijack

    with caplog.at_level(logging.DEBUG, logger="modules.sd_hijack"):
        model_hijack.undo_hijack(None)
        model_hijack.hijack(None)
    assert [r.message for r in caplog.records] == [
        "model_hijack.undo_hijack: nothing to restore, Atelier runs diffusers modules",
        "model_hijack.hijack: nothing to patch, Atelier runs diffusers modules"]
    assert model_hijack.optimization_method is None


def test_model_hijack_comments_reach_the_result_and_clip_is_the_text_encoder(engine):
    from modules.sd_hijack import model_hijack

    model_hijack.comments.append("stale note")  # a job starts with no comments
    result = txt2img("tiny_sd1", steps=1)
    assert "stale note" not in result.comments
    assert model_hijack.clip is shared.sd_model.text_encoders["text_encoder"]
    p = processing.StableDiffusionProcessingTxt2Img(prompt="x", steps=1, width=64, height=64, sampler_name="Euler",
                                                    do_not_save_samples=True, do_not_save_grid=True)
    original = processing.prepare

    def prepare_and_note(job):
        original(job)
        model_hijack.comments.append("Network not found: foo")

    try:
        processing.prepare = prepare_and_note
        assert processing.process_images(p).comments == "Network not found: foo\n"
    finally:
        processing.prepare = original


def test_sd_hijack_clip_and_optimizations_name_what_is_ldm_only():
    from modules import sd_hijack_clip

    assert sd_hijack_clip.prompt_lengths("a cat") == (2, 75)
    with pytest.raises(ImportError, match="LDM's CLIP module"):
        from modules.sd_hijack_clip import FrozenCLIPEmbedderWithCustomWords  # noqa: F401
    with pytest.raises(ImportError, match="replaces LDM's attention forward"):
        from modules.sd_hijack_optimizations import split_cross_attention_forward  # noqa: F401


def test_sd_hijack_optimizations_helpers_multidiffusion_imports():
    from modules.sd_hijack_optimizations import (
        get_available_vram,
        get_xformers_flash_attention_op,
        sub_quad_attention,
    )

    q, k, v = (torch.randn(2, 5, 8, generator=torch.Generator().manual_seed(i)) for i in range(3))
    expected = torch.softmax(q @ k.transpose(1, 2) / 8**0.5, dim=-1) @ v
    assert torch.allclose(sub_quad_attention(q, k, v, q_chunk_size=2, kv_chunk_size=2), expected, atol=1e-5)
    assert get_available_vram() > 0
    assert get_xformers_flash_attention_op(q, k, v) is None


# --- modules.safe, extras, timer, memmon ---------------------------------------------------------------------------

class _Custom:
    def __init__(self, value):
        self.value = value


def test_safe_load_refuses_code_unless_extra_allows_it(tmp_path):
    from modules import safe

    weights = tmp_path / "weights.pt"
    torch.save({"w": torch.ones(2)}, weights)
    assert torch.equal(safe.load(weights)["w"], torch.ones(2))
    custom = tmp_path / "custom.pt"
    torch.save({"obj": _Custom(3)}, custom)
    with pytest.raises(pickle.UnpicklingError):
        safe.load(custom)
    asked = []

    def handler(module, name):
        asked.append((module, name))
        return _Custom if name == "_Custom" else None

    with safe.Extra(handler):
        assert safe.load(custom)["obj"].value == 3
    assert asked == [(__name__, "_Custom")]
    with pytest.raises(pickle.UnpicklingError):  # only inside the block
        safe.load(custom)
    assert safe.unsafe_torch_load is torch.load


def test_extras_create_config_copies_the_yaml_beside_a(tmp_path):
    from modules import extras

    a = sd_models.CheckpointInfo(str(tmp_path / "a.safetensors"))
    b = sd_models.CheckpointInfo(str(tmp_path / "b.safetensors"))
    (tmp_path / "b.yaml").write_text("model: b\n")
    extras.create_config(str(tmp_path / "merged.safetensors"), 0, a, b, None)
    assert (tmp_path / "merged.yaml").read_text() == "model: b\n"
    extras.create_config(str(tmp_path / "none.safetensors"), 3, a, b, None)
    assert not (tmp_path / "none.yaml").exists()


def test_timer_records_stages():
    from modules.timer import Timer

    timer = Timer()
    timer.record("load", extra_time=1.5)
    timer.record("apply", extra_time=0.01)
    assert list(timer.records) == ["load", "apply"] and timer.records["load"] >= 1.5
    assert timer.summary().startswith("1.5s (load: 1.5s")
    assert "apply" not in timer.summary()


def test_mem_mon_reports_free_and_total():
    from modules.memmon import MemUsageMonitor

    assert isinstance(shared.mem_mon, MemUsageMonitor)
    free, total = shared.mem_mon.cuda_mem_get_info()
    assert 0 < free <= total
    assert shared.mem_mon.read()["total"] == total


# --- modules.processing ----------------------------------------------------------------------------------------------

def test_create_binary_mask_thresholds_the_alpha_of_rgba():
    rgba = Image.new("RGBA", (4, 1))
    rgba.putdata([(0, 0, 0, 0), (9, 9, 9, 100), (9, 9, 9, 200), (9, 9, 9, 255)])
    assert list(processing.create_binary_mask(rgba).getdata()) == [0, 0, 255, 255]
    assert list(processing.create_binary_mask(rgba, False).getdata()) == [0, 100, 200, 255]
    assert processing.create_binary_mask(Image.new("RGB", (2, 2), "white")).mode == "L"
    assert (processing.opt_f, processing.opt_C) == (8, 4)


# --- modules.sd_samplers and the CFG denoiser (sd-dynamic-thresholding) -----------------------------------------------

def test_create_sampler_makes_the_run_object_with_its_cfg_denoiser():
    from modules.sd_samplers_kdiffusion import CFGDenoiserKDiffusion, KDiffusionSampler

    sampler = sd_samplers.create_sampler("k_euler_a", None)
    assert isinstance(sampler, KDiffusionSampler) and sampler.config is sd_samplers.all_samplers_map["Euler a"]
    assert isinstance(sampler.model_wrap_cfg, CFGDenoiserKDiffusion) and sampler.model_wrap_cfg.sampler is sampler
    assert sd_samplers.all_samplers_map["Euler a"].options == {"uses_ensd": True}
    with pytest.raises(ValueError, match="Sampler not found"):
        sd_samplers.create_sampler("Euler b", None)


def test_compvis_sampler_subclasses_load_and_say_what_is_missing():
    from modules import sd_samplers_compvis

    class CustomVanillaSDSampler(sd_samplers_compvis.VanillaStableDiffusionSampler):  # dynamic thresholding's
        def __init__(self, constructor, sd_model, dt_data):
            super().__init__(constructor, sd_model)

    with pytest.raises(NotImplementedError, match="LDM's CompVis sampler classes"):
        CustomVanillaSDSampler(object, None, None)


def _register_wrapped_sampler(base: str, name: str, make_denoiser):
    """Dynamic thresholding's pattern: a new entry whose constructor replaces the run's model_wrap_cfg."""
    data = sd_samplers.all_samplers_map[base]

    def constructor(model):
        result = data.constructor(model)
        result.model_wrap_cfg = make_denoiser(result)
        return result

    sd_samplers.all_samplers_map[name] = sd_samplers_common.SamplerData(name, constructor, data.aliases, data.options)


def test_combine_denoised_override_changes_the_image(engine):
    from modules.sd_samplers_kdiffusion import CFGDenoiserKDiffusion

    seen = []

    class Clamped(CFGDenoiserKDiffusion):
        def __init__(self, model, limit):
            super().__init__(model)
            self.limit = limit

        def combine_denoised(self, x_out, conds_list, uncond, cond_scale):
            seen.append((self.step, self.total_steps, len(conds_list), uncond.shape[0], x_out.shape[0]))
            return super().combine_denoised(x_out, conds_list, uncond, cond_scale).clamp(-self.limit, self.limit)

    default = pixels(txt2img("tiny_sd1", steps=3, cfg_scale=7.0).images[0])
    _register_wrapped_sampler("Euler", "Euler_clamped1", lambda result: Clamped(result, 0.05))
    try:
        fixed = txt2img("tiny_sd1", steps=3, cfg_scale=7.0, sampler_name="Euler_clamped1")
    finally:
        del sd_samplers.all_samplers_map["Euler_clamped1"]
    assert seen == [(0, 3, 1, 1, 2), (1, 3, 1, 1, 2), (2, 3, 1, 1, 2)]
    assert not np.array_equal(pixels(fixed.images[0]), default)
    assert sd_samplers.find_sampler("Euler_clamped1") is None


def test_a_sampler_registered_in_process_batch_is_the_one_that_runs(engine):
    from modules import scripts
    from modules.sd_samplers_kdiffusion import CFGDenoiserKDiffusion

    class Uncond(CFGDenoiserKDiffusion):
        def combine_denoised(self, x_out, conds_list, uncond, cond_scale):
            return x_out[-uncond.shape[0]:]  # ignores the prompt: cfg as if 0

    class Swap(scripts.Script):
        def process_batch(self, p, *args, **kwargs):
            _register_wrapped_sampler(p.sampler_name, "Euler_uncond1", Uncond)
            p.sampler_name = "Euler_uncond1"

        def postprocess_batch(self, p, *args, **kwargs):
            p.sampler_name = "Euler"
            del sd_samplers.all_samplers_map["Euler_uncond1"]

    runner = scripts.ScriptRunner()
    swap = Swap()
    swap.alwayson, swap.args_from, swap.args_to, swap.filename = True, 1, 1, "swap.py"
    runner.scripts.append(swap)
    runner.alwayson_scripts.append(swap)
    p = processing.StableDiffusionProcessingTxt2Img(prompt="a red cube", negative_prompt="", steps=3, width=64,
                                                    height=64, seed=5, sampler_name="Euler", cfg_scale=7.0,
                                                    do_not_save_samples=True, do_not_save_grid=True, scripts=runner,
                                                    script_args=[0])
    opts.set("sd_model_checkpoint", "tiny_sd1")
    swapped = processing.process_images(p)
    assert "Sampler: Euler," in swapped.infotexts[0]
    as_cfg_0 = txt2img("tiny_sd1", prompt="", negative_prompt="", steps=3, seed=5, cfg_scale=1.0)
    assert np.array_equal(pixels(swapped.images[0]), pixels(as_cfg_0.images[0]))


# --- modules.sd_models, sd_vae, shared.sd_model (supermerger, tagcomplete, adetailer, controlnet) ----------------------

def test_model_data_and_model_attributes(engine):
    assert sd_models.model_path.endswith("Stable-diffusion")
    assert sd_models.model_data.sd_model is None and sd_models.model_data.loaded_sd_models == []
    model = sd_models.reload_model_weights(info=sd_models.get_closet_checkpoint_match("tiny_sd1"))
    assert sd_models.model_data.get_sd_model() is model is sd_models.model_data.sd_model
    assert sd_models.model_data.loaded_sd_models == [model]
    assert (model.is_sd1, model.is_sd2, model.is_sdxl) == (True, False, False)
    assert model.cond_stage_model is model.text_encoders["text_encoder"]
    assert shared.sd_model.sd_checkpoint_info.name == "tiny_sd1.safetensors"
    sd_models.model_data.set_sd_model(None)
    assert shared.sd_model is None and len(engine.loaded) == 1
    sd_models.model_data.sd_model = model
    assert shared.sd_model is model
    assert isinstance(sd_models.checkpoints_loaded, collections.OrderedDict)
    sd_models.checkpoints_loaded.clear()


def test_load_model_from_a_state_dict_in_memory_is_what_jobs_use(engine):
    info = sd_models.get_closet_checkpoint_match("tiny_sd1")
    before = pixels(txt2img("tiny_sd1", steps=2).images[0])
    state_dict = sd_models.read_state_dict(info.filename)
    merged = {k: v * 0.5 if k.startswith("model.diffusion_model.out.") else v for k, v in state_dict.items()}
    model = sd_models.load_model(info, already_loaded_state_dict=merged)
    assert shared.sd_model is model
    assert not np.array_equal(pixels(txt2img("tiny_sd1", steps=2).images[0]), before)
    sd_models.load_model(info, already_loaded_state_dict=state_dict)
    assert np.array_equal(pixels(txt2img("tiny_sd1", steps=2).images[0]), before)


def test_read_metadata_from_safetensors_decodes_json(tmp_path):
    path = tmp_path / "meta.safetensors"
    safetensors.torch.save_file({"x": torch.zeros(1)}, str(path),
                                metadata={"sd_merge_recipe": json.dumps({"type": "webui"}), "note": "{not json"})
    assert sd_models.read_metadata_from_safetensors(str(path)) == {"sd_merge_recipe": {"type": "webui"},
                                                                   "note": "{not json"}


def test_load_vae_dict_and_vae_dict(vae_file, tmp_path):
    vae = sd_vae.load_vae_dict(str(vae_file), map_location="cpu")
    raw = safetensors.torch.load_file(str(vae_file))
    assert vae.keys() == raw.keys() and all(torch.equal(vae[k], raw[k]) for k in vae)
    prefixed = tmp_path / "prefixed.safetensors"
    safetensors.torch.save_file({**{f"first_stage_model.{k}": v for k, v in raw.items()},
                                 "model_ema.decay": torch.ones(1)}, str(prefixed))
    assert sd_vae.load_vae_dict(str(prefixed)).keys() == raw.keys()


# --- modules.api.api ------------------------------------------------------------------------------------------------

def test_validate_sampler_name():
    from modules.api.api import validate_sampler_name

    assert validate_sampler_name("k_euler_a") == "k_euler_a"
    with pytest.raises(HTTPException) as e:
        validate_sampler_name("Euler b")
    assert e.value.status_code == 400 and "Euler a" in e.value.detail


# --- modules.ui, ui_components, infotext_utils ------------------------------------------------------------------------

def test_ui_helpers_extensions_build_tabs_with():
    import gradio as gr

    from modules import ui
    from modules.ui_components import DropdownMulti, FormHTML, ToolButton

    assert ui.ToolButton is ToolButton
    assert ui.gr_show(False) == gr.update(visible=False)
    calls = []
    with gr.Blocks():
        models = DropdownMulti(choices=["a"], value=["a"], label="Models")
        html = FormHTML("<b>x</b>")
        button = ui.create_refresh_button(models, lambda: calls.append("scan"), lambda: {"choices": ["a", "b"]}, "r")
        panel = ui.create_output_panel("ext", "outputs")
    assert models.multiselect and isinstance(html, gr.HTML) and isinstance(button, ToolButton)
    assert (panel.gallery, panel.generation_info, panel.infotext, panel.html_log) == \
        (panel.gallery, panel.generation_info, panel.infotext, panel.html_log)
    assert isinstance(panel.gallery, gr.Gallery) and isinstance(panel.html_log, gr.HTML)
    assert "<br>" in ui.plaintext_to_html("a\nb")


def test_registered_paste_button_sends_image_and_parameters(monkeypatch):
    import gradio as gr

    from modules import generation_parameters_copypaste as send, infotext_utils, ui

    assert send.ParamBinding is infotext_utils.ParamBinding
    assert send.register_paste_params_button is infotext_utils.register_paste_params_button
    infotext_utils.registered_param_bindings.clear()
    with gr.Blocks():
        image, text = gr.Image(type="pil"), gr.Textbox()
        buttons = {tab: gr.Button(tab) for tab in ("txt2img", "extras")}
        for tab, button in buttons.items():
            send.register_paste_params_button(send.ParamBinding(paste_button=button, tabname=tab,
                                                                source_image_component=image,
                                                                source_text_component=text))
    wired = {}
    for binding in infotext_utils.registered_param_bindings:
        monkeypatch.setattr(binding.paste_button, "click",
                            lambda fn, inputs, outputs, tab=binding.tabname, **kw: wired.setdefault(tab, (fn, inputs)))
    sent = []
    monkeypatch.setattr(ui, "send_values", lambda pages, name, img, params, has: sent.append((name, img, params)) or [])

    class Pages:
        checkpoint = None

        def outputs(self, name):
            return []

    ui._wire_param_bindings(Pages())
    picture = Image.new("RGB", (8, 8), "red")
    fn, inputs = wired["txt2img"]
    assert inputs == [image, text]
    fn(picture, "a cat\nNegative prompt: dog\nSteps: 12, Sampler: Euler, CFG scale: 5, Seed: 3, Size: 64x64")
    name, img, params = sent[-1]
    assert (name, img) == ("txt2img", picture)
    assert (params["Prompt"], params["Negative prompt"], params["Steps"], params["Seed"]) == ("a cat", "dog", "12", "3")
    picture.info["parameters"] = "a dog\nSteps: 7, Seed: 9, CFG scale: 4"
    wired["extras"][0](np.asarray(picture), None)
    assert sent[-1][0] == "extras" and sent[-1][2] == {}  # a numpy image carries no text: nothing to paste
    wired["extras"][0](picture, None)
    assert sent[-1][2]["Prompt"] == "a dog"  # no text given: the image's own parameters
    infotext_utils.registered_param_bindings.clear()


def test_create_override_settings_dict_from_the_old_module():
    from modules.generation_parameters_copypaste import create_override_settings_dict

    assert create_override_settings_dict(["Clip skip: 2"]) == {"CLIP_stop_at_last_layers": 2}
