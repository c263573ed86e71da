"""The "ControlNet" accordion of txt2img and img2img, laid out as sd-webui-controlnet's: one tab per unit with the
image and the detected-map preview, Enable / Low VRAM / Pixel Perfect / Allow Preview, the Control Type filter, the
preprocessor and model dropdowns, weight, guidance start/end, thresholds, control mode and resize mode.

It is the ControlNet always-on script's ui(): each unit's widgets feed one gr.State holding its ControlNetUnit, so
the script's args are the units, as the extension's are."""
from __future__ import annotations

import gradio as gr

from modules.controlnet import infotext, models, preprocessors
from modules.controlnet.units import CONTROL_MODES, RESIZE_MODES, ControlNetUnit, decode_image

FIELDS = ("image", "enabled", "low_vram", "pixel_perfect", "module", "model", "weight", "guidance_start",
          "guidance_end", "processor_res", "threshold_a", "threshold_b", "control_mode", "resize_mode")


def model_choices() -> list[str]:
    return ["None", *(info.title for info in models.list_models(models.default_dirs()))]


def make_unit(*values) -> ControlNetUnit:
    """The unit the widgets show (in FIELDS order)."""
    fields = dict(zip(FIELDS, values))
    image = fields.pop("image")
    if isinstance(image, dict):  # an ImageEditor value: the composite with its layers
        image = image.get("composite") if image.get("composite") is not None else image.get("background")
    return ControlNetUnit.from_dict({**fields, "image": image})


def preview(image, module: str, processor_res: float, threshold_a: float, threshold_b: float):
    """The detected map the unit will use, shown beside its image; a model-based preprocessor without its file says
    where the file goes."""
    if image is None:
        raise gr.Error("Upload an image to preview its map")
    try:
        return preprocessors.detect(module, decode_image(image)[0], int(processor_res), threshold_a, threshold_b,
                                    preprocessors.default_annotator_dirs())
    except (FileNotFoundError, NotImplementedError, ValueError) as e:
        raise gr.Error(str(e)) from e


def filtered(control_type: str):
    modules, names = preprocessors.filter_by_type(control_type, list(preprocessors.PREPROCESSORS), model_choices())
    default_module = modules[1] if len(modules) > 1 else "none"
    default_model = names[1] if len(names) > 1 else "None"
    return gr.update(choices=modules, value=default_module), gr.update(choices=names, value=default_model)


def unit_tab(tab: str, index: int) -> tuple[gr.State, dict]:
    prefix = f"{tab}_controlnet_ControlNet-{index}"
    with gr.Tab(f"ControlNet Unit {index}", elem_id=f"{prefix}_tab"):
        with gr.Row():
            image = gr.Image(label="Single Image", type="numpy", sources=["upload", "clipboard"], elem_id=f"{prefix}_input_image")
            detected = gr.Image(label="Preprocessor Preview", type="pil", interactive=False, visible=False,
                                elem_id=f"{prefix}_generated_image")
        with gr.Row():
            enabled = gr.Checkbox(label="Enable", value=False, elem_id=f"{prefix}_enable_checkbox")
            low_vram = gr.Checkbox(label="Low VRAM", value=False, elem_id=f"{prefix}_low_vram_checkbox")
            pixel_perfect = gr.Checkbox(label="Pixel Perfect", value=False, elem_id=f"{prefix}_pixel_perfect_checkbox")
            allow_preview = gr.Checkbox(label="Allow Preview", value=False, elem_id=f"{prefix}_preprocessor_preview")
        control_type = gr.Radio(list(preprocessors.CONTROL_TYPES), label="Control Type", value="All",
                                elem_id=f"{prefix}_type_filter_radio")
        with gr.Row():
            module = gr.Dropdown(list(preprocessors.PREPROCESSORS), label="Preprocessor", value="none",
                                 elem_id=f"{prefix}_preprocessor_dropdown")
            run = gr.Button("💥", elem_id=f"{prefix}_trigger_preprocessor", scale=0, min_width=40)
            model = gr.Dropdown(model_choices(), label="Model", value="None", elem_id=f"{prefix}_model_dropdown")
            refresh = gr.Button("🔄", elem_id=f"{prefix}_refresh_models", scale=0, min_width=40)
        with gr.Row():
            weight = gr.Slider(label="Control Weight", value=1.0, minimum=0.0, maximum=2.0, step=0.05,
                               elem_id=f"{prefix}_control_weight_slider")
            guidance_start = gr.Slider(label="Starting Control Step", value=0.0, minimum=0.0, maximum=1.0, step=0.01,
                                       elem_id=f"{prefix}_start_control_step_slider")
            guidance_end = gr.Slider(label="Ending Control Step", value=1.0, minimum=0.0, maximum=1.0, step=0.01,
                                     elem_id=f"{prefix}_ending_control_step_slider")
        with gr.Row():
            processor_res = gr.Slider(label="Preprocessor Resolution", value=512, minimum=64, maximum=2048, step=1,
                                      elem_id=f"{prefix}_preprocessor_resolution_slider")
            threshold_a = gr.Slider(label="Threshold A", value=-1, minimum=-1, maximum=256, step=1,
                                    elem_id=f"{prefix}_threshold_A_slider")
            threshold_b = gr.Slider(label="Threshold B", value=-1, minimum=-1, maximum=256, step=1,
                                    elem_id=f"{prefix}_threshold_B_slider")
        control_mode = gr.Radio(list(CONTROL_MODES), label="Control Mode", value=CONTROL_MODES[0],
                                elem_id=f"{prefix}_control_mode_radio")
        resize_mode = gr.Radio(list(RESIZE_MODES), label="Resize Mode", value=RESIZE_MODES[1],
                               elem_id=f"{prefix}_resize_mode_radio")
    widgets = dict(zip(FIELDS, (image, enabled, low_vram, pixel_perfect, module, model, weight, guidance_start,
                                guidance_end, processor_res, threshold_a, threshold_b, control_mode, resize_mode)))
    state = gr.State(None)
    inputs = list(widgets.values())
    for widget in inputs:
        widget.change(make_unit, inputs=inputs, outputs=[state], show_progress="hidden", queue=False)
    control_type.change(filtered, inputs=[control_type], outputs=[module, model], show_progress="hidden", queue=False)
    refresh.click(lambda: gr.update(choices=model_choices()), outputs=[model], show_progress="hidden", queue=False)
    allow_preview.change(lambda show: gr.update(visible=show), inputs=[allow_preview], outputs=[detected], queue=False)
    run.click(preview, inputs=[image, module, processor_res, threshold_a, threshold_b], outputs=[detected])
    return state, widgets


def paste_fields(index: int, widgets: dict) -> list:
    """(widget, reader) pairs restoring unit `index` from a pasted infotext, as the extension's paste does."""
    def reader(name: str):
        def read(params: dict):
            unit = infotext.units_from_params(params).get(index)
            if unit is None:
                return False if name == "enabled" else gr.update()
            return getattr(unit, name)
        return read

    return [(widgets[name], reader(name)) for name in FIELDS if name != "image"]


def accordion(is_img2img: bool, unit_count: int) -> tuple[list, list]:
    """(one State per unit: the script's args, the infotext paste fields)."""
    tab = "img2img" if is_img2img else "txt2img"
    states, fields = [], []
    with gr.Accordion("ControlNet", open=False, elem_id=f"{tab}_controlnet"):
        with gr.Tabs(elem_id=f"{tab}_controlnet_tabs"):
            for index in range(unit_count):
                state, widgets = unit_tab(tab, index)
                states.append(state)
                fields += paste_fields(index, widgets)
    return states, fields
