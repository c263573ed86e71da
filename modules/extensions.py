"""User extensions (A1111's modules.extensions): the folders of extensions/ (and extensions-builtin/), which of them
are active, their git state, and installing, updating and deleting them with the `git` command.

Only the standard library and the light settings modules are imported: launch.py uses this module before any
requirement is installed. An install clones into a hidden folder inside extensions/ and renames it into place only
when the clone succeeded, so a failure never leaves a half-written extension behind.
"""
from __future__ import annotations

import configparser
import functools
import importlib.util
import json
import logging
import os
import re
import shutil
import subprocess
import tempfile
import threading
from collections import namedtuple

from modules import dependency_order, paths_internal
from modules.shared_cmd_options import cmd_opts
from modules.shared_options import opts

log = logging.getLogger(__name__)

git = os.environ.get("GIT", "git")
TMP_DIRNAME = ".tmp"  # hidden: never listed as an extension
URL_PATTERN = re.compile(r"^(https?://|ssh://|file://|git@)\S+$")
DIRNAME_PATTERN = re.compile(r"^[\w][\w.\- ]*$")
INSTALL_RECORD = "extension_installs.json"  # in the data folder's tmp/: each extension's last install problem
COMMIT_PATTERN = re.compile(r"^[0-9a-fA-F]{4,64}$")  # a hash, never an option or a ref name from a hand-edited file

ScriptFile = namedtuple("ScriptFile", ["basedir", "filename", "path"])
"""A file of an extension, as A1111's scripts.ScriptFile: the extension's folder, the file's name and full path."""

GitInfo = namedtuple("GitInfo", ["remote", "branch", "commit_hash", "commit_date"])
"""A checkout's first remote URL (or None), branch (None when detached), HEAD commit and its date (Unix time)."""


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


def _require_checkout(path: str) -> None:
    """Refuse a folder without its own .git: git would act on a repository around it (Atelier's own checkout)."""
    if not os.path.exists(os.path.join(path, ".git")):
        raise GitError(f"Not a git checkout: {path}")


def read_git_info(path: str) -> GitInfo:
    """The git state of the checkout at `path`; GitError when it is not a repository."""
    _require_checkout(path)
    commit_hash, commit_date = run_git("log", "-1", "--format=%H %ct", cwd=path).split()
    branch = run_git("rev-parse", "--abbrev-ref", "HEAD", cwd=path).strip()
    remotes = run_git("remote", cwd=path).split()
    remote = run_git("remote", "get-url", remotes[0], cwd=path).strip() if remotes else None
    return GitInfo(remote, None if branch == "HEAD" else branch, commit_hash, int(commit_date))  # "HEAD": detached


def reset_to_commit(path: str, commit: str) -> None:
    """Move the checkout at `path` to `commit`, all or nothing: fetch first (offline is fine when the commit is already
    there), touch nothing unless the commit exists, and go back to the old HEAD if the reset fails."""
    if not isinstance(commit, str) or not COMMIT_PATTERN.match(commit):
        raise ValueError(f"Not a commit hash: {commit!r}")
    _require_checkout(path)
    try:
        run_git("fetch", "--all", "--quiet", cwd=path)
        fetch_error = ""
    except GitError as e:
        fetch_error = f" ({e})"
    try:
        run_git("cat-file", "-e", f"{commit}^{{commit}}", cwd=path)
    except GitError as e:
        raise GitError(f"Commit {commit} is not in the repository at {path}{fetch_error}") from e
    before = run_git("rev-parse", "HEAD", cwd=path).strip()
    try:
        run_git("reset", "--hard", commit, cwd=path)
    except GitError:
        run_git("reset", "--hard", before, cwd=path)
        raise


