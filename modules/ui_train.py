"""The Train tab (A1111's element ids): create an embedding or a hypernetwork, and train either one.

Training runs through the one GPU queue like Generate, with the progress bar and the trained state's previews; the
work itself is modules.textual_inversion_training and modules.hypernetwork_training.
"""
from __future__ import annotations

import os
from dataclasses import dataclass

import gradio as gr

from modules import (
    call_queue,
    hypernetwork_training,
    hypernetworks,
    script_callbacks,
    textual_inversion,
    textual_inversion_training as ti_training,
    training_dataset,
    ui_common,
    ui_preprocess,
)
from modules.shared_state import state
from modules.ui_components import FormRow, ToolButton

PREVIEW_FIELDS = ("prompt", "negative_prompt", "steps", "sampler_name", "cfg_scale", "seed", "width", "height")
HYPERNETWORK_SIZES = ["768", "1024", "320", "640", "1280"]
ACTIVATION_CHOICES = ["linear", "relu", "leakyrelu", "elu", "swish", "tanh", "sigmoid"] + sorted(
    set(hypernetworks.ACTIVATIONS) - {"relu", "leakyrelu", "elu", "swish", "tanh", "sigmoid"})


@dataclass
class TrainUI:
    """The tab's components the rest of the page or the tests reach."""

    train_embedding_name: gr.Dropdown
    train_hypernetwork_name: gr.Dropdown
    template_file: gr.Dropdown
    ti_output: gr.Textbox
    ti_outcome: gr.HTML
    ti_progress: gr.HTML


def txt2img_preview_params(txt2img) -> list:
    """The txt2img tab's fields that previews read (A1111's txt2img_preview_params), in the train functions' order."""
    return [txt2img.paste.fields[name] for name in PREVIEW_FIELDS]


def embedding_names() -> list[str]:
    db = textual_inversion.embedding_db()
    db.load_textual_inversion_embeddings()
    return sorted(db.word_embeddings, key=str.lower)


def hypernetwork_names() -> list[str]:
    return sorted(hypernetworks.list_hypernetworks(), key=str.lower)


def template_names() -> list[str]:
    return list(training_dataset.list_templates())


def create_embedding(name, init_text, nvpt, overwrite_old):
    filename = textual_inversion.create_embedding(name, int(nvpt), bool(overwrite_old), init_text=init_text)
    created = textual_inversion.load_embedding_file(filename).name
    return gr.update(choices=embedding_names(), value=created), f"Created: {filename}", ""


def create_hypernetwork(name, sizes, overwrite_old, layer_structure, activation_func, weight_init, add_layer_norm,
                        use_dropout, dropout_structure):
    filename = hypernetworks.create_hypernetwork(name, sizes, bool(overwrite_old), layer_structure, activation_func,
                                                 weight_init, bool(add_layer_norm), bool(use_dropout), dropout_structure)
    created = os.path.splitext(os.path.basename(filename))[0]
    return gr.update(choices=hypernetwork_names(), value=created), f"Created: {filename}", ""


def shared_train_args(learn_rate, batch_size, gradient_step, data_root, log_directory, width, height, varsize, steps,
                      clip_grad_mode, clip_grad_value, shuffle_tags, tag_drop_out, latent_sampling_method, use_weight,
                      create_image_every, template_filename, preview_from_txt2img, *preview) -> dict:
    """The Train sub-tab's fields as the train functions' keyword arguments (the txt2img fields for previews last)."""
    args = {"learn_rate": learn_rate, "batch_size": int(batch_size), "gradient_step": int(gradient_step),
            "data_root": data_root, "log_directory": log_directory, "training_width": int(width),
            "training_height": int(height), "varsize": bool(varsize), "steps": int(steps),
            "clip_grad_mode": clip_grad_mode, "clip_grad_value": clip_grad_value, "shuffle_tags": bool(shuffle_tags),
            "tag_drop_out": float(tag_drop_out), "latent_sampling_method": latent_sampling_method,
            "use_weight": bool(use_weight), "create_image_every": int(create_image_every),
            "template_filename": template_filename, "preview_from_txt2img": bool(preview_from_txt2img and preview)}
    if args["preview_from_txt2img"]:
        prompt, negative, steps_, sampler, cfg, seed, p_width, p_height = preview
        args.update(preview_prompt=prompt, preview_negative_prompt=negative, preview_steps=int(steps_),
                    preview_sampler_name=sampler, preview_cfg_scale=float(cfg), preview_seed=int(seed),
                    preview_width=int(p_width), preview_height=int(p_height))
    return args


