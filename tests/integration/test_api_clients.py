"""Real clients of A1111's API, replayed: each test sends the JSON a public client really sends (reconstructed from its
source: the field names, the values it puts there, the extra keys it leaves in) and reads back only what that client
reads. One test per client; a failure here means that client breaks against Atelier."""
from __future__ import annotations

import base64
import io
import json

from PIL import Image

from tests.integration.test_api import SD1, decode, encode, gradient, server  # noqa: F401  (the module's server)

PROMPT, NEGATIVE = "a red cube on a table", "blurry, lowres"


def data_url(b64: str) -> str:
    return "data:image/png;base64," + b64


def png_bytes(b64: str) -> Image.Image:
    return Image.open(io.BytesIO(base64.b64decode(b64)))


def test_sillytavern_stable_diffusion_extension(server):
    """SillyTavern's server-side 'auto' source (src/endpoints/stable-diffusion.js): it lists choices by `name` /
    `title` / `model_name`, switches the model through /options then waits for /progress to be idle, checks /options
    for Forge's `forge_preset`, forwards the page's whole body (its own `url` and `auth` included) to txt2img and sends
    /interrupt when the page goes away."""
    assert server.get("/sdapi/v1/options").status_code == 200  # its "ping"
    upscalers = [x["name"] for x in server.ok("GET", "/sdapi/v1/upscalers")]
    latent = [x["name"] for x in server.ok("GET", "/sdapi/v1/latent-upscale-modes")]
    assert upscalers[0] == "None" and "Latent" in latent
    vaes = [x["model_name"] for x in server.ok("GET", "/sdapi/v1/sd-vae")]
    assert [x["model_name"] for x in server.ok("GET", "/sdapi/v1/sd-modules")] == vaes  # Forge's list, tried alongside
    samplers = [x["name"] for x in server.ok("GET", "/sdapi/v1/samplers")]
    schedulers = [x["name"] for x in server.ok("GET", "/sdapi/v1/schedulers")]
    assert "Euler a" in samplers and schedulers[0] == "automatic" and "karras" in schedulers
    models = [x["title"] for x in server.ok("GET", "/sdapi/v1/sd-models")]
    sd1 = next(t for t in models if t.startswith("tiny_sd1"))
    assert server.ok("GET", "/sdapi/v1/options")["sd_model_checkpoint"].startswith("tiny_sd1")  # "get-model"

    assert server.post("/sdapi/v1/options", {"sd_model_checkpoint": sd1}).status_code == 200  # "set-model"
    progress = server.ok("GET", "/sdapi/v1/progress")
    assert progress["progress"] == 0.0 and progress["state"]["job_count"] == 0  # its "model loaded" condition

    options = server.ok("GET", "/sdapi/v1/options")
    assert "forge_preset" not in options  # so it drops override_settings.forge_additional_modules
    body = {"url": server.url, "auth": "", "prompt": PROMPT, "negative_prompt": NEGATIVE, "sampler_name": "Euler a",
            "scheduler": "karras", "steps": 3, "cfg_scale": 7, "width": 64, "height": 64, "restore_faces": False,
            "enable_hr": False, "hr_upscaler": "Latent", "hr_scale": 2, "hr_additional_modules": [],
            "denoising_strength": 0.7, "hr_second_pass_steps": 0, "seed": 42,
            "override_settings": {"CLIP_stop_at_last_layers": 2, "sd_vae": vaes[0]},
            "override_settings_restore_afterwards": True, "clip_skip": 2, "save_images": True, "send_images": True,
            "do_not_save_grid": False, "do_not_save_samples": False}
    response = server.post("/sdapi/v1/txt2img", body)
    assert response.status_code == 200, response.text
    image = png_bytes(response.json()["images"][0])  # it shows images[0] as a PNG
    assert image.format == "PNG" and image.size == (64, 64)
    infotext = json.loads(response.json()["info"])["infotexts"][0]
    assert "Schedule type: Karras" in infotext and "Clip skip: 2" in infotext
    assert server.ok("GET", "/sdapi/v1/options")["CLIP_stop_at_last_layers"] == options["CLIP_stop_at_last_layers"]
    assert server.post("/sdapi/v1/interrupt").status_code == 200  # sent without a body when the page disconnects


