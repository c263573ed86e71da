"""Approx NN and TAESD: A1111's / madebyollin's weight files (random, in the official key layouts) load strictly and
decode like hand-built references; live previews use them or fall back to Approx cheap once; the VAE decode/encode
method TAESD changes the job's pixels and infotext, Full keeps the plain VAE's; downloads are atomic."""
from __future__ import annotations

import logging
import os
import threading
import types
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import httpx
import numpy as np
import pytest
import torch
import torch.nn.functional as F
from PIL import Image

from modules import (
    live_preview,
    modelloader,
    paths_internal,
    processing,
    script_callbacks,
    sd_vae_approx,
    sd_vae_taesd,
    shared_options,
)
from tests.integration.engine_helpers import pixels, start_engine

UNREACHABLE = "http://127.0.0.1:9/"  # the discard port: refused at once
DECODER_BLOCKS = (3, 4, 5, 8, 9, 10, 13, 14, 15, 18)
ENCODER_BLOCKS = (1, 3, 4, 5, 7, 8, 9, 11, 12, 13)
APPROX_WIDTHS = [(4, 8, 7), (8, 16, 5), (16, 32, 3), (32, 64, 3), (64, 32, 3), (32, 16, 3), (16, 8, 3), (8, 3, 3)]


# ---- the official key layouts, written out by hand ----

def block_shapes(i: int) -> dict:
    return {f"{i}.conv.{j}.{kind}": (64, 64, 3, 3) if kind == "weight" else (64,) for j in (0, 2, 4)
            for kind in ("weight", "bias")}


def taesd_decoder_shapes() -> dict:
    shapes = {"1.weight": (64, 4, 3, 3), "1.bias": (64,), "19.weight": (3, 64, 3, 3), "19.bias": (3,)}
    for i in DECODER_BLOCKS:
        shapes.update(block_shapes(i))
    shapes.update({f"{i}.weight": (64, 64, 3, 3) for i in (7, 12, 17)})  # the upsampling convs have no bias
    return shapes


def taesd_encoder_shapes() -> dict:
    shapes = {"0.weight": (64, 3, 3, 3), "0.bias": (64,), "14.weight": (4, 64, 3, 3), "14.bias": (4,)}
    for i in ENCODER_BLOCKS:
        shapes.update(block_shapes(i))
    shapes.update({f"{i}.weight": (64, 64, 3, 3) for i in (2, 6, 10)})  # the stride-2 convs have no bias
    return shapes


def approx_shapes() -> dict:
    shapes = {}
    for n, (c_in, c_out, k) in enumerate(APPROX_WIDTHS, start=1):
        shapes[f"conv{n}.weight"], shapes[f"conv{n}.bias"] = (c_out, c_in, k, k), (c_out,)
    return shapes


def random_state_dict(shapes: dict, seed: int, output_bias_key: str | None = None) -> dict:
    g = torch.Generator().manual_seed(seed)
    sd = {}
    for key, shape in shapes.items():
        fan_in = int(np.prod(shape[1:])) if len(shape) > 1 else 1
        sd[key] = torch.randn(shape, generator=g) * (0.5 / fan_in ** 0.5 if len(shape) > 1 else 0.05)
    if output_bias_key:
        sd[output_bias_key] += 0.5  # centre the image in 0..1 so that clamping leaves detail to compare
    return sd


def write(path, sd: dict) -> dict:
    os.makedirs(os.path.dirname(path), exist_ok=True)
    torch.save(sd, path)
    return sd


def write_taesd(models: str, space: str = "sd", seed: int = 0) -> tuple[dict, dict]:
    prefix = {"sd": "taesd", "sdxl": "taesdxl"}[space]
    dec = write(os.path.join(models, "VAE-taesd", f"{prefix}_decoder.pth"),
                random_state_dict(taesd_decoder_shapes(), seed, "19.bias"))
    enc = write(os.path.join(models, "VAE-taesd", f"{prefix}_encoder.pth"), random_state_dict(taesd_encoder_shapes(), seed + 1))
    return dec, enc


