"""Callback order as A1111 1.8+ has it: A1111's callback names, registration order by default, the extensions'
metadata.ini `[callbacks/<name>]` Before/After, the user's `prioritized_callbacks_<category>` setting, the cached order,
the same for the scripts' hooks (`script_<hook>`), and Settings → Callbacks."""
from __future__ import annotations

import logging
import os
import textwrap

import pytest

from modules import extensions, script_callbacks, scripts, ui_settings
from modules.shared_options import opts

REGISTERS = """
from modules import script_callbacks
script_callbacks.on_model_loaded(lambda seen: seen.append({tag!r}))
"""

HOOKED = """
from modules import scripts


class {cls}(scripts.Script):
    def title(self):
        return {cls!r}

    def show(self, is_img2img):
        return scripts.AlwaysVisible

    def process(self, p, *args):
        p.append({cls!r})
"""


@pytest.fixture(autouse=True)
def clean(monkeypatch):
    monkeypatch.setattr(extensions, "extensions", [])
    script_callbacks.clear_callbacks()
    yield
    script_callbacks.clear_callbacks()


def add_extension(tmp_path, name: str, metadata: str = "", files: dict[str, str] | None = None) -> extensions.Extension:
    """A folder extension `name` with its metadata.ini and scripts, listed (not loaded)."""
    root = tmp_path / name
    (root / "scripts").mkdir(parents=True)
    (root / "metadata.ini").write_text(textwrap.dedent(metadata), encoding="utf8")
    for filename, text in (files or {}).items():
        (root / "scripts" / filename).write_text(text, encoding="utf8")
    ext = extensions.Extension(name, str(root))
    extensions.extensions.append(ext)
    return ext


def load(ext: extensions.Extension, filename: str):
    return scripts.load_module(os.path.join(ext.path, "scripts", filename))


def two_extensions(tmp_path, alpha_metadata: str = "", beta_metadata: str = ""):
    """Alpha's callback registered first, then Beta's, then one of this file's."""
    alpha = add_extension(tmp_path, "Alpha", alpha_metadata, {"a.py": REGISTERS.format(tag="alpha")})
    beta = add_extension(tmp_path, "beta", beta_metadata, {"b.py": REGISTERS.format(tag="beta")})
    load(alpha, "a.py")
    load(beta, "b.py")
    script_callbacks.on_model_loaded(lambda seen: seen.append("base"), name="mine")


def fired() -> list[str]:
    seen: list[str] = []
    script_callbacks.model_loaded_callback(seen)
    return seen


def test_callbacks_have_a1111_names_and_run_in_registration_order(tmp_path):
    two_extensions(tmp_path)
    script_callbacks.on_model_loaded(lambda seen: seen.append("again"), name="mine")
    script_callbacks.on_model_loaded(lambda seen: seen.append("plain"))
    script_callbacks.on_model_loaded(lambda seen: seen.append("plain again"))
    assert [c.name for c in script_callbacks.callback_map["callbacks_model_loaded"]] == [
        "alpha/a.py/model_loaded", "beta/b.py/model_loaded", "base/test_callback_order.py/model_loaded/mine",
        "base/test_callback_order.py/model_loaded/mine-1", "base/test_callback_order.py/model_loaded",
        "base/test_callback_order.py/model_loaded-1"]
    assert fired() == ["alpha", "beta", "base", "again", "plain", "plain again"]


def test_metadata_before_and_after_reorder_across_extensions(tmp_path):
    two_extensions(tmp_path, beta_metadata="""
        [callbacks/beta/b.py/model_loaded]
        Before = alpha/a.py/model_loaded
        """)
    assert fired() == ["beta", "alpha", "base"]


def test_metadata_after_a_later_callback_pulls_it_up_as_a1111_does(tmp_path):
    two_extensions(tmp_path, alpha_metadata="""
        [callbacks/alpha/a.py/model_loaded]
        After = base/test_callback_order.py/model_loaded/mine, no/such/callback
        """)
    assert fired() == ["base", "alpha", "beta"]  # A1111's depth-first sort: what alpha waits for runs just before it


def test_a_cycle_warns_and_keeps_registration_order(tmp_path, caplog):
    two_extensions(tmp_path, alpha_metadata="""
        [callbacks/alpha/a.py/model_loaded]
        After = beta/b.py/model_loaded
        """, beta_metadata="""
        [callbacks/beta/b.py/model_loaded]
        After = alpha/a.py/model_loaded
        """)
    with caplog.at_level(logging.WARNING, logger="modules.script_callbacks"):
        assert fired() == ["alpha", "beta", "base"]
    [record] = caplog.records
    assert record.getMessage() == ("metadata.ini Before/After of model_loaded callbacks go in a circle "
                                   "(alpha/a.py/model_loaded, beta/b.py/model_loaded): they run in registration order.")


def test_an_extension_cannot_order_another_extensions_callback(tmp_path, caplog):
    two_extensions(tmp_path, alpha_metadata="""
        [callbacks/beta/b.py/model_loaded]
        After = base/test_callback_order.py/model_loaded/mine
        """)
    with caplog.at_level(logging.WARNING, logger="modules.script_callbacks"):
        assert fired() == ["alpha", "beta", "base"]
    assert [r.getMessage() for r in caplog.records] == [
        "Callback order section for extension alpha is referencing the wrong extension: callbacks/beta/b.py/model_loaded"]