def test_open_webui_automatic1111_engine(server):
    """Open WebUI's images router: it sends `authorization: ''` when no login is set, lists /sd-models as
    {id: title, name: model_name}, switches models by posting back the whole /options dict it just read, and generates
    with a short body, keeping `images` (bare base64, read as PNG) and `info`."""
    headers = {"authorization": ""}
    assert server.get("/sdapi/v1/options", headers=headers).status_code == 200  # "verify url"
    models = server.get("/sdapi/v1/sd-models", headers=headers).json()
    listed = [{"id": m["title"], "name": m["model_name"]} for m in models]
    assert {"id": next(m["title"] for m in models if m["model_name"] == "tiny_sd1"), "name": "tiny_sd1"} in listed

    options = server.get("/sdapi/v1/options", headers=headers).json()
    config_before = (server.data_dir / "config.json").read_text()
    options["sd_model_checkpoint"] = listed[0]["id"] if listed[0]["name"] == "tiny_sd1" else \
        next(m["id"] for m in listed if m["name"] == "tiny_sd1")
    response = server.session.post(f"{server.url}/sdapi/v1/options", json=options, headers=headers, timeout=300)
    assert response.status_code == 200, response.text  # every current value posted back is accepted as it is
    assert server.ok("GET", "/sdapi/v1/options") == options
    assert json.loads((server.data_dir / "config.json").read_text()).keys() >= json.loads(config_before).keys()

    body = {"prompt": PROMPT, "batch_size": 2, "width": 64, "height": 64, "steps": 3, "negative_prompt": NEGATIVE}
    response = server.session.post(f"{server.url}/sdapi/v1/txt2img", json=body, headers=headers, timeout=300)
    assert response.status_code == 200, response.text
    result = response.json()
    assert len(result["images"]) == 2 and isinstance(result["info"], str)
    for b64 in result["images"]:
        assert "," not in b64 and png_bytes(b64).format == "PNG"  # no data: header, so it assumes image/png


def test_webuiapi_python_client(server):
    """mix1009/sdwebuiapi (`webuiapi`): its constructor reads /scripts; txt2img/img2img send every field with the
    client's defaults (old ones such as firstphase_width included); results are `images`, `info` (JSON) and
    `parameters`; png_info, extra_single_image, progress, interrupt and skip, and its util_* listings."""
    scripts = server.ok("GET", "/sdapi/v1/scripts")
    assert isinstance(scripts["txt2img"], list) and isinstance(scripts["img2img"], list)
    common = {"prompt": PROMPT, "styles": [], "seed": 7, "subseed": -1, "subseed_strength": 0.0,
              "seed_resize_from_h": 0, "seed_resize_from_w": 0, "sampler_name": "Euler a", "batch_size": 1,
              "n_iter": 1, "steps": 3, "cfg_scale": 7.0, "width": 64, "height": 64, "restore_faces": False,
              "tiling": False, "do_not_save_samples": False, "do_not_save_grid": False, "negative_prompt": "",
              "eta": 1.0, "s_churn": 0, "s_tmax": 0, "s_tmin": 0, "s_noise": 1, "override_settings": {},
              "override_settings_restore_afterwards": True, "script_args": [], "sampler_index": "Euler a",
              "script_name": None, "send_images": True, "save_images": False, "alwayson_scripts": {}}
    txt2img = {**common, "enable_hr": False, "hr_scale": 2, "hr_upscaler": "Latent", "hr_second_pass_steps": 0,
               "hr_resize_x": 0, "hr_resize_y": 0, "denoising_strength": 0.7, "firstphase_width": 0,
               "firstphase_height": 0}
    result = server.ok("POST", "/sdapi/v1/txt2img", txt2img)
    image = decode(result["images"][0])
    info = json.loads(result["info"])
    assert image.size == (64, 64) and info["seed"] == 7 and info["sampler_name"] == "Euler a"
    assert result["parameters"]["prompt"] == PROMPT

    img2img = {**common, "init_images": [data_url(encode(gradient()))], "resize_mode": 0, "denoising_strength": 0.75,
               "image_cfg_scale": 1.5, "mask_blur": 4, "inpainting_fill": 0, "inpaint_full_res": True,
               "inpaint_full_res_padding": 0, "inpainting_mask_invert": 0, "initial_noise_multiplier": 1,
               "include_init_images": False}
    result = server.ok("POST", "/sdapi/v1/img2img", img2img)
    assert decode(result["images"][0]).size == (64, 64) and json.loads(result["info"])["seed"] == 7

    info = server.ok("POST", "/sdapi/v1/png-info", {"image": data_url(result["images"][0])})["info"]
    assert info.startswith(PROMPT) and "Seed: 7" in info
    extras = {"resize_mode": 0, "show_extras_results": True, "gfpgan_visibility": 0, "codeformer_visibility": 0,
              "codeformer_weight": 0, "upscaling_resize": 2, "upscaling_resize_w": 512, "upscaling_resize_h": 512,
              "upscaling_crop": True, "upscaler_1": "Lanczos", "upscaler_2": "None", "extras_upscaler_2_visibility": 0,
              "upscale_first": False, "image": data_url(encode(gradient()))}
    result = server.ok("POST", "/sdapi/v1/extra-single-image", extras)
    assert decode(result["image"]).size == (128, 128) and isinstance(result["html_info"], str)

    assert set(server.ok("GET", "/sdapi/v1/progress?skip_current_image=false")) >= {"progress", "eta_relative", "state",
                                                                                   "current_image", "textinfo"}
    assert server.ok("POST", "/sdapi/v1/interrupt") == {} and server.ok("POST", "/sdapi/v1/skip") == {}
    for path, key in [("sd-models", "title"), ("samplers", "name"), ("schedulers", "label"), ("upscalers", "name"),
                      ("latent-upscale-modes", "name"), ("sd-vae", "model_name"), ("hypernetworks", "name"),
                      ("face-restorers", "name"), ("prompt-styles", "name")]:
        items = server.ok("GET", f"/sdapi/v1/{path}")
        assert all(key in item for item in items), path
    assert {"loaded", "skipped"} <= set(server.ok("GET", "/sdapi/v1/embeddings"))
    assert isinstance(server.ok("GET", "/sdapi/v1/cmd-flags"), dict)
    assert server.post("/sdapi/v1/refresh-checkpoints").status_code == 200


