"""Extensions' installs can never break the core: their pip runs go under constraints made from our pinned requirements
(through launch.run_pip and through a raw `python -m pip` in install.py), a conflict fails that extension's install with
a message naming the requirement and our pin (console, record, Extensions tab), and pins changed anyway are restored.

pip runs for real on this venv but can reach no index (PIP_NO_INDEX, an empty --find-links, no config files, --dry-run):
a conflict is decided from the constraints alone and nothing is ever downloaded or installed.
"""
from __future__ import annotations

import importlib.metadata
import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

import launch
from modules import extensions, launch_utils, paths_internal
from modules.shared_cmd_options import cmd_opts, parse
from modules.shared_options import opts
from tests.fixtures.extensions import make_extension_repo

OURS = ("pydantic", "numpy", "transformers", "fastapi", "gradio")

# the ways real install.py files call pip, each asking for a version older than ours
CONTROLNET_STYLE = (  # sd-webui-controlnet: launch.run_pip per requirement, errors printed and ignored
    "import launch\n"
    "try:\n"
    "    launch.run_pip('install \"pydantic<=1.10.17\"', 'pins-pydantic requirement: pydantic<=1.10.17')\n"
    "except Exception as e:\n"
    "    print(e)\n"
    "    print('Warning: Failed to install pydantic<=1.10.17, some preprocessors may not work.')\n"
)
DYNAMIC_PROMPTS_STYLE = (  # sd-dynamic-prompts: a raw pip subprocess; its failure ends install.py
    "import subprocess, sys\n"
    "subprocess.check_call([sys.executable, '-m', 'pip', 'install', 'transformers<5'])\n"
)
REQUIREMENTS_FILE_STYLE = (  # adetailer-like: pip install -r the extension's own requirements.txt
    "import os, subprocess, sys\n"
    "here = os.path.dirname(os.path.abspath(__file__))\n"
    "subprocess.run([sys.executable, '-m', 'pip', 'install', '-r', os.path.join(here, 'requirements.txt')], check=True)\n"
)


@pytest.fixture
def offline_pip(tmp_path, monkeypatch):
    """pip that can install nothing: no index, no find-links, no config files (and their constraints), dry runs."""
    links = tmp_path / "no-wheels"
    links.mkdir()
    for name in [key for key in os.environ if key.startswith("PIP_")]:
        monkeypatch.delenv(name)
    for name, value in (("PIP_NO_INDEX", "1"), ("PIP_FIND_LINKS", str(links)), ("PIP_CONFIG_FILE", os.devnull),
                        ("PIP_DRY_RUN", "1"), ("PIP_DISABLE_PIP_VERSION_CHECK", "1")):
        monkeypatch.setenv(name, value)
    for name in (launch_utils.CONSTRAINTS_ENV, launch_utils.EXTENSION_ENV, "INDEX_URL"):
        monkeypatch.delenv(name, raising=False)


@pytest.fixture
def data_dir(tmp_path, monkeypatch):
    """A data folder with an empty extensions/, default flags and settings, nothing listed."""
    saved, saved_dirs = dict(vars(cmd_opts)), (paths_internal.data_path, paths_internal.models_path)
    parse(["--data-dir", str(tmp_path)])
    (tmp_path / "extensions").mkdir()
    monkeypatch.setattr(paths_internal, "extensions_builtin_dir", str(tmp_path / "extensions-builtin"))
    monkeypatch.setitem(opts.data, "disabled_extensions", [])
    monkeypatch.setitem(opts.data, "disable_all_extensions", "none")
    monkeypatch.setattr(extensions, "extensions", [])
    yield tmp_path
    paths_internal.configure(*saved_dirs)
    vars(cmd_opts).clear()
    vars(cmd_opts).update(saved)


def add_extension(data: Path, name: str, installer: str, files: dict[str, str] | None = None) -> Path:
    folder = data / "extensions" / name
    folder.mkdir(parents=True)
    (folder / "install.py").write_text(installer, encoding="utf8")
    for filename, text in (files or {}).items():
        (folder / filename).write_text(text, encoding="utf8")
    return folder


