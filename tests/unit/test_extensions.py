"""modules.extensions: listing and activating extensions, installing from a file:// git repository, updating, deleting,
the access rule for servers reachable from the network, install.py and preload.py at start."""
from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

import launch
from modules import extensions, paths_internal
from modules.shared_cmd_options import cmd_opts
from modules.shared_options import opts
from tests.fixtures.extensions import GitRepo, head_of, make_extension_repo

pytestmark = pytest.mark.skipif(shutil.which("git") is None, reason="needs git")
ROOT = Path(paths_internal.script_path)
INSTALLER = (
    "import os, launch\n"
    "assert callable(launch.run_pip) and callable(launch.is_installed) and callable(launch.git_clone) and callable(launch.run)\n"
    "with open('installed.txt', 'a') as f:\n"  # relative: install.py runs in its extension's folder
    "    f.write('ran\\n')\n"
)


@pytest.fixture
def ext_dirs(tmp_path, monkeypatch):
    """An empty extensions/ and extensions-builtin/ in tmp_path, default flags and settings, nothing listed."""
    user, builtin = tmp_path / "extensions", tmp_path / "extensions-builtin"
    user.mkdir()
    monkeypatch.setattr(paths_internal, "extensions_dir", str(user))
    monkeypatch.setattr(paths_internal, "extensions_builtin_dir", str(builtin))
    monkeypatch.setattr(paths_internal, "data_path", str(tmp_path))  # install records and pip constraints go to tmp/
    for flag in ("listen", "share", "enable_insecure_extension_access", "disable_all_extensions", "disable_extra_extensions"):
        monkeypatch.setattr(cmd_opts, flag, False)
    monkeypatch.setattr(cmd_opts, "server_name", None)
    monkeypatch.setitem(opts.data, "disabled_extensions", [])
    monkeypatch.setitem(opts.data, "disable_all_extensions", "none")
    monkeypatch.setattr(extensions, "extensions", [])
    return user, builtin


def names(exts) -> list[str]:
    return [ext.name for ext in exts]


def test_list_and_active_honour_disabled_list_setting_and_flags(ext_dirs, monkeypatch):
    user, builtin = ext_dirs
    for name in ("b-ext", "a-ext", ".hidden"):
        (user / name).mkdir()
    (user / "not-a-folder.txt").write_text("x")
    (builtin / "Lora").mkdir(parents=True)
    monkeypatch.setitem(opts.data, "disabled_extensions", ["b-ext"])

    extensions.list_extensions()
    assert names(extensions.extensions) == ["a-ext", "b-ext", "Lora"]
    assert [(e.enabled, e.is_builtin) for e in extensions.extensions] == [(True, False), (False, False), (True, True)]
    assert names(extensions.active()) == ["a-ext", "Lora"]
    assert extensions.extensions[2].canonical_name == "lora"

    monkeypatch.setitem(opts.data, "disable_all_extensions", "extra")
    assert names(extensions.active()) == ["Lora"]
    monkeypatch.setitem(opts.data, "disable_all_extensions", "all")
    assert names(extensions.active()) == []
    monkeypatch.setitem(opts.data, "disable_all_extensions", "none")
    monkeypatch.setattr(cmd_opts, "disable_extra_extensions", True)
    assert names(extensions.active()) == ["Lora"]
    monkeypatch.setattr(cmd_opts, "disable_all_extensions", True)
    assert names(extensions.active()) == []


def test_active_lists_the_folders_when_nothing_was_listed(ext_dirs):
    (ext_dirs[0] / "only").mkdir()
    assert names(extensions.active()) == ["only"]


def test_list_files(ext_dirs):
    folder = ext_dirs[0] / "ext"
    (folder / "scripts" / "sub.py").mkdir(parents=True)  # a folder named like a script is not a file
    for name in ("b.py", "a.py", "c.PY", "notes.txt"):
        (folder / "scripts" / name).write_text("")
    ext = extensions.Extension("ext", str(folder))
    files = ext.list_files("scripts", ".py")
    assert [f.filename for f in files] == ["a.py", "b.py", "c.PY"]  # A1111 compares the suffix lower-cased
    assert files[0] == (str(folder), "a.py", str(folder / "scripts" / "a.py"))
    assert files[0].basedir == str(folder) and files[0].path.endswith("a.py")
    assert ext.list_files("javascript", ".js") == []