def train_embedding(embedding_name, save_every, save_image_with_stored_embedding, *fields):
    _, _, message = ti_training.train_embedding(embedding_name, save_embedding_every=int(save_every),
                                                save_image_with_stored_embedding=bool(save_image_with_stored_embedding),
                                                **shared_train_args(*fields))
    return message, ""


def train_hypernetwork(hypernetwork_name, save_every, *fields):
    _, _, message = hypernetwork_training.train_hypernetwork(hypernetwork_name, save_hypernetwork_every=int(save_every),
                                                             **shared_train_args(*fields))
    return message, ""


def streamed(job):
    """A queued training job for the page: the progress bar while it runs, then its message."""
    def run(*args):
        yield from ui_common.stream_job(job, args, n_outputs=2)

    return run


def interrupt() -> None:
    if state.job:  # only a running job: a stale flag must not stop the next one
        state.interrupt()


def create_ui(txt2img_preview_params: list | None = None) -> TrainUI:
    """The tab's content; build it inside the caller's gr.Tab. txt2img_preview_params: txt2img's prompt, negative
    prompt, steps, sampler, CFG scale, seed, width and height, for "Read parameters from txt2img tab"."""
    preview = list(txt2img_preview_params or [])
    with gr.Row(equal_height=False):
        with gr.Tabs(elem_id="train_tabs"):
            with gr.Tab(label="Create embedding", id="create_embedding"):
                new_embedding_name = gr.Textbox(label="Name", elem_id="train_new_embedding_name")
                initialization_text = gr.Textbox(label="Initialization text", value="*", elem_id="train_initialization_text")
                nvpt = gr.Slider(label="Number of vectors per token", minimum=1, maximum=75, step=1, value=1,
                                 elem_id="train_nvpt")
                overwrite_old_embedding = gr.Checkbox(value=False, label="Overwrite Old Embedding",
                                                      elem_id="train_overwrite_old_embedding")
                create_embedding_button = gr.Button(value="Create embedding", variant="primary",
                                                    elem_id="train_create_embedding")
            with gr.Tab(label="Create hypernetwork", id="create_hypernetwork"):
                new_hypernetwork_name = gr.Textbox(label="Name", elem_id="train_new_hypernetwork_name")
                new_hypernetwork_sizes = gr.CheckboxGroup(label="Modules", value=["768", "320", "640", "1280"],
                                                          choices=HYPERNETWORK_SIZES, elem_id="train_new_hypernetwork_sizes")
                new_hypernetwork_layer_structure = gr.Textbox(
                    "1, 2, 1", label="Enter hypernetwork layer structure", placeholder="1st and last digit must be 1. ex:'1, 2, 1'",
                    elem_id="train_new_hypernetwork_layer_structure")
                new_hypernetwork_activation_func = gr.Dropdown(
                    value="linear", label="Select activation function of hypernetwork. Recommended : Swish / Linear(none)",
                    choices=ACTIVATION_CHOICES, elem_id="train_new_hypernetwork_activation_func")
                new_hypernetwork_initialization_option = gr.Dropdown(
                    value="Normal", choices=list(hypernetworks.WEIGHT_INITS),
                    label="Select Layer weights initialization. Recommended: Kaiming for relu-like, Xavier for "
                          "sigmoid-like, Normal otherwise", elem_id="train_new_hypernetwork_initialization_option")
                new_hypernetwork_add_layer_norm = gr.Checkbox(label="Add layer normalization",
                                                              elem_id="train_new_hypernetwork_add_layer_norm")
                new_hypernetwork_use_dropout = gr.Checkbox(label="Use dropout", elem_id="train_new_hypernetwork_use_dropout")
                new_hypernetwork_dropout_structure = gr.Textbox(
                    "0, 0, 0", label="Enter hypernetwork Dropout structure (or empty). Recommended : 0~0.35 incrementing "
                                     "sequence: 0, 0.05, 0.15",
                    placeholder="1st digit must be 0 and values should be between 0 and 1. ex:'0, 0.01, 0'",
                    elem_id="train_new_hypernetwork_dropout_structure")
                overwrite_old_hypernetwork = gr.Checkbox(value=False, label="Overwrite Old Hypernetwork",
                                                         elem_id="train_overwrite_old_hypernetwork")
                create_hypernetwork_button = gr.Button(value="Create hypernetwork", variant="primary",
                                                       elem_id="train_create_hypernetwork")
            with gr.Tab(label="Preprocess images", id="preprocess_images"):
                ui_preprocess.create_ui()
            with gr.Tab(label="Train", id="train"):
                gr.HTML("<p>Train an embedding or Hypernetwork; you must specify a directory with a set of 1:1 ratio "
                        "images</p>")
                with FormRow():
                    train_embedding_name = gr.Dropdown(label="Embedding", elem_id="train_embedding",
                                                       choices=embedding_names())
                    refresh_embeddings = ToolButton("🔄", elem_id="refresh_train_embedding_name")
                    train_hypernetwork_name = gr.Dropdown(label="Hypernetwork", elem_id="train_hypernetwork",
                                                          choices=hypernetwork_names())
                    refresh_hypernetworks = ToolButton("🔄", elem_id="refresh_train_hypernetwork_name")
                with FormRow():
                    embedding_learn_rate = gr.Textbox(label="Embedding Learning rate", placeholder="Embedding Learning rate",
                                                      value="0.005", elem_id="train_embedding_learn_rate")
                    hypernetwork_learn_rate = gr.Textbox(label="Hypernetwork Learning rate",
                                                         placeholder="Hypernetwork Learning rate", value="0.00001",
                                                         elem_id="train_hypernetwork_learn_rate")
                with FormRow():
                    clip_grad_mode = gr.Dropdown(value="disabled", label="Gradient Clipping",
                                                 choices=list(ti_training.CLIP_GRAD_MODES), elem_id="train_clip_grad_mode")
                    clip_grad_value = gr.Textbox(placeholder="Gradient clip value", value="0.1", show_label=False,
                                                 elem_id="train_clip_grad_value")
                with FormRow():
                    batch_size = gr.Number(label="Batch size", value=1, precision=0, elem_id="train_batch_size")
                    gradient_step = gr.Number(label="Gradient accumulation steps", value=1, precision=0,
                                              elem_id="train_gradient_step")
                dataset_directory = gr.Textbox(label="Dataset directory", placeholder="Path to directory with input images",
                                               elem_id="train_dataset_directory")
                log_directory = gr.Textbox(label="Log directory", placeholder="Path to directory where to write outputs",
                                           value="textual_inversion", elem_id="train_log_directory")
                with FormRow():
                    templates = template_names()
                    template_file = gr.Dropdown(label="Prompt template", elem_id="train_template_file", choices=templates,
                                                value="style_filewords.txt" if "style_filewords.txt" in templates else None)
                    # A1111's own spelling of this id, kept for user scripts and styles that target it
                    refresh_templates = ToolButton("🔄", elem_id="refrsh_train_template_file")
                training_width = gr.Slider(minimum=64, maximum=2048, step=8, label="Width", value=512,
                                           elem_id="train_training_width")
                training_height = gr.Slider(minimum=64, maximum=2048, step=8, label="Height", value=512,
                                            elem_id="train_training_height")
                varsize = gr.Checkbox(label="Do not resize images", value=False, elem_id="train_varsize")
                steps = gr.Number(label="Max steps", value=100000, precision=0, elem_id="train_steps")
                with FormRow():
                    create_image_every = gr.Number(label="Save an image to log directory every N steps, 0 to disable",
                                                   value=500, precision=0, elem_id="train_create_image_every")
                    save_embedding_every = gr.Number(
                        label="Save a copy of embedding to log directory every N steps, 0 to disable", value=500,
                        precision=0, elem_id="train_save_embedding_every")
                use_weight = gr.Checkbox(label="Use PNG alpha channel as loss weight", value=False, elem_id="use_weight")
                save_image_with_stored_embedding = gr.Checkbox(label="Save images with embedding in PNG chunks", value=True,
                                                               elem_id="train_save_image_with_stored_embedding")
                preview_from_txt2img = gr.Checkbox(
                    label="Read parameters (prompt, etc...) from txt2img tab when making previews", value=False,
                    elem_id="train_preview_from_txt2img", visible=bool(preview))
                shuffle_tags = gr.Checkbox(label="Shuffle tags by ',' when creating prompts.", value=False,
                                           elem_id="train_shuffle_tags")
                tag_drop_out = gr.Slider(minimum=0, maximum=1, step=0.1, label="Drop out tags when creating prompts.",
                                         value=0, elem_id="train_tag_drop_out")
                latent_sampling_method = gr.Radio(label="Choose latent sampling method", value="once",
                                                  choices=list(training_dataset.LATENT_SAMPLING_METHODS),
                                                  elem_id="train_latent_sampling_method")
                with gr.Row():
                    train_embedding_button = gr.Button(value="Train Embedding", variant="primary",
                                                       elem_id="train_train_embedding")
                    interrupt_training = gr.Button(value="Interrupt", elem_id="train_interrupt_training")
                    train_hypernetwork_button = gr.Button(value="Train Hypernetwork", variant="primary",
                                                          elem_id="train_train_hypernetwork")
            script_callbacks.ui_train_tabs_callback(script_callbacks.UiTrainTabParams(preview))
        with gr.Column(elem_id="ti_gallery_container"):
            ti_progress = gr.HTML(elem_id="ti_progress", value="")
            ti_output = gr.Textbox(elem_id="ti_output", value="", show_label=False)
            ti_outcome = gr.HTML(elem_id="ti_error", value="")

    messages = [ti_output, ti_outcome]
    create_embedding_button.click(
        call_queue.wrap_gradio_gpu_call(create_embedding, extra_outputs=[gr.skip(), ""]),
        inputs=[new_embedding_name, initialization_text, nvpt, overwrite_old_embedding],
        outputs=[train_embedding_name, *messages])
    create_hypernetwork_button.click(
        call_queue.wrap_gradio_call(create_hypernetwork, extra_outputs=[gr.skip(), ""]),
        inputs=[new_hypernetwork_name, new_hypernetwork_sizes, overwrite_old_hypernetwork,
                new_hypernetwork_layer_structure, new_hypernetwork_activation_func,
                new_hypernetwork_initialization_option, new_hypernetwork_add_layer_norm, new_hypernetwork_use_dropout,
                new_hypernetwork_dropout_structure],
        outputs=[train_hypernetwork_name, *messages])
    refresh_embeddings.click(lambda: gr.update(choices=embedding_names()), outputs=train_embedding_name)
    refresh_hypernetworks.click(lambda: gr.update(choices=hypernetwork_names()), outputs=train_hypernetwork_name)
    refresh_templates.click(lambda: gr.update(choices=template_names()), outputs=template_file)
    fields = [batch_size, gradient_step, dataset_directory, log_directory, training_width, training_height, varsize,
              steps, clip_grad_mode, clip_grad_value, shuffle_tags, tag_drop_out, latent_sampling_method, use_weight,
              create_image_every, template_file, preview_from_txt2img, *preview]
    train_embedding_button.click(
        streamed(call_queue.wrap_gradio_gpu_call(train_embedding, extra_outputs=[""])),
        inputs=[train_embedding_name, save_embedding_every, save_image_with_stored_embedding, embedding_learn_rate, *fields],
        outputs=[*messages, ti_progress], show_progress="hidden")
    train_hypernetwork_button.click(
        streamed(call_queue.wrap_gradio_gpu_call(train_hypernetwork, extra_outputs=[""])),
        inputs=[train_hypernetwork_name, save_embedding_every, hypernetwork_learn_rate, *fields],
        outputs=[*messages, ti_progress], show_progress="hidden")
    interrupt_training.click(fn=interrupt, queue=False, show_progress="hidden")
    return TrainUI(train_embedding_name, train_hypernetwork_name, template_file, ti_output, ti_outcome, ti_progress)
