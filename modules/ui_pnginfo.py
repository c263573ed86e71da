"""The PNG Info tab (A1111's element ids): drop an image, see its generation parameters and other text items, send
them on. The "Send to" buttons are wired by the page; `PngInfoUI.parameters` holds the parsed infotext for them."""
from __future__ import annotations

import html
from dataclasses import dataclass

import gradio as gr
from PIL import Image, UnidentifiedImageError

from modules import images, infotext_utils

SEND_TARGETS = ("txt2img", "img2img", "inpaint", "extras")


@dataclass
class PngInfoUI:
    image: gr.Image
    generation_info: gr.Textbox  # the raw infotext
    html_info: gr.HTML
    parameters: gr.State  # parse_generation_parameters() of the infotext, {} when none
    send_buttons: dict[str, gr.Button]  # "txt2img", "img2img", "inpaint", "extras"


def read_image_info(path: str | None) -> tuple[str, dict]:
    """(infotext or "", other text items) of an image file."""
    if not path:
        return "", {}
    try:
        with Image.open(path) as image:
            geninfo, items = images.read_info_from_image(image)
    except (UnidentifiedImageError, OSError) as error:
        raise gr.Error(f"Cannot read this file as an image: {error}") from error
    return geninfo or "", items


def info_html(geninfo: str, items: dict, unknown: dict) -> str:
    """Every text item as a titled block; keys of the infotext that Atelier does not use are listed after them."""
    blocks = [("parameters", geninfo)] if geninfo else []
    blocks += [(str(key), value.decode("utf8", "replace") if isinstance(value, bytes) else str(value)) for key, value in items.items()]
    if not blocks:
        return "<div><p>Nothing found in the image.</p></div>"
    parts = [f"<div class='infotext'><p><b>{html.escape(key)}</b></p><p>{html.escape(value).replace(chr(10), '<br>')}</p></div>"
             for key, value in blocks]
    if unknown:
        names = ", ".join(html.escape(k) for k in unknown)
        parts.append(f"<div class='infotext-unknown'><p><b>Not used by Atelier</b></p><p>{names}</p></div>")
    return "\n".join(parts)


def run_pnginfo(path: str | None) -> tuple[str, str, dict]:
    """(infotext, HTML of every item, parsed parameters) for the dropped image."""
    geninfo, items = read_image_info(path)
    params = infotext_utils.parse_generation_parameters(geninfo) if geninfo else {}
    unknown = infotext_utils.infotext_to_fields(params).unknown if params else {}
    return geninfo, info_html(geninfo, items, unknown), params


def create_ui() -> PngInfoUI:
    """The tab's content, built inside the caller's gr.Tab."""
    with gr.Row(equal_height=False):
        with gr.Column(variant="panel"):
            image = gr.Image(elem_id="pnginfo_image", label="Source", type="filepath", height="60vh",
                             sources=["upload", "clipboard"])
        with gr.Column(variant="panel"):
            html_info = gr.HTML(elem_id="pnginfo_html_info")
            generation_info = gr.Textbox(elem_id="pnginfo_generation_info", label="Parameters", visible=False)
            parameters = gr.State({})
            with gr.Row():
                send_buttons = {tab: gr.Button(f"Send to {tab}", elem_id=f"{tab}_tab") for tab in SEND_TARGETS}
    image.change(fn=run_pnginfo, inputs=[image], outputs=[generation_info, html_info, parameters], show_progress="hidden")
    return PngInfoUI(image, generation_info, html_info, parameters, send_buttons)