def versions() -> dict[str, str]:
    return {name: importlib.metadata.version(name) for name in OURS}


def test_without_our_constraints_pip_goes_for_the_older_version(offline_pip, data_dir):
    """What the constraints prevent: unconstrained, pip looks for pydantic<=1.10.17 to install (and finds none offline)."""
    command = [sys.executable, "-m", "pip", "install", "pydantic<=1.10.17"]
    bare = subprocess.run(command, capture_output=True, text=True, timeout=120)
    assert "No matching distribution found for pydantic<=1.10.17" in bare.stderr
    assert "(constraint)" not in bare.stdout + bare.stderr

    constrained = subprocess.run(command, capture_output=True, text=True, timeout=120, env=launch_utils.pip_environment())
    assert constrained.returncode != 0
    assert "The user requested (constraint) pydantic" in constrained.stdout


def test_conflicting_installers_fail_by_name_and_the_core_is_unchanged(offline_pip, data_dir, capsys):
    before = versions()
    add_extension(data_dir, "pins-pydantic", CONTROLNET_STYLE)
    add_extension(data_dir, "pins-transformers", DYNAMIC_PROMPTS_STYLE)
    add_extension(data_dir, "pins-numpy", REQUIREMENTS_FILE_STYLE, {"requirements.txt": "numpy<2\n"})
    good = add_extension(data_dir, "well-behaved", "open('ran.txt', 'w').write('ran')\n")

    launch.run_extensions_installers(cmd_opts.ui_settings_file)
    log = capsys.readouterr()

    assert versions() == before
    assert (good / "ran.txt").read_text() == "ran"  # the others' installers still ran
    problems = extensions.install_problems()
    assert sorted(problems) == ["pins-numpy", "pins-pydantic", "pins-transformers"]
    assert "pydantic<=1.10.17 conflicts with Atelier's pydantic" in problems["pins-pydantic"]
    assert "gradio" in problems["pins-pydantic"]  # why we have that pin
    assert f"transformers<5 conflicts with Atelier's transformers=={before['transformers']}" in problems["pins-transformers"]
    assert "requirements.txt" in problems["pins-transformers"]
    assert "numpy<2 conflicts with Atelier's numpy" in problems["pins-numpy"]
    assert "install.py failed" in problems["pins-transformers"] and "install.py failed" not in problems["pins-pydantic"]
    for name, problem in problems.items():
        assert f"Extension {name}: {problem}" in log.err
    # launch.run_pip itself said which extension and what, inside install.py, without retrying a conflict
    assert "Extension pins-pydantic asked pip for packages that conflict with Atelier's, so nothing was installed" in log.out
    assert "trying again" not in log.out
    assert "restoring" not in log.out  # nothing got through to be put back

    from modules import ui_extensions

    extensions.list_extensions()
    table = ui_extensions.extension_table()
    for name in problems:
        assert f"<tr class='extension-install-problem' data-extension='{name}'>" in table
    assert "pydantic&lt;=1.10.17 conflicts with Atelier&#x27;s pydantic" in table
    assert "<tr data-extension='well-behaved'>" in table
    assert "extension-install-problem' data-extension='well-behaved'" not in table

    (data_dir / "extensions" / "pins-pydantic" / "install.py").write_text("print('fixed')\n")
    launch.run_extensions_installers(cmd_opts.ui_settings_file)  # a clean install clears the extension's record
    assert sorted(extensions.install_problems()) == ["pins-numpy", "pins-transformers"]


def test_run_pip_in_the_app_refuses_a_conflict_with_a_clear_message(offline_pip, data_dir, capsys):
    """supermerger's tab calls launch.run_pip("install diffusers==...") while the app runs."""
    before = versions()
    with pytest.raises(RuntimeError) as refused:
        launch.run_pip("install diffusers==0.31.0", "diffusers ver 0.31.0")
    message = str(refused.value)
    assert message.startswith("An extension asked pip for packages that conflict with Atelier's, so nothing was installed: "
                              f"diffusers==0.31.0 conflicts with Atelier's diffusers=={importlib.metadata.version('diffusers')}")
    assert versions() == before
    assert "trying again" not in capsys.readouterr().out


