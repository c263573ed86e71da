"""Flux.1's default CFG is 1 (Forge's): a job or API request without cfg_scale runs a Flux.1 checkpoint at 1 and an SD
one at A1111's 7; an explicit cfg_scale is honoured; the UI's CFG sliders follow the checkpoint's family default."""
from __future__ import annotations

import shutil

import numpy as np
import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient

from modules import call_queue, model_families, ui
from modules.api.api import Api
from modules.model_families import flux
from modules.shared_options import opts
from tests.fixtures import flux as tiny_flux
from tests.integration.engine_helpers import pixels, start_engine, txt2img

FLUX = "flux1-dev"
KW = dict(negative_prompt="blurry", steps=2, width=64, height=64, seed=5)


@pytest.fixture(scope="module")
def models(tmp_path_factory, sd1_ckpt):
    root = tmp_path_factory.mktemp("flux_defaults")
    models = root / "models"
    tiny = tiny_flux.make(seed=3)
    tiny_flux.write_transformer_only(models / "Stable-diffusion" / f"{FLUX}.safetensors", tiny)
    tiny_flux.write_parts(models, tiny)
    shutil.copyfile(sd1_ckpt.path, models / "Stable-diffusion" / sd1_ckpt.path.name)
    return root


@pytest.fixture
def engine(models):
    return start_engine(models / "models", models / "data")


def test_a_job_without_cfg_scale_runs_the_family_default(engine, sd1_ckpt):
    default = txt2img(FLUX, cfg_scale=None, **KW)
    assert "CFG scale: 1.0" in default.infotexts[0] and default.cfg_scale == 1.0
    one = txt2img(FLUX, cfg_scale=1.0, **KW)
    assert (pixels(default.images[0]) == pixels(one.images[0])).all()
    explicit = txt2img(FLUX, cfg_scale=7.0, **KW)  # real CFG with the negative prompt, as asked
    assert "CFG scale: 7.0" in explicit.infotexts[0]
    assert np.abs(pixels(explicit.images[0]) - pixels(default.images[0])).max() > 0
    sd = txt2img(sd1_ckpt.path.stem, cfg_scale=None, **KW)
    assert "CFG scale: 7.0" in sd.infotexts[0]
    assert (pixels(sd.images[0]) == pixels(txt2img(sd1_ckpt.path.stem, cfg_scale=7.0, **KW).images[0])).all()


def test_api_request_without_cfg_scale(engine):
    app = FastAPI()
    Api(app, call_queue.queue_lock)
    client = TestClient(app)
    request = {"prompt": "a red cube", **KW, "sampler_name": "Euler", "override_settings": {"sd_model_checkpoint": FLUX}}
    default = client.post("/sdapi/v1/txt2img", json=request)
    assert default.status_code == 200, default.text
    assert "CFG scale: 1.0" in default.json()["info"] and "Distilled CFG Scale: 3.5" in default.json()["info"]
    assert default.json()["parameters"]["cfg_scale"] == 1.0
    explicit = client.post("/sdapi/v1/txt2img", json={**request, "cfg_scale": 4.0})
    assert "CFG scale: 4.0" in explicit.json()["info"] and explicit.json()["parameters"]["cfg_scale"] == 4.0


def test_family_from_the_header_and_the_ui_sliders(engine, models, sd1_ckpt):
    flux_file = models / "models" / "Stable-diffusion" / f"{FLUX}.safetensors"
    assert model_families.family_of_file(flux_file) == flux.FluxFamily()
    assert model_families.family_of_file(sd1_ckpt.path) is None
    opts.set("sd_model_checkpoint", FLUX)
    updates = ui.cfg_scale_updates(7.0, 5.5)  # a family default follows the model; the user's 5.5 stays
    assert updates[0]["value"] == 1.0 and "value" not in updates[1]
    opts.set("sd_model_checkpoint", sd1_ckpt.path.stem)
    assert ui.cfg_scale_updates(1.0, 7.0)[0]["value"] == 7.0 and "value" not in ui.cfg_scale_updates(1.0, 7.0)[1]
