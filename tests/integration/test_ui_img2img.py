"""The img2img tab's handler in each mode, Hires. fix controls, "Send to" field mapping and styles, on the tiny SD1
checkpoint without a browser."""
from __future__ import annotations

import json

import gradio as gr
import numpy as np
import pytest
from PIL import Image

from modules import call_queue, processing, styles, ui_common, ui_img2img, ui_toprow, ui_txt2img
from modules.shared_options import opts
from tests.integration.engine_helpers import start_engine

SD1 = "tiny_sd1.safetensors"


@pytest.fixture()
def engine(tiny_models_dir, tmp_path):
    manager = start_engine(tiny_models_dir, tmp_path)
    opts.set("sd_model_checkpoint", SD1)
    opts.set("samples_save", False)
    return manager


def picture(size=(64, 64)) -> Image.Image:
    rng = np.random.default_rng(3)
    return Image.fromarray(rng.integers(0, 255, (size[1], size[0], 3), dtype=np.uint8))


def stroke_layer(size=(64, 64), box=(24, 24, 40, 40)) -> Image.Image:
    layer = Image.new("RGBA", size, (0, 0, 0, 0))
    layer.paste((255, 255, 255, 255), box)
    return layer


def controls(**changes) -> dict:
    values = dict(mode=ui_img2img.IMG2IMG, prompt="a red cube", negative_prompt="", styles=[], init_img=None, sketch=None,
                  inpaint=None, inpaint_color_sketch=None, inpaint_base=None, inpaint_mask=None, batch_input_dir="",
                  batch_output_dir="", batch_inpaint_mask_dir="", resize_mode=0, resize_by=False, scale_by=1.0,
                  sampler_name="Euler", scheduler="Automatic", steps=4, width=64, height=64, n_iter=1, batch_size=1,
                  cfg_scale=7.0, denoising_strength=0.75, seed=7, seed_enable_extras=False, subseed=-1,
                  subseed_strength=0.0, seed_resize_from_w=0, seed_resize_from_h=0, enable_refiner=False,
                  refiner_checkpoint="None", refiner_switch_at=0.8, mask_blur=0, inpainting_mask_invert=0,
                  inpainting_fill=1, inpaint_full_res=False, inpaint_full_res_padding=32, override_settings=[])
    values.update(changes)
    return values


def run(**changes):
    job = call_queue.wrap_gradio_gpu_call(ui_img2img.img2img, extra_outputs=[None, "", ""])
    return job(controls(**changes))


def test_img2img_mode_uses_the_uploaded_image_and_resize_by(engine):
    gallery, js, info, log = run(init_img=picture((96, 64)), resize_by=True, scale_by=0.5)
    data = json.loads(js)
    assert gallery[0].size == (48, 32)
    assert (data["width"], data["height"]) == (48, 32)
    assert "Denoising strength: 0.75" in info


def test_inpaint_changes_only_the_stroke(engine):
    image = picture()
    editor = {"background": image, "layers": [stroke_layer()], "composite": image}
    gallery, js, info, _ = run(mode=ui_img2img.INPAINT, inpaint=editor)
    result = np.asarray(gallery[0].convert("RGB")).astype(int)
    original = np.asarray(image).astype(int)
    outside = np.ones((64, 64), bool)
    outside[24:40, 24:40] = False
    assert np.array_equal(result[outside], original[outside])
    assert np.abs(result[~outside] - original[~outside]).sum() > 0
    assert "Mask blur: 0" in info


def test_inpaint_sketch_masks_the_painted_pixels_and_uses_the_colours():
    background = picture()
    composite = background.copy()
    composite.paste((255, 0, 0), (8, 8, 16, 16))
    image, mask = ui_img2img.init_image_and_mask(ui_img2img.INPAINT_SKETCH, None, None, None,
                                                 {"background": background, "layers": [], "composite": composite}, None, None)
    assert mask.getbbox() == (8, 8, 16, 16)
    assert image.getpixel((10, 10)) == (255, 0, 0)


