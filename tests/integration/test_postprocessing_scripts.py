"""Extension postprocessing scripts in Extras: an extension's ScriptPostprocessing, loaded by the real loader, shows
its controls in the Extras tab and runs after the built-in steps (first pass before them); its pp.info joins the
saved infotext, its replaced image is what is saved, its extra images and captions are saved beside; a raising script
is logged and the image still saves; without scripts the output is what the built-ins alone make; the API gives the
scripts None for every control, as A1111's does."""
from __future__ import annotations

import base64
import io
import logging

import gradio as gr
import numpy as np
import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient
from PIL import Image, ImageOps, PngImagePlugin

from modules import (
    call_queue,
    extensions,
    paths_internal,
    postprocessing,
    scripts,
    scripts_postprocessing,
    ui_postprocessing,
    upscaler,
)
from modules.api.api import Api
from modules.postprocessing import PostprocessingOptions, run_postprocessing
from modules.shared_cmd_options import cmd_opts
from modules.shared_options import opts
from tests.integration.test_scripts_engine import write_extension

SOURCE_INFOTEXT = "a cat\nNegative prompt: dog\nSteps: 4, Sampler: Euler, CFG scale: 7, Seed: 5, Size: 48x32"
BUILT_IN_INFOTEXT = "Postprocess upscale by: 2, Postprocess upscaler: Lanczos"
LANCZOS_X2 = PostprocessingOptions(upscaling_resize=2, extras_upscaler_1="Lanczos")

EXTENSION_SCRIPT = '''
import gradio as gr
from PIL import ImageOps

from modules import scripts_postprocessing

SEEN = []


class Raiser(scripts_postprocessing.ScriptPostprocessing):
    name = "Raiser test"
    order = 1

    def process(self, pp):
        raise RuntimeError("raiser broke")


class Invert(scripts_postprocessing.ScriptPostprocessing):
    name = "Invert test"
    order = 5000

    def ui(self):
        return {"enable": gr.Checkbox(False, label="Invert test enable", elem_id="extras_invert_test_enable"),
                "label": gr.Textbox("inverted", label="Invert test label", elem_id="extras_invert_test_label")}

    def process_firstpass(self, pp, enable, label):
        SEEN.append(("firstpass", pp.image.size, (pp.shared.target_width, pp.shared.target_height), enable, label))

    def process(self, pp, enable, label):
        SEEN.append(("process", pp.image.size))
        if enable:
            pp.image = ImageOps.invert(pp.image.convert("RGB"))
            pp.info["Invert test"] = label


class Flipper(scripts_postprocessing.ScriptPostprocessing):
    name = "Flipper test"
    order = 6000

    def ui(self):
        return {"flip": gr.Checkbox(False, label="Flipper test flip", elem_id="extras_flipper_test_flip")}

    def process(self, pp, flip):
        if flip:
            pp.caption = "a caption"
            pp.extra_images.append(pp.create_copy(ImageOps.mirror(pp.image), nametags=["flipped"]))
'''


@pytest.fixture(scope="module")
def extension(tmp_path_factory):
    """The extension's scripts loaded through scripts.load_scripts() from <data>/extensions, and the Extras tab built
    with them; yields (the script module, the page). Afterwards only the built-in scripts are loaded."""
    data = tmp_path_factory.mktemp("pp-data")
    saved_paths = paths_internal.data_path, paths_internal.models_path
    saved_opts = {key: opts.data.get(key) for key in ("disabled_extensions", "disable_all_extensions")}
    paths_internal.configure(str(data), str(data / "models"))
    write_extension(data, "ppext", {"scripts/pp_ext.py": EXTENSION_SCRIPT})
    opts.data.update(disabled_extensions=[], disable_all_extensions="none")
    extensions.list_extensions()
    scripts.load_scripts()
    upscaler.refresh_upscalers(cmd_opts)
    with gr.Blocks() as demo:
        ui_postprocessing.create_ui()
    yield next(d.module for d in scripts.postprocessing_scripts_data if d.path.endswith("pp_ext.py")), demo
    extensions.extensions.clear()
    scripts.load_scripts()
    upscaler.sd_upscalers.clear()
    for key, value in saved_opts.items():
        opts.data.pop(key) if value is None else opts.data.update({key: value})
    paths_internal.configure(*saved_paths)


@pytest.fixture()
def seen(extension):
    module, _ = extension
    module.SEEN.clear()
    return module.SEEN


@pytest.fixture()
def outdir(tmp_path, monkeypatch):
    for key, value in {"outdir_extras_samples": str(tmp_path / "extras-images"), "outdir_samples": "",
                       "samples_format": "png", "use_original_name_batch": True, "use_upscaler_name_as_suffix": False,
                       "enable_pnginfo": True}.items():
        monkeypatch.setitem(opts.data, key, value)
    postprocessing._upscale_cache.clear()
    return tmp_path / "extras-images"


def source_image(seed=0) -> Image.Image:
    image = Image.fromarray(np.random.RandomState(seed).randint(0, 256, (32, 48, 3), dtype=np.uint8))
    image.info["parameters"] = SOURCE_INFOTEXT
    return image


def save_source(path) -> str:
    info = PngImagePlugin.PngInfo()
    info.add_text("parameters", SOURCE_INFOTEXT)
    source_image().save(path, pnginfo=info)
    return str(path)


def lanczos_x2() -> Image.Image:
    return source_image().resize((96, 64), Image.Resampling.LANCZOS)


