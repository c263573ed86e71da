"""The Extras tab (A1111's element ids): Single image, Batch (uploads), Batch from directory; Upscale by scale or to
W x H with two upscalers; GFPGAN and CodeFormer face restoration; below them the extension postprocessing scripts'
controls. The work is modules.postprocessing's."""
from __future__ import annotations

import html
from dataclasses import dataclass

import gradio as gr

from modules import postprocessing, scripts, ui_scripts, upscaler
from modules.shared_cmd_options import cmd_opts
from modules.shared_options import opts


@dataclass
class ExtrasUI:
    """The components the page wires to (e.g. "Send to extras" fills `image`)."""

    image: gr.Image
    image_batch: gr.File
    upscaler_1: gr.Dropdown
    upscaler_2: gr.Dropdown
    gallery: gr.Gallery
    html_info: gr.HTML
    generate: gr.Button


def upscaler_names() -> list[str]:
    return [data.name for data in upscaler.sd_upscalers or upscaler.refresh_upscalers(cmd_opts)]


def scale_for_upscaler(name: str, current: float) -> float:
    """With opts.set_scale_by_when_changing_upscaler, picking e.g. "4x-UltraSharp" sets Resize to 4."""
    if not opts.set_scale_by_when_changing_upscaler:
        return current
    data = next((d for d in upscaler.sd_upscalers if d.name == name and d.data_path), None)
    return data.scale if data is not None else current


def infotext_html(infotext: str) -> str:
    return f"<div class='infotext'><p>{html.escape(infotext)}</p></div>" if infotext else ""


def run(extras_mode, image, image_batch, input_dir, output_dir, show_results, resize_mode, resize, max_side_length,
        width, height, crop, upscaler_1, upscaler_2, upscaler_2_visibility, gfpgan_visibility, codeformer_visibility,
        codeformer_weight, *script_args):
    options = postprocessing.PostprocessingOptions(
        resize_mode=resize_mode, upscaling_resize=resize, max_side_length=int(max_side_length or 0),
        upscaling_resize_w=int(width), upscaling_resize_h=int(height), upscaling_crop=crop, extras_upscaler_1=upscaler_1,
        extras_upscaler_2=upscaler_2, extras_upscaler_2_visibility=upscaler_2_visibility,
        gfpgan_visibility=gfpgan_visibility, codeformer_visibility=codeformer_visibility,
        codeformer_weight=codeformer_weight)
    try:
        result, infotext = postprocessing.run_postprocessing(extras_mode, image, image_batch, input_dir, output_dir,
                                                             show_results, options, script_args=list(script_args))
    except (ValueError, FileNotFoundError) as error:
        raise gr.Error(str(error)) from error
    return result, infotext_html(infotext)


def _source_tabs(extras_mode: gr.Number):
    with gr.Tabs(elem_id="mode_extras"):
        with gr.Tab("Single Image", id="single_image", elem_id="extras_single_tab") as tab_single:
            image = gr.Image(label="Source", type="filepath", elem_id="extras_image", sources=["upload", "clipboard"])
        with gr.Tab("Batch Process", id="batch_process", elem_id="extras_batch_process_tab") as tab_batch:
            image_batch = gr.File(label="Batch Process", file_count="multiple", elem_id="extras_image_batch")
        with gr.Tab("Batch from Directory", id="batch_from_directory", elem_id="extras_batch_directory_tab") as tab_dir:
            input_dir = gr.Textbox(label="Input directory", elem_id="extras_batch_input_dir",
                                   visible=not cmd_opts.hide_ui_dir_config)
            output_dir = gr.Textbox(label="Output directory", elem_id="extras_batch_output_dir",
                                    visible=not cmd_opts.hide_ui_dir_config)
            show_results = gr.Checkbox(label="Show result images", value=True, elem_id="extras_show_extras_results")
    for mode, tab in enumerate((tab_single, tab_batch, tab_dir)):
        tab.select(fn=None, js=f"() => {mode}", outputs=[extras_mode], show_progress="hidden")
    return image, image_batch, input_dir, output_dir, show_results