class ExtensionMetadata:
    """An extension's metadata.ini (A1111): `[Extension]` Name and Requires; `[scripts/<file>.py]` (and `[scripts]` for all
    its scripts) Requires, Before and After; `[callbacks/<ext>/<script>/<callback>]` Before and After. A missing file is
    an empty config; a broken one too, with a warning."""

    filename = "metadata.ini"

    def __init__(self, path: str, canonical_name: str):
        self.canonical_name = canonical_name  # A1111 1.10 reads [Extension] Name, then uses the lower-cased folder name
        self.config = self._read(os.path.join(path, self.filename))

    def _read(self, filepath: str) -> configparser.ConfigParser:
        config = configparser.ConfigParser(interpolation=None)  # "%" in a value is text, not a reference
        if not os.path.isfile(filepath):
            return config
        try:
            with open(filepath, encoding="utf8") as file:
                config.read_file(file)
        except (configparser.Error, OSError, UnicodeDecodeError) as e:
            log.warning("Ignoring %s of extension %s, which cannot be read: %s", self.filename, self.canonical_name, e)
            return configparser.ConfigParser(interpolation=None)
        return config

    @property
    def requires(self) -> list[str]:
        """The extensions this one needs, lower-cased; "a|b" means either."""
        return self.get_script_requirements("Requires", "Extension")

    def get_script_requirements(self, field: str, section: str, extra_section: str | None = None) -> list[str]:
        """The names listed in `field` (Requires, Before, After) of [section] and of [extra_section], lower-cased."""
        text = self.config.get(section, field, fallback="")
        if extra_section:
            text += "," + self.config.get(extra_section, field, fallback="")
        return self.parse_list(text)

    @staticmethod
    def parse_list(text: str) -> list[str]:
        """Names separated by commas and/or spaces, lower-cased."""
        return [item for item in re.split(r"[,\s]+", text.strip().lower()) if item]


def pick_requirement(requirement: str, known) -> str:
    """The first alternative of "a|b" that is in `known`; the requirement as written when none is."""
    return next((name for name in requirement.split("|") if name in known), requirement)


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

    @functools.cached_property
    def metadata(self) -> ExtensionMetadata:
        return ExtensionMetadata(self.path, self.canonical_name)

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
        self.remote, self.branch, self.commit_hash, self.commit_date = read_git_info(self.path)
        self.version = self.commit_hash[:8]
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


# extensions whose feature is built in: their own copy would register a second one (Forge skips them too), and
# sd-webui-controlnet's install.py would pin pydantic<=1.10.17 and break the app
SUPERSEDED = {"sd-webui-controlnet": "ControlNet"}


def allowed(extension: Extension, disable_all: str) -> bool:
    """Whether the "Disable all extensions" setting ("none", "extra", "all") and the command line let it load;
    an extension whose feature is built in never loads."""
    if extension.canonical_name in SUPERSEDED:
        return False
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
    for ext in extensions:
        if ext.enabled and ext.canonical_name in SUPERSEDED:
            log.info('Extension "%s" is not loaded: %s is built in', ext.name, SUPERSEDED[ext.canonical_name])
    check_requirements(extensions)


def check_requirements(listed: list[Extension]) -> None:
    """Warn about each active extension whose metadata.ini Requires an extension that is not installed or not active."""
    by_name = {ext.canonical_name: ext for ext in listed}
    disable_all = opts.disable_all_extensions
    for ext in listed:
        if not (ext.enabled and allowed(ext, disable_all)):
            continue
        for requirement in ext.metadata.requires:
            required = by_name.get(pick_requirement(requirement, by_name))
            if required is None:
                log.warning('Extension "%s" requires "%s", which is not installed.', ext.name, requirement)
            elif not (required.enabled and allowed(required, disable_all)):
                log.warning('Extension "%s" requires "%s", which is disabled.', ext.name, required.name)


def active() -> list[Extension]:
    """The extensions that load: enabled, and let through by the disable-all setting and flags."""
    if not extensions:
        list_extensions()  # nothing listed yet (or nothing there, which costs one listdir)
    return [ext for ext in extensions if ext.enabled and allowed(ext, opts.disable_all_extensions)]


