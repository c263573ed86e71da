"""Extras (run_postprocessing / run_extras): scale by / to with crop, two upscalers blended, face restoration with
visibility, saved files that keep the source's infotext and add the extras one; the engine's infotext round trip;
the Extras and PNG Info tabs."""
from __future__ import annotations

import os

import gradio as gr
import numpy as np
import pytest
from PIL import Image, PngImagePlugin

from modules import face_restoration, images, infotext_utils, paths_internal, postprocessing, processing, upscaler
from modules.postprocessing import PostprocessingOptions, run_extras, run_postprocessing
from modules.shared_cmd_options import cmd_opts
from modules.shared_options import opts
from tests.fixtures.upscalers import write_compact_x2, write_esrgan_x4
from tests.integration.engine_helpers import start_engine, txt2img

SOURCE_INFOTEXT = "a cat\nNegative prompt: dog\nSteps: 4, Sampler: Euler, CFG scale: 7, Seed: 5, Size: 48x32"


@pytest.fixture(scope="module")
def upscaler_models(tmp_path_factory):
    root = tmp_path_factory.mktemp("models")
    write_esrgan_x4(root / "ESRGAN" / "tiny_esrgan_4x.pth")
    write_compact_x2(root / "RealESRGAN" / "tiny_compact_x2.safetensors")
    return root


@pytest.fixture()
def extras(upscaler_models, tmp_path, monkeypatch):
    saved = paths_internal.models_path
    paths_internal.configure(str(tmp_path), str(upscaler_models))
    for key, value in {"outdir_extras_samples": str(tmp_path / "extras-images"), "outdir_samples": "",
                       "samples_format": "png", "ESRGAN_tile": 0, "use_original_name_batch": True,
                       "use_upscaler_name_as_suffix": False, "enable_pnginfo": True}.items():
        monkeypatch.setitem(opts.data, key, value)
    postprocessing._upscale_cache.clear()
    upscaler.refresh_upscalers(cmd_opts)
    yield tmp_path / "extras-images"
    paths_internal.configure(str(tmp_path), saved)
    upscaler.sd_upscalers.clear()


def source_image(width=48, height=32, seed=0, infotext=SOURCE_INFOTEXT) -> Image.Image:
    image = Image.fromarray(np.random.RandomState(seed).randint(0, 256, (height, width, 3), dtype=np.uint8))
    image.info["parameters"] = infotext
    return image


def save_source(path, **kwargs) -> str:
    image = source_image(**kwargs)
    info = PngImagePlugin.PngInfo()
    info.add_text("parameters", image.info["parameters"])
    image.save(path, pnginfo=info)
    return str(path)


def saved_files(folder) -> list[str]:
    return sorted(f for f in os.listdir(folder) if not f.startswith(".")) if os.path.isdir(folder) else []


def test_single_image_by_scale_is_saved_with_both_infotexts(extras):
    result, infotext = run_postprocessing(0, source_image(), None, "", "", True,
                                          PostprocessingOptions(upscaling_resize=2, extras_upscaler_1="Lanczos"))
    assert infotext == "Postprocess upscale by: 2, Postprocess upscaler: Lanczos"
    expected = source_image().resize((96, 64), Image.Resampling.LANCZOS)
    assert result[0].tobytes() == expected.tobytes()
    assert saved_files(extras) == ["00000.png"]
    with Image.open(extras / "00000.png") as saved:
        assert saved.size == (96, 64)
        assert saved.info["parameters"] == SOURCE_INFOTEXT
        assert saved.info["extras"] == saved.info["postprocessing"] == infotext
        assert images.read_info_from_image(saved)[0] == SOURCE_INFOTEXT


@pytest.mark.parametrize(("first", "second"), [("Lanczos", "Nearest"), ("tiny_esrgan_4x", "tiny_compact_x2")])
def test_upscaler_2_visibility_blends(extras, first, second):
    image = source_image()
    expected_1 = upscaler.find_upscaler(first)
    expected_2 = upscaler.find_upscaler(second)
    one = expected_1.scaler.upscale(image, 4, expected_1.data_path)
    two = expected_2.scaler.upscale(image, 4, expected_2.data_path)
    options = PostprocessingOptions(upscaling_resize=4, extras_upscaler_1=first, extras_upscaler_2=second,
                                    extras_upscaler_2_visibility=0.5)
    result, infotext = run_postprocessing(0, image, None, "", "", True, options, save_output=False)
    assert result[0].size == (192, 128)
    assert result[0].tobytes() == Image.blend(one, two, 0.5).tobytes()
    blended = np.asarray(result[0], dtype=np.int16)
    assert not np.array_equal(blended, np.asarray(one, dtype=np.int16))
    assert infotext == f"Postprocess upscale by: 4, Postprocess upscaler: {first}, Postprocess upscaler 2: {second}"


