"""The REST API against a live server (launch.py --nowebui in a subprocess, tiny checkpoints): every endpoint's shapes,
types and values, and authentication for the API (--api-auth) and the UI (--gradio-auth)."""
from __future__ import annotations

import base64
import io
import json
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import requests
from PIL import Image, PngImagePlugin

REPO = Path(__file__).resolve().parents[2]
START_TIMEOUT = 180
SMALL = {"prompt": "a red cube", "negative_prompt": "blurry", "steps": 3, "width": 64, "height": 64, "seed": 1234,
         "cfg_scale": 7.0}
SD1 = "tiny_sd1.safetensors"
SDXL = "tiny_sdxl.safetensors"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Server:
    """launch.py in a subprocess on a free loopback port with its own data dir; `log` is its console."""

    def __init__(self, data_dir: Path, models_dir: Path, *flags: str, auth: tuple[str, str] | None = None):
        self.data_dir, self.models_dir, self.flags = data_dir, models_dir, flags
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log = data_dir / "server.log"
        self.session = requests.Session()
        self.session.auth = auth
        self.process = None

    def start(self) -> Server:
        env = {**os.environ, "HF_HUB_OFFLINE": "1", "GRADIO_ANALYTICS_ENABLED": "False", "PYTHONUNBUFFERED": "1",
               "GRADIO_TEMP_DIR": str(self.data_dir / "gradio"), "NO_PROXY": "127.0.0.1,localhost"}
        command = [sys.executable, str(REPO / "launch.py"), "--skip-install", "--skip-torch-cuda-test", "--port",
                   str(self.port), "--data-dir", str(self.data_dir), "--models-dir", str(self.models_dir), *self.flags]
        with open(self.log, "ab") as log:
            self.process = subprocess.Popen(command, cwd=self.data_dir, env=env, stdout=log, stderr=subprocess.STDOUT)
        deadline = time.time() + START_TIMEOUT
        while time.time() < deadline:
            if self.process.poll() is not None:
                pytest.fail(f"the server exited with {self.process.returncode}:\n{self.log_text()[-4000:]}")
            try:
                if requests.get(f"{self.url}/internal/ping", timeout=2).status_code == 200:
                    return self
            except requests.ConnectionError:
                pass
            time.sleep(0.5)
        self.stop()
        pytest.fail(f"the server did not answer within {START_TIMEOUT}s:\n{self.log_text()[-4000:]}")

    def stop(self) -> None:
        if self.process and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(20)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(10)

    def log_text(self) -> str:
        return self.log.read_text(encoding="utf8", errors="replace")

    def get(self, path: str, **kwargs) -> requests.Response:
        return self.session.get(f"{self.url}{path}", timeout=120, **kwargs)

    def post(self, path: str, body=None, **kwargs) -> requests.Response:
        return self.session.post(f"{self.url}{path}", json=body, timeout=300, **kwargs)

    def ok(self, method: str, path: str, body=None):
        response = self.get(path) if method == "GET" else self.post(path, body)
        assert response.status_code == 200, response.text
        return response.json()


def start_server(tmp_path_factory, models_dir, *flags, auth=None) -> Server:
    data_dir = tmp_path_factory.mktemp("api-data")
    return Server(data_dir, models_dir, "--nowebui", *flags, auth=auth).start()


def decode(b64: str) -> Image.Image:
    image = Image.open(io.BytesIO(base64.b64decode(b64)))
    image.load()
    return image


def encode(image: Image.Image, info: str | None = None) -> str:
    buffer = io.BytesIO()
    png = PngImagePlugin.PngInfo()
    if info:
        png.add_text("parameters", info)
    image.save(buffer, format="PNG", pnginfo=png)
    return base64.b64encode(buffer.getvalue()).decode()


def gradient(size=64) -> Image.Image:
    x = np.linspace(0, 255, size, dtype=np.uint8)
    return Image.fromarray(np.stack([np.tile(x, (size, 1)), np.tile(x[:, None], (1, size)), np.full((size, size), 90, np.uint8)], -1))


