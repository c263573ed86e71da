"""The img2img tab (A1111's ids): img2img, Sketch, Inpaint, Inpaint sketch, Inpaint upload and Batch, with resize,
denoising and mask controls, and the generation controls txt2img has (but Hires. fix)."""
from __future__ import annotations

import functools
import os
import shutil
import tempfile
from dataclasses import dataclass

import gradio as gr
import numpy as np
from PIL import Image, ImageChops

from modules import (
    call_queue,
    generation_parameters,
    img2img as img2img_batch,
    processing,
    scripts,
    ui_common,
    ui_extra_networks,
    ui_interrogate,
    ui_queue,
    ui_toprow,
    ui_txt2img,
)
from modules.shared_cmd_options import cmd_opts
from modules.shared_options import opts
from modules.ui_components import FormRow, ResizeHandleRow, ToolButton

MODES = ("img2img", "Sketch", "Inpaint", "Inpaint sketch", "Inpaint upload", "Batch")
IMG2IMG, SKETCH, INPAINT, INPAINT_SKETCH, INPAINT_UPLOAD, BATCH = range(len(MODES))
MASK_MODES = list(generation_parameters.MASK_MODES)
MASKED_CONTENT_CHOICES = list(generation_parameters.MASKED_CONTENT)
INPAINT_AREAS = list(generation_parameters.INPAINT_AREAS)
WHITE_BRUSH = dict(colors=["#ffffff"], default_color="#ffffff", color_mode="fixed")
detect_symbol = "\U0001f4d0"  # 📐


@dataclass
class Img2ImgUI:
    toprow: ui_toprow.Toprow
    common: ui_txt2img.CommonControls
    mode: gr.State
    mode_tabs_block: gr.Tabs  # the mode tabs, for "Send to inpaint" to select one
    init_img: gr.Image
    sketch: gr.ImageEditor
    inpaint: gr.ImageEditor
    inpaint_color_sketch: gr.ImageEditor
    inpaint_base: gr.Image
    inpaint_mask: gr.Image
    width: gr.Slider
    height: gr.Slider
    extra_networks: ui_extra_networks.ExtraNetworksUi
    output: ui_common.OutputPanel
    paste: ui_common.PasteTarget  # what "Send to img2img" fills
    controls: ui_txt2img.Controls  # every generation control by parameter name


def layers_alpha(editor: dict) -> Image.Image | None:
    """The union of an ImageEditor's drawn layers as an L mask (255 where anything was drawn), None when none."""
    layers = [layer for layer in editor.get("layers") or [] if layer is not None]
    if not layers:
        return None
    alpha = np.zeros(layers[0].size[::-1], dtype=np.uint8)
    for layer in layers:
        alpha = np.maximum(alpha, np.asarray(layer.convert("RGBA").split()[-1]))
    return Image.fromarray(alpha, "L")


def sketch_difference(background: Image.Image, composite: Image.Image) -> Image.Image:
    """Inpaint sketch's mask: every pixel the painting changed (A1111)."""
    difference = ImageChops.difference(background.convert("RGB"), composite.convert("RGB")).convert("L")
    return difference.point(lambda v: 255 if v > 0 else 0)


def _editor_image(editor: dict | None, key: str) -> Image.Image | None:
    return editor.get(key) if editor else None


