"""Config states (Extensions tab, Backup/Restore): saving the webui's and extensions' commits, restoring extensions and
the webui from a saved state, and the tab's functions (modules.config_states, modules.ui_extensions)."""
from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path

import gradio as gr
import pytest

from modules import call_queue, config_states, extensions, paths_internal, ui_extensions
from modules.shared_cmd_options import cmd_opts
from modules.shared_options import opts
from tests.fixtures.extensions import GIT_IDENTITY, GitRepo, head_of, make_extension_repo
from tests.unit.test_extensions import ext_dirs  # noqa: F401  (a fixture)

pytestmark = pytest.mark.skipif(shutil.which("git") is None, reason="needs git")
REFUSED = "extension access disabled because of command line flags"
ENTRY_KEYS = ["name", "path", "enabled", "is_builtin", "remote", "commit_hash", "commit_date", "branch", "have_info_from_repo"]


@pytest.fixture
def env(ext_dirs, tmp_path, monkeypatch):
    """ext_dirs, plus config_states/ and config.json in tmp_path; the webui is a clone made here."""
    user, _ = ext_dirs
    monkeypatch.setattr(paths_internal, "config_states_dir", str(tmp_path / "config_states"))
    monkeypatch.setattr(cmd_opts, "freeze_settings", False)
    monkeypatch.setattr(cmd_opts, "ui_settings_file", str(tmp_path / "config.json"))
    webui_source = make_extension_repo(tmp_path / "src" / "webui", {"webui.py": "v1\n"})
    webui = tmp_path / "app"
    webui_source.git("clone", "-q", webui_source.url, str(webui))
    monkeypatch.setattr(paths_internal, "script_path", str(webui))
    return {"user": user, "webui": webui, "webui_source": webui_source, "tmp": tmp_path}


def clone(repo: GitRepo, user: Path, name: str) -> Path:
    repo.git("clone", "-q", repo.url, str(user / name))
    return user / name


def extension_repos(env) -> dict[str, GitRepo]:
    """alpha and beta: clones of repositories with one commit each."""
    repos = {name: make_extension_repo(env["tmp"] / "src" / name, {"v.txt": "1"}) for name in ("alpha", "beta")}
    for name, repo in repos.items():
        clone(repo, env["user"], name)
    return repos


def git_in(path: Path, *args: str) -> None:
    subprocess.run(["git", *GIT_IDENTITY, *args], cwd=path, check=True, capture_output=True)


def read_settings(env) -> dict:
    return json.loads((env["tmp"] / "config.json").read_text())


def test_save_writes_the_state_in_a1111_shape(env, monkeypatch):
    repos = extension_repos(env)
    (env["user"] / "plain").mkdir()
    builtin = env["tmp"] / "extensions-builtin" / "Lora"
    builtin.mkdir(parents=True)
    monkeypatch.setitem(opts.data, "disabled_extensions", ["beta"])

    path = Path(config_states.save_config_state("my/state"))
    assert path.parent == env["tmp"] / "config_states"
    assert re.fullmatch(r"\d{4}_\d\d_\d\d-\d\d_\d\d_\d\d_my_state\.json", path.name)
    assert [p.name for p in path.parent.iterdir()] == [path.name]  # no temporary file left
    state = json.loads(path.read_text(encoding="utf8"))
    assert list(state) == ["name", "created_at", "webui", "extensions"]
    assert state["name"] == "my/state" and isinstance(state["created_at"], float)
    webui = env["webui_source"]
    assert state["webui"] == {"remote": webui.url, "commit_hash": webui.head(), "branch": "main",
                              "commit_date": int(webui.git("log", "-1", "--format=%ct").strip())}
    assert list(state["extensions"]) == ["alpha", "beta", "plain", "Lora"]
    alpha = state["extensions"]["alpha"]
    assert list(alpha) == ENTRY_KEYS
    assert {k: alpha[k] for k in ENTRY_KEYS if k != "commit_date"} == {
        "name": "alpha", "path": str(env["user"] / "alpha"), "enabled": True, "is_builtin": False,
        "remote": repos["alpha"].url, "commit_hash": repos["alpha"].head(), "branch": "main", "have_info_from_repo": True}
    assert state["extensions"]["beta"]["enabled"] is False
    assert state["extensions"]["beta"]["commit_hash"] == repos["beta"].head()
    assert (state["extensions"]["plain"]["remote"], state["extensions"]["plain"]["commit_hash"]) == (None, "")
    assert state["extensions"]["Lora"]["is_builtin"] is True

    [(name, listed)] = config_states.list_config_states().items()
    assert name == config_states.display_name(state) and name.startswith("my/state: ")
    assert listed == {**state, "filepath": str(path)}


