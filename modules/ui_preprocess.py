"""Train > Preprocess images (A1111 1.6's sub-tab and element ids): the form of modules.dataset_preparation."""
from __future__ import annotations

import gradio as gr

from modules import call_queue, dataset_preparation
from modules.shared_state import state
from modules.ui_components import FormRow

FIELDS = ("src", "dst", "width", "height", "existing_caption_action", "keep_original_size", "flip", "split",
          "caption_blip", "caption_deepbooru", "split_threshold", "overlap_ratio", "focal_crop", "focal_crop_face_weight",
          "focal_crop_entropy_weight", "focal_crop_edges_weight", "focal_crop_debug")


def preprocess(*values):
    """The form's values in FIELDS order -> (message, log HTML)."""
    options = dataset_preparation.PreprocessOptions(**dict(zip(FIELDS, values)))
    options.width, options.height = int(options.width), int(options.height)
    return dataset_preparation.preprocess(options), ""


def interrupt() -> None:
    if state.job == "preprocess":
        state.interrupt()


def create_ui() -> None:
    """The sub-tab's content; build it inside the caller's gr.Tab."""
    src = gr.Textbox(label="Source directory", elem_id="train_process_src")
    dst = gr.Textbox(label="Destination directory", elem_id="train_process_dst")
    width = gr.Slider(minimum=64, maximum=2048, step=8, label="Width", value=512, elem_id="train_process_width")
    height = gr.Slider(minimum=64, maximum=2048, step=8, label="Height", value=512, elem_id="train_process_height")
    txt_action = gr.Dropdown(label="Existing Caption txt Action", value="ignore",
                             choices=list(dataset_preparation.CAPTION_ACTIONS), elem_id="train_preprocess_txt_action")
    with gr.Row():
        keep_original_size = gr.Checkbox(label="Keep original size", elem_id="train_process_keep_original_size")
        flip = gr.Checkbox(label="Create flipped copies", elem_id="train_process_flip")
        split = gr.Checkbox(label="Split oversized images", elem_id="train_process_split")
        focal_crop = gr.Checkbox(label="Auto focal point crop", elem_id="train_process_focal_crop")
        caption_blip = gr.Checkbox(label="Use BLIP for caption", elem_id="train_process_caption")
        caption_deepbooru = gr.Checkbox(label="Use deepbooru for caption", elem_id="train_process_caption_deepbooru")
    with gr.Row(visible=False) as split_row:
        split_threshold = gr.Slider(label="Split image threshold", value=0.5, minimum=0.0, maximum=1.0, step=0.05,
                                    elem_id="train_process_split_threshold")
        overlap_ratio = gr.Slider(label="Split image overlap ratio", value=0.2, minimum=0.0, maximum=0.9, step=0.05,
                                  elem_id="train_process_overlap_ratio")
    with gr.Column(visible=False) as focal_column:
        face_weight = gr.Slider(label="Focal point face weight", value=0.9, minimum=0.0, maximum=1.0, step=0.05,
                                elem_id="train_process_focal_crop_face_weight")
        entropy_weight = gr.Slider(label="Focal point entropy weight", value=0.15, minimum=0.0, maximum=1.0, step=0.05,
                                   elem_id="train_process_focal_crop_entropy_weight")
        edges_weight = gr.Slider(label="Focal point edges weight", value=0.5, minimum=0.0, maximum=1.0, step=0.05,
                                 elem_id="train_process_focal_crop_edges_weight")
        debug = gr.Checkbox(label="Create debug image", elem_id="train_process_focal_crop_debug")
    with FormRow():
        run = gr.Button(value="Preprocess", variant="primary", elem_id="train_preprocess")
        stop = gr.Button(value="Interrupt", elem_id="train_interrupt_preprocessing")
    message = gr.Textbox(show_label=False, elem_id="train_preprocess_output")
    outcome = gr.HTML(elem_id="train_preprocess_error")

    split.change(fn=lambda on: gr.update(visible=on), inputs=[split], outputs=[split_row], show_progress="hidden")
    focal_crop.change(fn=lambda on: gr.update(visible=on), inputs=[focal_crop], outputs=[focal_column],
                      show_progress="hidden")
    inputs = [src, dst, width, height, txt_action, keep_original_size, flip, split, caption_blip, caption_deepbooru,
              split_threshold, overlap_ratio, focal_crop, face_weight, entropy_weight, edges_weight, debug]
    run.click(call_queue.wrap_gradio_gpu_call(preprocess, extra_outputs=[""]), inputs=inputs, outputs=[message, outcome])
    stop.click(fn=interrupt, queue=False, show_progress="hidden")
