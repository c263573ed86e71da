"""Preparing the Python environment (A1111's modules.launch_utils): requirements, checks, extensions' install.py, then
starting the web UI. launch.py is the entry point and re-exports these names, as A1111's does.

Extensions' install.py files use `is_installed`, `run_pip`, `run`, `git_clone`, `args`, `git_tag`, `commit_hash`. Every
pip run an extension starts (through `run_pip`, or any pip in its install.py's environment) runs under constraints made
from our pinned requirements, so an extension can never change the packages Atelier needs; a refusal names the extension
and the conflicting requirement, and is recorded for the Extensions tab. Importing this module has no side effects.
"""
import functools
import importlib.metadata
import importlib.util
import os
import pathlib
import shlex
import subprocess
import sys

from modules import extensions, paths_internal, pinned_requirements
from modules.cmd_args import parser
from modules.shared_cmd_options import cmd_opts as args, parse

python = sys.executable
git = os.environ.get("GIT", "git")
index_url = os.environ.get("INDEX_URL", "")
pip_attempts = 3
dir_repos = "repositories"
requirements_file = os.environ.get("REQS_FILE", "requirements.txt")
CONSTRAINTS_ENV = "ATELIER_PIP_CONSTRAINTS"  # the constraints file, handed to install.py so that its run_pip uses it
EXTENSION_ENV = "ATELIER_EXTENSION"  # the extension whose install.py runs, for run_pip's messages
CONSTRAINTS_FILE = "pip-constraints.txt"


def run(command, desc=None, errdesc=None, custom_env=None, live: bool = False, cwd=None) -> str:
    """Run a shell command (or an argument list); return its output. A non-zero exit raises RuntimeError with the output."""
    if desc:
        print(desc, flush=True)
    result = subprocess.run(
        command,
        shell=isinstance(command, str),
        cwd=cwd,
        env=os.environ if custom_env is None else custom_env,
        stdout=None if live else subprocess.PIPE,
        stderr=None if live else subprocess.PIPE,
        encoding="utf8",
        errors="ignore",
    )
    if result.returncode != 0:
        message = [f"{errdesc or 'Error running command'}.", f"Command: {command}", f"Error code: {result.returncode}"]
        if result.stdout:
            message.append(f"stdout: {result.stdout}")
        if result.stderr:
            message.append(f"stderr: {result.stderr}")
        raise RuntimeError("\n".join(message))
    return result.stdout or ""


def is_installed(package: str) -> bool:
    """Whether a distribution (pip name) or a top-level module of that name is installed; nothing is imported."""
    try:
        importlib.metadata.distribution(package)
        return True
    except importlib.metadata.PackageNotFoundError:
        return importlib.util.find_spec(package.split(".")[0]) is not None


def requirements_path() -> str:
    return os.path.join(paths_internal.script_path, requirements_file)


def current_pins() -> dict[str, pinned_requirements.Pin] | None:
    """Our pins as installed now; None in a fresh venv, where they cannot be read yet."""
    try:
        return pinned_requirements.pins(requirements_path())
    except ImportError:
        return None


def pip_environment(pinned: dict | None = None) -> dict[str, str]:
    """os.environ with PIP_CONSTRAINT naming our constraints file (after any the user set), written now unless install.py
    was handed one."""
    path = os.environ.get(CONSTRAINTS_ENV)
    if not path:
        pinned = current_pins() if pinned is None else pinned
        if pinned is None:
            return dict(os.environ)
        path = pinned_requirements.write_constraints(pinned, os.path.join(paths_internal.data_path, "tmp", CONSTRAINTS_FILE))
    uri = pathlib.Path(path).as_uri()  # pip splits PIP_CONSTRAINT at spaces; a file URL has none
    existing = os.environ.get("PIP_CONSTRAINT", "").split()
    return {**os.environ, CONSTRAINTS_ENV: path, "PIP_CONSTRAINT": " ".join(existing + [uri] * (uri not in existing))}


def refusal_message(pip_output: str, pinned: dict | None = None) -> str | None:
    """What pip refused because it conflicts with our pins, in words, naming the extension; None when it refused nothing."""
    found = pinned_requirements.conflicts(pip_output)
    if not found:
        return None
    who = os.environ.get(EXTENSION_ENV)
    pinned = pinned if pinned is not None else (current_pins() or {})
    return (f"{f'Extension {who}' if who else 'An extension'} asked pip for packages that conflict with Atelier's, so "
            f"nothing was installed: {pinned_requirements.explain(found, pinned)}")


def run_pip(command: str, desc=None, live: bool = False, *, constrained: bool = True) -> str:
    """`pip <command>` in this Python; skipped with --skip-install. Constrained (what extensions get): our pinned
    requirements may not change, and a conflict raises RuntimeError saying which requirement conflicts with which pin."""
    if args.skip_install:
        return ""
    index = f" --index-url {index_url}" if index_url else ""
    env = pip_environment() if constrained else None
    # an interrupted download fails pip as a whole, so the whole command is tried again; a conflict is not tried again
    for attempt in range(1, pip_attempts + 1):
        try:
            output = run(f'"{python}" -m pip {command} --prefer-binary{index}', desc=f"Installing {desc}",
                         errdesc=f"Couldn't install {desc}", custom_env=env, live=live and not constrained)
            if live and constrained:
                print(output, end="", flush=True)
            return output
        except RuntimeError as e:
            refusal = refusal_message(str(e)) if constrained else None
            if refusal:
                raise RuntimeError(f"{refusal}.\n{e}") from None
            if attempt == pip_attempts:
                raise
            print(f"Installing {desc} failed (attempt {attempt} of {pip_attempts}); trying again", flush=True)


