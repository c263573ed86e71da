"""User extensions (A1111's modules.extensions): the folders of extensions/ (and extensions-builtin/), which of them
are active, their git state, and installing, updating and deleting them with the `git` command.

Only the standard library and the light settings modules are imported: launch.py uses this module before any
requirement is installed. An install clones into a hidden folder inside extensions/ and renames it into place only
when the clone succeeded, so a failure never leaves a half-written extension behind.
"""
from __future__ import annotations

import importlib.util
import ipaddress
import json
import logging
import os
import re
import shutil
import subprocess
import tempfile
import threading
from collections import namedtuple

from modules import paths_internal
from modules.shared_cmd_options import cmd_opts
from modules.shared_options import opts

log = logging.getLogger(__name__)

git = os.environ.get("GIT", "git")
TMP_DIRNAME = ".tmp"  # hidden: never listed as an extension
URL_PATTERN = re.compile(r"^(https?://|ssh://|file://|git@)\S+$")
DIRNAME_PATTERN = re.compile(r"^[\w][\w.\- ]*$")

ScriptFile = namedtuple("ScriptFile", ["basedir", "filename", "path"])
"""A file of an extension, as A1111's scripts.ScriptFile: the extension's folder, the file's name and full path."""


class ExtensionAccessError(PermissionError):
    """Installing, updating or deleting extensions is not allowed with this command line."""


class GitError(RuntimeError):
    """A git command failed; the message carries git's own output."""


def run_git(*args: str, cwd: str | None = None) -> str:
    """`git args...`; its stdout, or GitError with git's message. Never asks for credentials (no terminal prompt)."""
    env = {**os.environ, "GIT_TERMINAL_PROMPT": "0"}
    try:
        result = subprocess.run([git, *args], cwd=cwd, env=env, capture_output=True, text=True, encoding="utf8",
                                errors="replace", check=False)
    except OSError as e:
        raise GitError(f"Could not run git ({git}): {e}") from e
    if result.returncode != 0:
        raise GitError(f"git {args[0]} failed: {(result.stderr or result.stdout).strip()}")
    return result.stdout


class Extension:
    lock = threading.Lock()  # git metadata is read by a background thread and by the page at the same time

    def __init__(self, name: str, path: str, enabled: bool = True, is_builtin: bool = False):
        self.name = name
        self.canonical_name = name.lower()  # A1111 1.10: the lower-cased folder name, whatever metadata.ini says
        self.path = path
        self.enabled = enabled
        self.is_builtin = is_builtin
        self.status = ""
        self.can_update = False
        self.remote: str | None = None
        self.branch: str | None = None
        self.commit_hash = ""
        self.commit_date: int | None = None
        self.version = ""
        self.have_info_from_repo = False

    def __repr__(self) -> str:
        return f"Extension({self.name!r}, enabled={self.enabled}, builtin={self.is_builtin})"

    def read_info_from_repo(self) -> None:
        """Remote URL, branch, commit and its date from the extension's git repository (once; built-ins have none)."""
        if self.is_builtin or self.have_info_from_repo:
            return
        with self.lock:
            if self.have_info_from_repo:
                return
            if os.path.exists(os.path.join(self.path, ".git")):
                try:
                    self._read_git_info()
                except GitError as e:
                    log.error("Could not read the git repository of extension %s: %s", self.name, e)
                    self.remote = None
            self.have_info_from_repo = True

    def _read_git_info(self) -> None:
        commit_hash, commit_date = run_git("log", "-1", "--format=%H %ct", cwd=self.path).split()
        branch = run_git("rev-parse", "--abbrev-ref", "HEAD", cwd=self.path).strip()
        remotes = run_git("remote", cwd=self.path).split()
        self.remote = run_git("remote", "get-url", remotes[0], cwd=self.path).strip() if remotes else None
        self.branch = None if branch == "HEAD" else branch  # "HEAD": a detached checkout
        self.commit_hash = commit_hash
        self.commit_date = int(commit_date)
        self.version = commit_hash[:8]
        self.status = "unknown"

    def list_files(self, subdir: str, extension: str) -> list[ScriptFile]:
        """Files of `subdir` whose suffix is `extension` (e.g. ".py"), sorted by name."""
        dirpath = os.path.join(self.path, subdir)
        if not os.path.isdir(dirpath):
            return []
        files = [ScriptFile(self.path, filename, os.path.join(dirpath, filename)) for filename in sorted(os.listdir(dirpath))]
        return [file for file in files if os.path.splitext(file.path)[1].lower() == extension and os.path.isfile(file.path)]

    def _upstream(self) -> str:
        """What an update moves to: the remote branch this checkout tracks, else the remote's default branch."""
        try:
            return run_git("rev-parse", "--abbrev-ref", "--symbolic-full-name", "@{upstream}", cwd=self.path).strip()
        except GitError:
            return "origin"

    def check_updates(self) -> None:
        """Fetch, then set `status` ("new commits", "latest" or "unknown (remote error)") and `can_update`."""
        try:
            run_git("fetch", "--quiet", cwd=self.path)
            behind = int(run_git("rev-list", "--count", f"HEAD..{self._upstream()}", cwd=self.path).strip())
        except GitError as e:
            log.error("Could not check extension %s for updates: %s", self.name, e)
            self.can_update, self.status = False, "unknown (remote error)"
            return
        self.can_update = behind > 0
        self.status = "new commits" if behind > 0 else "latest"

    def fetch_and_reset_hard(self, commit: str = "origin") -> None:
        """Fetch and reset the work tree to `commit`; "origin" means the tracked remote branch (local edits are lost)."""
        run_git("fetch", "--all", "--quiet", cwd=self.path)
        run_git("reset", "--hard", self._upstream() if commit == "origin" else commit, cwd=self.path)
        self.have_info_from_repo = False
        self.can_update, self.status = False, ""


