"""Prepare the Python environment for Atelier (requirements, checks, extensions' install.py), then start the web UI.

Extensions' install.py files import this module for `is_installed`, `run_pip`, `run` and `git_clone`;
importing it has no side effects, and only main() reads the command line.
"""
import importlib.metadata
import importlib.util
import os
import shlex
import subprocess
import sys

from modules import extensions, paths_internal
from modules.cmd_args import parser
from modules.shared_cmd_options import cmd_opts as args
from modules.shared_cmd_options import parse

python = sys.executable
git = os.environ.get("GIT", "git")
index_url = os.environ.get("INDEX_URL", "")
pip_attempts = 3
dir_repos = "repositories"
requirements_file = os.environ.get("REQS_FILE", "requirements.txt")


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


def run_pip(command: str, desc=None, live: bool = False) -> str:
    """`pip <command>` in this Python; skipped with --skip-install."""
    if args.skip_install:
        return ""
    index = f" --index-url {index_url}" if index_url else ""
    # an interrupted download fails pip as a whole, so the whole command is tried again
    for attempt in range(1, pip_attempts + 1):
        try:
            return run(f'"{python}" -m pip {command} --prefer-binary{index}', desc=f"Installing {desc}", errdesc=f"Couldn't install {desc}", live=live)
        except RuntimeError:
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


def unmet_requirements(path: str) -> list[str]:
    """The lines of a requirements file that the installed distributions do not satisfy."""
    with open(path, encoding="utf8") as file:
        lines = [line.split("#", 1)[0].strip() for line in file]
    lines = [line for line in lines if line]
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


def run_extension_installer(extension_dir: str):
    """Run an extension's install.py in its folder, with the install dir on PYTHONPATH so that it can `import launch`."""
    installer = os.path.join(extension_dir, "install.py")
    if not os.path.isfile(installer):
        return
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (paths_internal.script_path, env.get("PYTHONPATH", "")) if p)
    name = os.path.basename(extension_dir)
    try:
        stdout = run([python, installer], errdesc=f"Error running install.py for extension {name}", custom_env=env,
                     cwd=extension_dir)
        if stdout:
            print(stdout, end="", flush=True)
    except RuntimeError as e:
        print(e, file=sys.stderr, flush=True)  # one broken extension must not keep the others or the UI from starting


def run_extensions_installers(settings_file: str):
    for ext in extensions.enabled_in_settings_file(settings_file):
        run_extension_installer(ext.path)


def parse_with_extension_flags(argv: list[str]):
    """Let the enabled extensions' preload.py add their flags, then parse the whole command line (unknown flags fail now)."""
    extensions.preload_extensions(parser, extensions.enabled_in_settings_file(args.ui_settings_file))
    parse(argv)


def prepare_environment():
    if not args.skip_python_version_check:
        check_python_version()
    if args.xformers:
        print("--xformers is not needed: Atelier uses PyTorch's scaled-dot-product attention.", flush=True)

    requirements = os.path.join(paths_internal.script_path, requirements_file)
    unmet = unmet_requirements(requirements)
    if unmet and not args.skip_install:
        run_pip(f'install -r "{requirements}"', "requirements", live=True)
    elif unmet and not args.skip_version_check:
        print(f"WARNING: installed packages do not match {requirements_file}: {', '.join(unmet)}", flush=True)

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


def main():
    sys.argv += shlex.split(os.environ.get("COMMANDLINE_ARGS", ""))
    parse(sys.argv[1:], known_only=True)
    if not args.skip_prepare_environment:
        prepare_environment()
    if args.exit:
        print("Exiting because of --exit argument", flush=True)
        return
    parse_with_extension_flags(sys.argv[1:])
    start()


if __name__ == "__main__":
    main()