def test_visibility_zero_ignores_upscaler_2(extras):
    options = PostprocessingOptions(upscaling_resize=2, extras_upscaler_1="Lanczos", extras_upscaler_2="Nearest")
    result, infotext = run_postprocessing(0, source_image(), None, "", "", True, options, save_output=False)
    assert result[0].tobytes() == source_image().resize((96, 64), Image.Resampling.LANCZOS).tobytes()
    assert "upscaler 2" not in infotext


def test_scale_to_with_and_without_crop(extras):
    options = PostprocessingOptions(resize_mode=1, upscaling_resize_w=100, upscaling_resize_h=100,
                                    extras_upscaler_1="Lanczos")
    cropped, infotext = run_postprocessing(0, source_image(), None, "", "", True, options, save_output=False)
    # scale max(100/48, 100/32) = 3.125: Lanczos to 150x100, then to the sides rounded down to 8 (144x96),
    # centred in a 100x100 canvas (A1111's numbers)
    assert cropped[0].size == (100, 100)
    assert infotext == "Postprocess upscale to: 100x100, Postprocess crop to: 100x100, Postprocess upscaler: Lanczos"
    upscaled = source_image().resize((150, 100), Image.Resampling.LANCZOS).resize((144, 96), Image.Resampling.LANCZOS)
    assert cropped[0].crop((0, 2, 100, 98)).tobytes() == upscaled.crop((22, 0, 122, 96)).tobytes()
    assert np.asarray(cropped[0])[:2].max() == 0  # the 2 rows the upscale did not reach stay black
    options.upscaling_crop = False
    uncropped, infotext = run_postprocessing(0, source_image(), None, "", "", True, options, save_output=False)
    assert uncropped[0].size == (144, 96)
    assert infotext == "Postprocess upscale to: 100x100, Postprocess upscaler: Lanczos"


def test_max_side_length(extras):
    options = PostprocessingOptions(upscaling_resize=4, max_side_length=100, extras_upscaler_1="Lanczos")
    result, infotext = run_postprocessing(0, source_image(), None, "", "", True, options, save_output=False)
    assert result[0].size == (96, 64)
    assert infotext == "Postprocess upscale by: 4, Max side length: 100, Postprocess upscaler: Lanczos"


def test_upscaler_1_none_leaves_the_image(extras):
    result, infotext = run_postprocessing(0, source_image(), None, "", "", True, PostprocessingOptions(), save_output=False)
    assert result[0].tobytes() == source_image().tobytes() and infotext == ""


def test_model_upscaler_output_size(extras):
    for name, size in (("tiny_esrgan_4x", (192, 128)), ("tiny_compact_x2", (96, 64))):
        options = PostprocessingOptions(upscaling_resize=upscaler.find_upscaler(name).scale, extras_upscaler_1=name)
        result, _ = run_postprocessing(0, source_image(), None, "", "", True, options, save_output=False)
        assert result[0].size == size


class MarkingRestorer(face_restoration.FaceRestoration):
    """A test restorer: paints the top-left pixel white, so the order of steps and the blending are visible."""

    def __init__(self, name):
        self.restorer_name = name
        self.calls = []

    def name(self):
        return self.restorer_name

    def restore(self, np_image, **kwargs):
        self.calls.append(kwargs)
        out = np_image.copy()
        out[0, 0] = 255
        return out


@pytest.fixture()
def marking_restorers(monkeypatch):
    restorers = [MarkingRestorer("GFPGAN"), MarkingRestorer("CodeFormer")]
    monkeypatch.setattr(face_restoration, "face_restorers", restorers)
    return restorers


def test_face_restoration_visibility_blends(extras, marking_restorers):
    image = source_image()
    options = PostprocessingOptions(gfpgan_visibility=0.5, codeformer_visibility=1.0, codeformer_weight=0.25)
    result, infotext = run_postprocessing(0, image, None, "", "", True, options, save_output=False)
    restored = np.asarray(image).copy()
    restored[0, 0] = 255
    expected = Image.blend(image, Image.fromarray(restored), 0.5)
    expected_array = np.asarray(expected).copy()
    expected_array[0, 0] = 255  # then CodeFormer at full visibility
    assert np.array_equal(np.asarray(result[0]), expected_array)
    assert marking_restorers[1].calls == [{"w": 0.25}]
    assert infotext == "GFPGAN visibility: 0.5, CodeFormer visibility: 1.0, CodeFormer weight: 0.25"


