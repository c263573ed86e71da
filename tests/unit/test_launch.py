"""launch.py: --help and --exit from the command line, the helpers extensions' install.py use, and prepare_environment."""
import importlib.metadata
import json
import os
import shutil
import subprocess
import sys
import types

import pytest

import launch
from modules import launch_utils, paths_internal
from modules.shared_cmd_options import cmd_opts, parse

ROOT = paths_internal.script_path
ISSUE_FLAGS = [
    "--listen", "--port", "--api", "--nowebui", "--ckpt", "--ckpt-dir", "--vae-dir", "--lora-dir", "--embeddings-dir",
    "--data-dir", "--models-dir", "--no-half", "--no-half-vae", "--precision", "--medvram", "--medvram-sdxl", "--lowvram",
    "--device-id", "--gradio-auth", "--api-auth", "--enable-insecure-extension-access", "--skip-install",
]


@pytest.fixture(autouse=True)
def restore_command_line():
    saved_opts = dict(vars(cmd_opts))
    saved_dirs = (paths_internal.data_path, paths_internal.models_path)
    yield
    paths_internal.configure(*saved_dirs)
    vars(cmd_opts).clear()
    vars(cmd_opts).update(saved_opts)


def launch_py(*arguments, env=None):
    return subprocess.run([sys.executable, "launch.py", *arguments], cwd=ROOT, capture_output=True, text=True, timeout=60,
                          env={**os.environ, "COMMANDLINE_ARGS": "", **(env or {})})


def test_help_lists_the_flags_and_exits_0():
    result = launch_py("--help")
    assert result.returncode == 0, result.stderr
    for flag in ISSUE_FLAGS:
        assert flag in result.stdout, flag
    assert "--demo" in result.stdout and "random-weight" in result.stdout