def repo_dir(name: str) -> str:
    return os.path.join(paths_internal.script_path, dir_repos, name)


def git_clone(url: str, dir: str, name: str, commithash=None):
    """Clone `url` into `dir` (at `commithash` if given); an existing clone is moved to `commithash` when it differs."""
    if os.path.exists(dir):
        if commithash is None:
            return
        current = run(f'"{git}" -C "{dir}" rev-parse HEAD', None, f"Couldn't determine {name}'s hash").strip()
        if current == commithash:
            return
        run(f'"{git}" -C "{dir}" fetch', f"Fetching updates for {name}...", f"Couldn't fetch {name}")
        run(f'"{git}" -C "{dir}" checkout {commithash}', f"Checking out commit for {name} with hash: {commithash}...", f"Couldn't checkout commit {commithash} for {name}")
        return
    run(f'"{git}" clone "{url}" "{dir}"', f"Cloning {name} into {dir}...", f"Couldn't clone {name}")
    if commithash is not None:
        run(f'"{git}" -C "{dir}" checkout {commithash}', None, f"Couldn't checkout {name}'s hash: {commithash}")


def _git_of_checkout(*git_args: str) -> str:
    """`git <git_args>` in Atelier's own checkout; "<none>" when that fails (not a git checkout, no git, no tag)."""
    try:
        result = subprocess.run([git, "-C", paths_internal.script_path, *git_args], capture_output=True, text=True,
                                check=True, timeout=10)
    except (OSError, subprocess.SubprocessError):
        return "<none>"
    return result.stdout.strip() or "<none>"


@functools.cache
def commit_hash() -> str:
    """The commit of Atelier's checkout, "<none>" outside a git checkout (A1111's launch_utils.commit_hash)."""
    return _git_of_checkout("rev-parse", "HEAD")


@functools.cache
def git_tag() -> str:
    """`git describe --tags` of Atelier's checkout (e.g. "v0.1-3-gabc1234"), "<none>" without a tag or a checkout."""
    return _git_of_checkout("describe", "--tags")


def unmet_requirements(path: str) -> list[str]:
    """The lines of a requirements file that the installed distributions do not satisfy."""
    lines = pinned_requirements.requirement_lines(path)
    try:
        from packaging.requirements import InvalidRequirement, Requirement
    except ImportError:
        return lines  # a fresh venv: nothing can be checked, everything is to be installed
    unmet = []
    for line in lines:
        try:
            requirement = Requirement(line)
        except InvalidRequirement:
            unmet.append(line)  # pip understands more syntax than we check; let it decide
            continue
        if requirement.marker is not None and not requirement.marker.evaluate():
            continue
        try:
            installed = importlib.metadata.version(requirement.name)
        except importlib.metadata.PackageNotFoundError:
            unmet.append(line)
            continue
        if not requirement.specifier.contains(installed, prereleases=True):
            unmet.append(line)
    return unmet


def check_python_version():
    if sys.version_info[:2] != (3, 11):
        print(
            f"WARNING: Atelier is tested with Python 3.11; this is Python {sys.version.split()[0]}. "
            "If requirements fail to install, create the venv with python3.11 (set python_cmd in webui-user.sh). "
            "Use --skip-python-version-check to hide this message.",
            flush=True,
        )


def check_torch_cuda():
    """Say clearly when torch cannot use a GPU; Atelier then runs on the CPU (slowly) instead of stopping."""
    try:
        import torch
    except ImportError:
        print("torch is not installed; run without --skip-install to install the requirements.", flush=True)
        return
    if not torch.cuda.is_available():
        print(
            "Torch cannot use a CUDA GPU on this machine: Atelier will run on the CPU, which is very slow. "
            "Use --skip-torch-cuda-test to skip this check.",
            flush=True,
        )


def list_extensions(settings_file: str) -> list[str]:
    """Names of the extensions that load, by the extensions folders and the settings file (read before settings load)."""
    return [ext.name for ext in extensions.enabled_in_settings_file(settings_file)]


def install_requirements_command(drifted: list[pinned_requirements.Drift]) -> str:
    """pip's `install -r requirements.txt`, plus the drifted pins that come from our packages' dependencies."""
    extra = "".join(f' "{d.pin}"' for d in drifted if pinned_requirements.REQUIREMENTS_TXT not in d.pin.required_by)
    return f'install -r "{requirements_path()}"{extra}'


