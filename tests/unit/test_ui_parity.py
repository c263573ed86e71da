"""The page's A1111 tools, server side: ↙️ paste reads the prompt or params.txt, a dropped image's infotext, the style
editor's save/delete, 🗃️ zip, ✨ upscale, "Copy image to" and Batch's Upload sub-tab."""
from __future__ import annotations

import json
import os
import zipfile

import gradio as gr
import pytest
from PIL import Image, PngImagePlugin

from modules import paths_internal, styles, ui, ui_common, ui_img2img, ui_toprow
from modules.shared_cmd_options import cmd_opts
from modules.shared_options import opts

INFOTEXT = "a lighthouse\nNegative prompt: fog\nSteps: 17, Sampler: Euler a, CFG scale: 6.5, Seed: 31337, Size: 128x96"


@pytest.fixture
def data_dir(tmp_path, monkeypatch):
    monkeypatch.setattr(paths_internal, "data_path", str(tmp_path))
    monkeypatch.setattr(cmd_opts, "styles_file", [])
    monkeypatch.setattr(cmd_opts, "no_prompt_history", False)
    monkeypatch.setattr(cmd_opts, "hide_ui_dir_config", False)
    monkeypatch.setattr(styles, "_database", None)
    return tmp_path


def test_paste_reads_the_prompt_box_as_an_infotext(data_dir):
    params = ui.prompt_paste_params(INFOTEXT)
    assert (params["Prompt"], params["Negative prompt"], params["Steps"], params["Seed"]) == ("a lighthouse", "fog", "17", "31337")


def test_paste_with_an_empty_prompt_reads_the_last_generation(data_dir):
    with pytest.raises(gr.Error, match="Nothing to paste"):
        ui.prompt_paste_params("")
    (data_dir / "params.txt").write_text(INFOTEXT, encoding="utf8")
    assert ui.prompt_paste_params("  ")["Size-1"] == "128"


def test_paste_keeps_params_txt_private_with_no_prompt_history(data_dir, monkeypatch):
    (data_dir / "params.txt").write_text(INFOTEXT, encoding="utf8")
    monkeypatch.setattr(cmd_opts, "no_prompt_history", True)
    with pytest.raises(gr.Error, match="Nothing to paste"):
        ui.prompt_paste_params("")


def test_a_dropped_png_gives_its_infotext(data_dir):
    meta = PngImagePlugin.PngInfo()
    meta.add_text("parameters", INFOTEXT)
    Image.new("RGB", (8, 8)).save(data_dir / "a.png", pnginfo=meta)
    Image.new("RGB", (8, 8)).save(data_dir / "plain.png")
    assert ui.dropped_image_params(str(data_dir / "a.png"))["CFG scale"] == "6.5"
    with pytest.raises(gr.Error, match="plain.png holds no generation parameters"):
        ui.dropped_image_params(str(data_dir / "plain.png"))


def test_style_editor_saves_replaces_and_deletes(data_dir):
    lists, selection = ui_toprow.save_edited_style(" noir ", "{prompt}, film noir", "color")
    assert lists["choices"] == ["noir"] and selection["value"] == "noir"
    path = data_dir / "styles.csv"
    assert styles.StyleDatabase([str(path)]).styles["noir"].prompt == "{prompt}, film noir"
    assert ui_toprow.style_texts("noir") == ("{prompt}, film noir", "color")
    ui_toprow.save_edited_style("noir", "{prompt}, neo noir", "")
    assert styles.StyleDatabase([str(path)]).styles["noir"].prompt == "{prompt}, neo noir"
    prompt, negative, chosen = ui_toprow.apply_styles("a street", "", ["noir"])
    assert prompt == "a street, neo noir"
    lists, selection, *texts = ui_toprow.delete_edited_style("noir")
    assert lists["choices"] == [] and texts == ["", ""]
    assert styles.StyleDatabase([str(path)]).styles == {}
    assert [f for f in os.listdir(data_dir) if f.endswith(".tmp")] == []  # written atomically
    with pytest.raises(gr.Error, match="No style named 'gone'"):
        ui_toprow.delete_edited_style("gone")
    assert ui_toprow.delete_edited_style(None) == (gr.skip(),) * 4  # the page's confirm was cancelled


def _gallery(tmp_path, count=2):
    paths = []
    for i in range(count):
        path = tmp_path / f"g{i}.png"
        Image.new("RGB", (16, 12), (40 * i, 0, 0)).save(path)
        paths.append((str(path), None))
    data = {"prompt": "a cube", "seed": 5, "all_seeds": [5, 6], "all_prompts": ["a cube"] * 2, "index_of_first_image": 0,
            "infotexts": ["a cube\nSteps: 4, Seed: 5, Size: 16x12", "a cube\nSteps: 4, Seed: 6, Size: 16x12"],
            "width": 16, "height": 12, "batch_size": 2}
    return json.dumps(data), paths