def test_aiyabot_discord_bot(server):
    """Kilvoctu/aiyabot: a POST /login whose answer it ignores, the model through /options, txt2img with
    `sampler_index`, `denoising_strength: null` and `styles: ["None"]` when no style is chosen, img2img with a data:
    URL, png-info on "data:image/png;base64," + each image to keep its `info`, and /extra-single-image to upscale."""
    assert server.post("/login").status_code < 500
    assert server.post("/sdapi/v1/options", {"sd_model_checkpoint": SD1}).status_code == 200
    payload = {"prompt": PROMPT, "negative_prompt": NEGATIVE, "steps": 3, "width": 64, "height": 64, "cfg_scale": 7.0,
               "sampler_index": "Euler a", "seed": 99, "seed_resize_from_h": 0, "seed_resize_from_w": 0,
               "denoising_strength": None, "n_iter": 2, "styles": ["None"],
               "override_settings": {"CLIP_stop_at_last_layers": 1}}
    response = server.post("/sdapi/v1/txt2img", payload)
    assert response.status_code == 200, response.text
    images = response.json()["images"]
    assert len(images) == 2
    for b64 in images:
        Image.open(io.BytesIO(base64.b64decode(b64.split(",", 1)[0])))
        info = server.ok("POST", "/sdapi/v1/png-info", {"image": data_url(b64)}).get("info")
        assert info.startswith(PROMPT) and "Sampler: Euler a" in info

    img2img = {**payload, "init_images": [data_url(encode(gradient()))], "denoising_strength": 0.5, "n_iter": 1}
    response = server.post("/sdapi/v1/img2img", img2img)
    assert response.status_code == 200, response.text
    assert "Denoising strength: 0.5" in server.ok("POST", "/sdapi/v1/png-info",
                                                  {"image": data_url(response.json()["images"][0])})["info"]

    upscale = {"upscaling_resize": 2.0, "upscaler_1": "Lanczos", "image": data_url(encode(gradient())),
               "gfpgan_visibility": 0.0, "codeformer_visibility": 0.0, "upscale_first": False, "upscaler_2": "None",
               "extras_upscaler_2_visibility": 0.5}
    result = server.ok("POST", "/sdapi/v1/extra-single-image", upscale)
    assert png_bytes(result["image"]).size == (128, 128)
    for path in ("sd-models", "samplers", "prompt-styles", "face-restorers", "upscalers"):  # its settings lists
        assert isinstance(server.ok("GET", f"/sdapi/v1/{path}"), list)


def test_novelai_bot_sd_webui_backend(server):
    """koishijs/novelai-bot with type 'sd-webui': NovelAI-style parameters renamed to A1111's (n_samples -> batch_size,
    uc -> negative_prompt, scale -> cfg_scale, strength -> denoising_strength), `sampler_index`, a scheduler label,
    `hr_upscaler: "None"` while hires fix is off, its own `cfg_rescale` left in; it reads images[0]."""
    body = {"sampler_index": "Euler a", "scheduler": "Karras", "restore_faces": False, "enable_hr": False,
            "hr_second_pass_steps": 0, "hr_upscaler": "None", "prompt": PROMPT, "batch_size": 1, "seed": 2024,
            "negative_prompt": NEGATIVE, "cfg_scale": 11, "cfg_rescale": 0, "steps": 3, "width": 64, "height": 64,
            "denoising_strength": 0.7}
    response = server.post("/sdapi/v1/txt2img", body)
    assert response.status_code == 200, response.text
    result = response.json()
    assert png_bytes(result["images"][0]).size == (64, 64)
    assert "Schedule type: Karras" in json.loads(result["info"])["infotexts"][0]

    response = server.post("/sdapi/v1/img2img", {**body, "init_images": [data_url(encode(gradient()))]})
    assert response.status_code == 200, response.text
    assert png_bytes(response.json()["images"][0]).size == (64, 64)