def write_approx(models: str, space: str = "sd", seed: int = 2) -> dict:
    name = {"sd": "model.pt", "sdxl": "vaeapprox-sdxl.pt"}[space]
    return write(os.path.join(models, "VAE-approx", name), random_state_dict(approx_shapes(), seed))


# ---- hand-built reference networks over those state dicts ----

def ref_block(sd, i, x):
    h = x
    for j in (0, 2, 4):
        h = F.conv2d(h, sd[f"{i}.conv.{j}.weight"], sd[f"{i}.conv.{j}.bias"], padding=1)
        h = F.relu(h) if j != 4 else h
    return F.relu(h + x)


def ref_taesd_decode(sd, z):
    x = F.relu(F.conv2d(torch.tanh(z / 3) * 3, sd["1.weight"], sd["1.bias"], padding=1))
    for blocks, up in (((3, 4, 5), 7), ((8, 9, 10), 12), ((13, 14, 15), 17)):
        for i in blocks:
            x = ref_block(sd, i, x)
        x = F.conv2d(F.interpolate(x, scale_factor=2, mode="nearest"), sd[f"{up}.weight"], padding=1)
    x = ref_block(sd, 18, x)
    return F.conv2d(x, sd["19.weight"], sd["19.bias"], padding=1).clamp(0, 1)


def ref_taesd_encode(sd, image):
    x = ref_block(sd, 1, F.conv2d(image, sd["0.weight"], sd["0.bias"], padding=1))
    for down, blocks in ((2, (3, 4, 5)), (6, (7, 8, 9)), (10, (11, 12, 13))):
        x = F.conv2d(x, sd[f"{down}.weight"], stride=2, padding=1)
        for i in blocks:
            x = ref_block(sd, i, x)
    return F.conv2d(x, sd["14.weight"], sd["14.bias"], padding=1)


def ref_approx(sd, z):
    x = F.pad(F.interpolate(z, scale_factor=2, mode="nearest"), (11, 11, 11, 11))
    for n in range(1, 9):
        x = F.leaky_relu(F.conv2d(x, sd[f"conv{n}.weight"], sd[f"conv{n}.bias"]), 0.1)
    return ((x + 1) / 2).clamp(0, 1)


def model_stub(space="sd", memory_mode="normal"):
    return types.SimpleNamespace(latent_space=space, device=torch.device("cpu"), vae=torch.nn.Linear(1, 1),
                                 plan=types.SimpleNamespace(memory_mode=memory_mode))


def latents(seed=3, shape=(1, 4, 3, 5)):
    return torch.randn(shape, generator=torch.Generator().manual_seed(seed))


@pytest.fixture(autouse=True)
def no_downloads(monkeypatch, tmp_path):
    """Every test: its own models folder, unreachable download URLs, and a process that has not failed a load yet."""
    monkeypatch.setattr(paths_internal, "models_path", str(tmp_path / "models"))
    monkeypatch.setattr(sd_vae_taesd, "TAESD_URL", UNREACHABLE)
    monkeypatch.setattr(sd_vae_approx, "APPROX_URL", UNREACHABLE)
    monkeypatch.setattr(live_preview, "_unavailable", set())
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)


# ---- loading ----

@pytest.mark.parametrize("space", ["sd", "sdxl"])
def test_taesd_files_load_strictly_into_the_official_layout(space):
    dec, enc = write_taesd(paths_internal.models_path, space)
    for net, sd in ((sd_vae_taesd.decoder_model(space), dec), (sd_vae_taesd.encoder_model(space), enc)):
        loaded = net.state_dict()
        assert sorted(loaded) == sorted(sd)
        assert all(torch.equal(loaded[k], sd[k]) for k in sd)


@pytest.mark.parametrize("space", ["sd", "sdxl"])
def test_approx_nn_files_load_strictly_into_a1111s_layout(space):
    sd = write_approx(paths_internal.models_path, space)
    loaded = sd_vae_approx.model(space).state_dict()
    assert sorted(loaded) == sorted(sd) and all(torch.equal(loaded[k], sd[k]) for k in sd)