@pytest.fixture(scope="module")
def server(tmp_path_factory, tiny_models_dir):
    app = start_server(tmp_path_factory, tiny_models_dir)
    app.ok("POST", "/sdapi/v1/options", {"sd_model_checkpoint": SD1})
    yield app
    app.stop()


def test_txt2img_shapes_defaults_and_same_seed_same_image(server):
    first = server.ok("POST", "/sdapi/v1/txt2img", SMALL)
    assert set(first) == {"images", "parameters", "info"}
    assert isinstance(first["info"], str)
    info = json.loads(first["info"])
    assert info["seed"] == 1234 and info["all_seeds"] == [1234] and info["steps"] == 3
    assert info["sampler_name"] == "Euler"  # the API's default sampler (sampler_index), not the UI's DPM++ 2M
    assert info["sd_model_name"] == "tiny_sd1" and info["index_of_first_image"] == 0
    params = first["parameters"]
    assert params["prompt"] == "a red cube" and params["sampler_index"] == "Euler" and params["sampler_name"] is None
    assert params["save_images"] is False and params["send_images"] is True and params["denoising_strength"] == 0.75
    [b64] = first["images"]
    assert not b64.startswith("data:")
    image = decode(b64)
    assert image.format == "PNG" and image.size == (64, 64)
    assert image.info["parameters"].startswith("a red cube\nNegative prompt: blurry\nSteps: 3, Sampler: Euler")
    again = server.ok("POST", "/sdapi/v1/txt2img", SMALL)
    assert again["images"] == first["images"]
    other = server.ok("POST", "/sdapi/v1/txt2img", {**SMALL, "seed": 1235})
    assert other["images"] != first["images"]
    assert not (server.data_dir / "outputs" / "txt2img-images").exists()  # save_images defaults to false


def test_txt2img_batch_has_grid_first_only_when_saving_and_images_match_single_seeds(server):
    unsaved = server.ok("POST", "/sdapi/v1/txt2img", {**SMALL, "batch_size": 2, "sampler_name": "Euler"})
    assert len(unsaved["images"]) == 2 and json.loads(unsaved["info"])["index_of_first_image"] == 0  # A1111: no grid
    result = server.ok("POST", "/sdapi/v1/txt2img", {**SMALL, "batch_size": 2, "sampler_name": "Euler",
                                                    "save_images": True})
    info = json.loads(result["info"])
    assert len(result["images"]) == 3 and info["index_of_first_image"] == 1
    assert result["images"][1:] == unsaved["images"]
    assert decode(result["images"][0]).size == (128, 64)  # the grid: two 64x64 images side by side
    assert info["all_seeds"] == [1234, 1235] and len(info["infotexts"]) == 3
    single = server.ok("POST", "/sdapi/v1/txt2img", {**SMALL, "seed": 1235})
    batch_image, single_image = (np.asarray(decode(b), dtype=int) for b in (result["images"][2], single["images"][0]))
    assert np.abs(batch_image - single_image).max() <= 2  # batched float math may round a pixel differently


def test_txt2img_options_send_images_sampler_index_and_size_rounding(server):
    before = set((server.data_dir / "outputs").rglob("*.png"))
    result = server.ok("POST", "/sdapi/v1/txt2img", {**SMALL, "send_images": False, "sampler_index": "DDIM",
                                                    "width": 70, "height": 64, "save_images": True})
    info = json.loads(result["info"])
    assert result["images"] == [] and info["sampler_name"] == "DDIM" and info["width"] == 64
    saved = list(set((server.data_dir / "outputs" / "txt2img-images").rglob("*.png")) - before)
    assert len(saved) == 1 and Image.open(saved[0]).size == (64, 64)  # save_images: true writes the sample


def test_override_settings_apply_to_one_job_then_restore(server):
    before = server.ok("GET", "/sdapi/v1/options")["CLIP_stop_at_last_layers"]
    result = server.ok("POST", "/sdapi/v1/txt2img", {**SMALL, "override_settings": {"CLIP_stop_at_last_layers": 2}})
    assert json.loads(result["info"])["clip_skip"] == 2 and "Clip skip: 2" in decode(result["images"][0]).info["parameters"]
    assert server.ok("GET", "/sdapi/v1/options")["CLIP_stop_at_last_layers"] == before == 1
    kept = {**SMALL, "override_settings": {"CLIP_stop_at_last_layers": 3}, "override_settings_restore_afterwards": False}
    server.ok("POST", "/sdapi/v1/txt2img", kept)
    assert server.ok("GET", "/sdapi/v1/options")["CLIP_stop_at_last_layers"] == 3
    server.ok("POST", "/sdapi/v1/options", {"CLIP_stop_at_last_layers": 1})


