"""Qwen-Image through the REST API of a live server: the checkpoint and its module files are listed,
/sdapi/v1/txt2img generates without CFG and with true CFG and a negative prompt, the infotext names the modules."""
from __future__ import annotations

import base64
import io

import numpy as np
import pytest
from PIL import Image

from tests.fixtures import qwen_image as tiny_qwen
from tests.integration.test_api import Server

CHECKPOINT = "qwen_image_bf16"
REQUEST = {"prompt": "a red cube", "negative_prompt": "", "steps": 2, "width": 64, "height": 64, "seed": 42,
           "cfg_scale": 1.0, "sampler_name": "Euler", "override_settings": {"sd_model_checkpoint": CHECKPOINT}}


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    root = tmp_path_factory.mktemp("qwen_image_api")
    models = root / "models"
    tiny = tiny_qwen.make(seed=13)
    tiny_qwen.write_transformer(models / "Stable-diffusion" / f"{CHECKPOINT}.safetensors", tiny)
    tiny_qwen.write_parts(models, tiny)
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
    assert {"qwen_2.5_vl_7b.safetensors", "qwen_image_vae.safetensors"} <= set(modules)


def test_txt2img_without_and_with_true_cfg(server):
    def post(**extra):
        r = server.session.post(f"{server.url}/sdapi/v1/txt2img", json={**REQUEST, **extra}, timeout=300)
        assert r.status_code == 200, r.text
        return r.json()

    plain = post()
    cfg = post(cfg_scale=4.0, negative_prompt="blurry")
    assert "CFG scale: 1.0" in plain["info"] and "Module 1: qwen_2.5_vl_7b, Module 2: qwen_image_vae" in plain["info"]
    assert "CFG scale: 4.0" in cfg["info"]
    assert _image(plain).shape == (64, 64, 3) and _image(plain).std() > 0
    assert np.abs(_image(plain) - _image(cfg)).max() > 0