def test_sd_and_sdxl_files_are_different_models():
    write_taesd(paths_internal.models_path, "sd", seed=0)
    write_taesd(paths_internal.models_path, "sdxl", seed=10)
    z = latents()
    assert not torch.equal(sd_vae_taesd.decode(model_stub("sd"), z), sd_vae_taesd.decode(model_stub("sdxl"), z))


@pytest.mark.parametrize("change", ["extra key", "missing key", "wrong shape"])
def test_a_file_off_the_layout_is_refused_with_its_path(change):
    sd = random_state_dict(taesd_decoder_shapes(), 0)
    if change == "extra key":
        sd["20.weight"] = torch.zeros(3)
    elif change == "missing key":
        del sd["7.weight"]
    else:
        sd["1.weight"] = torch.zeros(64, 16, 3, 3)
    path = os.path.join(paths_internal.models_path, "VAE-taesd", "taesd_decoder.pth")
    write(path, sd)
    with pytest.raises(sd_vae_taesd.WeightsUnavailable, match=f"Could not load {path}"):
        sd_vae_taesd.decoder_model("sd")


# ---- decoding ----

def test_taesd_decode_is_8x_in_0_1_and_matches_the_reference():
    dec, enc = write_taesd(paths_internal.models_path)
    z = latents()
    out = sd_vae_taesd.decode(model_stub(), z)
    assert out.shape == (1, 3, 24, 40) and out.min() >= 0 and out.max() <= 1 and out.std() > 0.01
    assert torch.allclose(out, ref_taesd_decode(dec, z), atol=1e-5)
    image = torch.rand(1, 3, 24, 40, generator=torch.Generator().manual_seed(4))
    encoded = sd_vae_taesd.encode(model_stub(), image)
    assert encoded.shape == (1, 4, 3, 5) and torch.allclose(encoded, ref_taesd_encode(enc, image), atol=1e-5)


def test_approx_nn_decodes_to_twice_the_latent_size_like_the_reference():
    sd = write_approx(paths_internal.models_path)
    z = latents()
    out = sd_vae_approx.decode(model_stub(), z)
    assert out.shape == (1, 3, 6, 10) and torch.allclose(out, ref_approx(sd, z), atol=1e-5)


def test_live_previews_run_the_real_decoders():
    dec, _ = write_taesd(paths_internal.models_path)
    approx = write_approx(paths_internal.models_path)
    z = latents()
    taesd = live_preview.latents_to_images(z, model_stub(), "TAESD")[0]
    nn_image = live_preview.latents_to_images(z, model_stub(), "Approx NN")[0]
    assert taesd.size == (40, 24) and nn_image.size == (10, 6)
    assert np.array_equal(pixels(taesd), pixels(processing.batch_to_images(ref_taesd_decode(dec, z))[0]))
    assert np.array_equal(pixels(nn_image), pixels(processing.batch_to_images(ref_approx(approx, z))[0]))
    cheap = live_preview.approx_cheap(z)[0]
    assert not np.array_equal(pixels(nn_image.resize(cheap.size, Image.NEAREST)), pixels(cheap))


@pytest.mark.parametrize("memory_mode, allow, expected", [
    ("normal", False, "Full"), ("medvram", False, "Approx NN"), ("lowvram", True, "Full")])
def test_full_becomes_approx_nn_under_medvram_and_lowvram(monkeypatch, memory_mode, allow, expected):
    monkeypatch.setitem(shared_options.opts.data, "live_preview_allow_lowvram_full", allow)
    assert live_preview.effective_method("Full", model_stub(memory_mode=memory_mode)) == expected


def test_missing_weights_fall_back_to_cheap_with_one_warning(monkeypatch, caplog):
    attempts = []
    real_download = modelloader.download
    monkeypatch.setattr(modelloader, "download", lambda url, path: attempts.append(url) or real_download(url, path))
    z = latents()
    with caplog.at_level(logging.WARNING, logger="modules.live_preview"):
        for _ in range(3):
            for method in ("TAESD", "Approx NN"):
                image = live_preview.latents_to_images(z, model_stub(), method)[0]
                assert np.array_equal(pixels(image), pixels(live_preview.approx_cheap(z)[0]))
    warnings = [r.getMessage() for r in caplog.records if r.name == "modules.live_preview"]
    assert len(warnings) == 2 and len(attempts) == 2  # one per method, never retried
    taesd_warning = next(w for w in warnings if w.startswith("Live preview TAESD"))
    folder = os.path.join(paths_internal.models_path, "VAE-taesd")
    assert "taesd_decoder.pth" in taesd_warning and folder in taesd_warning and UNREACHABLE + "taesd_decoder.pth" in taesd_warning
    assert live_preview.effective_method("TAESD", model_stub()) == live_preview.CHEAP
    assert not os.path.exists(folder)