def test_infotext_fills_what_the_request_leaves_unset(server):
    """A1111 1.8+: the pasted infotext gives prompt, sampler, seed, size and its settings; explicit fields win."""
    infotext = ("a blue ball\nNegative prompt: ugly\nSteps: 9, Sampler: DDIM, CFG scale: 5, Seed: 77, Size: 64x64, "
                "Clip skip: 2")
    result = server.ok("POST", "/sdapi/v1/txt2img", {"infotext": infotext, "steps": 3, "cfg_scale": 6.5})
    info = json.loads(result["info"])
    assert (info["prompt"], info["negative_prompt"], info["seed"], info["sampler_name"]) == ("a blue ball", "ugly", 77, "DDIM")
    assert (info["steps"], info["cfg_scale"], info["width"], info["height"], info["clip_skip"]) == (3, 6.5, 64, 64, 2)
    assert server.ok("GET", "/sdapi/v1/options")["CLIP_stop_at_last_layers"] == 1  # an override: restored afterwards
    named = server.ok("POST", "/sdapi/v1/txt2img", {"infotext": infotext, "steps": 3, "sampler_index": "Euler"})
    assert json.loads(named["info"])["sampler_name"] == "Euler"


def test_img2img_with_mask_data_uri_and_echo(server):
    init = "data:image/png;base64," + encode(gradient())
    mask = Image.new("L", (64, 64), 0)
    mask.paste(255, (16, 16, 48, 48))
    body = {**SMALL, "init_images": [init], "mask": encode(mask), "denoising_strength": 0.6}
    result = server.ok("POST", "/sdapi/v1/img2img", body)
    info = json.loads(result["info"])
    out = np.asarray(decode(result["images"][0]).convert("RGB")).astype(int)
    assert out.shape == (64, 64, 3) and info["denoising_strength"] == 0.6
    assert result["parameters"]["init_images"] is None and result["parameters"]["mask"] is None
    assert result["parameters"]["inpainting_fill"] == 0 and result["parameters"]["inpaint_full_res"] is True
    assert result["parameters"]["inpaint_full_res_padding"] == 0
    assert np.array_equal(out[:4, :4], np.asarray(gradient())[:4, :4].astype(int))  # far from the mask: the original
    assert "Masked content: fill" in info["infotexts"][0] and "Inpaint area: Only masked" in info["infotexts"][0]
    echoed = server.ok("POST", "/sdapi/v1/img2img", {**body, "include_init_images": True, "send_images": False})
    assert echoed["parameters"]["init_images"] == [init]


def test_extras_single_and_batch(server):
    single = server.ok("POST", "/sdapi/v1/extra-single-image",
                       {"image": encode(gradient(32), "a cat\nSteps: 5"), "upscaler_1": "Nearest", "upscaling_resize": 2})
    image = decode(single["image"])
    assert image.size == (64, 64)
    assert single["html_info"] == "Postprocess upscale by: 2.0, Postprocess upscaler: Nearest"
    assert np.array_equal(np.asarray(image)[::2, ::2], np.asarray(gradient(32)))
    batch = server.ok("POST", "/sdapi/v1/extra-batch-images", {
        "imageList": [{"data": encode(gradient(16)), "name": "a.png"}, {"data": encode(gradient(8)), "name": "b.png"}],
        "resize_mode": 1, "upscaling_resize_w": 24, "upscaling_resize_h": 24, "upscaler_1": "Lanczos"})
    assert [decode(b).size for b in batch["images"]] == [(24, 24), (24, 24)]