def test_install_from_file_url_lands_at_the_commit_and_runs_install_py(ext_dirs, tmp_path):
    repo = make_extension_repo(tmp_path / "source" / "my-ext.git", {"install.py": INSTALLER, "scripts/s.py": "x = 1\n"})
    target = extensions.install_extension_from_url(None, repo.url)

    assert target == str(ext_dirs[0] / "my-ext")
    assert head_of(Path(target)) == repo.head()
    assert (Path(target) / "scripts" / "s.py").read_text() == "x = 1\n"
    assert (Path(target) / "installed.txt").read_text() == "ran\n"  # A1111 runs install.py right after installing
    assert os.listdir(ext_dirs[0] / extensions.TMP_DIRNAME) == []
    ext = extensions.find("my-ext")
    ext.read_info_from_repo()
    assert (ext.remote, ext.branch, ext.commit_hash, ext.version) == (repo.url, "main", repo.head(), repo.head()[:8])
    assert isinstance(ext.commit_date, int) and ext.commit_date > 1_600_000_000
    assert names(extensions.active()) == ["my-ext"]


def test_install_a_branch_into_a_named_folder(ext_dirs, tmp_path):
    repo = make_extension_repo(tmp_path / "src")
    main_head = repo.head()
    repo.checkout_new_branch("dev")
    dev_head = repo.commit({"dev.txt": "dev"}, "dev work")
    target = extensions.install_extension_from_url("custom name", repo.url, branch_name=" dev ")
    assert Path(target).name == "custom name"
    assert head_of(Path(target)) == dev_head != main_head
    ext = extensions.find("custom name")
    ext.read_info_from_repo()
    assert ext.branch == "dev"


def test_existing_folder_and_same_url_are_refused(ext_dirs, tmp_path):
    repo = make_extension_repo(tmp_path / "src" / "thing")
    extensions.install_extension_from_url(None, repo.url)
    with pytest.raises(ValueError, match="Extension directory already exists: .*thing"):
        extensions.install_extension_from_url(None, repo.url)
    with pytest.raises(ValueError, match="Extension with this URL is already installed: thing"):
        extensions.install_extension_from_url("other", repo.url + ".git")
    (ext_dirs[0] / "manual").mkdir()
    with pytest.raises(ValueError, match="already exists"):
        extensions.install_extension_from_url("manual", "https://example.com/x/manual.git")


@pytest.mark.parametrize(("dirname", "url", "message"), [
    (None, "", "No URL specified"),
    (None, "   ", "No URL specified"),
    (None, "not a url", "Not a git repository URL: not a url"),
    (None, "--upload-pack=touch /tmp/x", "Not a git repository URL"),
    (None, "ftp://example.com/repo.git", "Not a git repository URL"),
    ("../outside", "https://example.com/a/b.git", "Invalid local directory name: '../outside'"),
    (".tmp", "https://example.com/a/b.git", "Invalid local directory name"),
    ("a/b", "https://example.com/a/b.git", "Invalid local directory name"),
])
def test_bad_urls_and_names_are_refused(ext_dirs, dirname, url, message):
    with pytest.raises(ValueError, match=message):
        extensions.install_extension_from_url(dirname, url)
    assert os.listdir(ext_dirs[0]) == []


def test_accepted_url_forms():
    for url in ("https://github.com/a/b", "http://host/b.git", "ssh://git@host/b.git", "git@github.com:a/b.git",
                "file:///tmp/b"):
        assert extensions.URL_PATTERN.match(url), url
    assert extensions.dirname_from_url("git@github.com:a/some-ext.git") == "some-ext"
    assert extensions.dirname_from_url("https://github.com/a/some-ext/") == "some-ext"


def test_a_failed_clone_leaves_no_folder(ext_dirs, tmp_path):
    missing = (tmp_path / "no-such-repo").as_uri()
    with pytest.raises(extensions.GitError, match="git clone failed: .*no-such-repo"):
        extensions.install_extension_from_url(None, missing)
    assert not (ext_dirs[0] / "no-such-repo").exists()
    assert os.listdir(ext_dirs[0] / extensions.TMP_DIRNAME) == []

    repo = make_extension_repo(tmp_path / "src" / "real")
    with pytest.raises(extensions.GitError, match="nope"):
        extensions.install_extension_from_url(None, repo.url, branch_name="nope")
    assert not (ext_dirs[0] / "real").exists()