def _upscale_controls(resize_mode: gr.Number):
    names = upscaler_names()
    with gr.Accordion("Upscale", open=True, elem_id="extras_upscale"):
        with gr.Tabs(elem_id="extras_resize_mode"):
            with gr.Tab("Scale by", elem_id="extras_scale_by_tab") as tab_by:
                resize = gr.Slider(1.0, 8.0, value=4, step=0.05, label="Resize", elem_id="extras_upscaling_resize")
                max_side_length = gr.Number(label="Max side length", value=0, precision=0,
                                            elem_id="extras_upscale_max_side_length")
            with gr.Tab("Scale to", elem_id="extras_scale_to_tab") as tab_to:
                with gr.Row():
                    width = gr.Slider(64, 8192, value=512, step=8, label="Width", elem_id="extras_upscaling_resize_w")
                    height = gr.Slider(64, 8192, value=512, step=8, label="Height", elem_id="extras_upscaling_resize_h")
                crop = gr.Checkbox(label="Crop to fit", value=True, elem_id="extras_upscaling_crop")
        with gr.Row():
            upscaler_1 = gr.Dropdown(names, value=names[0], label="Upscaler 1", elem_id="extras_upscaler_1")
            upscaler_2 = gr.Dropdown(names, value=names[0], label="Upscaler 2", elem_id="extras_upscaler_2")
            visibility = gr.Slider(0.0, 1.0, value=0.0, step=0.001, label="Upscaler 2 visibility",
                                   elem_id="extras_upscaler_2_visibility")
    tab_by.select(fn=None, js=f"() => {postprocessing.RESIZE_BY}", outputs=[resize_mode], show_progress="hidden")
    tab_to.select(fn=None, js=f"() => {postprocessing.RESIZE_TO}", outputs=[resize_mode], show_progress="hidden")
    upscaler_1.change(fn=scale_for_upscaler, inputs=[upscaler_1, resize], outputs=[resize], show_progress="hidden")
    return [resize, max_side_length, width, height, crop, upscaler_1, upscaler_2, visibility]


def _face_controls():
    with gr.Accordion("GFPGAN", open=False, elem_id="extras_gfpgan"):
        gfpgan = gr.Slider(0.0, 1.0, value=0.0, step=0.001, label="Visibility", elem_id="extras_gfpgan_visibility")
    with gr.Accordion("CodeFormer", open=False, elem_id="extras_codeformer"):
        codeformer = gr.Slider(0.0, 1.0, value=0.0, step=0.001, label="Visibility", elem_id="extras_codeformer_visibility")
        weight = gr.Slider(0.0, 1.0, value=0.0, step=0.001, label="Weight (0 = maximum effect, 1 = minimum effect)",
                           elem_id="extras_codeformer_weight")
    return [gfpgan, codeformer, weight]


def create_ui() -> ExtrasUI:
    """The tab's content, built inside the caller's gr.Tab."""
    # hidden numbers set in the page, so the page's tab visits at load (ui.js) leave them as the selected tabs say
    extras_mode = gr.Number(postprocessing.EXTRAS_SINGLE, visible=False, precision=0, elem_id="extras_selected_tab")
    resize_mode = gr.Number(postprocessing.RESIZE_BY, visible=False, precision=0, elem_id="extras_resize_mode_value")
    with gr.Row(equal_height=False, elem_id="extras_2img_settings"):
        with gr.Column(variant="compact"):
            sources = _source_tabs(extras_mode)
            generate = gr.Button("Generate", elem_id="extras_generate", variant="primary")
            upscale = _upscale_controls(resize_mode)
            faces = _face_controls()
            script_inputs = ui_scripts.setup_postprocessing_ui(scripts.scripts_postproc)
        with gr.Column(variant="panel"):
            gallery = gr.Gallery(label="Output", elem_id="extras_gallery", format="png", columns=4)
            html_info = gr.HTML(elem_id="html_info_extras")
    image, image_batch = sources[0], sources[1]
    image.change(fn=scripts.scripts_postproc.image_changed, show_progress="hidden", queue=False)
    generate.click(fn=run, inputs=[extras_mode, *sources, resize_mode, *upscale, *faces, *script_inputs],
                   outputs=[gallery, html_info])
    return ExtrasUI(image, image_batch, upscale[5], upscale[6], gallery, html_info, generate)