def script_args(enable=False, label="inverted", flip=False) -> list:
    """The values of the scripts' controls in the page's order: Raiser has none, then Invert, then Flipper."""
    return [enable, label, flip]


def test_controls_are_in_the_extras_tab_below_the_built_ins_and_feed_generate(extension):
    _, demo = extension
    runner = scripts.scripts_postproc
    assert [s.name for s in runner.scripts_in_preferred_order()] == ["Raiser test", "Invert test", "Flipper test"]
    ids = [block.elem_id for block in demo.blocks.values()]
    assert ids.index("extras_codeformer_weight") < ids.index("extras_invert_test_enable") < ids.index("extras_flipper_test_flip")
    invert = next(b for b in demo.blocks.values() if b.elem_id == "extras_invert_test_enable")
    assert invert.label == "Invert test enable" and invert.value is False
    generate = next(fn for fn in demo.fns.values() if fn.name == "run")
    assert [b.elem_id for b in generate.inputs[-3:]] == ["extras_invert_test_enable", "extras_invert_test_label",
                                                        "extras_flipper_test_flip"]


def test_enabled_script_changes_the_saved_image_and_its_infotext(extension, seen, outdir, tmp_path, caplog):
    path = save_source(tmp_path / "src.png")
    with caplog.at_level(logging.ERROR, logger="modules.scripts_postprocessing"):
        gallery, info = ui_postprocessing.run(0, path, None, "", "", True, 0, 2, 0, 512, 512, True, "Lanczos", "None", 0,
                                              0, 0, 0, *script_args(enable=True, label="warm"))
    expected = ImageOps.invert(lanczos_x2())
    assert gallery[0].tobytes() == expected.tobytes()
    assert f"{BUILT_IN_INFOTEXT}, Invert test: warm" in info
    # the first pass saw the source and the upscale's target size; process() saw the upscaled image
    assert seen == [("firstpass", (48, 32), (96, 64), True, "warm"), ("process", (96, 64))]
    with Image.open(outdir / "00000.png") as saved:
        assert saved.info["extras"] == saved.info["postprocessing"] == f"{BUILT_IN_INFOTEXT}, Invert test: warm"
        assert saved.info["parameters"] == SOURCE_INFOTEXT
        assert saved.convert("RGB").tobytes() == expected.tobytes()
    # the raising script ran first, was logged with its file and name, and the others still ran
    assert "Error running process of postprocessing script pp_ext.py (Raiser test)" in caplog.text
    assert "raiser broke" in caplog.text


def test_without_scripts_the_output_is_what_the_built_ins_make(extension, seen, outdir, monkeypatch):
    disabled, _ = run_postprocessing(0, source_image(), None, "", "", True, LANCZOS_X2, script_args=script_args())
    with monkeypatch.context() as m:
        empty = scripts_postprocessing.ScriptPostprocessingRunner()
        empty.initialize_scripts([])
        m.setattr(scripts, "scripts_postproc", empty)
        alone, infotext = run_postprocessing(0, source_image(), None, "", "", True, LANCZOS_X2, script_args=[])
    assert infotext == BUILT_IN_INFOTEXT
    assert alone[0].tobytes() == disabled[0].tobytes() == lanczos_x2().tobytes()
    assert (outdir / "00000.png").read_bytes() == (outdir / "00001.png").read_bytes()
    assert [entry[0] for entry in seen] == ["firstpass", "process"]  # only the run with the extension loaded


def test_extra_images_and_captions_are_saved_beside(extension, seen, outdir, tmp_path, monkeypatch):
    path = save_source(tmp_path / "first.png")
    outdir.mkdir()
    (outdir / "first.txt").write_text("old words")
    monkeypatch.setitem(opts.data, "postprocessing_existing_caption_action", "Append")
    shown, infotext = run_postprocessing(1, None, [path], "", "", True, LANCZOS_X2,
                                         script_args=script_args(enable=True, flip=True))
    inverted = ImageOps.invert(lanczos_x2())
    assert [image.tobytes() for image in shown] == [inverted.tobytes(), ImageOps.mirror(inverted).tobytes()]
    assert sorted(p.name for p in outdir.iterdir()) == ["first-flipped.png", "first-flipped.txt", "first.png", "first.txt"]
    with Image.open(outdir / "first-flipped.png") as saved:
        assert saved.convert("RGB").tobytes() == ImageOps.mirror(inverted).tobytes()
        assert saved.info["extras"] == infotext == f"{BUILT_IN_INFOTEXT}, Invert test: inverted"
    assert (outdir / "first.txt").read_text() == "a caption old words"
    assert (outdir / "first-flipped.txt").read_text() == "a caption"


def test_api_gives_the_scripts_none_for_every_control(extension, seen, outdir):
    app = FastAPI()
    Api(app, call_queue.queue_lock)
    buffer = io.BytesIO()
    source_image().save(buffer, format="PNG")
    response = TestClient(app).post("/sdapi/v1/extra-single-image", json={
        "image": base64.b64encode(buffer.getvalue()).decode(), "upscaler_1": "Lanczos", "upscaling_resize": 2})
    assert response.status_code == 200, response.text
    assert response.json()["html_info"] == "Postprocess upscale by: 2.0, Postprocess upscaler: Lanczos"  # a float field
    with Image.open(io.BytesIO(base64.b64decode(response.json()["image"]))) as result:
        assert result.convert("RGB").tobytes() == lanczos_x2().tobytes()
    assert seen == [("firstpass", (48, 32), (96, 64), None, None), ("process", (96, 64))]
    assert not outdir.exists()  # the API returns images without saving them, as A1111's does