def test_a1111s_ai_upscalers_are_listed_and_offline_their_choice_says_where_to_put_the_file(server):
    listed = {u["name"]: u for u in server.ok("GET", "/sdapi/v1/upscalers")}
    url = "https://github.com/xinntao/Real-ESRGAN/releases/download/v0.1.0/RealESRGAN_x4plus.pth"
    assert {"ESRGAN_4x", "R-ESRGAN 4x+", "R-ESRGAN 4x+ Anime6B", "SwinIR 4x"} <= set(listed)
    assert listed["R-ESRGAN 4x+"]["model_path"] == url and listed["R-ESRGAN 4x+"]["scale"] == 4
    response = server.post("/sdapi/v1/extra-single-image", {"image": encode(gradient(16)), "upscaler_1": "R-ESRGAN 4x+",
                                                             "upscaling_resize": 2})
    assert response.status_code == 422
    assert response.json()["detail"] == (f"R-ESRGAN 4x+: could not download RealESRGAN_x4plus.pth from {url} "
                                         f"(HF_HUB_OFFLINE is set). Download it and put it in "
                                         f"{server.models_dir / 'RealESRGAN'}")


def test_png_info_of_our_own_image_returns_its_parameters(server):
    generated = server.ok("POST", "/sdapi/v1/txt2img", {**SMALL, "seed": 77})
    result = server.ok("POST", "/sdapi/v1/png-info", {"image": generated["images"][0]})
    assert result["info"] == json.loads(generated["info"])["infotexts"][0]
    parameters = result["parameters"]
    assert parameters["Seed"] == "77" and parameters["Steps"] == "3" and parameters["Size-1"] == "64"
    assert parameters["Prompt"] == "a red cube" and parameters["Negative prompt"] == "blurry"
    assert parameters["Sampler"] == "Euler"
    plain = server.ok("POST", "/sdapi/v1/png-info", {"image": encode(gradient(8))})
    assert plain == {"info": "", "items": {}, "parameters": {}}


def test_options_post_switches_the_model_the_next_txt2img_uses_and_persists(server):
    def sdxl():
        return next(m for m in server.ok("GET", "/sdapi/v1/sd-models") if m["model_name"] == "tiny_sdxl")

    try:
        for wanted in (lambda: sdxl()["title"], lambda: sdxl()["hash"]):  # by title; by hash once hashed by the load
            server.ok("POST", "/sdapi/v1/options", {"sd_model_checkpoint": SD1})
            server.ok("POST", "/sdapi/v1/options", {"sd_model_checkpoint": wanted()})
            assert server.ok("GET", "/sdapi/v1/options")["sd_model_checkpoint"] == sdxl()["title"]
            info = json.loads(server.ok("POST", "/sdapi/v1/txt2img", {**SMALL, "steps": 1})["info"])
            assert info["sd_model_name"] == "tiny_sdxl" and info["sd_model_hash"] == sdxl()["hash"]
            assert len(sdxl()["hash"]) == 10
        saved = json.loads((server.data_dir / "config.json").read_text())
        assert saved["sd_model_checkpoint"] == sdxl()["title"]
    finally:
        server.ok("POST", "/sdapi/v1/options", {"sd_model_checkpoint": SD1})
    assert json.loads(server.ok("POST", "/sdapi/v1/txt2img", {**SMALL, "steps": 1})["info"])["sd_model_name"] == "tiny_sd1"