def test_check_updates_and_update_pull_a_new_commit(ext_dirs, tmp_path):
    repo = make_extension_repo(tmp_path / "src" / "upd", {"v.txt": "1"})
    target = Path(extensions.install_extension_from_url(None, repo.url))
    [checked] = extensions.check_updates()
    assert (checked.name, checked.status, checked.can_update) == ("upd", "latest", False)

    new_head = repo.commit({"v.txt": "2"}, "second")
    [checked] = extensions.check_updates()
    assert (checked.status, checked.can_update) == ("new commits", True)
    assert (target / "v.txt").read_text() == "1"  # checking changes nothing in the work tree

    ext = extensions.update_extension("upd")
    assert head_of(target) == new_head and (target / "v.txt").read_text() == "2"
    assert (ext.commit_hash, ext.version) == (new_head, new_head[:8])
    [checked] = extensions.check_updates()
    assert checked.status == "latest"


def test_update_follows_the_installed_branch(ext_dirs, tmp_path):
    repo = make_extension_repo(tmp_path / "src" / "br")
    repo.checkout_new_branch("dev")
    repo.commit({"d.txt": "1"}, "dev 1")
    target = Path(extensions.install_extension_from_url(None, repo.url, branch_name="dev"))
    dev_2 = repo.commit({"d.txt": "2"}, "dev 2")
    extensions.update_extension("br")
    assert head_of(target) == dev_2


def test_update_errors(ext_dirs, tmp_path):
    with pytest.raises(ValueError, match="Extension not found: ghost"):
        extensions.update_extension("ghost")
    repo = make_extension_repo(tmp_path / "src" / "gone")
    extensions.install_extension_from_url(None, repo.url)
    shutil.rmtree(repo.path)
    [checked] = extensions.check_updates()
    assert (checked.status, checked.can_update) == ("unknown (remote error)", False)
    with pytest.raises(extensions.GitError, match="git fetch failed"):
        extensions.update_extension("gone")


def test_a_folder_without_git_has_no_remote(ext_dirs):
    (ext_dirs[0] / "plain").mkdir()
    extensions.list_extensions()
    ext = extensions.find("plain")
    ext.read_info_from_repo()
    assert (ext.remote, ext.commit_hash, ext.version, ext.have_info_from_repo) == (None, "", "", True)
    assert extensions.check_updates() == []


def test_delete_removes_only_extension_folders(ext_dirs, tmp_path):
    repo = make_extension_repo(tmp_path / "src" / "del")
    target = Path(extensions.install_extension_from_url(None, repo.url))
    outside = tmp_path / "outside"
    outside.mkdir()
    for name in ("../outside", str(outside), "", ".tmp", "del/..", "."):
        with pytest.raises(ValueError, match="Not an extension folder inside"):
            extensions.delete_extension(name)
    assert outside.is_dir()
    with pytest.raises(ValueError, match="Extension not found: ghost"):
        extensions.delete_extension("ghost")

    assert extensions.delete_extension("del") == str(target)
    assert not target.exists()
    assert names(extensions.extensions) == []


@pytest.mark.parametrize(("flags", "local"), [
    ({}, True),
    ({"server_name": "127.0.0.1"}, True),
    ({"server_name": "localhost"}, True),
    ({"server_name": "::1"}, True),
    ({"listen": True}, False),
    ({"share": True}, False),
    ({"server_name": "0.0.0.0"}, False),
    ({"server_name": "my-host.lan"}, False),
    ({"server_name": "127.0.0.2"}, False),  # another loopback address: as any name but the loopback host
    ({"server_name": "[::1]"}, True),
    ({"server_name": "127.1"}, False),
])
def test_access_follows_where_the_server_listens(ext_dirs, monkeypatch, flags, local):
    for key, value in flags.items():
        monkeypatch.setattr(cmd_opts, key, value)
    assert extensions.is_local_only() is local
    if local:
        extensions.check_access()
    else:
        with pytest.raises(extensions.ExtensionAccessError, match="extension access disabled because of command line flags"):
            extensions.check_access()
        monkeypatch.setattr(cmd_opts, "enable_insecure_extension_access", True)
        extensions.check_access()


def test_listening_on_all_interfaces_refuses_install_update_delete(ext_dirs, tmp_path, monkeypatch):
    repo = make_extension_repo(tmp_path / "src" / "locked")
    extensions.install_extension_from_url(None, repo.url)
    monkeypatch.setattr(cmd_opts, "server_name", "0.0.0.0")
    calls = [lambda: extensions.install_extension_from_url("again", repo.url), lambda: extensions.update_extension("locked"),
             lambda: extensions.delete_extension("locked"), lambda: extensions.check_updates()]
    for call in calls:
        with pytest.raises(extensions.ExtensionAccessError, match="--enable-insecure-extension-access"):
            call()
    assert sorted(os.listdir(ext_dirs[0])) == [".tmp", "locked"]
    monkeypatch.setattr(cmd_opts, "enable_insecure_extension_access", True)
    extensions.delete_extension("locked")
    assert not (ext_dirs[0] / "locked").exists()