def test_list_is_newest_first_and_skips_files_that_are_not_states(env, caplog):
    folder = env["tmp"] / "config_states"
    folder.mkdir()
    for filename, created, name in (("a.json", 100.0, "old"), ("b.json", 300.0, "new"), ("c.json", 200.0, "mid"),
                                    ("d.json", 300.0, "new")):
        (folder / filename).write_text(json.dumps({"name": name, "created_at": created, "extensions": {}}))
    (folder / "broken.json").write_text("{not json")
    (folder / "no-time.json").write_text('{"name": "x"}')
    (folder / "notes.txt").write_text("not a state")

    states = config_states.list_config_states()
    new = config_states.display_name({"name": "new", "created_at": 300.0})
    assert list(states) == [new, f"{new} (d.json)", config_states.display_name({"name": "mid", "created_at": 200.0}),
                            config_states.display_name({"name": "old", "created_at": 100.0})]
    assert [Path(s["filepath"]).name for s in states.values()] == ["b.json", "d.json", "c.json", "a.json"]
    assert "Skipping config state" in caplog.text and "broken.json" in caplog.text and "no-time.json" in caplog.text
    shutil.rmtree(folder)
    assert config_states.list_config_states() == {}


def test_restore_moves_extensions_back_and_disables_as_saved(env, monkeypatch):
    repos = extension_repos(env)
    monkeypatch.setitem(opts.data, "disabled_extensions", ["beta"])
    state = json.loads(Path(config_states.save_config_state("before")).read_text())
    saved_alpha = repos["alpha"].head()

    newer = repos["alpha"].commit({"v.txt": "2"}, "second")
    extensions.update_extension("alpha")
    assert head_of(env["user"] / "alpha") == newer
    (env["user"] / "alpha" / "v.txt").write_text("local edit")  # discarded, as A1111's reset does
    clone(make_extension_repo(env["tmp"] / "src" / "gamma"), env["user"], "gamma")
    monkeypatch.setitem(opts.data, "disabled_extensions", [])

    results = {r.name: r for r in config_states.restore_extension_config(state)}
    assert head_of(env["user"] / "alpha") == saved_alpha
    assert (env["user"] / "alpha" / "v.txt").read_text() == "1"
    assert (results["alpha"].status, results["alpha"].enabled) == ("restored", True)
    assert (results["alpha"].old_commit, results["alpha"].new_commit) == (newer, saved_alpha)
    assert (results["beta"].status, results["beta"].enabled, results["beta"].message) == (
        "unchanged", False, "already at the saved commit")
    assert (results["gamma"].status, results["gamma"].enabled) == ("not in state", False)
    assert opts.disabled_extensions == ["beta", "gamma"]
    assert read_settings(env)["disabled_extensions"] == ["beta", "gamma"]
    assert [e.name for e in extensions.active()] == ["alpha"]


def test_a_deleted_extension_is_reported_and_the_rest_restored(env):
    repos = extension_repos(env)
    state = json.loads(Path(config_states.save_config_state("")).read_text())
    assert state["name"] == "Config"
    saved_alpha = repos["alpha"].head()
    repos["alpha"].commit({"v.txt": "2"}, "second")
    extensions.update_extension("alpha")
    shutil.rmtree(env["user"] / "beta")

    results = {r.name: r for r in config_states.restore_extension_config(state)}
    assert head_of(env["user"] / "alpha") == saved_alpha and results["alpha"].status == "restored"
    beta = results["beta"]
    assert (beta.status, beta.enabled, beta.new_commit) == ("missing", False, repos["beta"].head())
    assert beta.message == f"extensions/beta is not there; install it from {repos['beta'].url} to restore it"
    assert not (env["user"] / "beta").exists()