def init_image_and_mask(mode: int, init_img, sketch, inpaint, inpaint_color_sketch, inpaint_base, inpaint_mask):
    """(init image, mask or None) of the chosen mode; a clear message when the mode's image is missing."""
    if mode == IMG2IMG:
        image, mask = init_img, None
    elif mode == SKETCH:
        image, mask = _editor_image(sketch, "composite"), None
    elif mode == INPAINT:
        image = _editor_image(inpaint, "background")
        mask = layers_alpha(inpaint) if image is not None else None
    elif mode == INPAINT_SKETCH:
        image = _editor_image(inpaint_color_sketch, "composite")
        background = _editor_image(inpaint_color_sketch, "background")
        mask = sketch_difference(background, image) if image is not None and background is not None else None
    elif mode == INPAINT_UPLOAD:
        image, mask = inpaint_base, inpaint_mask
        if image is not None and mask is None:
            raise gr.Error("Inpaint upload needs a mask image too (white = the area to change)")
    else:
        raise ValueError(f"Unknown img2img mode: {mode}")
    if image is None:
        raise gr.Error(f"{MODES[mode]}: upload an image first")
    if mode in (INPAINT, INPAINT_SKETCH) and (mask is None or mask.getbbox() is None):
        raise gr.Error(f"{MODES[mode]}: draw over the area to change first")
    return image.convert("RGBA" if image.mode in ("RGBA", "LA", "P") else "RGB"), mask