def test_importing_launch_has_no_side_effects_and_no_heavy_imports():
    code = "import sys, launch; print(sorted({'torch', 'gradio', 'diffusers', 'webui'} & set(sys.modules)))"
    result = subprocess.run([sys.executable, "-c", code, "--port", "1"], cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "[]"
    assert result.stderr == ""


def test_exit_stops_after_preparing():
    result = launch_py("--skip-install", "--skip-torch-cuda-test", "--skip-python-version-check", "--exit")
    assert result.returncode == 0, result.stderr
    assert "Exiting because of --exit argument" in result.stdout
    assert "Launching" not in result.stdout


def test_commandline_args_env_is_read():
    result = launch_py("--exit", env={"COMMANDLINE_ARGS": "--skip-prepare-environment --precision bogus"})
    assert result.returncode == 2
    assert "--precision" in result.stderr and "bogus" in result.stderr


def test_unknown_flags_wait_for_extensions():
    result = launch_py("--skip-prepare-environment", "--some-extension-flag", "--exit")
    assert result.returncode == 0, result.stderr


def test_is_installed():
    assert launch.is_installed("pytest") is True
    assert launch.is_installed("Pillow") is True
    assert launch.is_installed("PIL") is True  # an import name that is not a distribution name
    assert launch.is_installed("surely-not-installed-atelier-xyz") is False
    already_imported = "piexif" in sys.modules
    assert launch.is_installed("piexif") is True
    assert ("piexif" in sys.modules) == already_imported  # checked without importing it


def test_run_returns_output():
    assert launch.run("echo hello") == "hello\n"
    assert launch.run([sys.executable, "-c", "print('list form')"]) == "list form\n"
    assert launch.run("echo $ATELIER_TEST_VALUE", custom_env={**os.environ, "ATELIER_TEST_VALUE": "42"}) == "42\n"


def test_run_raises_with_the_output_on_failure():
    with pytest.raises(RuntimeError) as raised:
        launch.run("echo to-stdout; echo to-stderr >&2; exit 3", errdesc="Could not do the thing")
    message = str(raised.value)
    assert message.startswith("Could not do the thing.")
    assert "Error code: 3" in message
    assert "stdout: to-stdout" in message
    assert "stderr: to-stderr" in message


def test_run_pip_respects_skip_install(monkeypatch, tmp_path):
    commands = []
    monkeypatch.setattr(launch_utils, "run", lambda command, **kwargs: commands.append(command) or "")
    parse(["--skip-install"])
    assert launch.run_pip("install nothing", "nothing") == ""
    assert commands == []
    parse(["--data-dir", str(tmp_path)])
    launch.run_pip("install something", "something")
    assert commands == [f'"{sys.executable}" -m pip install something --prefer-binary']


def test_run_pip_tries_an_interrupted_install_again(monkeypatch, capsys, tmp_path):
    outcomes = iter([RuntimeError("Couldn't install x"), RuntimeError("Couldn't install x"), "installed"])

    def flaky_run(command, **kwargs):
        outcome = next(outcomes)
        if isinstance(outcome, Exception):
            raise outcome
        return outcome

    monkeypatch.setattr(launch_utils, "run", flaky_run)
    parse(["--data-dir", str(tmp_path)])
    assert launch.run_pip("install x", "x") == "installed"
    assert capsys.readouterr().out.count("trying again") == 2


def test_run_pip_gives_up_after_its_attempts(monkeypatch, tmp_path):
    calls = []

    def failing_run(command, **kwargs):
        calls.append(command)
        raise RuntimeError("Couldn't install x")

    monkeypatch.setattr(launch_utils, "run", failing_run)
    parse(["--data-dir", str(tmp_path)])
    with pytest.raises(RuntimeError, match="Couldn't install x"):
        launch.run_pip("install x", "x")
    assert len(calls) == launch_utils.pip_attempts


def test_unmet_requirements(tmp_path):
    pytest_version = importlib.metadata.version("pytest")
    requirements = tmp_path / "requirements.txt"
    requirements.write_text(
        "# a comment\n\n"
        f"pytest=={pytest_version}\n"
        "Pillow>=1.0  # trailing comment\n"
        "packaging\n"
        "pytest-timeout==0.0.1\n"
        "surely-not-installed-atelier-xyz==1.0\n"
        "some-windows-only-package==1.0; sys_platform == 'win32'\n",
        encoding="utf8",
    )
    assert launch_utils.unmet_requirements(str(requirements)) == ["pytest-timeout==0.0.1", "surely-not-installed-atelier-xyz==1.0"]


def test_without_packaging_every_requirement_is_unmet(tmp_path, monkeypatch):
    requirements = tmp_path / "requirements.txt"
    requirements.write_text("# pins\npytest\n\nPillow==12.3.0  # image IO\n", encoding="utf8")
    monkeypatch.setitem(sys.modules, "packaging.requirements", None)  # a fresh venv has no packaging yet
    assert launch_utils.unmet_requirements(str(requirements)) == ["pytest", "Pillow==12.3.0"]


def test_the_repos_requirements_are_met():
    assert launch_utils.unmet_requirements(os.path.join(ROOT, "requirements.txt")) == []


def test_prepare_environment_installs_only_what_is_missing(monkeypatch, tmp_path, capsys):
    pip_commands = []
    monkeypatch.setattr(launch_utils, "run_pip", lambda command, desc=None, live=False, **kwargs: pip_commands.append(command))
    monkeypatch.setattr(launch_utils, "check_torch_cuda", lambda: None)
    monkeypatch.setattr(launch_utils, "requirements_file", str(tmp_path / "requirements.txt"))
    (tmp_path / "requirements.txt").write_text("surely-not-installed-atelier-xyz==1.0\n", encoding="utf8")

    parse(["--skip-python-version-check", "--data-dir", str(tmp_path)])
    launch.prepare_environment()
    assert pip_commands == [f'install -r "{tmp_path / "requirements.txt"}"']

    pip_commands.clear()
    parse(["--skip-python-version-check", "--skip-install", "--data-dir", str(tmp_path)])
    launch.prepare_environment()
    assert pip_commands == []
    assert "surely-not-installed-atelier-xyz==1.0" in capsys.readouterr().out

    parse(["--skip-python-version-check", "--skip-install", "--skip-version-check", "--data-dir", str(tmp_path)])
    launch.prepare_environment()
    assert capsys.readouterr().out == ""


def test_no_cuda_is_a_message_not_an_error(monkeypatch, capsys):
    fake_torch = types.SimpleNamespace(cuda=types.SimpleNamespace(is_available=lambda: False))
    monkeypatch.setitem(sys.modules, "torch", fake_torch)
    launch_utils.check_torch_cuda()
    assert "will run on the CPU" in capsys.readouterr().out
    fake_torch.cuda.is_available = lambda: True
    launch_utils.check_torch_cuda()
    assert capsys.readouterr().out == ""


def test_python_version_warning(monkeypatch, capsys):
    monkeypatch.setattr(sys, "version_info", (3, 13, 0))
    launch_utils.check_python_version()
    assert "Python 3.11" in capsys.readouterr().out
    monkeypatch.setattr(sys, "version_info", (3, 11, 7))
    launch_utils.check_python_version()
    assert capsys.readouterr().out == ""


def write_extension(root, name, marker_text):
    folder = root / "extensions" / name
    folder.mkdir(parents=True)
    (folder / "install.py").write_text(
        "import os, launch\n"
        f"assert launch.is_installed('pytest')\n"
        f"open(os.path.join(os.path.dirname(os.path.abspath(__file__)), 'ran'), 'w').write({marker_text!r})\n",
        encoding="utf8",
    )
    return folder


def test_extension_installers_run_for_enabled_extensions(tmp_path, capsys):
    enabled = write_extension(tmp_path, "enabled-ext", "yes")
    disabled = write_extension(tmp_path, "disabled-ext", "no")
    broken = tmp_path / "extensions" / "broken-ext"
    broken.mkdir()
    (broken / "install.py").write_text("raise SystemExit('broken installer')\n", encoding="utf8")
    (tmp_path / "extensions" / "no-installer").mkdir()
    settings = tmp_path / "config.json"
    settings.write_text(json.dumps({"disabled_extensions": ["disabled-ext"]}), encoding="utf8")

    parse(["--data-dir", str(tmp_path)])
    assert launch.list_extensions(str(settings)) == ["broken-ext", "enabled-ext", "no-installer"]
    launch.run_extensions_installers(str(settings))
    assert (enabled / "ran").read_text() == "yes"
    assert not (disabled / "ran").exists()
    assert "broken installer" in capsys.readouterr().err  # reported; the others still ran

    settings.write_text(json.dumps({"disable_all_extensions": "extra"}), encoding="utf8")
    assert launch.list_extensions(str(settings)) == []
    settings.write_text("{corrupt", encoding="utf8")
    assert launch.list_extensions(str(settings)) == ["broken-ext", "disabled-ext", "enabled-ext", "no-installer"]
    parse(["--data-dir", str(tmp_path), "--disable-all-extensions"])
    assert launch.list_extensions(str(settings)) == []


@pytest.mark.skipif(shutil.which("git") is None, reason="needs git")
def test_git_clone_at_a_commit(tmp_path):
    source = tmp_path / "source"
    source.mkdir()
    git = ["git", "-C", str(source), "-c", "user.name=t", "-c", "user.email=t@example.com"]
    subprocess.run(["git", "init", "-q", str(source)], check=True)
    (source / "f.txt").write_text("one")
    subprocess.run([*git, "add", "f.txt"], check=True)
    subprocess.run([*git, "commit", "-q", "-m", "one"], check=True)
    first = subprocess.run([*git, "rev-parse", "HEAD"], check=True, capture_output=True, text=True).stdout.strip()
    (source / "f.txt").write_text("two")
    subprocess.run([*git, "commit", "-q", "-am", "two"], check=True)

    clone = tmp_path / "clone"
    launch.git_clone(str(source), str(clone), "test repo", commithash=first)
    assert (clone / "f.txt").read_text() == "one"
    launch.git_clone(str(source), str(clone), "test repo")  # an existing clone without a pinned commit is left alone
    assert (clone / "f.txt").read_text() == "one"
    second = subprocess.run([*git, "rev-parse", "HEAD"], check=True, capture_output=True, text=True).stdout.strip()
    launch.git_clone(str(source), str(clone), "test repo", commithash=second)  # an existing clone moves to the pin
    assert (clone / "f.txt").read_text() == "two"
    with pytest.raises(RuntimeError, match="Couldn't clone"):
        launch.git_clone(str(tmp_path / "missing"), str(tmp_path / "other"), "missing repo")


def test_repo_dir():
    assert launch.repo_dir("k-diffusion") == os.path.join(ROOT, "repositories", "k-diffusion")


def test_start_runs_the_ui_or_the_api(monkeypatch):
    calls = []
    fake_webui = types.SimpleNamespace(webui=lambda: calls.append("webui"), api_only=lambda: calls.append("api_only"))
    monkeypatch.setitem(sys.modules, "webui", fake_webui)
    parse([])
    launch.start()
    parse(["--nowebui"])
    launch.start()
    assert calls == ["webui", "api_only"]
