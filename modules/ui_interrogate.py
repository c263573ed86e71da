"""img2img's 📎 Interrogate CLIP and 📦 Interrogate DeepBooru: the image of the chosen mode described into the prompt;
in Batch mode, a .txt with the description beside each image of the input folder (in the output folder when given)."""
from __future__ import annotations

import logging
import os

import gradio as gr

from modules import call_queue, deepbooru, files, interrogate
from modules.interrogate_files import ModelFileMissing

log = logging.getLogger(__name__)
IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".webp", ".bmp", ".tif", ".tiff", ".avif", ".gif")


def describe(kind: str, image) -> str:
    image = image.convert("RGB")
    return interrogate.interrogator.interrogate(image) if kind == "clip" else deepbooru.model.tag(image)


def mode_image(mode: int, init_img, sketch, inpaint, inpaint_color_sketch, inpaint_base):
    """The image the mode's tab shows (A1111 interrogates the picture, not the mask)."""
    from modules import ui_img2img as tab  # here: that module imports this one

    editors = {tab.SKETCH: (sketch, "composite"), tab.INPAINT: (inpaint, "background"),
               tab.INPAINT_SKETCH: (inpaint_color_sketch, "composite")}
    if mode in editors:
        editor, key = editors[mode]
        return editor.get(key) if editor else None
    return init_img if mode == tab.IMG2IMG else inpaint_base


def batch_describe(kind: str, input_dir: str, output_dir: str) -> int:
    from PIL import Image

    input_dir = (input_dir or "").strip()
    if not os.path.isdir(input_dir):
        raise gr.Error(f"Batch: input directory not found: {input_dir or '(empty)'}")
    out = (output_dir or "").strip() or input_dir
    os.makedirs(out, exist_ok=True)
    done = 0
    for path in files.listfiles(input_dir):
        if not path.lower().endswith(IMAGE_EXTENSIONS):
            continue
        with Image.open(path) as image:
            text = describe(kind, image)
        with open(os.path.join(out, f"{os.path.splitext(os.path.basename(path))[0]}.txt"), "w", encoding="utf8") as file:
            file.write(text)
        done += 1
    return done


def run(kind: str, mode, init_img, sketch, inpaint, inpaint_color_sketch, inpaint_base, input_dir, output_dir):
    try:
        from modules.ui_img2img import BATCH

        if int(mode) == BATCH:
            gr.Info(f"Interrogated {batch_describe(kind, input_dir, output_dir)} image(s) into .txt files")
            return gr.skip()
        image = mode_image(int(mode), init_img, sketch, inpaint, inpaint_color_sketch, inpaint_base)
        if image is None:
            raise gr.Error("Interrogate: upload an image first")
        return describe(kind, image)
    except ModelFileMissing as error:
        log.warning("%s", error)
        raise gr.Error(str(error)) from error


def wire(toprow, mode, images: list, batch_dirs: list) -> None:
    """Connect the toprow's two buttons; `images` and `batch_dirs` as ui_img2img makes them."""
    inputs = [mode, *images[:5], *batch_dirs[:2]]
    for button, kind in ((toprow.interrogate, "clip"), (toprow.deepbooru, "deepdanbooru")):
        button.click(fn=call_queue.wrap_queued_call(lambda *args, kind=kind: run(kind, *args)), inputs=inputs,
                     outputs=[toprow.prompt], show_progress="minimal")
