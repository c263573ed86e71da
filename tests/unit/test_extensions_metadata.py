"""metadata.ini of extensions: parsing, the requirement warnings, and the script load order it gives
(modules.extensions.ExtensionMetadata, check_requirements, script_load_order)."""
from __future__ import annotations

import logging
from pathlib import Path

import pytest

from modules import extensions
from modules.shared_options import opts
from tests.unit.test_extensions import ext_dirs  # noqa: F401  (a fixture)


def make_ext(root: Path, name: str, scripts: list[str], metadata: str | None = None) -> Path:
    folder = root / name
    (folder / "scripts").mkdir(parents=True)
    for script in scripts:
        (folder / "scripts" / script).write_text("")
    if metadata is not None:
        (folder / "metadata.ini").write_text(metadata, encoding="utf8")
    return folder


def ordered(tmp_path) -> list[str]:
    """script_load_order of a built-in script x.py followed by the active extensions' scripts, as "folder/file" names."""
    extensions.list_extensions()
    root = tmp_path / "app"
    files = [extensions.ScriptFile(str(root), "x.py", str(root / "scripts" / "x.py"))]
    files += [f for ext in extensions.active() for f in ext.list_files("scripts", ".py")]
    result = extensions.script_load_order(files)
    assert sorted(result) == sorted(files)  # nothing lost, nothing added
    return [f.filename if f.basedir == str(root) else f"{Path(f.basedir).name}/{f.filename}" for f in result]


def two_extensions(user: Path, alpha: str | None = None, beta: str | None = None) -> None:
    make_ext(user, "alpha", ["a1.py", "a2.py"], alpha)
    make_ext(user, "beta", ["b1.py", "b2.py"], beta)


def test_metadata_sections_are_parsed_lower_cased(ext_dirs):
    folder = make_ext(ext_dirs[0], "Meta", ["s.py"], (
        "[Extension]\nName = Fancy Name\nRequires = Other-Ext, third|Fourth\n\n"
        "[scripts/s.py]\nRequires = other-ext/x.py\nBefore = Beta  gamma\nAfter = delta,\n\n"
        "[scripts]\nAfter = epsilon\n\n"
        "[callbacks/meta/s.py/on_ui_tabs]\nBefore = other-ext/x.py/on_ui_tabs\nAfter = 100%done\n"))
    metadata = extensions.Extension("Meta", str(folder)).metadata
    assert metadata.canonical_name == "meta"
    assert metadata.config.get("Extension", "Name") == "Fancy Name"
    assert metadata.requires == ["other-ext", "third|fourth"]
    assert metadata.get_script_requirements("Requires", "scripts/s.py") == ["other-ext/x.py"]
    assert metadata.get_script_requirements("Before", "scripts/s.py") == ["beta", "gamma"]
    assert metadata.get_script_requirements("After", "scripts/s.py", "scripts") == ["delta", "epsilon"]
    assert metadata.get_script_requirements("Before", "callbacks/meta/s.py/on_ui_tabs") == ["other-ext/x.py/on_ui_tabs"]
    assert metadata.get_script_requirements("After", "callbacks/meta/s.py/on_ui_tabs") == ["100%done"]
    assert metadata.get_script_requirements("After", "scripts/none.py") == []


@pytest.mark.parametrize("text", ["Requires = x\n", "[Extension]\nRequires = a\nRequires = b\n", "[Extension\n"])
def test_a_broken_metadata_file_is_empty_with_a_warning(ext_dirs, caplog, text):
    folder = make_ext(ext_dirs[0], "broken", [], text)
    metadata = extensions.Extension("broken", str(folder)).metadata
    assert metadata.config.sections() == [] and metadata.requires == []
    assert "Ignoring metadata.ini of extension broken, which cannot be read" in caplog.text


def test_a_missing_metadata_file_is_empty_and_quiet(ext_dirs, caplog):
    folder = make_ext(ext_dirs[0], "plain", [])
    with caplog.at_level(logging.DEBUG, logger="modules.extensions"):
        assert extensions.Extension("plain", str(folder)).metadata.config.sections() == []
    assert caplog.text == ""


def test_without_metadata_the_order_is_kept(ext_dirs, tmp_path):
    two_extensions(ext_dirs[0])
    assert ordered(tmp_path) == ["x.py", "alpha/a1.py", "alpha/a2.py", "beta/b1.py", "beta/b2.py"]


