"""The Extensions tab's functions (Installed, Available, Install from URL), the page assets and localizations that
extensions add, and /sdapi/v1/extensions — without a browser."""
from __future__ import annotations

import json
import os
import re
import shutil
from pathlib import Path

import gradio as gr
import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient

from modules import call_queue, extensions, localization, paths_internal, ui_extensions
from modules.api.api import Api
from modules.shared_cmd_options import cmd_opts
from modules.shared_options import opts
from tests.fixtures.extensions import head_of, make_extension_repo

pytestmark = pytest.mark.skipif(shutil.which("git") is None, reason="needs git")
REFUSED = "extension access disabled because of command line flags"


@pytest.fixture
def ext_dirs(tmp_path, monkeypatch):
    user = tmp_path / "extensions"
    user.mkdir()
    monkeypatch.setattr(paths_internal, "extensions_dir", str(user))
    monkeypatch.setattr(paths_internal, "extensions_builtin_dir", str(tmp_path / "extensions-builtin"))
    for flag in ("listen", "share", "enable_insecure_extension_access", "disable_all_extensions", "disable_extra_extensions",
                 "freeze_settings"):
        monkeypatch.setattr(cmd_opts, flag, False)
    monkeypatch.setattr(cmd_opts, "server_name", None)
    monkeypatch.setattr(cmd_opts, "ui_settings_file", str(tmp_path / "config.json"))
    monkeypatch.setattr(cmd_opts, "localizations_dir", str(tmp_path / "localizations"))
    for key, value in (("disabled_extensions", []), ("disable_all_extensions", "none"), ("localization", "None")):
        monkeypatch.setitem(opts.data, key, value)
    monkeypatch.setattr(extensions, "extensions", [])
    return user


def button(func, outputs: int):
    """The function as its button calls it: errors become the message in the last output."""
    return call_queue.wrap_gradio_call(func, extra_outputs=[gr.skip()] * (outputs - 1))


def test_install_from_url_form_then_table_then_delete(ext_dirs, tmp_path):
    repo = make_extension_repo(tmp_path / "src" / "tab-ext")
    url_box, table, message = button(ui_extensions.install_from_url, 3)("", repo.url, "")
    assert url_box == ""
    assert message == f"Installed into {ext_dirs / 'tab-ext'}. Use the Installed tab to restart."
    assert head_of(ext_dirs / "tab-ext") == repo.head()
    row = re.search(r"<tr data-extension='tab-ext'>.*?</tr>", table).group(0)
    assert "<input type='checkbox' name='enable_tab-ext' checked>tab-ext" in row
    assert f"<td>{repo.url}</td><td>main</td><td>{repo.head()[:8]}</td>" in row
    assert "extensionsDelete(&quot;tab-ext&quot;)" in row

    *_, error = button(ui_extensions.install_from_url, 3)("", repo.url, "")
    assert "Extension directory already exists" in error and "class='error'" in error
    *_, error = button(ui_extensions.install_from_url, 3)("", "no url", "")
    assert "Not a git repository URL: no url" in error
    *_, error = button(ui_extensions.install_from_url, 3)("", (tmp_path / "missing").as_uri(), "")
    assert "git clone failed" in error and not (ext_dirs / "missing").exists()

    table, message = button(ui_extensions.delete, 2)("tab-ext")
    assert message.startswith("Deleted ") and not (ext_dirs / "tab-ext").exists()
    assert "No extensions installed" in table


def test_check_for_updates_marks_the_row_and_apply_updates_and_disables(ext_dirs, tmp_path):
    first = make_extension_repo(tmp_path / "src" / "first")
    second = make_extension_repo(tmp_path / "src" / "second")
    for repo in (first, second):
        extensions.install_extension_from_url(None, repo.url)
    new_head = first.commit({"new.txt": "2"}, "second commit")

    table, _ = ui_extensions.check_for_updates()
    assert "<label><input type='checkbox' name='update_first' checked>new commits</label>" in table
    assert "<td class='extension_status'>latest</td>" in table  # second

    ui_extensions.apply_changes(json.dumps(["second"]), json.dumps(["first"]), "none")
    assert head_of(ext_dirs / "first") == new_head
    assert opts.disabled_extensions == ["second"]
    assert json.loads(Path(cmd_opts.ui_settings_file).read_text())["disabled_extensions"] == ["second"]
    assert [ext.name for ext in extensions.active()] == ["first"]
    assert "name='enable_second'>second" in ui_extensions.extension_table()  # unchecked

    ui_extensions.apply_changes("[]", "[]", "extra")
    assert extensions.active() == []
    assert "change it to \"none\"" in ui_extensions.disable_all_notice()
    with pytest.raises(ValueError, match="JSON list of extension names"):
        ui_extensions.apply_changes('{"a": 1}', "[]", "none")
    with pytest.raises(ValueError, match="must be none, extra or all"):
        ui_extensions.apply_changes("[]", "[]", "some")