def restore_pins(pinned: dict | None, culprit: str) -> list[pinned_requirements.Drift]:
    """Put back the pins that are no longer satisfied (something bypassed the constraints), saying so; what had drifted."""
    drifted = pinned_requirements.drifts(pinned) if pinned else []
    if not drifted:
        return []
    print(f"{culprit} changed packages Atelier needs ({'; '.join(map(str, drifted))}); restoring them with "
          f"pip install -r {requirements_file}", flush=True)
    try:
        run_pip(install_requirements_command(drifted), "Atelier's requirements", constrained=False)
    except RuntimeError as e:
        print(e, file=sys.stderr, flush=True)
    still = pinned_requirements.drifts(pinned)
    if still:
        print(f"WARNING: Atelier's packages could not be restored: {'; '.join(map(str, still))}", file=sys.stderr, flush=True)
    return drifted


def install_without_extras(found: list[pinned_requirements.Conflict], name: str) -> str:
    """Install the packages an extension asked for without the optional extras that conflict with our pins (so that the
    extension's main library is there); what was done, as the end of a sentence."""
    fallbacks = pinned_requirements.without_conflicting_extras(found)
    if not fallbacks:
        return ""
    try:
        run_pip("install " + " ".join(f'"{r}"' for r in fallbacks), f"{', '.join(fallbacks)} for extension {name}")
    except RuntimeError as e:
        print(e, file=sys.stderr, flush=True)
        return ""
    return f"; {', '.join(fallbacks)} was installed instead, without the optional extras that need them"


def run_extension_installer(extension_dir: str, pinned: dict | None = None) -> str | None:
    """Run an extension's install.py in its folder (the install dir on PYTHONPATH so that it can `import launch`) with pip
    constrained to our pins; put back any pin it changed anyway. What went wrong, also recorded for the Extensions tab;
    None when nothing did."""
    installer = os.path.join(extension_dir, "install.py")
    if not os.path.isfile(installer):
        return None
    name = os.path.basename(extension_dir)
    pinned = current_pins() if pinned is None else pinned
    env = pip_environment(pinned)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (paths_internal.script_path, env.get("PYTHONPATH", "")) if p)
    env[EXTENSION_ENV] = name
    result = subprocess.run([python, installer], cwd=extension_dir, env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, encoding="utf8", errors="ignore")
    problems = []
    if result.returncode != 0:
        print(f"Error running install.py for extension {name} (exit code {result.returncode}):\n{result.stdout}",
              file=sys.stderr, flush=True)  # one broken extension must not keep the others or the UI from starting
        problems.append(f"install.py failed (exit code {result.returncode}); its output is in the console log")
    elif result.stdout:
        print(result.stdout, end="", flush=True)
    found = pinned_requirements.conflicts(result.stdout)
    if found:
        problems.insert(0, f"its requirements conflict with Atelier's, so they were not installed: "
                           f"{pinned_requirements.explain(found, pinned or {})}{install_without_extras(found, name)}")
    drifted = restore_pins(pinned, f"install.py of extension {name}")
    if drifted:
        problems.append(f"it changed packages Atelier needs, which were restored: {'; '.join(map(str, drifted))}")
    problem = "; ".join(problems) or None
    if problem:
        print(f"Extension {name}: {problem}", file=sys.stderr, flush=True)
    extensions.record_install(name, problem)
    return problem


def run_extensions_installers(settings_file: str):
    enabled = extensions.enabled_in_settings_file(settings_file)
    pinned = current_pins() if enabled else None
    for ext in enabled:
        run_extension_installer(ext.path, pinned)


def parse_with_extension_flags(argv: list[str]):
    """Let the enabled extensions' preload.py add their flags, then parse the whole command line (unknown flags fail now)."""
    extensions.preload_extensions(parser, extensions.enabled_in_settings_file(args.ui_settings_file))
    parse(argv)


def prepare_environment():
    if not args.skip_python_version_check:
        check_python_version()
    if args.xformers:
        print("--xformers is not needed: Atelier uses PyTorch's scaled-dot-product attention.", flush=True)

    unmet = unmet_requirements(requirements_path())
    pinned = current_pins()
    # what our packages need beyond requirements.txt, changed by an install that ran without our constraints
    drifted = [d for d in pinned_requirements.drifts(pinned) if pinned_requirements.REQUIREMENTS_TXT not in d.pin.required_by] \
        if pinned else []
    if (unmet or drifted) and not args.skip_install:
        if drifted:
            print(f"Packages Atelier needs were changed ({'; '.join(map(str, drifted))}); restoring them", flush=True)
        run_pip(install_requirements_command(drifted), "requirements", live=True, constrained=False)
    elif (unmet or drifted) and not args.skip_version_check:
        print(f"WARNING: installed packages do not match {requirements_file}: {', '.join(unmet + list(map(str, drifted)))}",
              flush=True)

    if not args.skip_torch_cuda_test:
        check_torch_cuda()
    if not args.skip_install:
        run_extensions_installers(args.ui_settings_file)


def start():
    print(f"Launching {'API server' if args.nowebui else 'Web UI'} with arguments: {shlex.join(sys.argv[1:])}", flush=True)
    import webui
    if args.nowebui:
        webui.api_only()
    else:
        webui.webui()