def test_installers_run_at_start_in_their_folder_and_a_failure_is_reported_by_name(ext_dirs, tmp_path, capsys):
    user = ext_dirs[0]
    for name in ("first", "second"):
        (user / name).mkdir()
        (user / name / "install.py").write_text(INSTALLER + "print('cwd=' + os.getcwd())\n")
    (user / "broken").mkdir()
    (user / "broken" / "install.py").write_text("import launch\nraise RuntimeError('installer exploded')\n")
    (user / "off").mkdir()
    (user / "off" / "install.py").write_text(INSTALLER)
    settings = tmp_path / "config.json"
    settings.write_text('{"disabled_extensions": ["off"]}')

    launch.run_extensions_installers(str(settings))
    out = capsys.readouterr()
    for name in ("first", "second"):
        assert (user / name / "installed.txt").read_text() == "ran\n"
        assert f"cwd={user / name}" in out.out
    assert not (user / "off" / "installed.txt").exists()
    assert "Error running install.py for extension broken" in out.err and "installer exploded" in out.err


def test_preload_adds_flags_and_a_broken_preload_is_logged(ext_dirs, caplog):
    user = ext_dirs[0]
    (user / "good").mkdir()
    (user / "good" / "preload.py").write_text(
        "def preload(parser):\n    parser.add_argument('--good-ext-level', type=int, default=1)\n")
    (user / "bad").mkdir()
    (user / "bad" / "preload.py").write_text("def preload(parser):\n    raise ValueError('bad preload')\n")
    parser = argparse.ArgumentParser()
    extensions.preload_extensions(parser, extensions.find_extensions([]))
    assert parser.parse_args(["--good-ext-level", "5"]).good_ext_level == 5
    assert "Error running preload.py of extension bad" in caplog.text and "bad preload" in caplog.text


def test_launch_parses_extension_flags_after_preload(tmp_path):
    """In a fresh process (the flag joins the global parser): known after preload.py ran, unknown ones still fail."""
    folder = tmp_path / "extensions" / "flagged"
    folder.mkdir(parents=True)
    (folder / "preload.py").write_text("def preload(parser):\n    parser.add_argument('--flagged-mode', default='off')\n")
    code = "import sys, launch; launch.parse_with_extension_flags(sys.argv[1:]); print(launch.args.flagged_mode)"
    base = [sys.executable, "-c", code, "--data-dir", str(tmp_path)]
    result = subprocess.run([*base, "--flagged-mode", "on"], cwd=ROOT, capture_output=True, text=True, timeout=60, check=False)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "on"
    result = subprocess.run([*base, "--no-such-flag"], cwd=ROOT, capture_output=True, text=True, timeout=60, check=False)
    assert result.returncode == 2 and "--no-such-flag" in result.stderr
    (tmp_path / "config.json").write_text('{"disabled_extensions": ["flagged"]}')
    result = subprocess.run([*base, "--flagged-mode", "on"], cwd=ROOT, capture_output=True, text=True, timeout=60, check=False)
    assert result.returncode == 2 and "--flagged-mode" in result.stderr  # a disabled extension adds no flags


def test_fixture_repo_branches(tmp_path):
    repo = GitRepo(tmp_path / "r")
    first = repo.commit({"a.txt": "1"}, "one")
    assert repo.url.startswith("file://") and len(first) == 40 and repo.head() == first


def test_the_controlnet_extension_is_not_loaded_since_controlnet_is_built_in(ext_dirs, tmp_path, caplog):
    user = ext_dirs[0]
    for name in ("sd-webui-controlnet", "other"):
        (user / name / "scripts").mkdir(parents=True)
        (user / name / "install.py").write_text(INSTALLER)
    with caplog.at_level("INFO", logger="modules.extensions"):
        extensions.list_extensions()
    assert names(extensions.active()) == ["other"]
    assert 'Extension "sd-webui-controlnet" is not loaded: ControlNet is built in' in caplog.text
    settings = tmp_path / "config.json"
    settings.write_text("{}")
    launch.run_extensions_installers(str(settings))  # its install.py (pydantic<=1.10.17) never runs
    assert not (user / "sd-webui-controlnet" / "installed.txt").exists()
    assert (user / "other" / "installed.txt").exists()
