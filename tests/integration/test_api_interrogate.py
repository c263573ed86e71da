"""POST /sdapi/v1/interrogate against a live server with tiny interrogator models: A1111's request and answer, its
404s, and a 503 naming the file and folder while a model file is missing (then working once the file is there)."""
from __future__ import annotations

import shutil

import pytest

from tests.fixtures import interrogators
from tests.integration.test_api import encode, gradient, start_server


@pytest.fixture(scope="module")
def models_dir(tmp_path_factory):
    root = tmp_path_factory.mktemp("models")
    interrogators.write_interrogators(root)
    shutil.move(root / "CLIP", root.parent / f"{root.name}-CLIP")  # CLIP arrives during a test
    return root


@pytest.fixture(scope="module")
def server(tmp_path_factory, models_dir):
    app = start_server(tmp_path_factory, models_dir)
    yield app
    app.stop()


def test_deepdanbooru_answers_tags(server):
    server.ok("POST", "/sdapi/v1/options", {"interrogate_deepbooru_score_threshold": 0.0})
    caption = server.ok("POST", "/sdapi/v1/interrogate", {"image": encode(gradient()), "model": "deepdanbooru"})["caption"]
    assert caption.split(", ")[:3] == ["1girl", "blue sky", "flower"] and r"kirby \(series\)" in caption


def test_clip_is_a_503_naming_the_missing_file_until_it_is_there(server, models_dir):
    response = server.post("/sdapi/v1/interrogate", {"image": encode(gradient())})  # model defaults to clip
    assert response.status_code == 503
    assert f"config.json in {models_dir / 'CLIP' / 'clip-vit-large-patch14'}" in response.json()["detail"]
    shutil.copytree(models_dir.parent / f"{models_dir.name}-CLIP", models_dir / "CLIP")
    caption = server.ok("POST", "/sdapi/v1/interrogate", {"image": encode(gradient()), "model": "clip"})["caption"]
    assert len(caption.split(", ")) == 1 + 6  # the caption, then 1 artist, 3 flavors, 1 medium, 1 movement


def test_a1111s_404s_and_a_bad_image(server):
    for body, detail in (({"image": encode(gradient()), "model": "wd14"}, "Model not found"),
                         ({"model": "clip"}, "Image not found")):
        response = server.post("/sdapi/v1/interrogate", body)
        assert (response.status_code, response.json()["detail"]) == (404, detail)
    assert server.post("/sdapi/v1/interrogate", {"image": "not base64!", "model": "clip"}).status_code == 422