def scaled_size(image: Image.Image | None, width: int, height: int, scale_by: float, resize_by: bool) -> tuple[int, int]:
    """The job's size: the sliders ("Resize to"), or the image's size times scale rounded to multiples of 8 ("Resize by")."""
    if not resize_by or image is None:
        return int(width), int(height)
    return max(int(image.width * scale_by) // 8 * 8, 8), max(int(image.height * scale_by) // 8 * 8, 8)


# The img2img controls Generate reads by name besides the table's: the mode and its images, the batch folders, the
# "Resize by" switch and scale.
IMAGE_INPUTS = ("init_img", "sketch", "inpaint", "inpaint_color_sketch", "inpaint_base", "inpaint_mask")
BATCH_INPUTS = ("batch_input_dir", "batch_output_dir", "batch_inpaint_mask_dir", "batch_use_png_info",
                "batch_png_info_props", "batch_png_info_dir")
BATCH_UPLOAD, BATCH_FROM_DIR = "upload", "from dir"  # the Batch sub-tab chosen (A1111's img2img_batch_source_type)
# "Copy image to": (button title, mode tab id) of the four modes that hold one image, as A1111's row lists them
COPY_TARGETS = (("img2img", "img2img"), ("sketch", "img2img_sketch"), ("inpaint", "inpaint"),
                ("inpaint sketch", "inpaint_sketch"))


def img2img(values: dict, extra_options: dict | None = None, script_args=()):
    """Fill an img2img job from the controls' values by name and run it: (gallery, generation info JSON, info HTML,
    log HTML). `extra_options`: the "Settings in UI" values by setting; `script_args`: the values of the Script
    dropdown and of every script's controls."""
    mode = int(values["mode"])
    image, mask = (None, None) if mode == BATCH else init_image_and_mask(mode, *(values.get(k) for k in IMAGE_INPUTS))
    fields = ui_txt2img.job_fields("img2img", values)
    fields["width"], fields["height"] = scaled_size(image, fields["width"], fields["height"],
                                                    float(values.get("scale_by", 1.0)), bool(values.get("resize_by")))
    extra_options = extra_options or {}
    p = processing.StableDiffusionProcessingImg2Img(
        **fields, init_images=[image] if image is not None else [], mask=mask,
        override_settings=ui_txt2img.override_settings(values.get("override_settings"), tuple(extra_options),
                                                       extra_options.values()),
        scripts=scripts.scripts_img2img, script_args=list(script_args))
    if mode == BATCH and values.get("batch_source") == BATCH_UPLOAD:
        return run_uploaded_batch(p, values.get("batch_files"), *(values.get(k, "") for k in BATCH_INPUTS[1:]))
    if mode == BATCH:
        return run_batch(p, *(values.get(k, "") for k in BATCH_INPUTS))
    return ui_txt2img.finish(p)


def run_uploaded_batch(p, files: list | None, output_dir: str, inpaint_mask_dir: str, *png_info):
    """Batch's Upload sub-tab: the uploaded files, under their own names, through the folder batch."""
    if not files:
        raise gr.Error("Batch: upload the images first")
    with tempfile.TemporaryDirectory(prefix="img2img-batch-") as folder:
        for file in files:
            path = file if isinstance(file, str) else file.name
            shutil.copy(path, os.path.join(folder, os.path.basename(getattr(file, "orig_name", None) or path)))
        return run_batch(p, folder, output_dir, inpaint_mask_dir, *png_info)


def generate(names: tuple, extra_option_keys: tuple, id_task: str, *values):
    named, extra, script_args = ui_txt2img.named_values(names, extra_option_keys, values)
    return img2img(named, extra, script_args)


def run_batch(p, input_dir: str, output_dir: str, inpaint_mask_dir: str, use_png_info=False, png_info_props=(),
              png_info_dir: str = ""):
    """Batch from a directory: every image through the engine; the files that could not be read are listed."""
    if not (input_dir or "").strip():
        raise gr.Error("Batch: enter an input directory")
    p.init_images = []
    result = img2img_batch.process_batch(p, input_dir.strip(), (output_dir or "").strip(), (inpaint_mask_dir or "").strip(),
                                         bool(use_png_info), list(png_info_props or ()), (png_info_dir or "").strip())
    shown = [] if opts.do_not_show_images else [image for _, processed in result.processed for image in processed.images]
    infos = [processed.infotexts[0] for _, processed in result.processed if processed.infotexts]
    js = result.processed[-1][1].js() if result.processed else "{}"
    log = f"Processed {len(result.processed)} image(s)."
    if result.errors:
        log += "\nSkipped:\n" + "\n".join(result.errors)
    return shown, js, ui_common.plaintext_to_html("\n\n".join(infos)), ui_common.plaintext_to_html(log, "batch-log")


def detect_size(image: Image.Image | None):
    """📐: width and height from the uploaded image."""
    if image is None:
        return gr.skip(), gr.skip()
    return image.width, image.height


def scale_preview(image: Image.Image | None, scale_by: float) -> str:
    if image is None:
        return "<span class='resize-preview'>Upload an image to see its new size</span>"
    width, height = scaled_size(image, 0, 0, float(scale_by), True)
    return f"<span class='resize-preview'>resize: from {image.width}x{image.height} to {width}x{height}</span>"


def copied_image(source: int, value):
    """The image a "Copy image to" button takes from mode `source` (a sketch with its strokes, inpaint's picture)."""
    if source == IMG2IMG or value is None:
        return value
    return value.get("background" if source == INPAINT else "composite")


def copy_image(source: int, target: int, value):
    """"Copy image to": the source mode's image into the target mode, which is then shown (A1111)."""
    image = copied_image(source, value)
    if image is None:
        raise gr.Error(f"{MODES[source]}: upload an image first")
    placed = image if target == IMG2IMG else {"background": image, "layers": [], "composite": image}
    return placed, gr.Tabs(selected=COPY_TARGETS[target][1]), target


def _copy_image_row(source: int) -> list:
    """A1111's "Copy image to:" row under a mode's image: (button, target mode) for the other three modes."""
    name = COPY_TARGETS[source][1].removeprefix("img2img_") if source else "img2img"
    buttons = []
    with FormRow(elem_id=f"img2img_copy_to_{name}"):
        gr.HTML("Copy image to: ", elem_id=f"img2img_label_copy_to_{name}")
        for target, (title, _) in enumerate(COPY_TARGETS):
            button = gr.Button(title, interactive=target != source, size="sm")
            if target != source:
                buttons.append((source, target, button))
    return buttons


def _editor(label: str, elem_id: str, brush: dict | None = None) -> gr.ImageEditor:
    return gr.ImageEditor(label=label, elem_id=elem_id, type="pil", image_mode="RGBA", height=480, format="png",
                          sources=["upload", "clipboard"], brush=gr.Brush(**brush) if brush else gr.Brush(),
                          eraser=gr.Eraser(), layers=False, transforms=())


def create_mode_tabs(mode: gr.State):
    tabs = {}
    with gr.Tabs(elem_id="mode_img2img") as mode_tabs:
        with gr.Tab("img2img", id="img2img", elem_id="img2img_img2img_tab") as tabs["img2img"]:
            init_img = gr.Image(label="Image for img2img", elem_id="img2img_image", type="pil", image_mode="RGBA",
                                height=480, format="png", sources=["upload", "clipboard"])
            copy_buttons = _copy_image_row(IMG2IMG)
        with gr.Tab("Sketch", id="img2img_sketch", elem_id="img2img_img2img_sketch_tab") as tabs["Sketch"]:
            sketch = _editor("Image for img2img", "img2img_sketch")
            copy_buttons += _copy_image_row(SKETCH)
        with gr.Tab("Inpaint", id="inpaint", elem_id="img2img_inpaint_tab") as tabs["Inpaint"]:
            inpaint = _editor("Image for inpainting with mask", "img2maskimg", WHITE_BRUSH)
            copy_buttons += _copy_image_row(INPAINT)
        with gr.Tab("Inpaint sketch", id="inpaint_sketch", elem_id="img2img_inpaint_sketch_tab") as tabs["Inpaint sketch"]:
            inpaint_color_sketch = _editor("Color sketch inpainting", "inpaint_sketch")
            copy_buttons += _copy_image_row(INPAINT_SKETCH)
        with gr.Tab("Inpaint upload", id="inpaint_upload", elem_id="img2img_inpaint_upload_tab") as tabs["Inpaint upload"]:
            inpaint_base = gr.Image(label="Image for img2img", elem_id="img_inpaint_base", type="pil", format="png",
                                    sources=["upload", "clipboard"])
            inpaint_mask = gr.Image(label="Mask", elem_id="img_inpaint_mask", type="pil", image_mode="L", format="png",
                                    sources=["upload", "clipboard"])
        with gr.Tab("Batch", id="batch", elem_id="img2img_batch_tab") as tabs["Batch"]:
            batch_source = gr.Textbox(BATCH_UPLOAD, visible="hidden", elem_id="img2img_batch_source_type")
            with gr.Tabs(elem_id="img2img_batch_source"):
                with gr.Tab("Upload", id="batch_upload", elem_id="img2img_batch_upload_tab") as upload_tab:
                    batch_files = gr.File(label="Files", file_count="multiple", file_types=["image"],
                                          elem_id="img2img_image_batch")
                with gr.Tab("From directory", id="batch_from_directory",
                            elem_id="img2img_batch_from_dir_tab") as from_dir_tab:
                    hidden = "<br>Disabled when launched with --hide-ui-dir-config." if cmd_opts.hide_ui_dir_config else ""
                    gr.HTML("<p>Process images in a directory on the same machine where the server is running. Use an "
                            "empty output directory to save pictures normally instead of writing to the output "
                            f"directory.{hidden}</p>")
                    batch_input_dir = gr.Textbox(label="Input directory", elem_id="img2img_batch_input_dir",
                                                 visible=not cmd_opts.hide_ui_dir_config)
            batch_dirs = [batch_input_dir, *(gr.Textbox(label=label, elem_id=elem_id, visible=not cmd_opts.hide_ui_dir_config)
                                             for label, elem_id in (("Output directory", "img2img_batch_output_dir"),
                                                                    ("Inpaint batch mask directory (required for inpaint "
                                                                     "batch processing only)",
                                                                     "img2img_batch_inpaint_mask_dir")))]
            with gr.Accordion("PNG info", open=False):
                batch_dirs += [
                    gr.Checkbox(label="Append png info to prompts", elem_id="img2img_batch_use_png_info"),
                    gr.CheckboxGroup(list(img2img_batch.PNG_INFO_PROPS), label="Parameters to take from png info",
                                     info="Prompts from png info will be appended to prompts set in ui.",
                                     elem_id="img2img_batch_png_info_props"),
                    gr.Textbox(label="PNG info directory", info="Leave empty to use input directory",
                               elem_id="img2img_batch_png_info_dir", visible=not cmd_opts.hide_ui_dir_config)]
    upload_tab.select(fn=None, js=f"() => {BATCH_UPLOAD!r}", outputs=[batch_source], show_progress="hidden")
    from_dir_tab.select(fn=None, js=f"() => {BATCH_FROM_DIR!r}", outputs=[batch_source], show_progress="hidden")
    for index, tab in enumerate(tabs.values()):
        tab.select(fn=None, js=f"() => {index}", outputs=[mode], show_progress="hidden")
    editors = [init_img, sketch, inpaint, inpaint_color_sketch]
    for source, target, button in copy_buttons:
        button.click(fn=functools.partial(copy_image, source, target), inputs=[editors[source]],
                     outputs=[editors[target], mode_tabs, mode], show_progress="hidden")
    batch = {"batch_source": batch_source, "batch_files": batch_files}
    return mode_tabs, [init_img, sketch, inpaint, inpaint_color_sketch, inpaint_base, inpaint_mask], batch_dirs, batch


def create_ui(loadsave, extra_option_component) -> Img2ImgUI:
    """The img2img tab's contents; `extra_option_component(key)` builds a "Settings in UI" control. The scripts'
    component hooks see every component made here."""
    with scripts.building_ui(scripts.scripts_img2img, is_img2img=True) as runner:
        return build_ui(loadsave, extra_option_component, runner)


def build_ui(loadsave, extra_option_component, runner: scripts.ScriptRunner) -> Img2ImgUI:
    tabname = "img2img"
    controls = ui_txt2img.Controls(tabname)
    toprow = ui_toprow.create_toprow(tabname)
    ui_queue.create_queue_panel(tabname)
    mode = gr.Number(IMG2IMG, visible=False, precision=0, elem_id="img2img_selected_tab")  # A1111 keeps it in a hidden number
    # set in the page, so the page's tab visits at load (ui.js) leave it as the selected tab says, in order
    resize_by = gr.Number(0, visible=False, precision=0, elem_id="img2img_resize_by")
    with ResizeHandleRow(equal_height=False, elem_id="img2img_main_row"):
        with gr.Column(variant="compact", elem_id="img2img_settings_outer"):
            with gr.Tabs(elem_id="img2img_generation_tabs"):
                with gr.Tab("Generation", id="img2img_generation", elem_id="img2img_generation_tab"):
                    toprow.render_inline_prompts()
                    mode_tabs, images, batch_dirs, batch = create_mode_tabs(mode)
                    with gr.Column(variant="compact", elem_id="img2img_settings") as settings_column:
                        controls.make("resize_mode")
                        ui_txt2img.create_sampler_row(controls)
                        runner.setup_ui_for_section("sampler")
                        with FormRow(elem_id="img2img_dimensions_row"):
                            with gr.Column(elem_id="img2img_column_size", scale=4):
                                with gr.Tabs(elem_id="img2img_tabs_resize"):
                                    with gr.Tab("Resize to", id="to", elem_id="img2img_tab_resize_to") as tab_to:
                                        width, height = controls.make("width"), controls.make("height")
                                        with FormRow():
                                            res_switch_btn = ToolButton(ui_txt2img.switch_values_symbol,
                                                                        elem_id="img2img_res_switch_btn")
                                            detect = ToolButton(detect_symbol, elem_id="img2img_detect_image_size_btn")
                                    with gr.Tab("Resize by", id="by", elem_id="img2img_tab_resize_by") as tab_by:
                                        scale_by = gr.Slider(minimum=0.05, maximum=4.0, step=0.05, value=1.0, label="Scale",
                                                             elem_id="img2img_scale")
                                        scale_label = gr.HTML(scale_preview(None, 1.0), elem_id="img2img_scale_resolution_preview")
                            ui_txt2img.create_batch_column(controls)
                        runner.setup_ui_for_section("dimensions")
                        controls.make("denoising_strength")
                        runner.setup_ui_for_section("denoising")
                        common = ui_txt2img.create_common_tail(controls)
                        controls.make_remaining("base", "img2img")
                        runner.setup_ui_for_section("accordions")
                        with gr.Group(elem_id="inpaint_controls", visible=False) as inpaint_controls:
                            with FormRow():
                                controls.make("mask_blur")
                            controls.make("inpainting_mask_invert")
                            controls.make("inpainting_fill")
                            with FormRow():
                                controls.make("inpaint_full_res")
                                controls.make("inpaint_full_res_padding")
                            controls.make_remaining("inpaint")
                        runner.setup_ui_for_section("inpaint")
                        override = ui_txt2img.create_override_settings(tabname)
                        runner.setup_ui_for_section("override_settings")
                        extra_option_keys = tuple(k for k in opts.extra_options_img2img if k in opts.data_labels)
                        extra_options = []
                        if extra_option_keys:
                            with gr.Accordion("Options", open=True, elem_id="img2img_extra_options"):
                                extra_options = [extra_option_component(k) for k in extra_option_keys]
                        script_inputs = ui_txt2img.create_script_ui(tabname, runner)
                with gr.Tab("Extra Networks", id="img2img_extra_networks", elem_id="img2img_extra_networks_tab"):
                    extra_networks_ui = ui_extra_networks.create_ui(tabname)
        output = ui_common.create_output_panel(tabname, opts.outdir_img2img_samples)

    loadsave.add_block(settings_column, tabname, skip=[override, *extra_options, *script_inputs])
    loadsave.add_component(f"{tabname}/Prompt", toprow.prompt)
    loadsave.add_component(f"{tabname}/Negative prompt", toprow.negative_prompt)

    named = ui_txt2img.named_inputs(toprow, common, controls, override)
    named.update(mode=mode, **dict(zip(IMAGE_INPUTS, images)), **dict(zip(BATCH_INPUTS, batch_dirs)), resize_by=resize_by,
                 scale_by=scale_by, **batch)
    inputs = [*named.values(), *extra_options, *script_inputs]
    job = call_queue.wrap_gradio_gpu_call(functools.partial(generate, tuple(named), extra_option_keys),
                                          extra_outputs=[gr.skip(), gr.skip(), gr.skip()])
    ui_txt2img.wire_generate(tabname, toprow, output, job, inputs)
    ui_toprow.wire_toprow(toprow, common.steps)
    ui_interrogate.wire(toprow, mode, images, batch_dirs)
    ui_txt2img.wire_common(common, output)
    ui_extra_networks.setup_ui(extra_networks_ui, output.gallery, output.selected_index)

    mode.change(fn=lambda m: gr.update(visible=int(m) in (INPAINT, INPAINT_SKETCH, INPAINT_UPLOAD, BATCH)), inputs=[mode],
                outputs=[inpaint_controls], show_progress="hidden", queue=False)
    tab_to.select(fn=None, js="() => 0", outputs=[resize_by], show_progress="hidden")
    tab_by.select(fn=None, js="() => 1", outputs=[resize_by], show_progress="hidden")
    scale_by.change(fn=scale_preview, inputs=[images[0], scale_by], outputs=[scale_label], show_progress="hidden")
    images[0].change(fn=scale_preview, inputs=[images[0], scale_by], outputs=[scale_label], show_progress="hidden")
    res_switch_btn.click(fn=None, inputs=[width, height], outputs=[width, height], js="(w, h) => [h, w]",
                         show_progress="hidden")
    detect.click(fn=detect_size, inputs=[images[0]], outputs=[width, height], show_progress="hidden")

    paste_fields = {name: named[name] for name in ui_txt2img.named_inputs(toprow, common, controls, override)}
    paste = ui_txt2img.paste_target(tabname, paste_fields, runner, controls)
    return Img2ImgUI(toprow, common, mode, mode_tabs, *images, width, height, extra_networks_ui, output, paste,
                     controls)