def test_zip_saves_the_images_and_offers_one_archive(data_dir, monkeypatch):
    monkeypatch.setitem(opts.data, "outdir_save", str(data_dir / "saved"))
    monkeypatch.setitem(opts.data, "grid_zip_filename_pattern", "batch-[seed]-[seed_last]")
    monkeypatch.setitem(opts.data, "save_selected_only", False)
    js, gallery = _gallery(data_dir)
    files, _ = ui_common.save_files(js, gallery, None, make_zip=True)
    archive = files.value[0]["path"] if isinstance(files.value[0], dict) else files.value[0]
    assert os.path.basename(archive) == "batch-5-6.zip"
    with zipfile.ZipFile(archive) as z:
        names = z.namelist()
        assert len(names) == 2 and all(n.endswith(".png") for n in names)
        with z.open(names[1]) as member, Image.open(member) as image:
            assert image.getpixel((0, 0)) == (40, 0, 0)


def test_upscale_button_enlarges_the_selected_image_and_saves_it(data_dir, monkeypatch):
    monkeypatch.setitem(opts.data, "upscale_button_upscaler", "Nearest")
    monkeypatch.setitem(opts.data, "upscale_button_scale", 2.0)
    monkeypatch.setitem(opts.data, "outdir_samples", "")
    monkeypatch.setitem(opts.data, "samples_save", True)
    js, gallery = _gallery(data_dir)
    shown, log = ui_common.upscale_selected(js, gallery, 1, str(data_dir / "out"))
    assert shown[0] == gallery[0][0] and shown[1].size == (32, 24) and shown[1].getpixel((31, 23)) == (40, 0, 0)
    assert "Upscaled to 32x24 with Nearest" in log
    saved = [os.path.join(root, f) for root, _, files in os.walk(data_dir / "out") for f in files]
    assert len(saved) == 1 and saved[0].endswith("-upscaled.png")
    with Image.open(saved[0]) as image:
        assert image.size == (32, 24)
        assert image.info["parameters"].endswith("Postprocess upscale by: 2, Postprocess upscaler: Nearest")
    with pytest.raises(gr.Error, match="Generate an image first"):
        ui_common.upscale_selected("{}", [], None, str(data_dir))


def test_copy_image_to_moves_the_picture_and_shows_the_target_mode():
    picture = Image.new("RGB", (8, 8), (1, 2, 3))
    placed, tabs, mode = ui_img2img.copy_image(ui_img2img.IMG2IMG, ui_img2img.INPAINT, picture)
    assert placed == {"background": picture, "layers": [], "composite": picture}
    assert tabs.selected == "inpaint" and mode == ui_img2img.INPAINT
    drawn = Image.new("RGB", (8, 8), (9, 9, 9))
    placed, tabs, mode = ui_img2img.copy_image(ui_img2img.SKETCH, ui_img2img.IMG2IMG,
                                                {"background": picture, "layers": [], "composite": drawn})
    assert placed is drawn and tabs.selected == "img2img" and mode == ui_img2img.IMG2IMG
    with pytest.raises(gr.Error, match="Inpaint: upload an image first"):
        ui_img2img.copy_image(ui_img2img.INPAINT, ui_img2img.SKETCH, None)


def test_batch_upload_passes_the_files_by_name_to_the_folder_batch(tmp_path, monkeypatch):
    for name in ("frame_001.png", "frame_002.png"):
        Image.new("RGB", (8, 8)).save(tmp_path / name)
    seen = {}

    def fake_run_batch(p, folder, output_dir, mask_dir):
        seen.update(files=sorted(os.listdir(folder)), output=output_dir, folder=folder)
        return "done"

    monkeypatch.setattr(ui_img2img, "run_batch", fake_run_batch)
    files = [str(tmp_path / "frame_002.png"), str(tmp_path / "frame_001.png")]
    assert ui_img2img.run_uploaded_batch(object(), files, "/out", "") == "done"
    assert seen["files"] == ["frame_001.png", "frame_002.png"] and seen["output"] == "/out"
    assert not os.path.exists(seen["folder"])  # the copies are gone afterwards
    with pytest.raises(gr.Error, match="upload the images first"):
        ui_img2img.run_uploaded_batch(object(), [], "", "")


def test_sysinfo_hides_secrets():
    from modules import sysinfo

    argv = ["launch.py", "--gradio-auth", "me:pw", "--api-auth=me:pw", "--port", "7860", "--hf-token", "abc"]
    assert sysinfo.redact_argv(argv) == ["launch.py", "--gradio-auth", "<hidden>", "--api-auth=<hidden>", "--port", "7860",
                                         "--hf-token", "<hidden>"]
    assert sysinfo.redact({"civitai_api_key": "x", "gradio_auth": None, "outdir_samples": "o"}) == {
        "civitai_api_key": "<hidden>", "gradio_auth": None, "outdir_samples": "o"}


def test_sysinfo_json_and_licenses(monkeypatch):
    from modules import sysinfo, ui_settings_pages

    monkeypatch.setattr(cmd_opts, "gradio_auth", "me:secret")
    text = open(ui_settings_pages.sysinfo_file(), encoding="utf8").read()
    data = json.loads(text)
    assert "me:secret" not in text and data["Flags"]["gradio_auth"] == "<hidden>"
    assert data["Python"] and any(p.lower().startswith("torch==") for p in data["Packages"])
    names = dict(sysinfo.licenses())
    assert "Pillow" in names or "pillow" in names
    assert "<td>gradio</td>" in ui_settings_pages.licenses_html()
