"""The Checkpoint Merger tab (A1111's element ids); the merge itself is modules.extras_merge."""
from __future__ import annotations

import concurrent.futures
import html
import json
from dataclasses import dataclass

import gradio as gr

from modules import extras_merge, sd_models, sd_vae
from modules.sd_models_loader import CheckpointLoadError
from modules.shared_cmd_options import cmd_opts
from modules.shared_options import opts
from modules.shared_state import state

PROGRESS_POLL_S = 0.25
INTERP_DESCRIPTIONS = {
    "No interpolation": "Requires model A only. Useful to convert the format, save as float16, bake in a VAE "
                        "or discard weights.",
    "Weighted sum": "Requires models A and B. Result = A · (1 − M) + B · M",
    "Add difference": "Requires models A, B and C. Result = A + (B − C) · M",
}


@dataclass
class CheckpointMergerUI:
    """The tab's components and events, for wiring the rest of the page (e.g. the quicksettings checkpoint list)."""

    primary_model_name: gr.Dropdown
    secondary_model_name: gr.Dropdown
    tertiary_model_name: gr.Dropdown
    merge_button: gr.Button
    result: gr.HTML
    merged_checkpoint: gr.State   # the title of the last merged checkpoint
    load_button: gr.Button
    merge_event: object           # gradio Dependency: chain .then(...) to follow a finished merge
    load_event: object


def interp_description(interp_method: str) -> str:
    return f"<p>{html.escape(INTERP_DESCRIPTIONS.get(interp_method, ''))}</p>"


def _model_list_updates(*selected: str | None) -> list:
    """New choices for the three model lists, keeping each selection (a title gains its [hash] once hashed)."""
    choices = sd_models.checkpoint_registry.titles()
    infos = [sd_models.get_closet_checkpoint_match(name) if name else None for name in selected]
    return [gr.update(choices=choices, value=info.title if info else None) for info in infos]


def refresh_checkpoints(primary: str | None, secondary: str | None, tertiary: str | None) -> list:
    sd_models.list_models(cmd_opts)
    return _model_list_updates(primary, secondary, tertiary)


def vae_choices() -> list[str]:
    return ["None", *sorted(sd_vae.vae_dict, key=str.lower)]


def refresh_vaes():
    sd_vae.refresh_vae_list(cmd_opts)
    return gr.update(choices=vae_choices())


def read_metadata(primary: str, secondary: str, tertiary: str) -> str:
    return json.dumps(extras_merge.read_metadata(primary, secondary, tertiary), indent=4, ensure_ascii=False)


def _run_with_progress(progress, **kwargs) -> extras_merge.MergeResult:
    """Merge in a worker thread while this one mirrors the shared state's counter into Gradio's progress bar."""
    with concurrent.futures.ThreadPoolExecutor(max_workers=1, thread_name_prefix="merge") as pool:
        future = pool.submit(extras_merge.run_modelmerger, **kwargs)
        while not concurrent.futures.wait([future], timeout=PROGRESS_POLL_S).done:
            steps = state.sampling_steps
            progress(state.sampling_step / steps if steps else 0.0, desc=state.textinfo or "Merging")
        return future.result()


def merge(primary, secondary, tertiary, custom_name, multiplier, interp_method, checkpoint_format, save_as_half,
          config_source, bake_in_vae, discard_weights, save_metadata, add_merge_recipe, copy_metadata_fields,
          metadata_json, progress=gr.Progress()):
    """Outputs: the three model lists, the result message, the merged title, the load button."""
    try:
        result = _run_with_progress(
            progress, primary_model_name=primary, secondary_model_name=secondary, tertiary_model_name=tertiary,
            interp_method=interp_method, multiplier=multiplier, save_as_half=save_as_half, custom_name=custom_name,
            checkpoint_format=checkpoint_format, config_source=config_source, bake_in_vae=bake_in_vae,
            discard_weights=discard_weights, save_metadata=save_metadata, add_merge_recipe=add_merge_recipe,
            copy_metadata_fields=copy_metadata_fields, metadata_json=metadata_json)
    except (extras_merge.MergeError, OSError) as e:  # the user can fix these; nothing was written
        return [*_model_list_updates(primary, secondary, tertiary), f"<p class='error'>{html.escape(str(e))}</p>",
                None, gr.update(visible=False)]
    return [*_model_list_updates(primary, secondary, tertiary), f"<p>{html.escape(result.message)}</p>", result.title,
            gr.update(visible=True, value=f"Load {result.title}")]


def load_merged(title: str | None) -> str:
    """Make the merged checkpoint the current model, as choosing it in the checkpoint list does."""
    info = sd_models.get_closet_checkpoint_match(title) if title else None
    if info is None:
        return f"<p class='error'>{html.escape(f'Checkpoint not found: {title}')}</p>"
    if sd_models.model_manager is None:
        return "<p class='error'>The model manager is not started</p>"
    try:
        sd_models.model_manager.get(info)
    except CheckpointLoadError as e:
        return f"<p class='error'>{html.escape(str(e))}</p>"
    opts.set("sd_model_checkpoint", info.title)
    return f"<p>Loaded {html.escape(info.title)}</p>"