@pytest.mark.skipif(shutil.which("git") is None, reason="needs git")
def test_install_from_url_shows_the_conflict(offline_pip, data_dir, tmp_path):
    from modules import ui_extensions

    installer = "import launch\nlaunch.run_pip('install \"numpy<2\"', 'mediapipe needs numpy<2')\n"
    repo = make_extension_repo(tmp_path / "src" / "url-ext", {"install.py": installer})
    _, table, message = ui_extensions.install_from_url("", repo.url, "")
    assert message.startswith(f"Installed into {data_dir / 'extensions' / 'url-ext'}.")
    assert "The install of url-ext did not complete" in message and "numpy&lt;2 conflicts with Atelier&#x27;s numpy" in message
    assert "<tr class='extension-install-problem' data-extension='url-ext'>" in table

    ui_extensions.delete("url-ext")
    assert "url-ext" not in extensions.install_problems()


def write_wheel(folder: Path, name: str, version: str, metadata: list[str]) -> None:
    """A pure-Python wheel with only its metadata: enough for pip to resolve it."""
    info = f"{name}-{version}.dist-info"
    files = {f"{name}/__init__.py": "",
             f"{info}/METADATA": "\n".join(["Metadata-Version: 2.1", f"Name: {name}", f"Version: {version}", *metadata]) + "\n",
             f"{info}/WHEEL": "Wheel-Version: 1.0\nGenerator: tests\nRoot-Is-Purelib: true\nTag: py3-none-any\n",
             f"{info}/RECORD": ""}
    with zipfile.ZipFile(folder / f"{name}-{version}-py3-none-any.whl", "w") as wheel:
        for path, text in files.items():
            wheel.writestr(path, text)


def test_a_conflict_from_an_optional_extra_installs_the_package_without_it(offline_pip, data_dir, tmp_path, monkeypatch):
    """sd-dynamic-prompts asks for dynamicprompts[magicprompt], whose extra needs transformers<5: the library itself
    still installs (here: a dry run from a local wheel), so the extension works without that optional feature."""
    links = tmp_path / "links"
    links.mkdir()
    write_wheel(links, "tinyprompts", "0.31.0", ["Provides-Extra: magic", 'Requires-Dist: numpy<2; extra == "magic"'])
    monkeypatch.setenv("PIP_FIND_LINKS", str(links))
    add_extension(data_dir, "extra-pins", DYNAMIC_PROMPTS_STYLE.replace("'transformers<5'", "'tinyprompts[magic]~=0.31.0'"))

    launch.run_extensions_installers(cmd_opts.ui_settings_file)
    problem = extensions.install_problems()["extra-pins"]
    assert "numpy<2 (needed by tinyprompts[magic] 0.31.0) conflicts with Atelier's numpy" in problem
    assert "tinyprompts==0.31.0 was installed instead, without the optional extras that need them" in problem


def fake_distribution(site: Path, name: str, version: str, requires: tuple[str, ...] = ()) -> None:
    """An installed distribution as importlib.metadata sees it (a .dist-info folder), replacing other versions of it."""
    for old in site.glob(f"{name}-*.dist-info"):
        shutil.rmtree(old)
    info = site / f"{name}-{version}.dist-info"
    info.mkdir(parents=True)
    lines = ["Metadata-Version: 2.1", f"Name: {name}", f"Version: {version}", *(f"Requires-Dist: {r}" for r in requires)]
    (info / "METADATA").write_text("\n".join(lines) + "\n", encoding="utf8")


