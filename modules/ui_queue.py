"""The queue for the page: who a job belongs to, and the Queue panel of txt2img and img2img, listing the running and
queued jobs of every page and API client (modules.progress holds them), each with a button that cancels it."""
from __future__ import annotations

import html
import logging

import gradio as gr

from modules import progress

log = logging.getLogger(__name__)
REFRESH_SECONDS = 1.0


def page_owner(request: gr.Request | None) -> str:
    """The page session a job comes from (Gradio's session hash, shortened)."""
    session = getattr(request, "session_hash", None) or "unknown"
    return f"page {session[:8]}"


def has_tasks(owner: str) -> bool:
    return any(task["owner"] == owner for task in progress.queued_tasks())


def panel_html() -> str:
    tasks = progress.queued_tasks()
    if not tasks:
        return "<div class='queue-empty'>No jobs are queued.</div>"
    rows = "".join(
        f"<tr class='queue-{task['status']}' data-task='{html.escape(task['id_task'], quote=True)}'>"
        f"<td>{html.escape(task['status'])}</td><td>{html.escape(task['owner'])}</td>"
        f"<td class='queue-id'>{html.escape(task['id_task'])}</td>"
        f"<td><button class='queue-cancel'>"
        f"{'Interrupt' if task['status'] == 'running' else 'Cancel'}</button></td></tr>"
        for task in tasks)
    return f"<table class='queue-table'><tr><th>Status</th><th>From</th><th>Task</th><th></th></tr>{rows}</table>"


def cancel(id_task: str):
    """The panel's button: a queued job leaves the queue, the running one is interrupted."""
    outcome = progress.cancel_task((id_task or "").strip())
    log.info("Queue: %s %s", id_task, outcome or "is no longer queued")
    if outcome is not None:
        gr.Info(f"{id_task}: {outcome}")
    return "", panel_html()


def create_queue_panel(tabname: str) -> gr.HTML:
    """The Queue accordion under a tab's prompt row; javascript/queue.js passes a row's cancel click on through the
    hidden box (its task id) and button."""
    with gr.Accordion("Queue", open=False, elem_id=f"{tabname}_queue", elem_classes=["queue-panel"]):
        listing = gr.HTML(panel_html(), elem_id=f"{tabname}_queue_list")
        asked = gr.Textbox(show_label=False, container=False, elem_id=f"{tabname}_queue_cancel",
                           elem_classes=["queue-cancel-input", "atelier-hidden"])
        send = gr.Button("Cancel", elem_id=f"{tabname}_queue_cancel_send", elem_classes=["queue-cancel-send", "atelier-hidden"])
    gr.Timer(REFRESH_SECONDS).tick(fn=panel_html, outputs=[listing], show_progress="hidden", queue=False)
    send.click(fn=cancel, inputs=[asked], outputs=[asked, listing], show_progress="hidden", concurrency_limit=None)
    return listing