def create_ui() -> CheckpointMergerUI:
    """The tab's content; build it inside the caller's gr.Tab."""
    titles = sd_models.checkpoint_registry.titles()
    with gr.Row(equal_height=False):
        with gr.Column(variant="compact"):
            gr.HTML("<p>A merged checkpoint is saved to the checkpoint directory and added to the checkpoint list.</p>")
            with gr.Row(elem_id="modelmerger_models"):
                primary = gr.Dropdown(titles, value=None, elem_id="modelmerger_primary_model_name", label="Primary model (A)")
                secondary = gr.Dropdown(titles, value=None, elem_id="modelmerger_secondary_model_name", label="Secondary model (B)")
                tertiary = gr.Dropdown(titles, value=None, elem_id="modelmerger_tertiary_model_name", label="Tertiary model (C)")
                refresh_models = gr.Button("🔄", elem_id="refresh_checkpoint_Z", elem_classes=["tool"], scale=0, min_width=40)
            custom_name = gr.Textbox(label="Custom Name (Optional)", elem_id="modelmerger_custom_name")
            interp_amount = gr.Slider(minimum=0.0, maximum=1.0, step=0.05, value=0.3, elem_id="modelmerger_interp_amount",
                                      label="Multiplier (M) - set to 0 to get model A")
            interp_method = gr.Radio(list(extras_merge.INTERP_METHODS), value="Weighted sum",
                                     label="Interpolation Method", elem_id="modelmerger_interp_method")
            description = gr.HTML(interp_description("Weighted sum"), elem_id="modelmerger_interp_description")
            with gr.Row():
                checkpoint_format = gr.Radio(list(extras_merge.CHECKPOINT_FORMATS), value="safetensors",
                                             label="Checkpoint format", elem_id="modelmerger_checkpoint_format")
                save_as_half = gr.Checkbox(value=False, label="Save as float16", elem_id="modelmerger_save_as_half")
            config_method = gr.Radio(list(extras_merge.CONFIG_SOURCES), value=extras_merge.CONFIG_SOURCES[0], type="index",
                                     label="Copy config from", elem_id="modelmerger_config_method")
            with gr.Row():
                bake_in_vae = gr.Dropdown(vae_choices(), value="None", label="Bake in VAE", elem_id="modelmerger_bake_in_vae")
                refresh_vae = gr.Button("🔄", elem_id="modelmerger_refresh_bake_in_vae", elem_classes=["tool"], scale=0,
                                        min_width=40)
            discard_weights = gr.Textbox(value="", label="Discard weights with matching name",
                                         elem_id="modelmerger_discard_weights")
            with gr.Accordion("Metadata", open=False):
                with gr.Row():
                    save_metadata = gr.Checkbox(value=True, label="Save metadata", elem_id="modelmerger_save_metadata")
                    add_recipe = gr.Checkbox(value=True, label="Add merge recipe metadata", elem_id="modelmerger_add_recipe")
                    copy_metadata = gr.Checkbox(value=True, label="Copy metadata from merged models",
                                                elem_id="modelmerger_copy_metadata")
                metadata_json = gr.TextArea("{}", label="Metadata in JSON format", elem_id="modelmerger_metadata_json")
                read_metadata_button = gr.Button("Read metadata from selected checkpoints",
                                                 elem_id="modelmerger_read_metadata")
            merge_button = gr.Button("Merge", variant="primary", elem_id="modelmerger_merge")
        with gr.Column(variant="compact"):
            result = gr.HTML(elem_id="modelmerger_result", show_label=False)
            merged_checkpoint = gr.State(None)
            load_button = gr.Button("Load the merged checkpoint", visible=False, elem_id="modelmerger_load_merged")

    model_lists = [primary, secondary, tertiary]
    refresh_models.click(refresh_checkpoints, inputs=model_lists, outputs=model_lists)
    refresh_vae.click(refresh_vaes, outputs=bake_in_vae)
    interp_method.change(interp_description, inputs=interp_method, outputs=description)
    read_metadata_button.click(read_metadata, inputs=model_lists, outputs=metadata_json)
    merge_event = merge_button.click(
        merge,
        inputs=[*model_lists, custom_name, interp_amount, interp_method, checkpoint_format, save_as_half, config_method,
                bake_in_vae, discard_weights, save_metadata, add_recipe, copy_metadata, metadata_json],
        outputs=[*model_lists, result, merged_checkpoint, load_button],
        concurrency_limit=1,
    )
    load_event = load_button.click(load_merged, inputs=merged_checkpoint, outputs=result, concurrency_limit=1)
    return CheckpointMergerUI(primary, secondary, tertiary, merge_button, result, merged_checkpoint, load_button,
                              merge_event, load_event)
