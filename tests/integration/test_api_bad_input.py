"""Bad requests get a 4xx naming the problem (and the valid choices), never a crash: after each one the server is
alive, the same keep-alive connection still serves, nothing was written outside the data folders and config.json is
unchanged."""
from __future__ import annotations

import base64
import io
import json
import shutil
from pathlib import Path

import pytest
from PIL import Image

from tests.integration.test_api import SD1, SMALL, Server, encode, gradient
from tests.integration.test_api_errors import Connection

B64 = encode(gradient(8))



def png_of_size(width: int, height: int) -> str:
    """A PNG of a bare 1-bit image: a few kB that would decode to `width` x `height` pixels (a decompression bomb)."""
    buffer = io.BytesIO()
    Image.new("1", (width, height)).save(buffer, format="PNG")
    return base64.b64encode(buffer.getvalue()).decode()


BOMB = png_of_size(15000, 15000)  # beyond twice Pillow's limit: Pillow refuses it itself
BIG = png_of_size(10000, 10000)  # beyond Pillow's limit, below twice it: Pillow only warns
EMBEDDING = {"name": "e", "num_vectors_per_token": 1, "overwrite_old": False}

# (method, path, JSON body or raw text, status, text the detail must contain)
BAD = [
    ("POST", "/sdapi/v1/txt2img", "{not json", 422, "JSON decode error"),
    ("POST", "/sdapi/v1/txt2img", {"steps": "many"}, 422, "valid integer"),
    ("POST", "/sdapi/v1/txt2img", {"prompt": "cube " * 400_000}, 422, "'prompt'], 'msg': 'String should have at most 20000"),
    ("POST", "/sdapi/v1/txt2img", {"enable_hr": True, "hr_negative_prompt": "x" * 20_001}, 422, "'hr_negative_prompt']"),
    ("POST", "/sdapi/v1/img2img", {"init_images": [B64], "negative_prompt": "x" * 20_001}, 422, "'negative_prompt']"),
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
    ("POST", "/sdapi/v1/txt2img", {"alwayson_scripts": {"ADetailer": {"args": []}}}, 422,
     "Always-on script not found: ADetailer"),
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
    # numbers JSON cannot carry (item 2)
    ("POST", "/sdapi/v1/txt2img", '{"cfg_scale": NaN}', 422, "'loc': ['body', 'cfg_scale']"),
    ("POST", "/sdapi/v1/txt2img", '{"steps": 1e400}', 422, "'loc': ['body', 'steps']"),
    ("POST", "/sdapi/v1/img2img", '{"init_images": [], "seed": -Infinity}', 422, "'loc': ['body', 'seed']"),
    ("POST", "/sdapi/v1/extra-batch-images", '{"imageList": [], "upscaling_resize": NaN}', 422,
     "'loc': ['body', 'upscaling_resize']"),
    ("POST", "/sdapi/v1/options", '{"CLIP_stop_at_last_layers": Infinity}', 422, "'loc': ['body', 'CLIP_stop_at_last_layers']"),
    # decompression bombs, broken checkpoints, missing fields (item 3)
    ("POST", "/sdapi/v1/img2img", {**SMALL, "init_images": [BOMB]}, 422, "Image too large"),
    ("POST", "/sdapi/v1/img2img", {**SMALL, "init_images": [B64], "mask": BIG}, 422,
     "Image too large: 10000x10000 pixels"),
    ("POST", "/sdapi/v1/png-info", {"image": BOMB}, 422, "Image too large"),
    ("POST", "/sdapi/v1/extra-single-image", {"image": BIG}, 422, "Image too large"),
    ("POST", "/sdapi/v1/extra-batch-images", {"imageList": [{"data": BOMB, "name": "x.png"}]}, 422, "Image too large"),
    ("POST", "/sdapi/v1/options", {"sd_model_checkpoint": "truncated.safetensors"}, 422,
     "Could not read truncated.safetensors: the file is corrupt, truncated or not a checkpoint"),
    ("POST", "/sdapi/v1/options", {"sd_model_checkpoint": "garbage.ckpt"}, 422, "load garbage.ckpt: it contains pickled code"),
    ("POST", "/sdapi/v1/txt2img", {**SMALL, "override_settings": {"sd_model_checkpoint": "truncated.safetensors"}}, 422,
     "Could not read truncated.safetensors"),
    ("POST", "/sdapi/v1/txt2img", {**SMALL, "override_settings": {"sd_model_checkpoint": "garbage.ckpt"},
                                   "override_settings_restore_afterwards": False}, 422, "garbage.ckpt"),
    ("POST", "/sdapi/v1/create/embedding", {}, 422, "Missing fields: name, num_vectors_per_token, overwrite_old"),
    ("POST", "/sdapi/v1/create/embedding", {"name": "e"}, 422, "Missing fields: num_vectors_per_token, overwrite_old"),
    ("POST", "/sdapi/v1/create/hypernetwork", {"name": "h"}, 422, "Missing fields: enable_sizes, overwrite_old"),
    ("POST", "/sdapi/v1/create/embedding", {**EMBEDDING, "name": "../../escape"}, 422,
     "name must be a plain file name"),
    ("POST", "/sdapi/v1/create/hypernetwork", {"name": "/tmp/escape", "enable_sizes": [768], "overwrite_old": False}, 422,
     "name must be a plain file name"),
    ("POST", "/sdapi/v1/create/embedding", {**EMBEDDING, "colour": "red"}, 422, "Unknown fields: colour"),
    ("POST", "/sdapi/v1/train/embedding", {}, 422, "Missing fields"),
    ("POST", "/sdapi/v1/train/hypernetwork", {"id_task": "x"}, 422, "Missing fields"),
    # img2img choices by index (item 8)
    ("POST", "/sdapi/v1/img2img", {**SMALL, "init_images": [B64], "resize_mode": 99}, 422,
     "'loc': ['body', 'resize_mode']"),
    ("POST", "/sdapi/v1/img2img", {**SMALL, "init_images": [B64], "inpainting_fill": 99}, 422,
     "'loc': ['body', 'inpainting_fill']"),
    ("POST", "/sdapi/v1/img2img", {**SMALL, "init_images": [B64], "inpainting_mask_invert": 2}, 422,
     "'loc': ['body', 'inpainting_mask_invert']"),
    ("POST", "/sdapi/v1/img2img", {**SMALL, "init_images": [B64], "mask_blur": -1}, 422, "'loc': ['body', 'mask_blur']"),
    # other routes
    ("POST", "/sdapi/v1/extra-single-image", {"image": B64, "resize_mode": 5}, 422, "'loc': ['body', 'resize_mode']"),
    ("POST", "/sdapi/v1/extra-single-image", {"image": B64, "upscaling_resize": 0}, 422,
     "'loc': ['body', 'upscaling_resize']"),
    ("POST", "/sdapi/v1/extra-batch-images", {"imageList": [{"data": "@@@"}]}, 422, "Invalid encoded image"),
    ("POST", "/sdapi/v1/extensions/install", {}, 422, "'loc': ['body', 'url']"),
    ("POST", "/sdapi/v1/extensions/delete", {"name": "no-such-extension"}, 422, "no-such-extension"),
    ("GET", "/sdapi/v1/progress?skip_current_image=[]", None, 422, "skip_current_image"),
    ("DELETE", "/sdapi/v1/txt2img", None, 405, "Method Not Allowed"),
    ("PUT", "/sdapi/v1/options", {}, 405, "Method Not Allowed"),
]


