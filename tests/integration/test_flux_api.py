"""Flux.1 through the REST API of a live server: the checkpoint list shows it, /sdapi/v1/txt2img takes Forge's
`distilled_cfg_scale` and writes Forge's infotext key."""
from __future__ import annotations

import base64
import io

import numpy as np
import pytest
from PIL import Image

from tests.fixtures import flux as tiny_flux
from tests.integration.test_api import Server

FLUX = "flux1-dev"
REQUEST = {"prompt": "a red cube", "negative_prompt": "", "steps": 2, "width": 64, "height": 64, "seed": 42,
           "cfg_scale": 1.0, "sampler_name": "Euler", "override_settings": {"sd_model_checkpoint": FLUX}}


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    root = tmp_path_factory.mktemp("flux_api")
    models = root / "models"
    tiny = tiny_flux.make(seed=11)
    tiny_flux.write_transformer_only(models / "Stable-diffusion" / f"{FLUX}.safetensors", tiny)
    tiny_flux.write_parts(models, tiny)
    (root / "data").mkdir()
    srv = Server(root / "data", models, "--nowebui", "--api").start()
    yield srv
    srv.stop()


def _image(response) -> np.ndarray:
    return np.asarray(Image.open(io.BytesIO(base64.b64decode(response["images"][0]))).convert("RGB"), dtype=np.int16)


def test_checkpoint_list_shows_flux(server):
    titles = [m["title"] for m in server.session.get(f"{server.url}/sdapi/v1/sd-models", timeout=30).json()]
    assert any(t.startswith(FLUX) for t in titles)
    modules = [m["model_name"] for m in server.session.get(f"{server.url}/sdapi/v1/sd-modules", timeout=30).json()]
    assert {"ae.safetensors", "clip_l.safetensors", "t5xxl_fp16.safetensors"} <= set(modules)


def test_txt2img_takes_distilled_cfg_scale(server):
    def post(**extra):
        r = server.session.post(f"{server.url}/sdapi/v1/txt2img", json={**REQUEST, **extra}, timeout=300)
        assert r.status_code == 200, r.text
        return r.json()

    default = post()
    stronger = post(distilled_cfg_scale=6.0)
    assert "Distilled CFG Scale: 3.5" in default["info"]
    assert "Distilled CFG Scale: 6.0" in stronger["info"]
    assert np.abs(_image(default) - _image(stronger)).max() > 0
    assert server.session.post(f"{server.url}/sdapi/v1/txt2img", json={**REQUEST, "distilled_cfg_scale": 99},
                               timeout=60).status_code == 422
