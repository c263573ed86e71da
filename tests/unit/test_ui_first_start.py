"""First start: the message, and the SD 1.5 download against local endpoints only (never the real hub)."""
import http.server
import threading

import pytest

from modules import first_start
from modules.shared_cmd_options import cmd_opts

UNREACHABLE = "http://127.0.0.1:9"  # the discard port: nothing listens there


@pytest.fixture(autouse=True)
def never_the_real_hub(monkeypatch):
    monkeypatch.setenv("HF_ENDPOINT", UNREACHABLE)
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)


def test_url_follows_hf_endpoint():
    assert first_start.sd15_url() == f"{UNREACHABLE}/stable-diffusion-v1-5/stable-diffusion-v1-5/resolve/main/v1-5-pruned-emaonly.safetensors"
    assert first_start.sd15_url("http://mirror.local/") == \
        "http://mirror.local/stable-diffusion-v1-5/stable-diffusion-v1-5/resolve/main/v1-5-pruned-emaonly.safetensors"


def test_unreachable_hub_gives_the_offline_message_and_leaves_nothing(tmp_path):
    with pytest.raises(first_start.DownloadError) as caught:
        first_start.download_sd15(str(tmp_path), timeout=5)
    message = str(caught.value)
    assert message.startswith(f"Could not download v1-5-pruned-emaonly.safetensors: {UNREACHABLE} cannot be reached")
    assert "This computer seems to be offline." in message
    assert "https://huggingface.co/stable-diffusion-v1-5/stable-diffusion-v1-5" in message
    assert list(tmp_path.iterdir()) == []


def test_hf_hub_offline_answers_at_once(tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(first_start.DownloadError, match=r"HF_HUB_OFFLINE is set\. This computer seems to be offline"):
        first_start.download_sd15(str(tmp_path))


class _FakeHub(http.server.BaseHTTPRequestHandler):
    body = b"x" * (3 * first_start.CHUNK + 17)
    declared_length = None

    def do_GET(self):
        if self.path != "/stable-diffusion-v1-5/stable-diffusion-v1-5/resolve/main/v1-5-pruned-emaonly.safetensors":
            self.send_error(404)
            return
        self.send_response(200)
        self.send_header("Content-Length", str(self.declared_length or len(self.body)))
        self.end_headers()
        self.wfile.write(self.body)

    def log_message(self, *args):
        pass


@pytest.fixture
def local_hub():
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _FakeHub)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    _FakeHub.declared_length = None


def test_download_reports_progress_and_places_the_whole_file(tmp_path, local_hub):
    seen = []
    path = first_start.download_sd15(str(tmp_path), lambda done, total: seen.append((done, total)), endpoint=local_hub)
    total = len(_FakeHub.body)
    assert path == str(tmp_path / "v1-5-pruned-emaonly.safetensors")
    assert (tmp_path / "v1-5-pruned-emaonly.safetensors").read_bytes() == _FakeHub.body
    assert seen[-1] == (total, total) and all(t == total for _, t in seen)
    assert [d for d, _ in seen] == sorted(d for d, _ in seen)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["v1-5-pruned-emaonly.safetensors"]
    assert first_start.download_sd15(str(tmp_path), endpoint=UNREACHABLE) == path  # present: nothing to fetch


def test_cut_connection_leaves_no_partial_file(tmp_path, local_hub):
    _FakeHub.declared_length = len(_FakeHub.body) + 1000
    with pytest.raises(first_start.DownloadError, match="Could not download v1-5-pruned-emaonly.safetensors"):
        first_start.download_sd15(str(tmp_path), endpoint=local_hub, timeout=5)
    assert list(tmp_path.iterdir()) == []


def test_http_error_names_the_status(tmp_path, local_hub):
    with pytest.raises(first_start.DownloadError, match="answered 404"):
        first_start.download_sd15(str(tmp_path), endpoint=local_hub + "/elsewhere")


def test_no_checkpoint_message_says_where_and_offers_the_download(monkeypatch):
    monkeypatch.setattr(first_start.paths_internal, "models_path", "/data/models")
    monkeypatch.setattr(cmd_opts, "no_download_sd_model", False)
    text = first_start.no_checkpoint_html()
    assert "<code>/data/models/Stable-diffusion</code>" in text
    assert "Download Stable Diffusion 1.5" in text and UNREACHABLE in text
    assert "--demo" in text
    monkeypatch.setattr(cmd_opts, "no_download_sd_model", True)
    assert "Download Stable Diffusion 1.5" not in first_start.no_checkpoint_html()
    assert not first_start.download_offered()
