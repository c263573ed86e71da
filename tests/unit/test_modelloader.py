"""modules.modelloader: a missing model file is fetched once, whole or not at all; offline says so at once."""
from __future__ import annotations

import hashlib
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from modules import modelloader

BODY = b"weights" * 1000


class Handler(BaseHTTPRequestHandler):
    def do_GET(self):
        self.server.requests.append(self.path)
        self.send_response(200)
        self.send_header("Content-Length", str(len(BODY)))
        self.end_headers()
        self.wfile.write(BODY)

    def log_message(self, *args):
        pass


@pytest.fixture()
def server(monkeypatch):
    monkeypatch.delenv("HF_HUB_OFFLINE")  # the tests' default; these download from their own local server
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    httpd.requests = []
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}"
    httpd.shutdown()
    httpd.server_close()


def test_the_file_is_named_as_in_the_url_and_fetched_once(server, tmp_path):
    first = modelloader.load_file_from_url(f"{server}/dir/model.pth?download=true", model_dir=str(tmp_path / "m"))
    again = modelloader.load_file_from_url(f"{server}/dir/model.pth", model_dir=str(tmp_path / "m"))
    assert first == again == str(tmp_path / "m" / "model.pth")
    assert (tmp_path / "m" / "model.pth").read_bytes() == BODY


def test_a_wrong_hash_prefix_leaves_no_file(server, tmp_path):
    good = hashlib.sha256(BODY).hexdigest()[:10]
    assert modelloader.load_file_from_url(f"{server}/a.pth", model_dir=str(tmp_path), hash_prefix=good)
    with pytest.raises(modelloader.DownloadError, match="sha256 does not start with 0000"):
        modelloader.load_file_from_url(f"{server}/b.pth", model_dir=str(tmp_path), hash_prefix="0000")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.pth"]


def test_offline_answers_at_once_without_a_request(tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr(modelloader, "download", lambda *args: pytest.fail("no request may be made offline"))
    with pytest.raises(modelloader.DownloadError, match="HF_HUB_OFFLINE is set"):
        modelloader.load_file_from_url("http://example.invalid/x.pth", model_dir=str(tmp_path))
    assert list(tmp_path.iterdir()) == []


def test_an_unreachable_server_is_a_download_error_and_leaves_nothing(tmp_path, monkeypatch):
    monkeypatch.delenv("HF_HUB_OFFLINE")
    with pytest.raises(modelloader.DownloadError):
        modelloader.load_file_from_url("http://127.0.0.1:9/x.pth", model_dir=str(tmp_path / "m"))
    assert not (tmp_path / "m").exists()
