"""The "ControlNet" accordion of txt2img and img2img, the ControlNet always-on script's ui()."""
from __future__ import annotations

import gradio as gr


def accordion(is_img2img: bool, unit_count: int) -> list:
    """One value per unit (a ControlNetUnit or a dict of its fields; None: disabled): the script's args."""
    tab = "img2img" if is_img2img else "txt2img"
    with gr.Accordion("ControlNet", open=False, elem_id=f"{tab}_controlnet"):
        return [gr.State(None) for _ in range(unit_count)]
