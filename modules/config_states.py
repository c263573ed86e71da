"""Config states (A1111's modules.config_states): the webui's and every extension's git commit and enabled state, saved as
JSON in config_states/ and restored from there (Extensions tab, Backup/Restore).

Restoring moves each extension to its saved commit on its own, all or nothing, so one failure leaves the others
restored and that one as it was. Moving the webui's own checkout is done only when the caller asks for it explicitly.
"""
from __future__ import annotations

import datetime
import json
import logging
import os
import re
import tempfile
import time
from dataclasses import dataclass

from modules import extensions, paths_internal
from modules.shared_cmd_options import cmd_opts
from modules.shared_options import opts

log = logging.getLogger(__name__)

UNSAFE_NAME_CHARS = re.compile(r"[^\w.\- ]")  # the state's name becomes part of a file name


@dataclass
class ExtensionRestore:
    """What restoring did to one extension; `status` is "restored", "unchanged", "not in state", "missing" or "error"."""
    name: str
    status: str
    enabled: bool
    old_commit: str
    new_commit: str
    message: str


def display_name(config: dict) -> str:
    """"<name>: <local date and time>", as A1111 lists saved states."""
    created = datetime.datetime.fromtimestamp(config["created_at"]).strftime("%Y-%m-%d %H:%M:%S")
    return f"{config.get('name', 'Config')}: {created}"


def list_config_states() -> dict[str, dict]:
    """The saved states of config_states/*.json by display name, newest first; each has its "filepath". Files that are not
    a state are skipped with a warning."""
    folder = paths_internal.config_states_dir
    states = []
    for filename in sorted(os.listdir(folder)) if os.path.isdir(folder) else []:
        path = os.path.join(folder, filename)
        if not filename.endswith(".json") or not os.path.isfile(path):
            continue
        try:
            with open(path, encoding="utf8") as file:
                config = json.load(file)
        except (OSError, ValueError) as e:
            log.warning("Skipping config state %s, which cannot be read: %s", path, e)
            continue
        if not isinstance(config, dict) or not isinstance(config.get("created_at"), (int, float)):
            log.warning("Skipping config state %s: it has no created_at time", path)
            continue
        config["filepath"] = path
        states.append(config)
    listed: dict[str, dict] = {}
    for config in sorted(states, key=lambda c: c["created_at"], reverse=True):
        name = display_name(config)
        listed[f"{name} ({os.path.basename(config['filepath'])})" if name in listed else name] = config
    return listed


def get_webui_config() -> dict:
    """Remote, commit, its date and branch of Atelier's own checkout (all None when it is not a git checkout)."""
    try:
        info = extensions.read_git_info(paths_internal.script_path)
    except extensions.GitError as e:
        log.warning("Could not read the git state of %s: %s", paths_internal.script_path, e)
        info = extensions.GitInfo(None, None, None, None)
    return {"remote": info.remote, "commit_hash": info.commit_hash, "commit_date": info.commit_date, "branch": info.branch}


def get_extension_config() -> dict[str, dict]:
    """Every extension folder (listed afresh, enabled as the settings say) with its git state, by folder name."""
    extensions.list_extensions()
    saved = {}
    for ext in extensions.extensions:
        ext.read_info_from_repo()
        saved[ext.name] = {"name": ext.name, "path": ext.path, "enabled": ext.enabled, "is_builtin": ext.is_builtin,
                           "remote": ext.remote, "commit_hash": ext.commit_hash, "commit_date": ext.commit_date,
                           "branch": ext.branch, "have_info_from_repo": ext.have_info_from_repo}
    return saved


def get_config(name: str = "Current") -> dict:
    """The state now, in A1111's JSON shape."""
    return {"name": name, "created_at": time.time(), "webui": get_webui_config(), "extensions": get_extension_config()}


def save_config_state(name: str) -> str:
    """Write the state now to config_states/<timestamp>_<name>.json (atomically); the file's path."""
    extensions.check_access()
    name = (name or "").strip() or "Config"
    config = get_config(name)
    stamp = datetime.datetime.fromtimestamp(config["created_at"]).strftime("%Y_%m_%d-%H_%M_%S")
    folder = paths_internal.config_states_dir
    os.makedirs(folder, exist_ok=True)
    path = os.path.join(folder, f"{stamp}_{UNSAFE_NAME_CHARS.sub('_', name)}.json")
    fd, tmp = tempfile.mkstemp(prefix=".", suffix=".tmp", dir=folder)  # not *.json: never listed half-written
    try:
        with os.fdopen(fd, "w", encoding="utf8") as file:
            json.dump(config, file, indent=4, ensure_ascii=False)
        os.replace(tmp, path)
    except BaseException:
        os.unlink(tmp)
        raise
    return path


