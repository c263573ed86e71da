"""Bad requests get a 4xx naming the problem (and the valid choices), never a crash; the server keeps serving."""
from __future__ import annotations

import pytest

from tests.integration.test_api import SD1, SMALL, encode, gradient, start_server

B64 = encode(gradient(8))

# (method, path, JSON body or raw text, status, text the detail must contain)
BAD = [
    ("POST", "/sdapi/v1/txt2img", "{not json", 422, "JSON decode error"),
    ("POST", "/sdapi/v1/txt2img", {"steps": "many"}, 422, "valid integer"),
    ("POST", "/sdapi/v1/txt2img", {"width": [64]}, 422, "valid integer"),
    ("POST", "/sdapi/v1/txt2img", {"cfg_scale": "high"}, 422, "valid number"),
    ("POST", "/sdapi/v1/txt2img", {"send_images": "perhaps"}, 422, "valid boolean"),
    ("POST", "/sdapi/v1/txt2img", {"sampler_name": "Euler b"}, 422, "Sampler not found: Euler b; valid choices: DPM++ 2M,"),
    ("POST", "/sdapi/v1/txt2img", {"sampler_index": "nope"}, 422, "Sampler not found: nope"),
    ("POST", "/sdapi/v1/txt2img", {"scheduler": "Wavy"}, 422, "Karras"),
    ("POST", "/sdapi/v1/txt2img", {**SMALL, "enable_hr": True, "hr_upscaler": "Magic"}, 422,
     "Upscaler not found: Magic. Available: Latent,"),
    ("POST", "/sdapi/v1/txt2img", {"refiner_checkpoint": "ghost", "refiner_switch_at": 0.5}, 422,
     "Checkpoint not found: ghost. Available: "),
    ("POST", "/sdapi/v1/txt2img", {"override_settings": {"sd_model_checkpoint": "../../../etc/passwd"}}, 422,
     "Checkpoint not found: ../../../etc/passwd"),
    ("POST", "/sdapi/v1/txt2img", {"override_settings": {"no_such_option": 1}}, 422,
     "Unknown setting in override_settings: no_such_option"),
    ("POST", "/sdapi/v1/txt2img", {"script_name": "no such script"}, 422, "Script not found: no such script"),
    ("POST", "/sdapi/v1/txt2img", {"alwayson_scripts": {"ControlNet": {"args": []}}}, 422,
     "Always-on script not found: ControlNet"),
    ("POST", "/sdapi/v1/txt2img", {"width": 4096}, 422, "less than or equal to 2048"),
    ("POST", "/sdapi/v1/txt2img", {"height": 8}, 422, "greater than or equal to 64"),
    ("POST", "/sdapi/v1/txt2img", {"steps": 0}, 422, "greater than or equal to 1"),
    ("POST", "/sdapi/v1/txt2img", {"steps": 151}, 422, "less than or equal to 150"),
    ("POST", "/sdapi/v1/txt2img", {"batch_size": 9}, 422, "less than or equal to 8"),
    ("POST", "/sdapi/v1/txt2img", {"n_iter": 101}, 422, "less than or equal to 100"),
    ("POST", "/sdapi/v1/img2img", {**SMALL}, 422, "Field required"),
    ("POST", "/sdapi/v1/img2img", {**SMALL, "init_images": []}, 422, "at least 1 item"),
    ("POST", "/sdapi/v1/img2img", {**SMALL, "init_images": ["not base64!"]}, 422, "Invalid encoded image"),
    ("POST", "/sdapi/v1/img2img", {**SMALL, "init_images": ["aGVsbG8="]}, 422, "Invalid encoded image"),
    ("POST", "/sdapi/v1/img2img", {**SMALL, "init_images": [B64], "mask": "data:image/png;base64,%%%"}, 422,
     "Invalid encoded image"),
    ("POST", "/sdapi/v1/img2img", {**SMALL, "init_images": ["http://127.0.0.1:9/a.png"]}, 422, "Image URLs are not accepted"),
    ("POST", "/sdapi/v1/img2img", {**SMALL, "init_images": [B64], "denoising_strength": 1.5}, 422,
     "less than or equal to 1"),
    ("POST", "/sdapi/v1/extra-single-image", {"image": B64, "upscaler_1": "Magic"}, 422, "Upscaler not found: Magic. Available: None,"),
    ("POST", "/sdapi/v1/extra-single-image", {"image": "@@@"}, 422, "Invalid encoded image"),
    ("POST", "/sdapi/v1/extra-batch-images", {"imageList": []}, 422, "at least 1 item"),
    ("POST", "/sdapi/v1/png-info", {"image": ""}, 422, "Invalid encoded image"),
    ("POST", "/sdapi/v1/png-info", {}, 422, "Field required"),
    ("POST", "/sdapi/v1/options", {"sd_model_checkpoint": "ghost.safetensors"}, 404, "Checkpoint not found: ghost.safetensors"),
    ("POST", "/sdapi/v1/options", {"sd_model_checkpoint": "../Stable-diffusion/tiny_sd1.safetensors"}, 404, "Checkpoint not found"),
    ("POST", "/sdapi/v1/options", {"no_such_option": 1}, 422, "Unknown setting: no_such_option"),
    ("POST", "/sdapi/v1/options", {"outdir_samples": "../../elsewhere"}, 422,
     "Setting outdir_samples must name a folder inside the data directory"),
    ("POST", "/sdapi/v1/options", {"api_enable_requests": False}, 403, "Setting api_enable_requests cannot be changed through the API"),
    ("POST", "/sdapi/v1/options", {"jpeg_quality": "best"}, 422, "Setting jpeg_quality: 'best' is a str, expected a int"),
    ("POST", "/sdapi/v1/options", {"sd_vae": "../../etc/passwd"}, 422, "Setting sd_vae: '../../etc/passwd' is not one of its choices"),
    ("POST", "/sdapi/v1/options", {"samples_format": "../x"}, 422, "Setting samples_format: '../x' is not one of its choices"),
    ("POST", "/sdapi/v1/options", {"outdir_txt2img_samples": "/tmp/x"}, 422, "Setting outdir_txt2img_samples must name a folder"),
    ("POST", "/sdapi/v1/txt2img", {**SMALL, "save_images": True, "override_settings": {"outdir_samples": "/tmp/x"},
                                   "override_settings_restore_afterwards": False}, 422,
     "Setting outdir_samples must name a folder inside the data directory"),
    ("POST", "/sdapi/v1/txt2img", {**SMALL, "override_settings": {"samples_format": 5}}, 422,
     "Setting samples_format: 5 is a int, expected a str"),
    ("POST", "/sdapi/v1/txt2img", {**SMALL, "override_settings": {"sd_vae": "../../etc/passwd"}}, 422,
     "Setting sd_vae: '../../etc/passwd' is not one of its choices"),
    ("POST", "/sdapi/v1/txt2img", {**SMALL, "override_settings": {"directories_filename_pattern": "../../../x"}}, 422,
     "Setting directories_filename_pattern must name a folder inside the data directory"),
    ("POST", "/sdapi/v1/options", [1, 2], 422, "valid dictionary"),
    ("GET", "/sdapi/v1/progress?skip_current_image=sometimes", None, 422, "valid boolean"),
    ("GET", "/sdapi/v1/no-such-route", None, 404, "Not Found"),
]


@pytest.fixture(scope="module")
def server(tmp_path_factory, tiny_models_dir):
    app = start_server(tmp_path_factory, tiny_models_dir)
    app.ok("POST", "/sdapi/v1/options", {"sd_model_checkpoint": SD1})
    yield app
    app.stop()


def test_the_table_is_big_enough():
    assert len(BAD) >= 25


@pytest.mark.parametrize("method, path, body, status, message", BAD, ids=[f"{i}" for i in range(len(BAD))])
def test_bad_request(server, method, path, body, status, message):
    if isinstance(body, str):
        response = server.session.request(method, server.url + path, data=body, headers={"Content-Type": "application/json"},
                                          timeout=60)
    else:
        response = server.session.request(method, server.url + path, json=body, timeout=60)
    assert response.status_code == status, response.text
    assert message in str(response.json()["detail"]), response.text


def test_the_server_keeps_serving_and_nothing_changed(server):
    options = server.ok("GET", "/sdapi/v1/options")
    assert options["sd_model_checkpoint"].startswith(SD1) and options["outdir_samples"] == ""
    assert options["api_enable_requests"] is True and options["jpeg_quality"] == 80
    result = server.ok("POST", "/sdapi/v1/txt2img", SMALL)
    assert len(result["images"]) == 1