# ---- downloads ----

class _Handler(BaseHTTPRequestHandler):
    def do_GET(self):
        self.server.requests.append(self.path)
        status, body, length = self.server.routes.get(self.path, (404, b"", 0))
        self.send_response(status)
        self.send_header("Content-Length", str(length))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


@pytest.fixture()
def server():
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    httpd.routes, httpd.requests = {}, []
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield httpd
    httpd.shutdown()
    httpd.server_close()


def url(server, name=""):
    return f"http://127.0.0.1:{server.server_address[1]}/{name}"


def test_download_writes_the_file_whole_or_not_at_all(server, tmp_path):
    server.routes["/good"] = (200, b"abc" * 1000, 3000)
    server.routes["/cut"] = (200, b"abc" * 10, 3000)  # the connection ends before the promised length
    target = tmp_path / "dl" / "file.pth"
    modelloader.download(url(server, "good"), str(target))
    assert target.read_bytes() == b"abc" * 1000 and os.listdir(tmp_path / "dl") == ["file.pth"]
    for name in ("cut", "missing"):
        other = tmp_path / "dl" / f"{name}.pth"
        with pytest.raises(httpx.HTTPError):  # RemoteProtocolError, HTTPStatusError
            modelloader.download(url(server, name), str(other))
        assert not other.exists()
    assert os.listdir(tmp_path / "dl") == ["file.pth"]


def test_a_missing_file_is_downloaded_once_and_used(server, monkeypatch, tmp_path):
    source = tmp_path / "served.pth"
    sd = write(str(source), random_state_dict(taesd_decoder_shapes(), 5, "19.bias"))
    body = source.read_bytes()
    server.routes["/taesd_decoder.pth"] = (200, body, len(body))
    monkeypatch.setattr(sd_vae_taesd, "TAESD_URL", url(server))
    z = latents()
    for _ in range(2):
        assert torch.allclose(sd_vae_taesd.decode(model_stub(), z), ref_taesd_decode(sd, z), atol=1e-5)
    assert server.requests == ["/taesd_decoder.pth"]
    assert (tmp_path / "models" / "VAE-taesd" / "taesd_decoder.pth").read_bytes() == body


