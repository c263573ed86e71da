"""The History tab: the images of the output folders as thumbnails, newest first, filtered by prompt text, model and
day; a click shows the image's parameters, which "Send to" carries to another tab (wired by the page, as PNG Info's);
Delete moves the image into the data folder's trash. The index and thumbnails are modules/image_history.py's."""
from __future__ import annotations

import html
from dataclasses import dataclass

import gradio as gr

from modules import image_history, ui_pnginfo

PAGE_SIZE = 100
ALL_MODELS = "All models"

history = image_history.ImageHistory()


@dataclass
class HistoryUI:
    image: gr.Textbox  # the path of the opened image ("" when none)
    parameters: gr.State  # its parsed infotext, for the "Send to" buttons
    send_buttons: dict[str, gr.Button]


def list_page(text: str, model: str, date: str, page: float):
    """The gallery of one page of matches, the paths it shows, the count line and the model choices."""
    found = history.search(text or "", "" if model in (None, ALL_MODELS) else model, date or "")
    pages = max(1, -(-len(found) // PAGE_SIZE))
    page = min(max(int(page or 1), 1), pages)
    shown = found[(page - 1) * PAGE_SIZE:page * PAGE_SIZE]
    gallery = [(history.thumbnail(image), f"{image.date} {image.prompt[:60]}") for image in shown]
    count = f"<p>{len(found)} image{'s' if len(found) != 1 else ''}, page {page} of {pages}</p>"
    models = gr.update(choices=[ALL_MODELS, *history.models()])
    return gallery, [image.path for image in shown], count, models


def open_image(paths: list[str], evt: gr.SelectData):
    """The clicked image's path, its parameters as HTML and parsed."""
    path = paths[evt.index] if paths and 0 <= evt.index < len(paths) else ""
    if not path or history.find(path) is None:
        return "", "<p>That image is gone: press Refresh.</p>", {}
    _, info, params = ui_pnginfo.run_pnginfo(path)
    return path, f"<p class='history-path'>{html.escape(path)}</p>{info}", params


def delete_image(path: str) -> str:
    if not path:
        raise gr.Error("Open an image first")
    try:
        target = history.delete(path)
    except ValueError as error:
        raise gr.Error(str(error)) from error
    return f"<p>Moved to {html.escape(target)}</p>"


def create_ui(tab: gr.Tab) -> HistoryUI:
    """The tab's content, built inside `tab`; the listing is read when the tab is opened."""
    with gr.Row(elem_id="history_filters"):
        text = gr.Textbox(label="Search prompt", elem_id="history_search", scale=3)
        model = gr.Dropdown(label="Model", choices=[ALL_MODELS], value=ALL_MODELS, elem_id="history_model", scale=2)
        date = gr.Textbox(label="Date", placeholder="YYYY-MM-DD, YYYY-MM or YYYY", elem_id="history_date", scale=1)
        page = gr.Number(label="Page", value=1, minimum=1, precision=0, elem_id="history_page", scale=1)
        refresh = gr.Button("Refresh", elem_id="history_refresh", scale=0)
    with gr.Row(equal_height=False, elem_classes=["resize-handle-row"]):
        with gr.Column(scale=3):
            count = gr.HTML(elem_id="history_count")
            gallery = gr.Gallery(show_label=False, columns=6, allow_preview=False, object_fit="contain",
                                 elem_id="history_gallery", interactive=False)
        with gr.Column(scale=2):
            info = gr.HTML(elem_id="history_html_info")
            image = gr.Textbox(visible="hidden", elem_id="history_selected_path")
            parameters = gr.State({})
            with gr.Row():
                send_buttons = {target: gr.Button(f"Send to {target}", elem_id=f"history_send_to_{target}")
                                for target in ui_pnginfo.SEND_TARGETS}
            delete = gr.Button("Delete (to the trash)", variant="stop", elem_id="history_delete")
    paths = gr.State([])

    listing = {"fn": list_page, "inputs": [text, model, date, page], "outputs": [gallery, paths, count, model],
               "show_progress": "hidden"}
    gr.on([tab.select, refresh.click, text.submit, model.input, date.submit, page.submit], **listing)
    gallery.select(fn=open_image, inputs=[paths], outputs=[image, info, parameters], show_progress="hidden")
    delete.click(fn=delete_image, inputs=[image], outputs=[info], show_progress="hidden").success(
        fn=lambda: ("", {}), outputs=[image, parameters], show_progress="hidden").then(**listing)
    return HistoryUI(image, parameters, send_buttons)
