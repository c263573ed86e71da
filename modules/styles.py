"""Prompt styles from styles.csv (A1111's modules.styles names).

A style is a (prompt, negative prompt) pair. Applying it puts the user's text at its `{prompt}` placeholder, or appends
the style after ", " when there is none; several styles apply in order. Extracting reverses that, so a pasted prompt
gives back its styles. Files are CSV `name,prompt,negative_prompt` in UTF-8 with BOM; saving keeps a .bak copy and
replaces the file atomically.
"""
from __future__ import annotations

import csv
import glob
import logging
import os
import shutil
import tempfile
from dataclasses import dataclass

from modules import paths_internal
from modules.shared_cmd_options import cmd_opts

log = logging.getLogger(__name__)
FIELDS = ["name", "prompt", "negative_prompt"]
PLACEHOLDER = "{prompt}"


@dataclass(frozen=True)
class PromptStyle:
    name: str
    prompt: str
    negative_prompt: str
    path: str | None = None


def merge_prompts(style_prompt: str, prompt: str) -> str:
    if PLACEHOLDER in style_prompt:
        return style_prompt.replace(PLACEHOLDER, prompt)
    return ", ".join(part for part in (prompt.strip(), style_prompt.strip()) if part)


def apply_styles_to_prompt(prompt: str, styles: list[str]) -> str:
    """Apply style texts (not names) in order."""
    for style in styles:
        prompt = merge_prompts(style, prompt)
    return prompt


def extract_style_text_from_prompt(style_text: str, prompt: str) -> tuple[bool, str]:
    """Undo merge_prompts: (whether the prompt carries this style text, the prompt without it)."""
    prompt, style_text = prompt.strip(), style_text.strip()
    if PLACEHOLDER in style_text:
        left, _, right = style_text.partition(PLACEHOLDER)
        if prompt.startswith(left) and prompt.endswith(right) and len(prompt) >= len(left) + len(right):
            return True, prompt[len(left):len(prompt) - len(right)]
        return False, prompt
    if prompt.endswith(style_text):
        rest = prompt[:len(prompt) - len(style_text)]
        return True, rest[:-2] if rest.endswith(", ") else rest
    return False, prompt


def extract_original_prompts(style: PromptStyle, prompt: str, negative_prompt: str) -> tuple[bool, str, str]:
    """A style matches only when both of its texts are found; an empty style never matches."""
    if not style.prompt and not style.negative_prompt:
        return False, prompt, negative_prompt
    found, positive = extract_style_text_from_prompt(style.prompt, prompt)
    if not found:
        return False, prompt, negative_prompt
    found, negative = extract_style_text_from_prompt(style.negative_prompt, negative_prompt)
    if not found:
        return False, prompt, negative_prompt
    return True, positive, negative


class StyleDatabase:
    def __init__(self, paths: list[str]):
        self.no_style = PromptStyle("None", "", "", None)
        self.paths = list(paths)
        self.styles: dict[str, PromptStyle] = {}
        self.reload()

    def get_style_paths(self) -> list[str]:
        """The files: each path, with wildcards expanded; the first is where new styles are saved."""
        found: list[str] = []
        for path in self.paths:
            matches = sorted(glob.glob(path)) if glob.has_magic(path) else [path]
            found += [m for m in matches if m not in found]
        return found

    @property
    def default_path(self) -> str:
        return self.get_style_paths()[0]

    def reload(self) -> None:
        self.styles.clear()
        for path in self.get_style_paths():
            if os.path.isfile(path):
                self.load_from_csv(path)

    def load_from_csv(self, path: str) -> None:
        with open(path, encoding="utf-8-sig", newline="") as file:
            for row in csv.DictReader(file, skipinitialspace=True):
                name = (row.get("name") or "").strip()
                if not name or name.startswith("#"):  # "# file.csv" rows only divide files
                    continue
                prompt = row.get("prompt") or row.get("text") or ""  # "text" is the oldest files' column
                self.styles[name] = PromptStyle(name, prompt, row.get("negative_prompt") or "", path)

    def get_style_prompts(self, styles: list[str]) -> list[str]:
        return [self.styles.get(name, self.no_style).prompt for name in styles]

    def get_negative_style_prompts(self, styles: list[str]) -> list[str]:
        return [self.styles.get(name, self.no_style).negative_prompt for name in styles]

    def apply_styles_to_prompt(self, prompt: str, styles: list[str]) -> str:
        """Apply the named styles; unknown names are ignored (A1111)."""
        return apply_styles_to_prompt(prompt, self.get_style_prompts(styles))

    def apply_negative_styles_to_prompt(self, prompt: str, styles: list[str]) -> str:
        return apply_styles_to_prompt(prompt, self.get_negative_style_prompts(styles))

    def save_style(self, name: str, prompt: str, negative_prompt: str) -> PromptStyle:
        """Add or replace a style (in its own file, or the default one) and save."""
        previous = self.styles.get(name)
        style = PromptStyle(name, prompt, negative_prompt, previous.path if previous else self.default_path)
        self.styles[name] = style
        self.save_styles()
        return style

    def delete_style(self, name: str) -> None:
        self.styles.pop(name, None)
        self.save_styles()

    def save_styles(self) -> None:
        """Write every file that holds styles (and the default file), each after a .bak copy, atomically."""
        paths = {self.default_path} | {s.path for s in self.styles.values() if s.path}
        for path in sorted(paths):
            rows = [s for s in self.styles.values() if (s.path or self.default_path) == path]
            _write_csv(path, rows)

    def extract_styles_from_prompt(self, prompt: str, negative_prompt: str) -> tuple[list[str], str, str]:
        """Styles whose texts the prompts carry, in the order they were applied, and the prompts without them."""
        extracted: list[str] = []
        remaining = list(self.styles.values())
        while True:
            for style in remaining:
                found, new_prompt, new_negative = extract_original_prompts(style, prompt, negative_prompt)
                if found:
                    prompt, negative_prompt = new_prompt, new_negative
                    remaining.remove(style)
                    extracted.append(style.name)
                    break
            else:
                return list(reversed(extracted)), prompt, negative_prompt


def _write_csv(path: str, rows: list[PromptStyle]) -> None:
    folder = os.path.dirname(os.path.abspath(path))
    os.makedirs(folder, exist_ok=True)
    if os.path.exists(path):
        shutil.copy(path, f"{path}.bak")
    fd, tmp = tempfile.mkstemp(dir=folder, prefix=".styles-", suffix=".tmp")
    try:
        with os.fdopen(fd, "w", encoding="utf-8-sig", newline="") as file:
            writer = csv.DictWriter(file, fieldnames=FIELDS)
            writer.writeheader()
            writer.writerows({"name": s.name, "prompt": s.prompt, "negative_prompt": s.negative_prompt} for s in rows)
        os.replace(tmp, path)
    except BaseException:
        os.unlink(tmp)
        raise


def style_paths() -> list[str]:
    """--styles-file (repeatable, wildcards allowed), else styles.csv in the data dir."""
    return list(cmd_opts.styles_file) or [os.path.join(paths_internal.data_path, "styles.csv")]


_database: StyleDatabase | None = None


def prompt_styles() -> StyleDatabase:
    """The styles of this install (A1111's shared.prompt_styles): read on first use, again when the configured files
    change (--styles-file, data dir); `reload()` re-reads them."""
    global _database
    paths = style_paths()
    if _database is None or _database.paths != paths:
        _database = StyleDatabase(paths)
    return _database