def test_offline_error_names_the_file_the_folder_and_the_url(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr(modelloader, "download", lambda *a: pytest.fail("no request may be made offline"))
    folder = os.path.join(paths_internal.models_path, "VAE-approx")
    with pytest.raises(sd_vae_taesd.WeightsUnavailable) as error:
        sd_vae_approx.model("sdxl")
    message = str(error.value)
    assert "vaeapprox-sdxl.pt" in message and folder in message and "HF_HUB_OFFLINE" in message
    assert UNREACHABLE + "vaeapprox-sdxl.pt" in message


# ---- the VAE methods of a job ----

@pytest.fixture()
def engine(tiny_models_dir, tmp_path):
    models = tmp_path / "models"
    models.mkdir(exist_ok=True)
    (models / "Stable-diffusion").symlink_to(tiny_models_dir / "Stable-diffusion")
    return start_engine(models, tmp_path / "data")


def run_job(cls, **kwargs) -> processing.Processed:
    """A job of the tiny SD1; the processing object is on the result as `.p`."""
    defaults = {"prompt": "a red cube", "negative_prompt": "", "steps": 3, "width": 64, "height": 64, "seed": 77,
                "sampler_name": "Euler", "cfg_scale": 7.0, "do_not_save_samples": True, "do_not_save_grid": True}
    defaults.update(kwargs)
    shared_options.opts.set("sd_model_checkpoint", "tiny_sd1")
    p = cls(**defaults)
    result = processing.process_images(p)
    result.p = p
    return result


def capture_decodes(monkeypatch) -> list:
    seen = []
    real = processing.decode_to_tensor
    monkeypatch.setattr(processing, "decode_to_tensor", lambda model, x, method=None: seen.append(x) or real(model, x, method))
    return seen


def test_decode_method_taesd_decodes_the_job_and_says_so(engine, monkeypatch):
    dec, _ = write_taesd(paths_internal.models_path)
    seen = capture_decodes(monkeypatch)
    full = run_job(processing.StableDiffusionProcessingTxt2Img)
    taesd = run_job(processing.StableDiffusionProcessingTxt2Img, override_settings={"sd_vae_decode_method": "TAESD"})
    again = run_job(processing.StableDiffusionProcessingTxt2Img)
    assert torch.equal(seen[0], seen[1]) and torch.equal(seen[0], seen[2])  # only the decode differs
    vae = engine.current.vae
    with torch.inference_mode():
        plain = ((vae.decode(seen[0] / vae.config.scaling_factor).sample + 1) / 2).clamp(0, 1)
    assert np.array_equal(pixels(full.images[0]), pixels(processing.batch_to_images(plain)[0]))
    assert np.array_equal(pixels(again.images[0]), pixels(full.images[0]))
    assert np.array_equal(pixels(taesd.images[0]), pixels(processing.batch_to_images(ref_taesd_decode(dec, seen[1]))[0]))
    assert not np.array_equal(pixels(taesd.images[0]), pixels(full.images[0]))
    assert "VAE Decoder: TAESD" in taesd.info and "VAE Decoder" not in full.info and "VAE Decoder" not in again.info
    assert shared_options.opts.sd_vae_decode_method == "Full"


def test_decode_method_taesd_without_weights_fails_the_job_clearly(engine):
    with pytest.raises(sd_vae_taesd.WeightsUnavailable, match="taesd_decoder.pth not found in .*VAE-taesd"):
        run_job(processing.StableDiffusionProcessingTxt2Img, override_settings={"sd_vae_decode_method": "TAESD"})


def test_encode_method_taesd_encodes_the_init_image(engine):
    _, enc = write_taesd(paths_internal.models_path)
    rng = np.random.default_rng(0)
    init = Image.fromarray(np.kron(rng.integers(0, 255, (8, 8, 3)), np.ones((8, 8, 1))).astype(np.uint8))
    common = {"init_images": [init], "denoising_strength": 0.5}
    full = run_job(processing.StableDiffusionProcessingImg2Img, **common)
    taesd = run_job(processing.StableDiffusionProcessingImg2Img, override_settings={"sd_vae_encode_method": "TAESD"}, **common)
    expected = ref_taesd_encode(enc, torch.from_numpy(np.asarray(init, dtype=np.float32) / 255).permute(2, 0, 1)[None])
    assert torch.allclose(taesd.p.init_latent, expected, atol=1e-5)
    assert "VAE Encoder: TAESD" in taesd.info and "VAE Encoder" not in full.info
    assert not np.array_equal(pixels(taesd.images[0]), pixels(full.images[0]))


def test_a_job_with_failing_previews_keeps_its_pixels(engine, caplog):
    baseline = run_job(processing.StableDiffusionProcessingTxt2Img)
    previews = []

    def preview(params):
        previews.append((live_preview.decode_preview(params.x), live_preview.approx_cheap(params.x)[0]))

    script_callbacks.on_cfg_after_cfg(preview)
    try:
        with caplog.at_level(logging.WARNING, logger="modules.live_preview"):
            result = run_job(processing.StableDiffusionProcessingTxt2Img,
                             override_settings={"show_progress_type": "TAESD", "show_progress_grid": False})
    finally:
        script_callbacks.remove_callbacks_for_function(preview)
    assert len(previews) == 3 and all(np.array_equal(pixels(a), pixels(b)) for a, b in previews)
    assert len([r for r in caplog.records if r.name == "modules.live_preview"]) == 1
    assert np.array_equal(pixels(result.images[0]), pixels(baseline.images[0]))
