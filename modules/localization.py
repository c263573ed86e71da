"""Translations of the page (A1111's modules.localization): `localizations/*.json` of the install and of every active
extension, each a map {English text: translation}; the chosen one (setting `localization`) goes into the page."""
from __future__ import annotations

import json
import logging
import os

from modules import extensions

log = logging.getLogger(__name__)

localizations: dict[str, str] = {}
"""name (the file name without .json) -> path; an extension's file wins over the install's one of the same name."""


def list_localizations(dirname: str | None) -> None:
    localizations.clear()
    if dirname and os.path.isdir(dirname):
        for filename in sorted(os.listdir(dirname)):
            name, suffix = os.path.splitext(filename)
            if suffix.lower() == ".json":
                localizations[name] = os.path.join(dirname, filename)
    for ext in extensions.active():
        for file in ext.list_files("localizations", ".json"):
            localizations[os.path.splitext(file.filename)[0]] = file.path


def localization_js(current_localization_name: str) -> str:
    """`window.localization = {...}` for the chosen translation ("" for "None"); a broken file is logged and skipped."""
    path = localizations.get(current_localization_name)
    if path is None:
        return ""
    try:
        with open(path, encoding="utf8") as file:
            data = json.load(file)
        if not isinstance(data, dict):
            raise TypeError("the file must hold one JSON object of {text: translation}")
    except (OSError, ValueError, TypeError) as e:
        log.error("Could not read localization file %s: %s", path, e)
        return ""
    # "</" escaped: the code goes inside a <script> element
    return "window.localization = " + json.dumps(data, ensure_ascii=False).replace("</", "<\\/") + ";"
