"""sd-webui-controlnet's API against a live server: its /controlnet/* routes (field names and types), units sent as
webuiapi's ControlNetUnit.to_dict() sends them and in the legacy field names, /sdapi/v1/scripts and the infotext."""
from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
from PIL import Image

from tests.fixtures.controlnets import write_controlnet
from tests.integration.test_api import SD1, decode, encode, start_server

SMALL = {"prompt": "a red cube", "negative_prompt": "blurry", "steps": 3, "width": 64, "height": 64, "seed": 1234,
         "sampler_name": "Euler", "cfg_scale": 7}


@pytest.fixture(scope="module")
def server(tmp_path_factory, tiny_models_dir):
    models_dir = tmp_path_factory.mktemp("cn-models") / "models"
    shutil.copytree(tiny_models_dir, models_dir)
    write_controlnet(models_dir / "ControlNet" / "control_tiny_sd15_canny.safetensors", "v1")
    app = start_server(tmp_path_factory, models_dir)
    app.ok("POST", "/sdapi/v1/options", {"sd_model_checkpoint": SD1})
    yield app
    app.stop()


def square() -> Image.Image:
    image = np.zeros((64, 64, 3), dtype=np.uint8)
    image[16:48, 16:48] = 255
    return Image.fromarray(image)


def webuiapi_unit(model: str, **changes) -> dict:
    """webuiapi's ControlNetUnit(...).to_dict(): raw base64 image, mask None, hr_option, enabled."""
    unit = {"image": encode(square()), "mask": None, "module": "canny", "model": model, "weight": 1.0,
            "resize_mode": "Resize and Fill", "low_vram": False, "processor_res": 512, "threshold_a": 64,
            "threshold_b": 64, "guidance_start": 0.0, "guidance_end": 1.0, "control_mode": 0, "pixel_perfect": False,
            "hr_option": "Both", "enabled": True}
    return {**unit, **changes}


def test_routes_answer_as_the_extensions(server):
    assert server.ok("GET", "/controlnet/version") == {"version": 2}
    models = server.ok("GET", "/controlnet/model_list")["model_list"]
    assert len(models) == 1 and models[0].startswith("control_tiny_sd15_canny [") and len(models[0].split("[")[1]) == 9
    modules = server.ok("GET", "/controlnet/module_list")
    assert {"none", "canny", "depth_midas", "invert"} <= set(modules["module_list"])
    canny = modules["module_detail"]["canny"]
    assert canny["model_free"] is True
    assert [s["name"] for s in canny["sliders"]] == ["Preprocessor Resolution", "Canny Low Threshold", "Canny High Threshold"]
    assert set(canny["sliders"][1]) == {"name", "value", "min", "max", "step"}
    assert modules["module_detail"]["depth_midas"]["model_free"] is False
    aliased = server.ok("GET", "/controlnet/module_list?alias_names=true")["module_list"]
    assert "invert (from white bg & black line)" in aliased
    assert server.ok("GET", "/controlnet/settings") == {"control_net_unit_count": 3}


def test_detect_returns_the_map(server):
    body = {"controlnet_module": "canny", "controlnet_input_images": [encode(square())],
            "controlnet_processor_res": 64, "controlnet_threshold_a": 100, "controlnet_threshold_b": 200}
    answer = server.ok("POST", "/controlnet/detect", body)
    assert answer["info"] == "Success" and len(answer["images"]) == 1
    edges = np.asarray(decode(answer["images"][0]).convert("L"))
    assert edges.shape == (64, 64) and edges[14:18, 30].max() == 255 and edges[32, 32] == 0
    assert server.post("/controlnet/detect", {"controlnet_module": "nope", "controlnet_input_images": [encode(square())]}).json() \
        == {"detail": "Module not available"}
    missing = server.post("/controlnet/detect", {"controlnet_module": "depth_midas", "controlnet_input_images": [encode(square())]})
    assert missing.status_code == 422 and "dpt_hybrid-midas-501f0c75.pt" in missing.json()["detail"]


def test_scripts_list_controlnet_as_always_on_for_both_tabs(server):
    scripts = server.ok("GET", "/sdapi/v1/scripts")
    assert "controlnet" in scripts["txt2img"] and "controlnet" in scripts["img2img"]
    info = [s for s in server.ok("GET", "/sdapi/v1/script-info") if s["name"] == "controlnet"]
    assert {s["is_img2img"] for s in info} == {False, True} and all(s["is_alwayson"] for s in info)


def test_webuiapi_unit_round_trip_and_legacy_fields(server):
    plain = server.ok("POST", "/sdapi/v1/txt2img", SMALL)
    model = server.ok("GET", "/controlnet/model_list")["model_list"][0]
    body = {**SMALL, "alwayson_scripts": {"controlnet": {"args": [webuiapi_unit(model)]}}}
    controlled = server.ok("POST", "/sdapi/v1/txt2img", body)
    assert not np.array_equal(np.asarray(decode(plain["images"][0])), np.asarray(decode(controlled["images"][0])))
    infotext = json.loads(controlled["info"])["infotexts"][0]
    assert f'ControlNet 0: "Module: canny, Model: {model}, Weight: 1.0, Resize Mode: Resize and Fill' in infotext
    # the extension's legacy names (input_image, lowvram, guessmode), the "ControlNet" title as key, a disabled unit
    legacy = {"input_image": encode(square()), "module": "canny", "model": model.split(" [")[0], "weight": 1.0,
              "resize_mode": "Scale to Fit (Inner Fit)", "lowvram": False, "processor_res": 512, "threshold_a": 64,
              "threshold_b": 64, "guidance": 1.0, "guidance_start": 0, "guidance_end": 1, "guessmode": False}
    body = {**SMALL, "alwayson_scripts": {"ControlNet": {"args": [legacy, {"enabled": False}]}}}
    answer = server.ok("POST", "/sdapi/v1/txt2img", body)
    assert "Resize Mode: Crop and Resize" in json.loads(answer["info"])["infotexts"][0]
    disabled = {**SMALL, "alwayson_scripts": {"controlnet": {"args": [webuiapi_unit(model, enabled=False)]}}}
    assert np.array_equal(np.asarray(decode(server.ok("POST", "/sdapi/v1/txt2img", disabled)["images"][0])),
                          np.asarray(decode(plain["images"][0])))


def test_reference_only_with_model_none_is_listed_accepted_and_written(server):
    modules = server.ok("GET", "/controlnet/module_list")
    assert {"reference_only", "reference_adain", "reference_adain+attn"} <= set(modules["module_list"])
    detail = modules["module_detail"]["reference_only"]
    assert detail["model_free"] is True
    assert detail["sliders"] == [{"name": "Style Fidelity (only for Balanced mode)", "value": 0.5, "min": 0.0,
                                  "max": 1.0, "step": 0.01}]
    unit = webuiapi_unit("None", module="reference_only", threshold_a=0.5, resize_mode="Crop and Resize")
    answer = server.ok("POST", "/sdapi/v1/txt2img", {**SMALL, "alwayson_scripts": {"controlnet": {"args": [unit]}}})
    infotext = json.loads(answer["info"])["infotexts"][0]
    assert 'ControlNet 0: "Module: reference_only, Model: None, Weight: 1.0, Resize Mode: Crop and Resize' in infotext
