"""Build the app (engine services, UI, API) and serve it with uvicorn."""
from __future__ import annotations

import logging

from modules.shared_cmd_options import cmd_opts

log = logging.getLogger("atelier")


def server_name() -> str:
    return cmd_opts.server_name or ("0.0.0.0" if cmd_opts.listen else "127.0.0.1")


def create_app(with_ui: bool):
    from fastapi import FastAPI

    app = FastAPI(title="Atelier", docs_url="/docs" if (cmd_opts.api or cmd_opts.nowebui) else None)
    if with_ui:
        import gradio as gr

        from modules import ui

        blocks = ui.create_ui()
        blocks.queue(default_concurrency_limit=1, max_size=64)
        app = gr.mount_gradio_app(app, blocks, path=cmd_opts.subpath or "/", auth=ui.gradio_auth(), ssr_mode=False,
                                  **ui.page_assets())
    return app


def serve(with_ui: bool) -> None:
    import uvicorn

    from modules.initialize import initialize

    logging.basicConfig(level=(cmd_opts.loglevel or "INFO").upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    initialize()
    app = create_app(with_ui)
    port = cmd_opts.port or (7861 if not with_ui else 7860)
    log.info("Serving on http://%s:%d", server_name(), port)
    uvicorn.run(app, host=server_name(), port=port, timeout_keep_alive=cmd_opts.timeout_keep_alive, log_level="warning")


def webui() -> None:
    serve(with_ui=not cmd_opts.nowebui)


def api_only() -> None:
    serve(with_ui=False)
