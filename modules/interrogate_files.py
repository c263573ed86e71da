"""The interrogators' model files: found in their models/ folder, else downloaded there once (whole or not at all).

Offline, or when the download fails, the error names the file, the folder and where to get it, so that a user can
copy it there by hand.
"""
from __future__ import annotations

import logging
import os

from modules import job_context, modelloader

log = logging.getLogger(__name__)


class ModelFileMissing(FileNotFoundError):
    """A model file is not in its folder and could not be downloaded; the message says what to do."""


def missing_message(purpose: str, file_name: str, folder: str, url: str, reason: str = "") -> str:
    why = f"; downloading it from {url} failed: {reason}" if reason else f"; it can be downloaded from {url}"
    return (f"{purpose} needs the model file {file_name} in {folder}{why}. Download it on a computer that is online "
            f"and put it into that folder.")


def require(url: str, folder: str, file_name: str, purpose: str) -> str:
    """The path of folder/file_name, downloaded from url first when it is missing (with a progress message)."""
    path = os.path.join(folder, file_name)
    if os.path.isfile(path):
        return path
    log.info("%s: downloading %s into %s (once)", purpose, file_name, folder)
    job_context.state().textinfo = f"Downloading {file_name} for {purpose}..."
    try:
        return modelloader.load_file_from_url(url, model_dir=folder, file_name=file_name)
    except modelloader.DownloadError as error:
        raise ModelFileMissing(missing_message(purpose, file_name, folder, url, str(error))) from error