def test_sketch_uses_the_composite_and_upload_takes_the_mask_image():
    composite = picture()
    image, mask = ui_img2img.init_image_and_mask(ui_img2img.SKETCH, None, {"background": None, "layers": [],
                                                                          "composite": composite}, None, None, None, None)
    assert mask is None and np.array_equal(np.asarray(image), np.asarray(composite))
    mask_image = Image.new("L", (64, 64), 255)
    _, mask = ui_img2img.init_image_and_mask(ui_img2img.INPAINT_UPLOAD, None, None, None, None, composite, mask_image)
    assert mask is mask_image


@pytest.mark.parametrize("mode, args, message", [
    (ui_img2img.IMG2IMG, {}, "img2img: upload an image first"),
    (ui_img2img.INPAINT, {"inpaint": {"background": picture(), "layers": [], "composite": None}},
     "Inpaint: draw over the area to change first"),
    (ui_img2img.INPAINT_UPLOAD, {"inpaint_base": picture()}, "Inpaint upload needs a mask image too"),
])
def test_missing_inputs_say_what_to_do(mode, args, message):
    values = dict(init_img=None, sketch=None, inpaint=None, inpaint_color_sketch=None, inpaint_base=None, inpaint_mask=None)
    values.update(args)
    with pytest.raises(gr.Error, match=message):
        ui_img2img.init_image_and_mask(mode, *values.values())


def test_batch_processes_a_folder_and_lists_the_bad_files(engine, tmp_path):
    source, target = tmp_path / "in", tmp_path / "out"
    source.mkdir()
    picture().save(source / "a.png")
    (source / "b.png").write_bytes(b"not an image")
    gallery, js, _, log = run(mode=ui_img2img.BATCH, batch_input_dir=str(source), batch_output_dir=str(target))
    assert len(gallery) == 1 and json.loads(js)["seed"] == 7
    assert "Processed 1 image(s)." in log and "b.png: " in log


def test_hires_controls_reach_the_processing_object(monkeypatch):
    seen = {}
    monkeypatch.setattr(ui_txt2img, "finish", lambda p: seen.setdefault("p", p))
    hires = dict(enable_hr=True, hr_upscaler="Latent (nearest)", hr_second_pass_steps=5, denoising_strength=0.4,
                 hr_scale=1.5, hr_resize_x=0, hr_resize_y=0, hr_checkpoint_name="Use same checkpoint",
                 hr_sampler_name="Euler a", hr_scheduler="Use same scheduler", hr_prompt="hires prompt",
                 hr_negative_prompt="")
    base = dict(prompt="p", negative_prompt="n", sampler_name="Euler", scheduler="Automatic", steps=3, width=64, height=64,
                n_iter=1, batch_size=1, cfg_scale=7.0, seed=1, seed_enable_extras=False, subseed=-1, subseed_strength=0.0,
                seed_resize_from_w=0, seed_resize_from_h=0, enable_refiner=False, refiner_checkpoint="None",
                refiner_switch_at=0.8, styles=["style"], override_settings=["Clip skip: 2"])
    values = {**base, **hires}
    ui_txt2img.generate(tuple(values), (), "task(txt2img-test)", *values.values())  # by name, as the page passes them
    p = seen["p"]
    assert isinstance(p, processing.StableDiffusionProcessingTxt2Img)
    assert (p.enable_hr, p.hr_upscaler, p.hr_second_pass_steps, p.denoising_strength, p.hr_scale) == \
        (True, "Latent (nearest)", 5, 0.4, 1.5)
    assert (p.hr_checkpoint_name, p.hr_sampler_name, p.hr_scheduler, p.hr_prompt) == (None, "Euler a", None, "hires prompt")
    assert p.styles == ["style"] and p.override_settings == {"CLIP_stop_at_last_layers": 2}
    hires_off = ui_txt2img.job_fields("txt2img", {**values, "enable_hr": False})
    assert not {"enable_hr", "hr_upscaler", "denoising_strength", "hr_scale"} & set(hires_off)


