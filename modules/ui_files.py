"""A1111's `/file=<path>` URLs: the page's scripts fetch files of the extension folders (tagcomplete's tag CSVs), the
outputs and the folders given with --gradio-allowed-path. Only those folders are served; nothing else on the disk."""
from __future__ import annotations

import os

from fastapi import HTTPException, Request
from fastapi.responses import FileResponse
from starlette.routing import Mount

from modules import extension_routes, extensions, paths_internal
from modules.shared_cmd_options import cmd_opts
from modules.shared_options import opts

OUTPUT_OPTIONS = ("outdir_samples", "outdir_txt2img_samples", "outdir_img2img_samples", "outdir_extras_samples",
                  "outdir_grids", "outdir_txt2img_grids", "outdir_img2img_grids", "outdir_save", "outdir_init_images")


def allowed_folders() -> list[str]:
    """The folders whose files `/file=` serves, as real paths (symlinks resolved)."""
    folders = [paths_internal.extensions_dir, paths_internal.extensions_builtin_dir,
               *(ext.path for ext in extensions.extensions),
               os.path.join(paths_internal.script_path, "javascript"),
               # A1111's webui root is its working folder, which Gradio 3 served; extensions write files for their
               # page into its tmp/ (tagcomplete's tmp/tagAutocompletePath.txt)
               os.path.join(paths_internal.script_path, "tmp"),
               paths_internal.default_output_dir,
               *(getattr(opts, key, "") for key in OUTPUT_OPTIONS),
               *(cmd_opts.gradio_allowed_path or [])]
    return [os.path.realpath(folder) for folder in folders if folder]


def resolve(path: str) -> str | None:
    """The file `path` names if `/file=` may serve it, else None. A relative path is relative to the working folder
    or to the webui root (A1111's are one folder); symlinks and `..` are resolved before the check, so neither leads
    out of an allowed folder."""
    if not path or "\0" in path:
        return None
    bases = [""] if os.path.isabs(path) else [os.getcwd(), paths_internal.script_path]
    folders = allowed_folders()
    for base in bases:
        real = os.path.realpath(os.path.join(base, path))
        if os.path.isfile(real) and any(_inside(real, folder) for folder in folders):
            return real
    return None


def _inside(path: str, folder: str) -> bool:
    return os.path.commonpath([path, folder]) == folder


def page_user(request: Request) -> str | None:
    """The user logged in to the page (Gradio's login cookie) that `request` carries, or None; "" when the page has
    no login."""
    page = next((route.app for route in request.app.routes
                 if isinstance(route, Mount) and hasattr(route.app, "tokens")), None)
    if page is None or page.auth is None:
        return ""
    return extension_routes.logged_in_user(page, request.cookies)


def add_route(app, subpath: str = "") -> None:
    """`GET {subpath}/file=<path>` on `app`; added before the page is mounted, so that it answers instead of Gradio's
    own `/file=` (which serves only Gradio's files). Under --gradio-auth only a logged-in page may read files."""
    def file(path: str, request: Request):
        if page_user(request) is None:
            raise HTTPException(status_code=401, detail="Not authenticated")
        real = resolve(path)
        if real is None:
            raise HTTPException(status_code=404, detail="File not found or not allowed")
        return FileResponse(real, headers={"Cache-Control": "no-cache"})

    app.add_api_route(f"{subpath}/file={{path:path}}", file, methods=["GET", "HEAD"], include_in_schema=False)