def test_lists(server):
    samplers = server.ok("GET", "/sdapi/v1/samplers")
    assert samplers[0]["name"] == "DPM++ 2M" and samplers[0]["options"]["scheduler"] == "karras"
    assert {"name": "Euler", "aliases": ["k_euler"], "options": {"scheduler": "uniform"}} in samplers
    schedulers = server.ok("GET", "/sdapi/v1/schedulers")
    assert any(s["name"] == "karras" and s["label"] == "Karras" and s["default_rho"] == 7.0 for s in schedulers)
    assert all(set(s) == {"name", "label", "aliases", "default_rho", "need_inner_model"} for s in schedulers)
    assert schedulers[0] == {"name": "automatic", "label": "Automatic", "aliases": None, "default_rho": -1,
                             "need_inner_model": False}  # A1111's entry; webuiapi sends scheduler "automatic"
    assert server.ok("GET", "/sdapi/v1/sd-modules") == [{"model_name": "tiny_vae.safetensors",
                                                         "filename": str(server.models_dir / "VAE" / "tiny_vae.safetensors")}]
    releases = "https://github.com/xinntao/Real-ESRGAN/releases/download"
    assert server.ok("GET", "/sdapi/v1/realesrgan-models") == [  # A1111's two, offered before their files exist
        {"name": "R-ESRGAN 4x+", "path": f"{releases}/v0.1.0/RealESRGAN_x4plus.pth", "scale": 4},
        {"name": "R-ESRGAN 4x+ Anime6B", "path": f"{releases}/v0.2.2.4/RealESRGAN_x4plus_anime_6B.pth", "scale": 4}]
    upscalers = [u["name"] for u in server.ok("GET", "/sdapi/v1/upscalers")]
    assert upscalers[:3] == ["None", "Lanczos", "Nearest"]
    modes = server.ok("GET", "/sdapi/v1/latent-upscale-modes")
    assert modes[0] == {"name": "Latent"} and len(modes) == 6
    models = server.ok("GET", "/sdapi/v1/sd-models")
    assert sorted(m["model_name"] for m in models) == ["refiners_tiny_sdxl_refiner", "tiny_sd1", "tiny_sdxl"]
    for m in models:
        if m["hash"] is not None:  # hashed once loaded (or cached); A1111 lists null until then
            assert len(m["hash"]) == 10 and m["sha256"].startswith(m["hash"]) and m["title"].endswith(f"[{m['hash']}]")
        assert os.path.isfile(m["filename"]) and m["config"] is None
    assert server.ok("GET", "/sdapi/v1/sd-vae") == [
        {"model_name": "tiny_vae.safetensors", "filename": str(server.models_dir / "VAE" / "tiny_vae.safetensors")}]
    assert server.ok("GET", "/sdapi/v1/hypernetworks") == []
    assert [r["name"] for r in server.ok("GET", "/sdapi/v1/face-restorers")] == ["CodeFormer", "GFPGAN"]
    assert server.ok("GET", "/sdapi/v1/prompt-styles") == []
    assert server.ok("GET", "/sdapi/v1/embeddings") == {"loaded": {}, "skipped": {}}
    assert server.ok("GET", "/sdapi/v1/loras") == []
    builtin = ["controlnet", "prompt matrix", "prompts from file or textbox", "x/y/z plot"]
    img2img_only = ["soft inpainting"]
    assert server.ok("GET", "/sdapi/v1/scripts") == {"txt2img": builtin, "img2img": sorted(builtin + img2img_only)}
    info = server.ok("GET", "/sdapi/v1/script-info")
    assert sorted((i["name"], i["is_img2img"]) for i in info) == sorted(
        [(n, b) for n in builtin for b in (False, True)] + [(n, True) for n in img2img_only])
    assert server.ok("GET", "/sdapi/v1/extensions") == []


def test_options_and_cmd_flags(server):
    options = server.ok("GET", "/sdapi/v1/options")
    assert options["samples_format"] == "png" and options["return_grid"] is True
    flags = server.ok("GET", "/sdapi/v1/cmd-flags")
    assert flags["nowebui"] is True and flags["port"] == server.port and flags["data_dir"] == str(server.data_dir)
    server.ok("POST", "/sdapi/v1/options", {"jpeg_quality": 71})
    assert server.ok("GET", "/sdapi/v1/options")["jpeg_quality"] == 71
    assert json.loads((server.data_dir / "config.json").read_text())["jpeg_quality"] == 71


