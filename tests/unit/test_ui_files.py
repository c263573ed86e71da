"""`/file=<path>` (A1111's URLs for the page's scripts): only files inside the extension folders, the outputs,
javascript/, the webui root's tmp/ and --gradio-allowed-path folders; `..` and symlinks never lead out; under
--gradio-auth only a logged-in page reads them."""
import os

import pytest

from modules import extensions, paths_internal, ui_files
from modules.shared_cmd_options import cmd_opts
from modules.shared_options import opts


@pytest.fixture
def root(tmp_path, monkeypatch):
    """A data folder with an extension, an output folder, an allowed folder, and a secret beside them."""
    data = tmp_path / "data"
    ext = data / "extensions" / "my-ext"
    (ext / "tags").mkdir(parents=True)
    (ext / "tags" / "tags.csv").write_text("red,0\n")
    (data / "outputs" / "txt2img-images").mkdir(parents=True)
    (data / "outputs" / "txt2img-images" / "00001.png").write_bytes(b"png")
    (data / "config.json").write_text("{}")
    (tmp_path / "secret.txt").write_text("secret")
    (tmp_path / "allowed").mkdir()
    (tmp_path / "allowed" / "a.txt").write_text("a")
    monkeypatch.setattr(paths_internal, "extensions_dir", str(data / "extensions"))
    monkeypatch.setattr(paths_internal, "extensions_builtin_dir", str(tmp_path / "builtin"))
    monkeypatch.setattr(paths_internal, "default_output_dir", str(data / "outputs"))
    monkeypatch.setattr(extensions, "extensions", [])
    monkeypatch.setattr(cmd_opts, "gradio_allowed_path", [str(tmp_path / "allowed")])
    monkeypatch.setitem(opts.data, "outdir_txt2img_samples", "outputs/txt2img-images")
    monkeypatch.chdir(data)
    return tmp_path


def test_files_of_the_allowed_folders_are_served(root):
    ext_file = root / "data" / "extensions" / "my-ext" / "tags" / "tags.csv"
    assert ui_files.resolve(str(ext_file)) == str(ext_file)
    assert ui_files.resolve("extensions/my-ext/tags/tags.csv") == str(ext_file)  # relative to the working folder
    assert ui_files.resolve("outputs/txt2img-images/00001.png") == str(root / "data" / "outputs" / "txt2img-images" / "00001.png")
    assert ui_files.resolve(str(root / "allowed" / "a.txt")) == str(root / "allowed" / "a.txt")
    script = os.path.join(paths_internal.script_path, "javascript", "ui.js")
    assert ui_files.resolve(script) == script


def test_everything_else_is_refused(root):
    assert ui_files.resolve(str(root / "secret.txt")) is None
    assert ui_files.resolve("config.json") is None  # the data folder itself is not served
    assert ui_files.resolve("extensions/my-ext/../../../secret.txt") is None
    assert ui_files.resolve(str(root / "allowed" / ".." / "secret.txt")) is None
    assert ui_files.resolve("extensions/my-ext/tags") is None  # a folder
    assert ui_files.resolve("extensions/my-ext/missing.csv") is None
    assert ui_files.resolve(os.path.join(paths_internal.script_path, "webui.py")) is None
    assert ui_files.resolve("") is None


def test_a_symlink_out_of_an_allowed_folder_is_refused(root):
    ext = root / "data" / "extensions" / "my-ext"
    (ext / "leak.txt").symlink_to(root / "secret.txt")
    (ext / "outside").symlink_to(root)
    assert ui_files.resolve(str(ext / "leak.txt")) is None
    assert ui_files.resolve("extensions/my-ext/outside/secret.txt") is None


def _app(auth):
    import gradio as gr
    from fastapi import FastAPI

    app = FastAPI()
    ui_files.add_route(app)
    with gr.Blocks() as blocks:
        gr.Markdown("page")
    return gr.mount_gradio_app(app, blocks, path="/", auth=auth, ssr_mode=False)


def test_the_route_answers_before_gradio_and_follows_the_page_login(root):
    from fastapi.testclient import TestClient

    with TestClient(_app(None)) as client:
        response = client.get("/file=extensions/my-ext/tags/tags.csv?123")
        assert response.status_code == 200 and response.text == "red,0\n"
        assert client.get(f"/file={root / 'secret.txt'}").status_code == 404
        assert client.get("/file=extensions/my-ext/%2e%2e/%2e%2e/%2e%2e/secret.txt").status_code == 404

    with TestClient(_app([("alice", "pw")])) as client:
        assert client.get("/file=extensions/my-ext/tags/tags.csv").status_code == 401
        assert client.post("/login", data={"username": "alice", "password": "pw"}).status_code == 200
        assert client.get("/file=extensions/my-ext/tags/tags.csv").text == "red,0\n"