def test_upscale_first_decides_the_order(extras, marking_restorers):
    base = PostprocessingOptions(upscaling_resize=2, extras_upscaler_1="Nearest", gfpgan_visibility=1.0)
    after, _ = run_postprocessing(0, source_image(), None, "", "", True, base, save_output=False)
    base.upscale_first = False
    before, _ = run_postprocessing(0, source_image(), None, "", "", True, base, save_output=False)
    assert np.asarray(after[0])[:2, :2].tolist() != np.asarray(before[0])[:2, :2].tolist()
    assert (np.asarray(before[0])[:2, :2] == 255).all()  # restored first, then the white pixel enlarged to 2x2
    assert (np.asarray(after[0])[0, 0] == 255).all() and not (np.asarray(after[0])[1, 1] == 255).all()


def test_batch_uploads_keep_their_names(extras, tmp_path):
    paths = [save_source(tmp_path / "first.png", seed=1), save_source(tmp_path / "second.png", seed=2)]
    result, _ = run_postprocessing(1, None, paths, "", "", True,
                                   PostprocessingOptions(upscaling_resize=2, extras_upscaler_1="Lanczos"))
    assert len(result) == 2 and saved_files(extras) == ["first.png", "second.png"]
    with Image.open(extras / "second.png") as saved:
        assert saved.info["parameters"] == SOURCE_INFOTEXT and saved.size == (96, 64)


def test_batch_from_directory(extras, tmp_path):
    source_dir, out_dir = tmp_path / "in", tmp_path / "out"
    source_dir.mkdir()
    save_source(source_dir / "b.png", seed=1)
    save_source(source_dir / "a.png", seed=2)
    (source_dir / "notes.txt").write_text("not an image")
    options = PostprocessingOptions(upscaling_resize=2, extras_upscaler_1="Nearest")
    result, infotext = run_postprocessing(2, None, None, str(source_dir), str(out_dir), False, options)
    assert result == [] and infotext == "Postprocess upscale by: 2, Postprocess upscaler: Nearest"
    assert saved_files(out_dir) == ["a.png", "b.png"] and saved_files(extras) == []
    shown, _ = run_postprocessing(2, None, None, str(source_dir), "", True, options)
    assert len(shown) == 2 and saved_files(extras) == ["a.png", "b.png"]


@pytest.mark.parametrize(("mode", "kwargs", "message"), [
    (0, {}, "Image not selected"),
    (2, {}, "Input directory not selected"),
    (2, {"input_dir": "/no/such/dir"}, "Input directory not found: /no/such/dir"),
])
def test_user_errors(extras, mode, kwargs, message):
    with pytest.raises(ValueError, match=message):
        run_postprocessing(mode, None, None, kwargs.get("input_dir", ""), "", True, PostprocessingOptions())


def test_unknown_upscaler_is_refused(extras):
    with pytest.raises(ValueError, match="Upscaler not found: 8x-Missing"):
        run_postprocessing(0, source_image(), None, "", "", True, PostprocessingOptions(extras_upscaler_1="8x-Missing"))


def test_run_extras_is_the_same_function(extras):
    result, infotext = run_extras(0, 0, source_image(), None, "", "", True, 0, 0, 0, 2, 512, 512, True, "Lanczos", "None",
                                  0, True, save_output=False)
    assert infotext == "Postprocess upscale by: 2, Postprocess upscaler: Lanczos" and result[0].size == (96, 64)


def test_engine_infotext_round_trip_and_extras_keep_it(tiny_models_dir, tmp_path, extras):
    """create -> parse: what the engine writes for a txt2img job comes back as its own values, and an extras pass
    over the saved file keeps that infotext."""
    start_engine(tiny_models_dir, tmp_path)  # the extras folder is inside the data folder, as output folders must be
    opts.set("CLIP_stop_at_last_layers", 2)
    assert opts.set("outdir_extras_samples", str(extras))
    job = txt2img("tiny_sd1", prompt="a red cube,\nsecond line", negative_prompt="blurry, dark", seed=4242, steps=3,
                  cfg_scale=6.5, subseed=99, subseed_strength=0.25, sampler_name="DPM++ 2M", scheduler="Karras",
                  do_not_save_samples=False)
    infotext = job.infotexts[0]
    params = infotext_utils.parse_generation_parameters(infotext)
    assert (params["Prompt"], params["Negative prompt"]) == ("a red cube,\nsecond line", "blurry, dark")
    assert (params["Steps"], params["Sampler"], params["Schedule type"], params["CFG scale"]) == ("3", "DPM++ 2M", "Karras", "6.5")
    assert (params["Seed"], params["Size-1"], params["Size-2"], params["Clip skip"]) == ("4242", "64", "64", "2")
    assert (params["Variation seed"], params["Variation seed strength"]) == ("99", "0.25")
    assert params["Model"] == "tiny_sd1" and params["Version"] == processing.VERSION
    fields = infotext_utils.infotext_to_fields(params).fields
    assert {k: fields[k] for k in ("prompt", "seed", "steps", "cfg_scale", "sampler_name", "scheduler", "subseed")} == {
        "prompt": job.prompt, "seed": job.seed, "steps": 3, "cfg_scale": 6.5, "sampler_name": "DPM++ 2M",
        "scheduler": "Automatic", "subseed": 99}
    saved = job.images[0].already_saved_as
    with Image.open(saved) as image:
        assert images.read_info_from_image(image)[0] == infotext
    run_postprocessing(1, None, [saved], "", "", True, PostprocessingOptions(upscaling_resize=2, extras_upscaler_1="Lanczos"))
    with Image.open(extras / os.path.basename(saved)) as upscaled:
        assert upscaled.size == (128, 128)
        assert upscaled.info["parameters"] == infotext
        assert upscaled.info["extras"] == "Postprocess upscale by: 2, Postprocess upscaler: Lanczos"


