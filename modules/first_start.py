"""First start without a checkpoint: where to put one, and downloading Stable Diffusion 1.5 when the user asks.

Nothing is downloaded unless the user presses the button; `--no-download-sd-model` removes the offer and
HF_HUB_OFFLINE=1 makes it answer at once that the computer is offline. HF_ENDPOINT picks the hub (a mirror).
"""
from __future__ import annotations

import html
import os
import threading
from collections.abc import Callable

import httpx

from modules import modelloader, paths_internal
from modules.shared_cmd_options import cmd_opts

SD15_REPO = "stable-diffusion-v1-5/stable-diffusion-v1-5"  # the copy of runwayml's repository A1111 downloads from
SD15_FILENAME = "v1-5-pruned-emaonly.safetensors"
SD15_SIZE = "4.3 GB"
DEFAULT_ENDPOINT = "https://huggingface.co"
CHUNK = 1 << 20

_download_lock = threading.Lock()  # two pages pressing Download at once must not write the same file twice


class DownloadError(RuntimeError):
    pass


def checkpoint_dir() -> str:
    return os.path.join(paths_internal.models_path, "Stable-diffusion")


def endpoint_url(endpoint: str | None = None) -> str:
    return (endpoint or os.environ.get("HF_ENDPOINT") or DEFAULT_ENDPOINT).rstrip("/")


def sd15_url(endpoint: str | None = None) -> str:
    return f"{endpoint_url(endpoint)}/{SD15_REPO}/resolve/main/{SD15_FILENAME}"


def download_offered() -> bool:
    return not cmd_opts.no_download_sd_model


def offline_message(reason: str) -> str:
    return (f"Could not download {SD15_FILENAME}: {reason}. This computer seems to be offline. Download it on a computer "
            f"that is online from {DEFAULT_ENDPOINT}/{SD15_REPO}, copy it into {checkpoint_dir()}, then press 🔄 next to "
            f"the checkpoint list.")


def no_checkpoint_html() -> str:
    """What txt2img shows while no checkpoint exists."""
    offer = (f" Or press <b>Download Stable Diffusion 1.5</b> below to fetch <code>{SD15_FILENAME}</code> "
             f"({SD15_SIZE}) from {html.escape(endpoint_url())}." if download_offered() else "")
    return (f"<div class='first-start'><h3>No Stable Diffusion checkpoint found</h3>"
            f"<p>Put a checkpoint (<code>.safetensors</code> or <code>.ckpt</code>) into "
            f"<code>{html.escape(checkpoint_dir())}</code> and press 🔄 next to the checkpoint list at the top.{offer}</p>"
            f"<p>To try every control without a download, start Atelier with <code>--demo</code>: it makes a tiny "
            f"random-weight checkpoint whose images are noise.</p></div>")


def download_sd15(dest_dir: str | None = None, progress: Callable[[int, int | None], None] | None = None,
                  endpoint: str | None = None, timeout: float = 30.0) -> str:
    """Download SD 1.5 into `dest_dir` (default models/Stable-diffusion) and return its path.

    progress(bytes done, total bytes or None) is called as data arrives. The file appears only when complete;
    a failed download leaves nothing behind and raises DownloadError with a message for the user.
    """
    dest_dir = dest_dir or checkpoint_dir()
    final = os.path.join(dest_dir, SD15_FILENAME)
    with _download_lock:
        if os.path.isfile(final):
            return final
        if modelloader.offline():
            raise DownloadError(offline_message("HF_HUB_OFFLINE is set"))
        os.makedirs(dest_dir, exist_ok=True)
        partial = os.path.join(dest_dir, f".{SD15_FILENAME}.part")
        try:
            _fetch(sd15_url(endpoint), partial, progress, timeout)
            os.replace(partial, final)
        except (httpx.ConnectError, httpx.TimeoutException, httpx.NetworkError) as e:
            raise DownloadError(offline_message(f"{endpoint_url(endpoint)} cannot be reached ({e})")) from e
        except httpx.HTTPStatusError as e:
            raise DownloadError(f"Could not download {SD15_FILENAME}: {e.request.url} answered "
                                f"{e.response.status_code} {e.response.reason_phrase}") from e
        except (httpx.HTTPError, OSError) as e:
            raise DownloadError(f"Could not download {SD15_FILENAME}: {e}") from e
        finally:
            if os.path.exists(partial):
                os.unlink(partial)
    return final


def _fetch(url: str, path: str, progress, timeout: float) -> None:
    with httpx.stream("GET", url, follow_redirects=True, timeout=timeout) as response:
        response.raise_for_status()
        length = response.headers.get("content-length")
        total = int(length) if length and length.isdigit() else None
        done = 0
        with open(path, "wb") as file:
            for chunk in response.iter_bytes(CHUNK):
                file.write(chunk)
                done += len(chunk)
                if progress is not None:
                    progress(done, total)
        if total is not None and done != total:
            raise DownloadError(f"Could not download {SD15_FILENAME}: the connection ended after {done} of {total} bytes")
