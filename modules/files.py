"""Listing files the A1111 way (its shared.listfiles and walk_files): sorted, names compared as people read them."""
from __future__ import annotations

import os
import re
from collections.abc import Iterable, Iterator

from modules import job_context

_DIGITS = re.compile(r"(\d+)")


def natural_sort_key(text: str) -> list:
    """Case-insensitive, with runs of digits compared as numbers: "img2" sorts before "img10"."""
    return [int(part) if part.isdigit() else part.lower() for part in _DIGITS.split(text)]


def listfiles(dirname: str) -> list[str]:
    """Full paths of the files directly in dirname, sorted by lower-case name; dot-files and folders left out."""
    names = sorted(os.listdir(dirname), key=str.lower)
    paths = [os.path.join(dirname, name) for name in names if not name.startswith(".")]
    return [path for path in paths if os.path.isfile(path)]


def walk_files(path: str, allowed_extensions: Iterable[str] | None = None) -> Iterator[str]:
    """Every file under path (symlinked folders followed), folders and files in natural order; with
    allowed_extensions (".png", ...), only files of those extensions. Folders whose name starts with "." are skipped
    unless the list_hidden_files setting is on. A missing path yields nothing."""
    if not os.path.exists(path):
        return
    allowed = {ext.lower() for ext in allowed_extensions} if allowed_extensions is not None else None
    for root, _, filenames in sorted(os.walk(path, followlinks=True), key=lambda item: natural_sort_key(item[0])):
        relative = os.path.relpath(root, path)
        if not job_context.settings().list_hidden_files and any(part.startswith(".") for part in relative.split(os.sep) if part != "."):
            continue
        for filename in sorted(filenames, key=natural_sort_key):
            if allowed is None or os.path.splitext(filename)[1].lower() in allowed:
                yield os.path.join(root, filename)