def test_refresh_unload_reload_and_memory(server, sd1_ckpt):
    from tests.fixtures.networks import write_network

    lora_dir = server.models_dir / "Lora"

    assert server.ok("POST", "/sdapi/v1/refresh-checkpoints") == {}
    assert len(server.ok("GET", "/sdapi/v1/sd-models")) == 3
    assert server.ok("POST", "/sdapi/v1/refresh-vae") == {}
    assert server.ok("POST", "/sdapi/v1/refresh-embeddings") == {}
    lora_dir.mkdir(exist_ok=True)
    write_network(lora_dir / "tiny_lora.safetensors", sd1_ckpt)
    assert server.ok("POST", "/sdapi/v1/refresh-loras") == {}
    [lora] = server.ok("GET", "/sdapi/v1/loras")
    assert lora["name"] == "tiny_lora" and lora["path"] == str(lora_dir / "tiny_lora.safetensors")
    (lora_dir / "tiny_lora.safetensors").unlink()
    server.ok("POST", "/sdapi/v1/refresh-loras")
    assert server.ok("POST", "/sdapi/v1/unload-checkpoint") == {}
    assert server.ok("POST", "/sdapi/v1/reload-checkpoint") == {}
    assert json.loads(server.ok("POST", "/sdapi/v1/txt2img", {**SMALL, "steps": 1})["info"])["sd_model_name"] == "tiny_sd1"
    memory = server.ok("GET", "/sdapi/v1/memory")
    assert memory["ram"]["total"] > memory["ram"]["free"] > 0 and memory["ram"]["used"] > 0
    assert memory["cuda"] == {"error": "CUDA is not available"}


def test_progress_when_idle_and_interrupt_skip_answer(server):
    idle = server.ok("GET", "/sdapi/v1/progress")
    assert idle["progress"] == 0 and idle["eta_relative"] == 0 and idle["current_image"] is None
    assert set(idle["state"]) == {"skipped", "interrupted", "stopping_generation", "job", "job_count", "job_timestamp",
                                  "job_no", "sampling_step", "sampling_steps"}
    assert server.ok("POST", "/sdapi/v1/interrupt") == {}
    assert server.ok("POST", "/sdapi/v1/skip") == {}
    after = server.ok("POST", "/sdapi/v1/txt2img", {**SMALL, "n_iter": 2})
    assert len(json.loads(after["info"])["all_seeds"]) == 2  # an interrupt with no job running stops nothing later


def test_openapi_docs(server):
    schema = server.ok("GET", "/openapi.json")
    assert "/sdapi/v1/txt2img" in schema["paths"] and "/sdapi/v1/progress" in schema["paths"]
    fields = schema["components"]["schemas"]["StableDiffusionTxt2ImgProcessingAPI"]["properties"]
    assert fields["steps"]["default"] == 50 and fields["sampler_index"]["default"] == "Euler"
    docs = server.get("/docs")
    assert docs.status_code == 200 and "swagger-ui" in docs.text


# authentication

API_ROUTES = [("GET", "/sdapi/v1/progress"), ("POST", "/sdapi/v1/txt2img"), ("POST", "/sdapi/v1/img2img"),
              ("POST", "/sdapi/v1/extra-single-image"), ("POST", "/sdapi/v1/extra-batch-images"),
              ("POST", "/sdapi/v1/png-info"), ("POST", "/sdapi/v1/interrupt"), ("POST", "/sdapi/v1/skip"),
              ("GET", "/sdapi/v1/options"), ("POST", "/sdapi/v1/options"), ("GET", "/sdapi/v1/cmd-flags"),
              ("GET", "/sdapi/v1/samplers"), ("GET", "/sdapi/v1/schedulers"), ("GET", "/sdapi/v1/upscalers"),
              ("GET", "/sdapi/v1/latent-upscale-modes"), ("GET", "/sdapi/v1/sd-models"), ("GET", "/sdapi/v1/sd-vae"),
              ("GET", "/sdapi/v1/realesrgan-models"), ("GET", "/sdapi/v1/sd-modules"),
              ("GET", "/sdapi/v1/hypernetworks"), ("GET", "/sdapi/v1/face-restorers"), ("GET", "/sdapi/v1/prompt-styles"),
              ("GET", "/sdapi/v1/embeddings"), ("GET", "/sdapi/v1/loras"), ("POST", "/sdapi/v1/refresh-embeddings"),
              ("POST", "/sdapi/v1/refresh-checkpoints"), ("POST", "/sdapi/v1/refresh-vae"),
              ("POST", "/sdapi/v1/refresh-loras"), ("POST", "/sdapi/v1/unload-checkpoint"),
              ("POST", "/sdapi/v1/reload-checkpoint"), ("GET", "/sdapi/v1/memory"), ("GET", "/sdapi/v1/scripts"),
              ("GET", "/sdapi/v1/script-info"), ("GET", "/sdapi/v1/extensions"),
              ("POST", "/sdapi/v1/extensions/install"), ("POST", "/sdapi/v1/extensions/update"),
              ("POST", "/sdapi/v1/extensions/delete"), ("POST", "/sdapi/v1/create/embedding"),
              ("POST", "/sdapi/v1/create/hypernetwork"), ("POST", "/sdapi/v1/train/embedding"),
              ("POST", "/sdapi/v1/train/hypernetwork"), ("POST", "/internal/progress"), ("GET", "/internal/queue"),
              ("POST", "/sdapi/v1/interrogate"),
              # the job API and the metrics
              ("POST", "/atelier/v1/jobs"), ("GET", "/atelier/v1/jobs/{job_id}"), ("DELETE", "/atelier/v1/jobs/{job_id}"),
              ("GET", "/atelier/v1/queue"), ("GET", "/metrics"),
              # the built-in ControlNet's routes, as sd-webui-controlnet serves them
              ("GET", "/controlnet/version"), ("GET", "/controlnet/model_list"), ("GET", "/controlnet/module_list"),
              ("GET", "/controlnet/settings"), ("POST", "/controlnet/detect"), ("GET", "/docs"),
              ("GET", "/openapi.json")]


