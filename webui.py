"""Build the app (engine services, UI, API) and serve it with uvicorn."""
from __future__ import annotations

import asyncio
import logging
import threading
import uuid

from modules import script_callbacks
from modules.shared_cmd_options import cmd_opts
from modules.shared_state import state

log = logging.getLogger("atelier")


def server_name() -> str:
    return cmd_opts.server_name or ("0.0.0.0" if cmd_opts.listen else "127.0.0.1")


def create_app(with_ui: bool):
    from fastapi import FastAPI

    from modules import extension_routes, scripts
    from modules.api.api import setup_cors

    with_api = cmd_opts.api or not with_ui
    # the API serves /docs and /openapi.json itself, behind --api-auth like every API route
    app = FastAPI(title="Atelier", docs_url=None, redoc_url=None, openapi_url=None)
    build = uuid.uuid4().hex  # changes with every build, so a page waiting for Reload UI knows the new one is up
    subpath = (cmd_opts.subpath or "").rstrip("/")
    app.add_api_route(f"{subpath}/internal/ping", lambda: {"build": build}, methods=["GET"])
    if with_api:
        from modules.api.api import Api
        from modules.call_queue import queue_lock

        Api(app, queue_lock)
    blocks = None
    script_callbacks.before_ui_callback()
    if with_ui:
        from modules import shared, ui, ui_files

        ui_files.add_route(app, subpath)  # before the page's mount, which would answer every path
        blocks = shared.demo = ui.create_ui()
        blocks.queue(default_concurrency_limit=1, max_size=64)
    else:
        scripts.begin_ui_build()  # no page, but the scripts' callbacks and the extensions' settings all the same
    ours = list(app.router.routes)
    script_callbacks.app_started_callback(blocks, app)  # extensions add routes, mounts and middleware to the served app
    added = extension_routes.added_routes(app, ours)
    page, page_logins = None, None
    if with_ui:
        import gradio as gr

        page_logins = ui.gradio_auth()
        # mounted last: at the root Gradio answers every path, so the extensions' routes go first
        app = gr.mount_gradio_app(app, blocks, path=cmd_opts.subpath or "/", auth=page_logins, ssr_mode=False,
                                  footer_links=[], **ui.page_assets())
        page = extension_routes.gradio_app_of(app)
    extension_routes.guard(added, extension_routes.Doors(page, page_logins, cmd_opts.api_auth))
    setup_cors(app)  # outermost: every answer, errors included, carries the CORS headers
    return app


def load_scripts() -> None:
    """Import the built-in and extension scripts (Gradio's compatibility shims first: scripts build Gradio UIs)."""
    from modules import extensions, gradio_compat, scripts

    gradio_compat.install()
    extensions.list_extensions()
    scripts.load_scripts()


def reload_scripts() -> None:
    """Reload UI: tell the loaded scripts, then import them afresh (A1111 does the same)."""
    script_callbacks.app_reload_callback()
    script_callbacks.script_unloaded_callback()
    load_scripts()


def drop_cancelled_connections(record: logging.LogRecord) -> bool:
    """uvicorn's log filter: a connection cancelled by our own shutdown (Reload UI closes the page's open event
    streams) is no error worth a traceback."""
    return not (record.exc_info and isinstance(record.exc_info[1], asyncio.CancelledError))


def serve_until_command(app, port: int) -> str | None:
    """Serve `app` until the process is asked to stop (None) or a server command ("restart", "stop") arrives."""
    import uvicorn

    server = uvicorn.Server(uvicorn.Config(app, host=server_name(), port=port, timeout_keep_alive=cmd_opts.timeout_keep_alive,
                                           timeout_graceful_shutdown=5, log_level="warning"))
    received = []
    uvicorn_log = logging.getLogger("uvicorn.error")
    if drop_cancelled_connections not in uvicorn_log.filters:
        uvicorn_log.addFilter(drop_cancelled_connections)

    def watch():
        received.append(state.wait_for_server_command())
        server.should_exit = True

    threading.Thread(target=watch, name="server commands", daemon=True).start()
    server.run()
    return received[0] if received else None


def serve(with_ui: bool) -> None:
    from modules import live_preview
    from modules.initialize import initialize

    logging.basicConfig(level=(cmd_opts.loglevel or "INFO").upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    if cmd_opts.demo:
        from modules import demo_model

        demo_model.ensure_demo_checkpoint()
    initialize()
    load_scripts()
    state.preview_decoder = live_preview.decode_preview
    port = cmd_opts.port or (7861 if not with_ui else 7860)
    while True:
        app = create_app(with_ui)
        log.info("Serving on http://%s:%d", server_name(), port)
        if serve_until_command(app, port) != "restart":
            break
        log.info("Reloading the UI")
        reload_scripts()


def webui() -> None:
    serve(with_ui=not cmd_opts.nowebui)


def api_only() -> None:
    serve(with_ui=False)