def test_a_failing_extension_is_left_as_it_was_and_the_others_restored(env, caplog):
    repos = extension_repos(env)
    state = json.loads(Path(config_states.save_config_state("s")).read_text())
    saved_beta = repos["beta"].head()
    newer = {name: repo.commit({"v.txt": "2"}, "second") for name, repo in repos.items()}
    for name in repos:
        extensions.update_extension(name)
    state["extensions"]["alpha"]["commit_hash"] = "0123456789abcdef0123456789abcdef01234567"

    results = {r.name: r for r in config_states.restore_extension_config(state)}
    assert results["alpha"].status == "error"
    assert results["alpha"].message.startswith("Commit 0123456789abcdef0123456789abcdef01234567 is not in the repository")
    assert head_of(env["user"] / "alpha") == newer["alpha"] and (env["user"] / "alpha" / "v.txt").read_text() == "2"
    assert results["alpha"].enabled is True  # enabled as saved even though its commit could not be restored
    assert head_of(env["user"] / "beta") == saved_beta and results["beta"].status == "restored"
    assert "Could not restore extension alpha" in caplog.text

    state["extensions"]["alpha"]["commit_hash"] = "--upload-pack=touch pwned"
    [alpha] = [r for r in config_states.restore_extension_config(state) if r.name == "alpha"]
    assert (alpha.status, alpha.message) == ("error", "Not a commit hash: '--upload-pack=touch pwned'")
    assert head_of(env["user"] / "alpha") == newer["alpha"]


def test_a_folder_without_its_own_git_is_never_reset(env):
    """git run in such a folder would act on a repository around it: here extensions/ itself is one."""
    around = GitRepo(env["user"])
    first = around.commit({"plain/file.txt": "1"}, "first")
    second = around.commit({"plain/file.txt": "2"}, "second")
    state = json.loads(Path(config_states.save_config_state("s")).read_text())
    assert state["extensions"]["plain"]["commit_hash"] == ""
    state["extensions"]["plain"]["commit_hash"] = first
    [plain] = config_states.restore_extension_config(state)
    assert (plain.status, plain.message) == ("error", f"Not a git checkout: {env['user'] / 'plain'}")
    assert head_of(env["user"]) == second and (env["user"] / "plain" / "file.txt").read_text() == "2"


def test_restore_works_offline_when_the_commit_is_already_there(env):
    repos = extension_repos(env)
    state = json.loads(Path(config_states.save_config_state("s")).read_text())
    saved = repos["alpha"].head()
    repos["alpha"].commit({"v.txt": "2"}, "second")
    extensions.update_extension("alpha")
    shutil.rmtree(repos["alpha"].path)  # the remote is gone
    [alpha] = [r for r in config_states.restore_extension_config(state) if r.name == "alpha"]
    assert alpha.status == "restored" and head_of(env["user"] / "alpha") == saved


def test_bad_states_and_frozen_settings_are_refused_before_anything_moves(env, monkeypatch):
    repos = extension_repos(env)
    state = json.loads(Path(config_states.save_config_state("s")).read_text())
    newer = repos["alpha"].commit({"v.txt": "2"}, "second")
    extensions.update_extension("alpha")
    for bad in ({}, {"extensions": []}, {"extensions": {"alpha": "x"}}, []):
        with pytest.raises(ValueError, match="This config state has no extensions to restore"):
            config_states.restore_extension_config(bad)
    monkeypatch.setattr(cmd_opts, "freeze_settings", True)
    with pytest.raises(RuntimeError, match="--freeze-settings"):
        config_states.restore_extension_config(state)
    assert head_of(env["user"] / "alpha") == newer