def test_listening_on_all_interfaces_refuses_the_tab_and_the_api(ext_dirs, tmp_path, monkeypatch):
    repo = make_extension_repo(tmp_path / "src" / "guarded")
    extensions.install_extension_from_url(None, repo.url)
    monkeypatch.setattr(cmd_opts, "listen", True)

    *_, error = button(ui_extensions.install_from_url, 3)("", make_extension_repo(tmp_path / "src" / "new").url, "")
    assert REFUSED in error and not (ext_dirs / "new").exists()
    *_, error = button(ui_extensions.delete, 2)("guarded")
    assert REFUSED in error and (ext_dirs / "guarded").is_dir()
    *_, error = button(ui_extensions.check_for_updates, 2)()
    assert REFUSED in error
    with pytest.raises(gr.Error, match=REFUSED):
        ui_extensions.apply_from_page("[]", '["guarded"]', "none")
    assert opts.disabled_extensions == []

    app = FastAPI()
    Api(app, call_queue.queue_lock)
    client = TestClient(app)
    for path, body in (("install", {"url": repo.url, "dirname": "again"}), ("update", {"name": "guarded"}),
                       ("delete", {"name": "guarded"})):
        response = client.post(f"/sdapi/v1/extensions/{path}", json=body)
        assert response.status_code == 403, path
        assert REFUSED in response.json()["detail"]
    assert (ext_dirs / "guarded").is_dir() and not (ext_dirs / "again").exists()
    assert [item["name"] for item in client.get("/sdapi/v1/extensions").json()] == ["guarded"]  # reading stays allowed


def test_api_lists_installs_updates_and_deletes(ext_dirs, tmp_path):
    repo = make_extension_repo(tmp_path / "src" / "api-ext")
    (ext_dirs / "not-a-clone").mkdir()
    client = TestClient(_api_app())
    response = client.post("/sdapi/v1/extensions/install", json={"url": repo.url})
    assert response.status_code == 200, response.text
    assert response.json() == {"name": "api-ext", "path": str(ext_dirs / "api-ext")}

    [item] = client.get("/sdapi/v1/extensions").json()  # only git clones, as A1111
    assert item == {"name": "api-ext", "remote": repo.url, "branch": "main", "commit_hash": repo.head(),
                    "version": repo.head()[:8], "commit_date": item["commit_date"], "enabled": True}
    assert isinstance(item["commit_date"], int)

    new_head = repo.commit({"x.txt": "x"}, "more")
    response = client.post("/sdapi/v1/extensions/update", json={"name": "api-ext"})
    assert response.json() == {"name": "api-ext", "commit_hash": new_head, "version": new_head[:8]}

    response = client.post("/sdapi/v1/extensions/install", json={"url": "ftp://nope"})
    assert response.status_code == 422 and "Not a git repository URL" in response.json()["detail"]
    response = client.post("/sdapi/v1/extensions/delete", json={"name": "../extensions"})
    assert response.status_code == 422 and "Not an extension folder" in response.json()["detail"]
    response = client.post("/sdapi/v1/extensions/delete", json={"name": "api-ext"})
    assert response.status_code == 200 and not (ext_dirs / "api-ext").exists()


def _api_app() -> FastAPI:
    app = FastAPI()
    Api(app, call_queue.queue_lock)
    return app


INDEX = {
    "tags": {"script": "a script", "ads": "has ads"},
    "extensions": [
        {"name": "Older Thing", "url": "https://example.com/a/older.git", "description": "does old things",
         "tags": ["script"], "added": "2023-01-01"},
        {"name": "Newer Thing", "url": "https://example.com/a/newer", "description": "does new things",
         "tags": ["script", "ads"], "added": "2024-01-01"},
        {"name": "Tab Maker", "url": "https://example.com/a/tabs", "description": "adds a tab", "tags": ["tab"],
         "added": "2023-06-01"},
        {"name": "no url"},
    ],
}