@pytest.fixture
def tiny_core(tmp_path, monkeypatch):
    """A core of two tiny fake distributions: requirements.txt pins tinycore==1.0, which needs tinydep>=2 (as gradio needs
    pydantic>=2); pip is a stub that reinstalls what requirements.txt and the given pins ask for, as pip would."""
    site = tmp_path / "site"
    fake_distribution(site, "tinycore", "1.0", ("tinydep>=2",))
    fake_distribution(site, "tinydep", "2.0")
    monkeypatch.syspath_prepend(str(site))
    requirements = tmp_path / "requirements.txt"
    requirements.write_text("tinycore==1.0\n", encoding="utf8")
    monkeypatch.setattr(launch_utils, "requirements_file", str(requirements))
    pip_commands = []
    real_run = launch_utils.run

    def run(command, *args, **kwargs):
        if f'-m pip install -r "{requirements}"' not in str(command):
            return real_run(command, *args, **kwargs)
        pip_commands.append(command)
        fake_distribution(site, "tinycore", "1.0", ("tinydep>=2",))
        if '"tinydep>=2"' in command:
            fake_distribution(site, "tinydep", "2.0")
        return ""

    monkeypatch.setattr(launch_utils, "run", run)
    return site, requirements, pip_commands


def test_pins_changed_by_an_installer_are_restored_before_anything_else(offline_pip, data_dir, tiny_core, monkeypatch,
                                                                        capsys):
    site, requirements, pip_commands = tiny_core
    bypass = (  # what `pip install --isolated tinydep==1.0` (no constraints read) would leave behind
        "import pathlib, shutil, sys\n"
        f"site = pathlib.Path({str(site)!r})\n"
        "shutil.rmtree(site / 'tinydep-2.0.dist-info')\n"
        "(site / 'tinydep-1.0.dist-info').mkdir()\n"
        "(site / 'tinydep-1.0.dist-info' / 'METADATA').write_text('Metadata-Version: 2.1\\nName: tinydep\\nVersion: 1.0\\n')\n"
    )
    add_extension(data_dir, "a-bypass", bypass)
    add_extension(data_dir, "b-later", "import importlib.metadata as m\nprint('later sees tinydep', m.version('tinydep'))\n")
    monkeypatch.setenv("PYTHONPATH", str(site))  # installers run in their own Python: they see the same packages

    launch.run_extensions_installers(cmd_opts.ui_settings_file)
    out = capsys.readouterr().out

    assert pip_commands == [f'"{sys.executable}" -m pip install -r "{requirements}" "tinydep>=2" --prefer-binary']
    assert importlib.metadata.version("tinydep") == "2.0"
    assert ("install.py of extension a-bypass changed packages Atelier needs (tinydep 1.0, Atelier needs tinydep>=2 "
            "(needed by tinycore)); restoring them with pip install -r") in out
    assert extensions.install_problems() == {
        "a-bypass": "it changed packages Atelier needs, which were restored: tinydep 1.0, Atelier needs tinydep>=2 (needed by tinycore)"}
    assert "later sees tinydep 2.0" in out  # the next installer already found the core restored


def test_a_start_restores_pins_broken_before_it(data_dir, tiny_core, monkeypatch, capsys):
    """A core broken by an install made before these constraints existed is put back before anything imports it."""
    site, requirements, pip_commands = tiny_core
    fake_distribution(site, "tinydep", "1.0")
    monkeypatch.setattr(launch_utils, "check_torch_cuda", lambda: None)
    parse(["--data-dir", str(data_dir), "--skip-python-version-check"])

    launch.prepare_environment()
    assert pip_commands == [f'"{sys.executable}" -m pip install -r "{requirements}" "tinydep>=2" --prefer-binary']
    assert importlib.metadata.version("tinydep") == "2.0"
    assert "Packages Atelier needs were changed (tinydep 1.0, Atelier needs tinydep>=2 (needed by tinycore)); restoring them" \
        in capsys.readouterr().out

    fake_distribution(site, "tinydep", "1.0")
    parse(["--data-dir", str(data_dir), "--skip-python-version-check", "--skip-install"])
    launch.prepare_environment()
    assert len(pip_commands) == 1
    assert "WARNING: installed packages do not match" in capsys.readouterr().out