@pytest.mark.parametrize(("alpha", "beta", "expected"), [
    ("[scripts/a1.py]\nAfter = beta/b2.py\n", None, ["x.py", "beta/b2.py", "alpha/a1.py", "alpha/a2.py", "beta/b1.py"]),
    ("[scripts]\nAfter = beta\n", None, ["x.py", "beta/b1.py", "beta/b2.py", "alpha/a1.py", "alpha/a2.py"]),
    (None, "[scripts/b1.py]\nBefore = alpha\n", ["x.py", "beta/b1.py", "alpha/a1.py", "alpha/a2.py", "beta/b2.py"]),
    (None, "[scripts/b2.py]\nBefore = alpha/a2.py\n", ["x.py", "alpha/a1.py", "beta/b2.py", "alpha/a2.py", "beta/b1.py"]),
    ("[scripts/a2.py]\nRequires = beta/b1.py\n", None, ["x.py", "alpha/a1.py", "beta/b1.py", "alpha/a2.py", "beta/b2.py"]),
    ("[scripts/a1.py]\nRequires = gamma|beta\n", None, ["x.py", "beta/b1.py", "beta/b2.py", "alpha/a1.py", "alpha/a2.py"]),
    ("[Extension]\nRequires = beta\n", None, ["x.py", "beta/b1.py", "beta/b2.py", "alpha/a1.py", "alpha/a2.py"]),
    ("[scripts/a1.py]\nAfter = x.py, alpha/a2.py\n", None, ["x.py", "alpha/a2.py", "alpha/a1.py", "beta/b1.py", "beta/b2.py"]),
    ("[scripts]\nAfter = alpha, nothing-here\n", None, ["x.py", "alpha/a1.py", "alpha/a2.py", "beta/b1.py", "beta/b2.py"]),
])
def test_before_after_and_requires_order_scripts_across_extensions(ext_dirs, tmp_path, caplog, alpha, beta, expected):
    two_extensions(ext_dirs[0], alpha, beta)
    assert ordered(tmp_path) == expected
    assert "requires" not in caplog.text and "circle" not in caplog.text


def test_a_missing_requirement_warns_and_keeps_the_order(ext_dirs, tmp_path, caplog, monkeypatch):
    two_extensions(ext_dirs[0], "[scripts/a1.py]\nRequires = gamma, beta/b9.py\n[scripts/a2.py]\nRequires = beta\n")
    monkeypatch.setitem(opts.data, "disabled_extensions", ["beta"])
    assert ordered(tmp_path) == ["x.py", "alpha/a1.py", "alpha/a2.py"]
    assert 'Script "alpha/a1.py" of extension alpha requires "gamma" to be loaded, but it is not.' in caplog.text
    assert 'Script "alpha/a1.py" of extension alpha requires "beta/b9.py" to be loaded, but it is not.' in caplog.text
    assert 'Script "alpha/a2.py" of extension alpha requires "beta" to be loaded, but it is not.' in caplog.text


def test_a_cycle_warns_naming_the_extensions_and_keeps_their_order(ext_dirs, tmp_path, caplog):
    two_extensions(ext_dirs[0], "[scripts/a1.py]\nAfter = beta/b1.py\n[scripts/a2.py]\nAfter = beta/b2.py\n",
                   "[scripts/b1.py]\nAfter = alpha/a1.py\n")
    # a1 <-> b1 is a circle and keeps its order; a2 after b2 still holds
    assert ordered(tmp_path) == ["x.py", "alpha/a1.py", "beta/b2.py", "alpha/a2.py", "beta/b1.py"]
    assert ("Extensions alpha, beta ask for a load order that goes in a circle (alpha/a1.py, beta/b1.py): "
            "these scripts load in their usual order.") in caplog.text


def test_builtin_extension_scripts_are_named_builtin(ext_dirs, tmp_path):
    user, builtin = ext_dirs
    make_ext(builtin, "Lora", ["lora_script.py"])
    make_ext(user, "alpha", ["a1.py"], "[scripts/a1.py]\nBefore = builtin/lora/lora_script.py\nAfter = x.py\n")
    make_ext(user, "beta", ["b1.py"], "[scripts/b1.py]\nBefore = lora\n")
    assert ordered(tmp_path) == ["x.py", "alpha/a1.py", "beta/b1.py", "Lora/lora_script.py"]


def test_listing_warns_about_required_extensions_not_installed_or_disabled(ext_dirs, caplog, monkeypatch):
    user = ext_dirs[0]
    make_ext(user, "alpha", [], "[Extension]\nRequires = beta, gamma, Delta|beta, Epsilon\n")
    make_ext(user, "beta", [])
    make_ext(user, "epsilon", [])
    make_ext(user, "off", [], "[Extension]\nRequires = nothing\n")
    monkeypatch.setitem(opts.data, "disabled_extensions", ["beta", "off"])
    extensions.list_extensions()
    assert 'Extension "alpha" requires "gamma", which is not installed.' in caplog.text
    assert caplog.text.count('Extension "alpha" requires "beta", which is disabled.') == 2  # "delta|beta" is beta
    assert "epsilon" not in caplog.text and "nothing" not in caplog.text  # installed; a disabled extension's needs