def test_available_index_from_a_file_path_or_file_url(ext_dirs, tmp_path):
    path = tmp_path / "index.json"
    path.write_text(json.dumps(INDEX))
    assert ui_extensions.load_index(str(path)) == INDEX
    index, table, tags_update, result = ui_extensions.load_available(path.as_uri(), [], 0)
    assert index == INDEX and result == ""
    assert tags_update["choices"] == ["script", "ads", "localization", "installed", "tab"]
    names = re.findall(r"target='_blank'>([^<]+)</a>", table)
    assert names == ["Newer Thing", "Tab Maker", "Older Thing"]  # newest first
    assert "extensionsInstallFromIndex(this, &quot;https://example.com/a/tabs&quot;)" in table

    assert re.findall(r"target='_blank'>([^<]+)</a>", ui_extensions.available_table(INDEX, ["ads"], 2)) == \
        ["Older Thing", "Tab Maker"]  # a-z, the ads one hidden
    searched = ui_extensions.available_table(INDEX, [], 0, "A TAB")
    assert re.findall(r"target='_blank'>([^<]+)</a>", searched) == ["Tab Maker"]
    assert "<p>Extension hidden: 2</p>" in searched


def test_available_marks_installed_and_installs_from_the_index(ext_dirs, tmp_path):
    repo = make_extension_repo(tmp_path / "src" / "indexed")
    index = {"extensions": [{"name": "Indexed", "url": repo.url, "tags": []}]}
    table = ui_extensions.available_table(index, [], 0)
    assert "class='extension-install'" in table
    available, installed, message = ui_extensions.install_from_index(repo.url, index, [], 0, "")
    assert (ext_dirs / "indexed").is_dir() and message.startswith("Installed into ")
    assert "<button disabled>Installed</button>" in available and "data-extension='indexed'" in installed
    assert "Extension hidden: 1" in ui_extensions.available_table(index, ["installed"], 0)


@pytest.mark.parametrize(("content", "message"), [
    (None, "Could not read the extension index file"),
    ("{broken", "is not valid JSON"),
    ('{"tags": {}}', 'is not an extension index: it needs a list named "extensions"'),
])
def test_bad_index_files(tmp_path, content, message):
    path = tmp_path / "index.json"
    if content is not None:
        path.write_text(content)
    with pytest.raises(ValueError, match=message):
        ui_extensions.load_index(str(path))


def test_offline_index_says_so():
    with pytest.raises(ValueError, match=r"Could not load the extension index from http://127.0.0.1:9/index.json: .*Are you offline\? "
                                         r"A local index file \(a path or a file:// URL\) works too."):
        ui_extensions.load_index("http://127.0.0.1:9/index.json")
    *_, error = button(ui_extensions.load_available, 4)("http://127.0.0.1:9/index.json", [], 0)
    assert "Are you offline?" in error
    with pytest.raises(ValueError, match="No index URL specified"):
        ui_extensions.load_index(" ")


def write_assets(folder: Path, marker: str) -> None:
    (folder / "javascript").mkdir(parents=True)
    (folder / "javascript" / "b.js").write_text(f"window.{marker}B = 2;")
    (folder / "javascript" / "a.js").write_text(f"window.{marker}A = 1; // '</script>' in a string")
    (folder / "javascript" / "notes.txt").write_text("not a script")
    (folder / "style.css").write_text(f"#{marker} {{ color: rgb(1, 2, 3); }}")


def test_page_assets_of_active_extensions_in_order(ext_dirs, monkeypatch):
    write_assets(ext_dirs / "one", "one")
    write_assets(ext_dirs / "two", "two")
    write_assets(ext_dirs / "off", "off")
    monkeypatch.setitem(opts.data, "disabled_extensions", ["off"])
    extensions.list_extensions()
    assets = ui_extensions.extension_page_assets()
    scripts = re.findall(r"<script>\n(.*?)\n</script>", assets["head"], re.DOTALL)
    assert [s.split(" = ")[0] for s in scripts] == ["window.oneA", "window.oneB", "window.twoA", "window.twoB"]
    assert "'<\\/script>'" in scripts[0]
    assert "#one { color: rgb(1, 2, 3); }" in assets["css"] and "#two" in assets["css"] and "#off" not in assets["css"]
    assert assets["css"].index("#one") < assets["css"].index("#two")