def test_webui_is_reset_only_with_the_flag_and_never_over_local_changes(env):
    state = json.loads(Path(config_states.save_config_state("s")).read_text())
    source, webui = env["webui_source"], env["webui"]
    saved = source.head()
    (webui / "webui.py").write_text("v2\n")
    git_in(webui, "commit", "-q", "-am", "local upgrade")
    newer = head_of(webui)

    with pytest.raises(ValueError, match="pass reset_app_repo=True"):
        config_states.restore_webui_config(state)
    assert head_of(webui) == newer
    with pytest.raises(ValueError, match="no webui commit"):
        config_states.restore_webui_config({"webui": {"commit_hash": None}}, reset_app_repo=True)

    (webui / "webui.py").write_text("uncommitted\n")
    with pytest.raises(ValueError, match="has local changes that restoring the webui would discard"):
        config_states.restore_webui_config(state, reset_app_repo=True)
    assert head_of(webui) == newer and (webui / "webui.py").read_text() == "uncommitted\n"

    git_in(webui, "checkout", "--", "webui.py")
    message = config_states.restore_webui_config(state, reset_app_repo=True)
    assert message == f"Webui moved from {newer[:8]} to {saved[:8]}; restart to run it."
    assert head_of(webui) == saved and (webui / "webui.py").read_text() == "v1\n"


def test_everything_is_refused_when_listening_beyond_localhost(env, monkeypatch):
    repos = extension_repos(env)
    ui_extensions.save_config_state("kept")
    [name] = config_states.list_config_states()
    state = config_states.list_config_states()[name]
    newer = repos["alpha"].commit({"v.txt": "2"}, "second")
    extensions.update_extension("alpha")
    monkeypatch.setattr(cmd_opts, "listen", True)

    calls = [lambda: ui_extensions.save_config_state("more"), lambda: ui_extensions.restore_config_state(True, name, "both"),
             lambda: config_states.save_config_state("more"), lambda: config_states.restore_extension_config(state),
             lambda: config_states.restore_webui_config(state, reset_app_repo=True)]
    for call in calls:
        with pytest.raises(extensions.ExtensionAccessError, match=REFUSED):
            call()
    *_, message = call_queue.wrap_gradio_call(ui_extensions.save_config_state, extra_outputs=[gr.skip()])("more")
    assert REFUSED in message and "class='error'" in message
    assert list(config_states.list_config_states()) == [name]
    assert head_of(env["user"] / "alpha") == newer


def test_the_tab_saves_shows_and_restores(env):
    repos = extension_repos(env)
    dropdown, message = ui_extensions.save_config_state("tab state")
    [name] = config_states.list_config_states()
    path = config_states.list_config_states()[name]["filepath"]
    assert dropdown["choices"] == ["Current", name] and dropdown["value"] == name
    assert message == f"Saved the current webui and extension state to {path}"
    assert ui_extensions.config_state_choices() == ["Current", name]
    assert ui_extensions.refresh_config_states("gone")["value"] == "Current"
    assert ui_extensions.config_state_view(name)["extensions"]["alpha"]["commit_hash"] == repos["alpha"].head()
    current = ui_extensions.config_state_view("Current")
    assert current["name"] == "Current" and current["webui"]["commit_hash"] == env["webui_source"].head()
    with pytest.raises(gr.Error, match="No saved config state named 'nope'"):
        ui_extensions.config_state_view("nope")

    saved = repos["alpha"].head()
    repos["alpha"].commit({"v.txt": "2"}, "second")
    extensions.update_extension("alpha")
    assert ui_extensions.restore_config_state(True, "Current", "extensions")[1] == "Already using the current config state."
    assert ui_extensions.restore_config_state(False, name, "extensions")[1] == "Cancelled."
    assert head_of(env["user"] / "alpha") != saved
    with pytest.raises(ValueError, match="extensions, webui or both"):
        ui_extensions.restore_config_state(True, name, "everything")

    table, result = ui_extensions.restore_config_state(True, name, "extensions")
    assert head_of(env["user"] / "alpha") == saved
    assert "<tr><td>alpha</td><td>restored</td>" in result and f"<td>{saved[:8]}</td><td>yes</td>" in result
    assert "Restart the UI" in result and "Webui moved" not in result
    assert f"<td>{saved[:8]}</td>" in table  # the Installed table shows the restored version
    _, result = ui_extensions.restore_config_state(True, name, "both")
    assert f"Webui moved from {env['webui_source'].head()[:8]} to {env['webui_source'].head()[:8]}" in result
