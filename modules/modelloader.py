"""Model files fetched on first use (A1111's modules.modelloader): downloaded once into their models/ folder, whole or
not at all. HF_HUB_OFFLINE=1 answers at once that the computer is offline (the tests set it: they never download)."""
from __future__ import annotations

import hashlib
import logging
import os
import tempfile
import threading
import urllib.parse

import httpx

log = logging.getLogger(__name__)
TIMEOUT_S = 30.0
_lock = threading.Lock()  # a preview poller and a job may ask for the same file at once


class DownloadError(OSError):
    """A file could not be downloaded; the message says why."""


def offline() -> bool:
    return os.environ.get("HF_HUB_OFFLINE", "").strip().lower() in ("1", "true", "yes", "on")


def download(url: str, path: str, timeout: float = TIMEOUT_S) -> None:
    """Fetch url into path; the file appears complete or not at all (a temp file in the same folder, then a rename),
    and nothing is created when the server does not answer with the file."""
    with httpx.stream("GET", url, follow_redirects=True, timeout=timeout) as response:
        response.raise_for_status()
        os.makedirs(os.path.dirname(path), exist_ok=True)
        fd, partial = tempfile.mkstemp(prefix=f".{os.path.basename(path)}.", suffix=".part", dir=os.path.dirname(path))
        try:
            with os.fdopen(fd, "wb") as file:
                file.writelines(response.iter_bytes(1 << 20))
            os.replace(partial, path)
        finally:
            if os.path.exists(partial):
                os.unlink(partial)


def load_file_from_url(url: str, *, model_dir: str, progress: bool = True, file_name: str | None = None,
                       hash_prefix: str | None = None) -> str:
    """The path of the file in model_dir (named file_name, else as in the URL), downloaded first when missing; with
    hash_prefix, a download whose sha256 does not start with it is refused. DownloadError says why a file could not be
    had. `progress` is accepted for A1111's callers (the log says when a download starts)."""
    path = os.path.join(model_dir, file_name or os.path.basename(urllib.parse.urlparse(url).path))
    with _lock:
        if os.path.isfile(path):
            return path
        if offline():
            raise DownloadError("HF_HUB_OFFLINE is set")
        log.info("Downloading %s into %s", url, model_dir)
        try:
            download(url, path)
        except (httpx.HTTPError, OSError) as e:
            raise DownloadError(str(e) or type(e).__name__) from e
        if hash_prefix and not _sha256(path).startswith(hash_prefix):
            os.unlink(path)
            raise DownloadError(f"the downloaded file's sha256 does not start with {hash_prefix}")
    return path


def _sha256(path: str) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as file:
        for block in iter(lambda: file.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()