def test_prioritized_setting_puts_the_named_callbacks_first_in_its_order(tmp_path, monkeypatch):
    two_extensions(tmp_path, beta_metadata="""
        [callbacks/beta/b.py/model_loaded]
        Before = alpha/a.py/model_loaded
        """)
    assert fired() == ["beta", "alpha", "base"]
    monkeypatch.setitem(opts.data, "prioritized_callbacks_model_loaded", [
        "base/test_callback_order.py/model_loaded/mine", "alpha/a.py/model_loaded", "gone/x.py/model_loaded"])
    assert fired() == ["base", "alpha", "beta"]
    unsorted = script_callbacks.ordered_callbacks("model_loaded", enable_user_sort=False)
    assert [c.name for c in unsorted] == ["beta/b.py/model_loaded", "alpha/a.py/model_loaded",
                                          "base/test_callback_order.py/model_loaded/mine"]


def test_order_is_cached_until_a_callback_is_registered_or_removed(tmp_path, monkeypatch):
    two_extensions(tmp_path)
    first = script_callbacks.ordered_callbacks("model_loaded")
    sorts = []
    real_sort = script_callbacks.sort_callbacks
    monkeypatch.setattr(script_callbacks, "sort_callbacks", lambda *a, **k: sorts.append(a[0]) or real_sort(*a, **k))
    assert script_callbacks.ordered_callbacks("model_loaded") is first
    assert fired() == ["alpha", "beta", "base"] and sorts == []

    def late(seen):
        seen.append("late")

    script_callbacks.on_model_loaded(late)
    assert fired() == ["alpha", "beta", "base", "late"] and sorts == ["model_loaded"]
    script_callbacks.remove_callbacks_for_function(late)
    assert fired() == ["alpha", "beta", "base"] and sorts == ["model_loaded"] * 2


def runner_with_scripts(tmp_path, metadata: str = "") -> scripts.ScriptRunner:
    """Always-on scripts First (extension one) and Second (extension two), both defining process()."""
    one = add_extension(tmp_path, "one", "", {"first.py": HOOKED.format(cls="First")})
    two = add_extension(tmp_path, "two", metadata, {"second.py": HOOKED.format(cls="Second")})
    data = []
    for ext, filename, cls in ((one, "first.py", "First"), (two, "second.py", "Second")):
        module = load(ext, filename)
        data.append(scripts.ScriptClassData(getattr(module, cls), os.path.join(ext.path, "scripts", filename), ext.path,
                                            module))
    runner = scripts.ScriptRunner()
    scripts_data = list(scripts.scripts_data)
    scripts.scripts_data[:] = data
    try:
        runner.initialize_scripts(is_img2img=False)
    finally:
        scripts.scripts_data[:] = scripts_data
    return runner


class Job(list):
    """A stand-in for p: the scripts append their names; no script takes arguments."""

    script_args = ()


def test_script_hooks_follow_metadata_and_the_priority_setting(tmp_path, monkeypatch):
    runner = runner_with_scripts(tmp_path, metadata="""
        [callbacks/two/second.py/script_process/Second]
        Before = one/first.py/script_process/First
        """)
    assert [c.name for c in runner.create_ordered_callbacks_list("process", enable_user_sort=False)] == [
        "two/second.py/script_process/Second", "one/first.py/script_process/First"]
    assert runner.create_ordered_callbacks_list("postprocess") == []  # neither script defines it
    job = Job()
    runner.process(job)
    assert job == ["Second", "First"]
    monkeypatch.setitem(opts.data, "prioritized_callbacks_script_process", ["one/first.py/script_process/First"])
    job = Job()
    runner.process(job)
    assert job == ["First", "Second"]


def test_settings_list_each_category_with_callbacks_in_its_default_order(tmp_path, monkeypatch):
    two_extensions(tmp_path, beta_metadata="""
        [callbacks/beta/b.py/model_loaded]
        Before = alpha/a.py/model_loaded
        """)
    runner = runner_with_scripts(tmp_path)
    monkeypatch.setattr(scripts, "scripts_txt2img", runner)
    monkeypatch.setattr(scripts, "scripts_img2img", scripts.ScriptRunner())
    monkeypatch.setitem(opts.data, "prioritized_callbacks_model_loaded", ["alpha/a.py/model_loaded"])
    options = ui_settings.callback_order_options()
    assert [key for key in options if key.startswith("prioritized")] == [
        "prioritized_callbacks_model_loaded", "prioritized_callbacks_script_process"]
    loaded = options["prioritized_callbacks_model_loaded"]
    assert loaded.default == [] and loaded.label == "model_loaded callback priority"
    assert loaded.section == ("callbacks", "Callbacks") and loaded.category_id == "system"
    names = ["beta/b.py/model_loaded", "alpha/a.py/model_loaded", "base/test_callback_order.py/model_loaded/mine"]
    assert loaded.component_args == {"choices": names, "multiselect": True}  # the default order, not the user's
    assert "default order: " + ", ".join(names) in loaded.comment_after
    assert options["prioritized_callbacks_script_process"].component_args["choices"] == [
        "one/first.py/script_process/First", "two/second.py/script_process/Second"]
    monkeypatch.setattr(opts, "data_labels", dict(opts.data_labels))
    opts.data_labels["prioritized_callbacks_ui_tabs"] = loaded  # left from a page built when ui_tabs had callbacks
    ui_settings.register_callback_order_options()
    assert "prioritized_callbacks_ui_tabs" not in opts.data_labels
    assert opts.data_labels["prioritized_callbacks_model_loaded"].component_args["choices"] == names