def restore_webui_config(config: dict, *, reset_app_repo: bool = False) -> str:
    """Fetch and hard-reset Atelier's own checkout to the state's webui commit, as A1111 does; only with
    `reset_app_repo=True`, and never over local changes to tracked files. A message saying what moved."""
    extensions.check_access()
    webui = config.get("webui") if isinstance(config, dict) else None
    commit = webui.get("commit_hash") if isinstance(webui, dict) else None
    if not commit:
        raise ValueError("This config state has no webui commit to restore")
    if not reset_app_repo:
        raise ValueError("Restoring the webui resets Atelier's own git checkout; pass reset_app_repo=True to do it")
    path = paths_internal.script_path
    if extensions.run_git("status", "--porcelain", "--untracked-files=no", cwd=path).strip():
        raise ValueError(f"The checkout at {path} has local changes that restoring the webui would discard; "
                         "commit or stash them first")
    before = extensions.read_git_info(path).commit_hash
    extensions.reset_to_commit(path, commit)
    return f"Webui moved from {before[:8]} to {commit[:8]}; restart to run it."


def _saved_extensions(config: dict) -> dict[str, dict]:
    saved = config.get("extensions") if isinstance(config, dict) else None
    if not isinstance(saved, dict) or not all(isinstance(entry, dict) for entry in saved.values()):
        raise ValueError("This config state has no extensions to restore")
    return saved


def _restore_commit(ext: extensions.Extension, entry: dict) -> tuple[str, str]:
    """Move one extension to its saved commit; (status, message)."""
    commit = entry.get("commit_hash")
    if not commit:
        return "unchanged", "no commit saved"
    if commit == ext.commit_hash:
        return "unchanged", "already at the saved commit"
    try:
        extensions.reset_to_commit(ext.path, commit)
    except (extensions.GitError, ValueError) as e:
        log.error("Could not restore extension %s to %s: %s", ext.name, commit, e)
        return "error", str(e)
    ext.have_info_from_repo = False
    ext.read_info_from_repo()
    return "restored", f"moved to {commit[:8]}"


def restore_extension_config(config: dict) -> list[ExtensionRestore]:
    """Move each user extension to its saved commit and enable it as saved; one not in the state is disabled, one in the
    state whose folder is gone is reported "missing". Built-ins keep their code and take their saved enabled state.
    The disabled list is saved to the settings; the restored code loads after a restart."""
    extensions.check_access()
    saved = _saved_extensions(config)
    if cmd_opts.freeze_settings:  # checked first: the enabled states could not be saved after the commits moved
        raise RuntimeError("changing settings is disabled (--freeze-settings)")
    extensions.list_extensions()
    results = []
    for ext in extensions.extensions:
        ext.read_info_from_repo()
        entry = saved.get(ext.name)
        old_commit = ext.commit_hash
        if entry is None:
            ext.enabled = ext.enabled and ext.is_builtin
            status, message = "not in state", "not in the saved state" + ("" if ext.is_builtin else ": disabled")
        else:
            ext.enabled = bool(entry.get("enabled", False))
            status, message = ("unchanged", "built-in") if ext.is_builtin else _restore_commit(ext, entry)
        results.append(ExtensionRestore(ext.name, status, ext.enabled, old_commit, ext.commit_hash, message))
    listed = {ext.name for ext in extensions.extensions}
    for name, entry in saved.items():
        if name not in listed and not entry.get("is_builtin"):
            message = f"extensions/{name} is not there; install it from {entry.get('remote') or 'its repository'} to restore it"
            results.append(ExtensionRestore(name, "missing", False, "", entry.get("commit_hash") or "", message))
    opts.disabled_extensions = [ext.name for ext in extensions.extensions if not ext.enabled]
    opts.save(cmd_opts.ui_settings_file)
    extensions.list_extensions()
    return results
