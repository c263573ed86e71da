"""Z-Image through the REST API of a live server: the checkpoint and its module files are listed, /sdapi/v1/txt2img
generates with Turbo's settings (CFG scale 1: no negative pass) and with real CFG, the infotext names the modules."""
from __future__ import annotations

import base64
import io

import numpy as np
import pytest
from PIL import Image

from tests.fixtures import z_image as tiny_z_image
from tests.integration.test_api import Server

CHECKPOINT = "z_image_turbo_bf16"
REQUEST = {"prompt": "a red cube", "negative_prompt": "", "steps": 2, "width": 64, "height": 64, "seed": 42,
           "cfg_scale": 1.0, "sampler_name": "Euler", "override_settings": {"sd_model_checkpoint": CHECKPOINT}}


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    root = tmp_path_factory.mktemp("z_image_api")
    models = root / "models"
    tiny = tiny_z_image.make(seed=13)
    tiny_z_image.write_transformer(models / "Stable-diffusion" / f"{CHECKPOINT}.safetensors", tiny)
    tiny_z_image.write_parts(models, tiny)
    (root / "data").mkdir()
    srv = Server(root / "data", models, "--nowebui", "--api").start()
    yield srv
    srv.stop()


def _image(response) -> np.ndarray:
    return np.asarray(Image.open(io.BytesIO(base64.b64decode(response["images"][0]))).convert("RGB"), dtype=np.int16)


def test_checkpoint_and_modules_are_listed(server):
    titles = [m["title"] for m in server.session.get(f"{server.url}/sdapi/v1/sd-models", timeout=30).json()]
    assert any(t.startswith(CHECKPOINT) for t in titles)
    modules = [m["model_name"] for m in server.session.get(f"{server.url}/sdapi/v1/sd-modules", timeout=30).json()]
    assert {"ae.safetensors", "qwen_3_4b.safetensors"} <= set(modules)


def test_txt2img_turbo_and_real_cfg(server):
    def post(**extra):
        r = server.session.post(f"{server.url}/sdapi/v1/txt2img", json={**REQUEST, **extra}, timeout=300)
        assert r.status_code == 200, r.text
        return r.json()

    turbo = post()
    cfg = post(cfg_scale=3.0, negative_prompt="blurry")
    assert "CFG scale: 1.0" in turbo["info"] and "Module 1: qwen_3_4b, Module 2: ae" in turbo["info"]
    assert _image(turbo).shape == (64, 64, 3) and _image(turbo).std() > 0
    assert np.abs(_image(turbo) - _image(cfg)).max() > 0