def test_hires_upscalers_list_latent_modes_then_image_upscalers():
    names = ui_txt2img.hires_upscalers()
    assert names[:len(processing.LATENT_UPSCALE_MODES)] == list(processing.LATENT_UPSCALE_MODES)
    assert {"None", "Lanczos", "Nearest"} <= set(names)


INFOTEXT = {"Prompt": "a cat", "Negative prompt": "dog", "Steps": "12", "Sampler": "Euler a", "CFG scale": "5.5",
            "Seed": "42", "Size-1": "96", "Size-2": "64", "Mask blur": "8", "Masked content": "latent noise",
            "Inpaint area": "Only masked", "Clip skip": "2", "Frobnicate": "yes"}


def target(tabname: str, names: list[str], radio_choices=None) -> ui_common.PasteTarget:
    fields = {name: gr.Textbox(render=False) for name in names}
    return ui_common.PasteTarget(tabname, fields, gr.Dropdown(render=False, multiselect=True), radio_choices or {})


def test_send_to_fills_the_named_fields_and_reports_the_unknown(engine):
    names = ["prompt", "negative_prompt", "steps", "sampler_name", "cfg_scale", "seed", "width", "height", "subseed"]
    updates, checkpoint, report = ui_common.paste_updates(INFOTEXT, target("txt2img", names))
    values = [u.get("value") if isinstance(u, dict) else None for u in updates[:-1]]
    assert values == ["a cat", "dog", 12, "Euler a", 5.5, 42, 96, 64, None]
    assert updates[-1]["value"] == ["Clip skip: 2"] and updates[-1]["visible"] is True
    assert checkpoint is None
    assert "Not used by Atelier: " in report and "Frobnicate: yes" in report


def test_send_to_img2img_maps_radios_to_their_labels(engine):
    radios = {"inpainting_fill": ui_img2img.MASKED_CONTENT_CHOICES, "inpaint_full_res": ui_img2img.INPAINT_AREAS}
    updates, _, _ = ui_common.paste_updates(INFOTEXT, target("img2img", ["mask_blur", *radios], radios))
    assert [u["value"] for u in updates[:3]] == [8, "latent noise", "Only masked"]


def test_send_to_switches_to_a_named_checkpoint_that_is_here(engine):
    title = ui_common.find_checkpoint(SD1)
    opts.set("sd_model_checkpoint", "other.safetensors")
    opts.set("disable_weights_auto_swap", True)  # A1111's default: the text never switches the checkpoint
    assert ui_common.paste_updates({"Model hash": "0000", "Model": "tiny_sd1"}, target("txt2img", []))[1] is None
    opts.set("disable_weights_auto_swap", False)
    _, checkpoint, report = ui_common.paste_updates({"Model hash": "0000", "Model": "tiny_sd1"}, target("txt2img", []))
    assert checkpoint == title and report == ""
    _, checkpoint, report = ui_common.paste_updates({"Model hash": "0000", "Model": "missing_model"}, target("txt2img", []))
    assert checkpoint is None and "Checkpoint not found: missing_model" in report


def test_styles_apply_into_the_boxes_and_save(monkeypatch, tmp_path):
    monkeypatch.setattr(styles, "style_paths", lambda: [str(tmp_path / "styles.csv")])
    with pytest.raises(gr.Error, match="A style needs a name"):
        ui_toprow.save_style("  ", "x", "y")
    update = ui_toprow.save_style("warm", "{prompt}, warm light", "cold")
    assert update["choices"] == ["warm"]
    assert "warm,\"{prompt}, warm light\",cold" in (tmp_path / "styles.csv").read_text()
    prompt, negative, chosen = ui_toprow.apply_styles("a cat", "blurry", ["warm"])
    assert (prompt, negative, chosen["value"]) == ("a cat, warm light", "blurry, cold", [])