def script_load_order(script_files: list[ScriptFile]) -> list[ScriptFile]:
    """The script files ordered so that each loads after what its extension's metadata.ini says it needs: `Requires` and
    `After` (a script "ext/file.py" or all scripts of an extension "ext"), the reverse for `Before`, and an
    `[Extension] Requires` puts all of the extension's scripts after the required one's. Otherwise the given order is
    kept; a missing requirement is logged, and scripts that must load before each other keep their given order."""
    by_path = {os.path.normpath(ext.path): ext for ext in active()}
    owners = [by_path.get(os.path.normpath(file.basedir)) for file in script_files]
    names = [file.filename if ext is None else f"{'builtin/' if ext.is_builtin else ''}{ext.canonical_name}/{file.filename}"
             for file, ext in zip(script_files, owners)]
    index = {name: i for i, name in enumerate(names)}
    scripts_of: dict[str, list[int]] = {}
    for i, ext in enumerate(owners):
        if ext is not None:
            scripts_of.setdefault(ext.canonical_name, []).append(i)
    known = set(index) | {ext.canonical_name for ext in by_path.values()}

    def targets(requirement: str, own: Extension | None) -> list[int]:
        name = pick_requirement(requirement, known)
        if name in index:
            return [index[name]]
        return [] if own is not None and name == own.canonical_name else scripts_of.get(name, [])

    after: list[set[int]] = [set() for _ in script_files]  # after[i]: the scripts that load before script i
    for i, (file, ext) in enumerate(zip(script_files, owners)):
        if ext is None:
            continue
        section = os.path.relpath(file.path, ext.path).replace(os.sep, "/")
        extra = section.rpartition("/")[0] or None
        requires = ext.metadata.get_script_requirements("Requires", section, extra)
        for requirement in requires:
            if pick_requirement(requirement, known) not in known:
                log.warning('Script "%s" of extension %s requires "%s" to be loaded, but it is not.', names[i], ext.name,
                            requirement)
        for requirement in requires + ext.metadata.get_script_requirements("After", section, extra) + ext.metadata.requires:
            after[i].update(targets(requirement, ext))
        for requirement in ext.metadata.get_script_requirements("Before", section, extra):
            for j in targets(requirement, ext):
                after[j].add(i)
        after[i].discard(i)
    _break_cycles(after, names, owners)
    return [script_files[i] for i in dependency_order.dependencies_first(after)]


def _break_cycles(after: list[set[int]], names: list[str], owners: list) -> None:
    """Drop the relations among scripts that must each load before the other (so they keep their given order) and warn."""
    for group in dependency_order.drop_cycles(after):
        owner_names = sorted({"built-in scripts" if owners[j] is None else owners[j].name for j in group})
        log.warning("Extensions %s ask for a load order that goes in a circle (%s): these scripts load in their usual order.",
                    ", ".join(owner_names), ", ".join(names[j] for j in group))


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
    """Whether the server listens only on this machine: no --listen, no --share, and --server-name, if given, the
    loopback host itself (127.0.0.1, ::1, localhost); any other name counts as listening beyond it."""
    if cmd_opts.listen or cmd_opts.share:
        return False
    name = (cmd_opts.server_name or "").strip().strip("[]").lower()
    return name in ("", "localhost", "127.0.0.1", "::1")


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
    from modules import launch_utils  # imported here: launch_utils imports this module

    launch_utils.run_extension_installer(target)
    list_extensions()
    return target


def install_record_path() -> str:
    return os.path.join(paths_internal.data_path, "tmp", INSTALL_RECORD)


def install_problems() -> dict[str, str]:
    """{extension name: what went wrong the last time its install.py ran (e.g. a requirement refused because it conflicts
    with Atelier's pins)}; empty when the record is missing or unreadable."""
    try:
        with open(install_record_path(), encoding="utf8") as file:
            record = json.load(file)
    except (OSError, ValueError):
        return {}
    if not isinstance(record, dict):
        return {}
    return {name: problem for name, problem in record.items() if isinstance(name, str) and isinstance(problem, str)}


def record_install(name: str, problem: str | None) -> None:
    """Keep what went wrong in extension `name`'s last install (None: nothing did) where the Extensions tab reads it."""
    problems = install_problems()
    if problems.get(name) == problem:
        return
    if problem is None:
        del problems[name]
    else:
        problems[name] = problem
    path = install_record_path()
    os.makedirs(os.path.dirname(path), exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=os.path.dirname(path), prefix=".extension_installs-", suffix=".tmp")
    try:
        with os.fdopen(fd, "w", encoding="utf8") as file:
            json.dump(problems, file, indent=1)
        os.replace(tmp, path)  # the page may read it at any moment: never half-written
    except BaseException:
        os.unlink(tmp)
        raise


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
    record_install(os.path.basename(path), None)
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