extensions: list[Extension] = []


def find_extensions(disabled: list[str]) -> list[Extension]:
    """Every folder of extensions/ then extensions-builtin/ (sorted; hidden folders skipped), enabled unless named in `disabled`."""
    found = []
    for root, is_builtin in ((paths_internal.extensions_dir, False), (paths_internal.extensions_builtin_dir, True)):
        if not os.path.isdir(root):
            continue
        for name in sorted(os.listdir(root)):
            path = os.path.join(root, name)
            if name.startswith(".") or not os.path.isdir(path):
                continue
            found.append(Extension(name, path, enabled=name not in disabled, is_builtin=is_builtin))
    return found


def allowed(extension: Extension, disable_all: str) -> bool:
    """Whether the "Disable all extensions" setting ("none", "extra", "all") and the command line let it load."""
    if disable_all == "all" or cmd_opts.disable_all_extensions:
        return False
    if disable_all == "extra" or cmd_opts.disable_extra_extensions:
        return extension.is_builtin
    return True


def list_extensions() -> None:
    """Fill `extensions` from the folders; `enabled` follows the disabled_extensions setting."""
    if opts.disable_all_extensions != "none":
        log.warning('"Disable all extensions" is set to "%s": %s', opts.disable_all_extensions,
                    "no extensions load" if opts.disable_all_extensions == "all" else "only built-in extensions load")
    extensions[:] = find_extensions(opts.disabled_extensions)


def active() -> list[Extension]:
    """The extensions that load: enabled, and let through by the disable-all setting and flags."""
    if not extensions:
        list_extensions()  # nothing listed yet (or nothing there, which costs one listdir)
    return [ext for ext in extensions if ext.enabled and allowed(ext, opts.disable_all_extensions)]


def enabled_in_settings_file(settings_file: str) -> list[Extension]:
    """The active extensions by config.json read directly: launch.py runs install.py and preload.py before settings load."""
    try:
        with open(settings_file, encoding="utf8") as file:
            settings = json.load(file)
    except (OSError, ValueError):
        settings = {}  # a missing or corrupt file is reported when the settings are loaded
    if not isinstance(settings, dict):
        settings = {}
    disable_all = settings.get("disable_all_extensions", "none")
    return [ext for ext in find_extensions(settings.get("disabled_extensions", [])) if ext.enabled and allowed(ext, disable_all)]


def preload_extensions(parser, active_extensions: list[Extension]) -> None:
    """Call each extension's preload.py `preload(parser)` so its flags parse; a broken one is logged by name and skipped."""
    for ext in active_extensions:
        path = os.path.join(ext.path, "preload.py")
        if not os.path.isfile(path):
            continue
        try:
            spec = importlib.util.spec_from_file_location(f"preload_{ext.canonical_name}", path)
            module = importlib.util.module_from_spec(spec)
            spec.loader.exec_module(module)
            if hasattr(module, "preload"):
                module.preload(parser)
        except Exception:
            log.exception("Error running preload.py of extension %s", ext.name)


def is_local_only() -> bool:
    """Whether the server listens only on this machine (no --listen, no --share, --server-name a loopback name)."""
    if cmd_opts.listen or cmd_opts.share:
        return False
    name = cmd_opts.server_name
    if not name or name.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(name.strip("[]")).is_loopback
    except ValueError:
        return False