def test_the_route_list_covers_every_api_route(server):
    schema_routes = {(method.upper(), path) for path, item in server.ok("GET", "/openapi.json")["paths"].items()
                     for method in item}
    assert schema_routes - {("GET", "/internal/ping")} == set(API_ROUTES) - {("GET", "/docs"), ("GET", "/openapi.json")}


@pytest.fixture(scope="module")
def auth_server(tmp_path_factory, tiny_models_dir):
    app = start_server(tmp_path_factory, tiny_models_dir, "--api-auth", "alice:s3cret,bob:pa:ss", "--skip-load-model-at-start")
    yield app
    app.stop()


@pytest.mark.parametrize("credentials", [None, ("alice", "wrong"), ("mallory", "s3cret"), ("bob", "pa")])
def test_every_api_route_refuses_missing_or_wrong_credentials(auth_server, credentials):
    for method, path in API_ROUTES:
        response = requests.request(method, auth_server.url + path, auth=credentials, json={}, timeout=30)
        assert response.status_code == 401, (method, path, response.text)
        # routes added at app start (the built-in ControlNet's, as an extension adds them) answer from the door
        # extension_routes puts before them
        door = "Not authenticated" if path.startswith("/controlnet/") else "Incorrect username or password"
        assert response.json() == {"detail": door}
        assert response.headers["WWW-Authenticate"] == "Basic"


def test_right_credentials_are_served(auth_server):
    for login in (("alice", "s3cret"), ("bob", "pa:ss")):  # a password may contain ':'
        response = requests.get(auth_server.url + "/sdapi/v1/samplers", auth=login, timeout=30)
        assert response.status_code == 200 and response.json()[0]["name"] == "DPM++ 2M"
    assert requests.get(auth_server.url + "/docs", auth=("alice", "s3cret"), timeout=30).status_code == 200


def test_gradio_auth_logins_from_flag_and_file(tmp_path, monkeypatch):
    from modules import ui
    from modules.shared_cmd_options import cmd_opts

    logins = tmp_path / "logins.txt"
    logins.write_text("carol:one,dave:two\n\nerin:th:ree\n", encoding="utf8")
    monkeypatch.setattr(cmd_opts, "gradio_auth", "alice:s3cret, bob:x", raising=False)
    monkeypatch.setattr(cmd_opts, "gradio_auth_path", str(logins), raising=False)
    assert ui.gradio_auth() == [("alice", "s3cret"), ("bob", "x"), ("carol", "one"), ("dave", "two"), ("erin", "th:ree")]
    monkeypatch.setattr(cmd_opts, "gradio_auth_path", None)
    monkeypatch.setattr(cmd_opts, "gradio_auth", "nocolon")
    with pytest.raises(ValueError, match="UI logins must be written user:password; got nocolon"):
        ui.gradio_auth()
    monkeypatch.setattr(cmd_opts, "gradio_auth", None)
    assert ui.gradio_auth() is None