def test_extras_tab_builds_with_a1111_ids(extras):
    from modules import ui_postprocessing

    with gr.Blocks() as demo:
        ui = ui_postprocessing.create_ui()
    ids = {block.elem_id for block in demo.blocks.values()}
    assert {"extras_image", "extras_image_batch", "extras_batch_input_dir", "extras_batch_output_dir",
            "extras_show_extras_results", "extras_upscaling_resize", "extras_upscaling_resize_w",
            "extras_upscaling_resize_h", "extras_upscaling_crop", "extras_upscaler_1", "extras_upscaler_2",
            "extras_upscaler_2_visibility", "extras_gfpgan_visibility", "extras_codeformer_visibility",
            "extras_codeformer_weight", "extras_generate", "extras_gallery", "html_info_extras"} <= ids
    assert [c[0] for c in ui.upscaler_1.choices][:3] == ["None", "Lanczos", "Nearest"]
    assert "tiny_esrgan_4x" in [c[0] for c in ui.upscaler_2.choices]


def test_extras_tab_handler(extras, tmp_path):
    from modules import ui_postprocessing

    path = save_source(tmp_path / "src.png")
    gallery, info = ui_postprocessing.run(0, path, None, "", "", True, 0, 2, 0, 512, 512, True, "Lanczos", "None", 0,
                                          0, 0, 0)
    assert gallery[0].size == (96, 64) and "Postprocess upscale by: 2" in info
    with pytest.raises(gr.Error, match="Image not selected"):
        ui_postprocessing.run(0, None, None, "", "", True, 0, 2, 0, 512, 512, True, "Lanczos", "None", 0, 0, 0, 0)


def test_scale_follows_upscaler_name_when_enabled(extras, monkeypatch):
    from modules import ui_postprocessing

    assert ui_postprocessing.scale_for_upscaler("tiny_compact_x2", 4) == 4
    monkeypatch.setitem(opts.data, "set_scale_by_when_changing_upscaler", True)
    assert ui_postprocessing.scale_for_upscaler("tiny_compact_x2", 4) == 2
    assert ui_postprocessing.scale_for_upscaler("Lanczos", 3) == 3


def test_pnginfo_tab(tmp_path):
    from modules import ui_pnginfo

    text = SOURCE_INFOTEXT + ", ADetailer model: face_yolov8n.pt"
    path = tmp_path / "info.png"
    info = PngImagePlugin.PngInfo()
    info.add_text("parameters", text)
    info.add_text("extras", "Postprocess upscale by: 2")
    Image.new("RGB", (8, 8)).save(path, pnginfo=info)
    geninfo, html_info, params = ui_pnginfo.run_pnginfo(str(path))
    assert geninfo == text
    assert params == infotext_utils.parse_generation_parameters(text) and params["Size-1"] == "48"
    assert "<b>parameters</b>" in html_info and "<b>extras</b>" in html_info and "Postprocess upscale by: 2" in html_info
    assert "Not used by Atelier</b></p><p>ADetailer model" in html_info
    assert ui_pnginfo.run_pnginfo(None) == ("", "<div><p>Nothing found in the image.</p></div>", {})
    (tmp_path / "bad.png").write_bytes(b"not an image")
    with pytest.raises(gr.Error, match="Cannot read this file as an image"):
        ui_pnginfo.run_pnginfo(str(tmp_path / "bad.png"))
    with gr.Blocks() as demo:
        ui = ui_pnginfo.create_ui()
    ids = {block.elem_id for block in demo.blocks.values()}
    assert {"pnginfo_image", "pnginfo_generation_info", "pnginfo_html_info", "txt2img_tab", "img2img_tab", "inpaint_tab",
            "extras_tab"} <= ids
    assert list(ui.send_buttons) == ["txt2img", "img2img", "inpaint", "extras"]