def check_access() -> None:
    """Refuse changes to extensions when others on the network could make them (A1111's rule)."""
    if not cmd_opts.enable_insecure_extension_access and not is_local_only():
        raise ExtensionAccessError("extension access disabled because of command line flags (--listen, --share or "
                                   "--server-name); start with --enable-insecure-extension-access to allow it")


def dirname_from_url(url: str) -> str:
    """The folder name git would choose: the URL's last part without ".git"."""
    return re.split(r"[/:]", url.rstrip("/"))[-1].removesuffix(".git")


def normalize_git_url(url: str | None) -> str:
    """A URL without a trailing "/" or ".git", to tell whether two remotes are the same repository."""
    return (url or "").strip().rstrip("/").removesuffix(".git")


def validate_install(dirname: str | None, url: str) -> tuple[str, str]:
    """The checked (url, folder path) of an install; ValueError says what is wrong."""
    url = (url or "").strip()
    if not url:
        raise ValueError("No URL specified")
    if not URL_PATTERN.match(url):
        raise ValueError(f"Not a git repository URL: {url} (use https://, http://, ssh://, git@host:path or file://)")
    dirname = (dirname or "").strip() or dirname_from_url(url)
    if not DIRNAME_PATTERN.match(dirname):
        raise ValueError(f"Invalid local directory name: {dirname!r} (letters, digits, spaces, '.', '-' and '_'; "
                         "not starting with '.')")
    target = os.path.join(paths_internal.extensions_dir, dirname)
    if os.path.exists(target):
        raise ValueError(f"Extension directory already exists: {target}")
    for ext in extensions:
        ext.read_info_from_repo()
    same = [ext.name for ext in extensions if ext.remote and normalize_git_url(ext.remote) == normalize_git_url(url)]
    if same:
        raise ValueError(f"Extension with this URL is already installed: {same[0]}")
    return url, target


def install_extension_from_url(dirname: str | None, url: str, branch_name: str | None = None) -> str:
    """Clone `url` (at `branch_name`) into extensions/<dirname> (default: the repository's name), run its install.py
    and list the extensions again; the new folder's path. Needs a restart to load."""
    check_access()
    url, target = validate_install(dirname, url)
    tmp_root = os.path.join(paths_internal.extensions_dir, TMP_DIRNAME)
    os.makedirs(tmp_root, exist_ok=True)
    tmp_dir = tempfile.mkdtemp(prefix=os.path.basename(target) + "-", dir=tmp_root)
    try:
        clone = os.path.join(tmp_dir, "repo")
        branch = ["--branch", branch_name.strip()] if branch_name and branch_name.strip() else []
        run_git("clone", "--recurse-submodules", *branch, "--", url, clone)
        os.rename(clone, target)  # same file system: the folder appears whole or not at all
    finally:
        shutil.rmtree(tmp_dir, ignore_errors=True)
    import launch  # top-level module; imported here because launch.py imports this module

    launch.run_extension_installer(target)
    list_extensions()
    return target


def find(name: str) -> Extension:
    """The listed user extension called `name`; ValueError if there is none."""
    for ext in extensions:
        if ext.name == name:
            return ext
    raise ValueError(f"Extension not found: {name}")


def update_extension(name: str) -> Extension:
    """Fetch and reset extension `name` to its remote branch; it loads the new code after a restart."""
    check_access()
    ext = find(name)
    if ext.is_builtin:
        raise ValueError(f"Built-in extension {name} is updated with Atelier itself")
    ext.fetch_and_reset_hard()
    ext.read_info_from_repo()
    return ext


def delete_extension(name: str) -> str:
    """Remove the folder of user extension `name` (never a path outside extensions/) and list again; the removed path."""
    check_access()
    root = os.path.realpath(paths_internal.extensions_dir)
    path = os.path.realpath(os.path.join(root, name))
    if not name or os.path.dirname(path) != root or os.path.basename(path).startswith("."):
        raise ValueError(f"Not an extension folder inside {root}: {name!r}")
    if not os.path.isdir(path):
        raise ValueError(f"Extension not found: {name}")
    shutil.rmtree(path)
    list_extensions()
    return path


def check_updates(names: list[str] | None = None) -> list[Extension]:
    """check_updates() of the listed user extensions with a git remote (only those in `names` when given)."""
    check_access()
    checked = []
    for ext in extensions:
        ext.read_info_from_repo()
        if ext.remote is None or (names is not None and ext.name not in names):
            continue
        ext.check_updates()
        checked.append(ext)
    return checked