def test_module_scripts_load_from_their_file_url(ext_dirs):
    """controlnet's index.mjs imports './controlnet_unit.mjs': a module loads from its file= URL (as in A1111), so the
    browser resolves such imports beside it; an inlined module would look for them at the page's root."""
    from modules import ui_files

    (ext_dirs / "mod" / "javascript").mkdir(parents=True)
    (ext_dirs / "mod" / "javascript" / "index.mjs").write_text("import { unit } from './unit.mjs';\nwindow.u = unit;")
    (ext_dirs / "mod" / "javascript" / "unit.mjs").write_text("export const unit = 1;")
    extensions.list_extensions()
    sources = re.findall(r"<script type='module' src='file=([^?']+)\?\d+'></script>", ui_extensions.extension_page_assets()["head"])
    assert [os.path.basename(s) for s in sources] == ["index.mjs", "unit.mjs"]
    assert all(ui_files.resolve(source) == str((ext_dirs / "mod" / "javascript" / os.path.basename(source)).resolve())
               for source in sources)  # the file= route serves them


def test_page_assets_follow_the_ui_module(ext_dirs):
    from modules import ui

    write_assets(ext_dirs / "styled", "styled")
    extensions.list_extensions()
    assets = ui.page_assets()
    assert assets["head"].index("function onUiLoaded") < assets["head"].index("window.styledA = 1")  # ours first
    assert assets["css"].rstrip().endswith("#styled { color: rgb(1, 2, 3); }")  # theirs last, so theirs win


def test_localizations_from_the_install_and_extensions(ext_dirs, tmp_path, monkeypatch):
    top = tmp_path / "localizations"
    top.mkdir()
    (top / "fr_FR.json").write_text(json.dumps({"Generate": "Générer"}), encoding="utf8")
    (top / "de_DE.json").write_text(json.dumps({"Generate": "Erzeugen"}), encoding="utf8")
    (top / "README.md").write_text("no")
    (ext_dirs / "ext-de" / "localizations").mkdir(parents=True)
    (ext_dirs / "ext-de" / "localizations" / "de_DE.json").write_text(json.dumps({"Generate": "Los</script>"}))
    (ext_dirs / "ext-de" / "localizations" / "broken.json").write_text("[1, 2]")
    extensions.list_extensions()

    localization.list_localizations(str(top))
    assert sorted(localization.localizations) == ["broken", "de_DE", "fr_FR"]
    assert localization.localizations["de_DE"] == str(ext_dirs / "ext-de" / "localizations" / "de_DE.json")
    assert localization.localization_js("fr_FR") == 'window.localization = {"Generate": "Générer"};'
    assert localization.localization_js("de_DE") == 'window.localization = {"Generate": "Los<\\/script>"};'
    assert localization.localization_js("broken") == "" and localization.localization_js("None") == ""
    assert opts.data_labels["localization"].component_args()["choices"] == ["None", "broken", "de_DE", "fr_FR"]

    monkeypatch.setitem(opts.data, "localization", "fr_FR")
    assert ui_extensions.extension_page_assets()["head"].startswith(
        '<script>\nwindow.localization = {"Generate": "Générer"};\n</script>')


def test_tab_builds_with_a1111_element_ids(ext_dirs, tmp_path):
    extensions.install_extension_from_url(None, make_extension_repo(tmp_path / "src" / "shown").url)
    with gr.Blocks() as demo, gr.Tab("Extensions", elem_id="tab_extensions"):
        ui_extensions.create_ui()
    ids = {block.elem_id for block in demo.blocks.values()}
    for elem_id in ("tabs_extensions", "extensions_apply", "extensions_check_updates", "extensions_disable_all",
                    "extensions_installed_html", "extensions_index_url", "extensions_search", "install_extension_button",
                    "extensions_install_url", "extensions_install_branch", "extensions_install_dirname",
                    "extensions_install_button", "extension_install_result", "extensions_delete_button"):
        assert elem_id in ids, elem_id
    index_url = next(block for block in demo.blocks.values() if block.elem_id == "extensions_index_url")
    assert index_url.value == ui_extensions.DEFAULT_INDEX_URL
    table = next(block for block in demo.blocks.values() if block.elem_id == "extensions_installed_html")
    assert "data-extension='shown'" in table.value  # the table function ran for this page