@pytest.fixture(scope="module")
def server(tmp_path_factory, tiny_models_dir):
    """The data and models folders side by side in one parent, which must stay as it is (no file written outside)."""
    parent = tmp_path_factory.mktemp("bad-input")
    models = parent / "models"
    shutil.copytree(tiny_models_dir, models)
    good = (models / "Stable-diffusion" / SD1).read_bytes()
    (models / "Stable-diffusion" / "truncated.safetensors").write_bytes(good[:len(good) // 2])
    (models / "Stable-diffusion" / "garbage.ckpt").write_bytes(b"not a checkpoint" * 64)
    data = parent / "data"
    data.mkdir()
    app = Server(data, models, "--nowebui").start()
    app.ok("POST", "/sdapi/v1/options", {"sd_model_checkpoint": SD1})
    app.connection = Connection(app)
    yield app
    app.stop()


def outside_data_folders(server) -> set[Path]:
    parent = server.data_dir.parent
    return {p for p in parent.rglob("*") if server.data_dir not in p.parents and server.models_dir not in p.parents
            and p not in (server.data_dir, server.models_dir)} | {p for p in (Path("/tmp/x"), Path("/tmp/escape.pt"))
                                                                  if p.exists()}


def test_the_table_is_big_enough():
    assert len(BAD) >= 60
    assert len({path for _, path, *_ in BAD}) >= 12


@pytest.mark.parametrize("method, path, body, status, message", BAD, ids=[f"{i}" for i in range(len(BAD))])
def test_bad_request(server, method, path, body, status, message):
    config = (server.data_dir / "config.json").read_bytes()
    outside = outside_data_folders(server)
    raw = body if isinstance(body, str) or body is None else json.dumps(body)
    answered, answer = server.connection.request(method, path, raw)  # fails if the server closed the connection
    assert answered == status, answer
    assert message in str(answer["detail"]), answer
    assert server.process.poll() is None
    assert (server.data_dir / "config.json").read_bytes() == config
    assert outside_data_folders(server) == outside
    assert server.connection.request("GET", "/sdapi/v1/progress?skip_current_image=true")[0] == 200


def test_a_two_megabyte_prompt_is_refused_at_once_without_echoing_it(server):
    answered, answer = server.connection.request("POST", "/sdapi/v1/txt2img", json.dumps({"prompt": "x" * 2_000_000}))
    assert answered == 422 and answer["detail"][0]["loc"] == ["body", "prompt"]
    assert len(json.dumps(answer)) < 2000  # the refused value comes back cut to its start
    assert server.ok("POST", "/sdapi/v1/txt2img", {**SMALL, "prompt": "cube, " * 3000})["images"]  # 18,000: accepted


def test_the_server_keeps_serving_and_nothing_changed(server):
    options = server.ok("GET", "/sdapi/v1/options")
    assert options["sd_model_checkpoint"].startswith(SD1) and options["outdir_samples"] == ""
    assert options["api_enable_requests"] is True and options["jpeg_quality"] == 80
    assert options["sd_vae"] == "Automatic" and options["samples_format"] == "png"
    result = server.ok("POST", "/sdapi/v1/txt2img", SMALL)
    assert len(result["images"]) == 1
    assert json.loads(result["info"])["sd_model_name"] == "tiny_sd1"  # the old model stayed after the broken ones
