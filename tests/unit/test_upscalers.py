"""Upscalers: the list (None/Lanczos/Nearest first, every model file by name), spandrel loading of tiny random
ESRGAN x4 and RealESRGAN-compact x2 files, sizes, tiling, plain resizers equal to Pillow's."""
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from PIL import Image

from modules import modelloader, paths_internal, upscaler, upscaler_spandrel
from modules.shared_options import opts
from modules.upscaler import UpscalerLanczos, UpscalerNearest, UpscalerNone, tiled_upscale
from tests.fixtures.upscalers import compact_x2, esrgan_x4, write_compact_x2, write_esrgan_x4


@pytest.fixture(scope="module")
def models_dir(tmp_path_factory):
    root = tmp_path_factory.mktemp("models")
    write_esrgan_x4(root / "ESRGAN" / "tiny_esrgan_4x.pth")
    write_esrgan_x4(root / "ESRGAN" / "sub" / "Another ESRGAN.safetensors", seed=5)
    write_compact_x2(root / "RealESRGAN" / "tiny_compact_x2.safetensors")
    (root / "ESRGAN" / "readme.txt").write_text("not a model")
    return root


@pytest.fixture()
def upscalers(models_dir, tmp_path, monkeypatch):
    saved = paths_internal.models_path
    paths_internal.configure(str(tmp_path), str(models_dir))
    extra = tmp_path / "flag-dir"
    write_compact_x2(extra / "from_flag_x2.pth", seed=9)
    monkeypatch.setitem(opts.data, "ESRGAN_tile", 0)
    yield {d.name: d for d in upscaler.refresh_upscalers(SimpleNamespace(esrgan_models_path=str(extra), use_cpu=[]))}
    paths_internal.configure(str(tmp_path), saved)
    upscaler.sd_upscalers.clear()


def random_image(width=48, height=32, seed=0) -> Image.Image:
    return Image.fromarray(np.random.RandomState(seed).randint(0, 256, (height, width, 3), dtype=np.uint8))


def test_list_order_names_and_scales(upscalers):
    assert [d.name for d in upscaler.sd_upscalers] == [
        "None", "Lanczos", "Nearest", "Another ESRGAN", "ESRGAN_4x", "from_flag_x2", "R-ESRGAN 4x+", "R-ESRGAN 4x+ Anime6B",
        "SwinIR 4x", "tiny_compact_x2", "tiny_esrgan_4x"]
    assert upscalers["tiny_esrgan_4x"].scale == 4 and upscalers["tiny_compact_x2"].scale == 2
    assert upscalers["from_flag_x2"].data_path.endswith("flag-dir/from_flag_x2.pth")
    assert upscaler.find_upscaler("None") is None
    with pytest.raises(ValueError, match="Upscaler not found: nope. Available: None, Lanczos"):
        upscaler.find_upscaler("nope")


@pytest.mark.parametrize(("name", "scale", "size"), [
    ("tiny_esrgan_4x", 4, (192, 128)),
    ("tiny_esrgan_4x", 2, (96, 64)),  # one 4x pass, then Lanczos down to the asked size
    ("tiny_compact_x2", 2, (96, 64)),
    ("tiny_compact_x2", 4, (192, 128)),  # two 2x passes
    ("tiny_compact_x2", 2.5, (120, 80)),
    ("Lanczos", 3, (144, 96)),
])
def test_output_size(upscalers, name, scale, size):
    data = upscalers[name]
    result = data.scaler.upscale(random_image(), scale, data.data_path)
    assert result.size == size and result.mode == "RGB"


def test_model_output_is_the_network_output(upscalers):
    """The file's weights are used as they are: the upscale equals running the fixture's own network."""
    image = random_image()
    data = upscalers["tiny_esrgan_4x"]
    result = np.asarray(data.scaler.upscale(image, 4, data.data_path), dtype=np.int16)
    tensor = torch.from_numpy(np.asarray(image, dtype=np.float32) / 255).permute(2, 0, 1)[None]
    with torch.inference_mode():
        expected = esrgan_x4()(tensor).clamp(0, 1).mul(255).round()[0].permute(1, 2, 0).numpy().astype(np.int16)
    assert np.array_equal(result, expected)


def test_sides_rounded_down_to_multiples_of_8():
    assert UpscalerLanczos().upscale(random_image(50, 30), 2).size == (96, 56)
    with pytest.raises(ValueError, match="leaves no pixels"):
        UpscalerLanczos().upscale(random_image(5, 5), 1)


@pytest.mark.parametrize(("cls", "resample"), [(UpscalerLanczos, Image.Resampling.LANCZOS),
                                               (UpscalerNearest, Image.Resampling.NEAREST)])
@pytest.mark.parametrize("scale", [2, 2.5, 4])
def test_plain_resizers_equal_pillow(cls, resample, scale):
    image = random_image(48, 32)
    expected = image.resize((int(48 * scale), int(32 * scale)), resample=resample)
    assert cls().upscale(image, scale).tobytes() == expected.tobytes()


def test_none_returns_the_image_unchanged():
    image = random_image()
    assert UpscalerNone().upscale(image, 1).tobytes() == image.tobytes()


@pytest.mark.parametrize(("network", "scale", "max_levels", "mean_levels"), [
    (esrgan_x4, 4, 1.0, 0.1),
    (compact_x2, 2, 6.0, 0.5),
])
def test_tiled_equals_untiled_within_tolerance(network, scale, max_levels, mean_levels):
    model = network()
    image = torch.rand(1, 3, 40, 56, generator=torch.Generator().manual_seed(3))
    with torch.inference_mode():
        whole = model(image).clamp(0, 1)
        tiled = tiled_upscale(image, lambda t: model(t).clamp(0, 1), scale, 16, 8)
        untiled = tiled_upscale(image, lambda t: model(t).clamp(0, 1), scale, 0, 8)
    assert tiled.shape == whole.shape == (1, 3, 40 * scale, 56 * scale)
    assert torch.equal(untiled, whole)
    diff = (tiled - whole).abs() * 255
    assert diff.max() <= max_levels and diff.mean() <= mean_levels
    assert diff.max() > 0  # the tiles really ran separately


def test_tiling_covers_every_pixel_once_with_identity_weights():
    """An identity 'model' comes back exactly, whatever the tiling: the cross-fade weights sum to one."""
    image = torch.rand(1, 3, 37, 51)
    for tile, overlap in ((8, 2), (16, 8), (10, 9), (64, 8)):
        assert torch.allclose(tiled_upscale(image, lambda t: t, 1, tile, overlap), image, atol=1e-6)


def test_tile_starts_and_ramp():
    assert upscaler._tile_starts(40, 16, 8) == [0, 8, 16, 24]
    assert upscaler._tile_starts(16, 16, 8) == [0]
    assert upscaler._tile_starts(50, 32, 8) == [0, 18]
    assert upscaler._ramp(6, 2, 0).tolist() == pytest.approx([1 / 3, 2 / 3, 1, 1, 1, 1])
    assert upscaler._ramp(5, 0, 2).tolist() == pytest.approx([1, 1, 1, 2 / 3, 1 / 3])


def test_tile_settings_are_used(upscalers, monkeypatch):
    data = upscalers["tiny_compact_x2"]
    image = random_image(64, 48)
    untiled = np.asarray(data.scaler.upscale(image, 2, data.data_path), dtype=np.int16)
    monkeypatch.setitem(opts.data, "ESRGAN_tile", 16)
    monkeypatch.setitem(opts.data, "ESRGAN_tile_overlap", 8)
    tiled = np.asarray(data.scaler.upscale(image, 2, data.data_path), dtype=np.int16)
    assert not np.array_equal(untiled, tiled) and np.abs(untiled - tiled).mean() < 1


def test_unsupported_file_and_code_in_pickles_are_refused(tmp_path):
    from safetensors.torch import save_file

    save_file({"some.weight": torch.zeros(2, 2)}, str(tmp_path / "odd.safetensors"))
    with pytest.raises(ValueError, match="odd.safetensors: the model architecture in this file is not supported"):
        upscaler_spandrel.load_spandrel_model(str(tmp_path / "odd.safetensors"), torch.device("cpu"))
    torch.save({"params": esrgan_x4().state_dict(), "extra": SimpleNamespace(a=1)}, tmp_path / "code.pth")
    with pytest.raises(ValueError, match="Cannot read .*code.pth as plain weights"):
        upscaler_spandrel.load_spandrel_model(str(tmp_path / "code.pth"), torch.device("cpu"))


def test_expected_architecture_is_checked(models_dir):
    with pytest.raises(ValueError, match="holds a RealESRGAN Compact model, expected GFPGAN"):
        upscaler_spandrel.load_spandrel_model(str(models_dir / "RealESRGAN" / "tiny_compact_x2.safetensors"),
                                              torch.device("cpu"), expected_architectures=("GFPGAN",))


def test_missing_model_file_names_it(upscalers):
    with pytest.raises(FileNotFoundError, match="Upscaler model file not found: /no/such.pth"):
        upscalers["tiny_esrgan_4x"].scaler.upscale(random_image(), 4, "/no/such.pth")


@pytest.mark.parametrize(("name", "scale"), [("4x-UltraSharp", 4), ("RealESRGAN_x2plus", 2), ("ESRGAN_4x", 4),
                                             ("x3_model", 3), ("BSRGAN", 4), ("model_x16", 4)])
def test_scale_from_name(name, scale):
    assert upscaler_spandrel.scale_from_name(f"/m/{name}.pth") == scale


def test_use_cpu_flag_picks_the_cpu():
    assert upscaler_spandrel.model_device("esrgan", SimpleNamespace(use_cpu=["esrgan"])).type == "cpu"
    assert upscaler_spandrel.model_device("gfpgan", SimpleNamespace(use_cpu=["all"])).type == "cpu"


def test_models_path_flag_names():
    assert upscaler.models_path_flag(upscaler_spandrel.UpscalerRealESRGAN) == "realesrgan_models_path"
    assert upscaler.models_path_flag(upscaler_spandrel.UpscalerDAT) == "dat_models_path"


def test_upscale_to_covers_then_resizes_exactly(upscalers):
    image = random_image(48, 32)
    result = upscaler.upscale_to(image, 100, 60, "tiny_compact_x2")
    data = upscalers["tiny_compact_x2"]
    covering = data.scaler.upscale(image, max(100 / 48, 60 / 32), data.data_path)
    assert result.size == (100, 60)
    assert result.tobytes() == covering.resize((100, 60), Image.Resampling.LANCZOS).tobytes()
    assert upscaler.upscale_to(image, 24, 16, "tiny_esrgan_4x").tobytes() == image.resize((24, 16), Image.Resampling.LANCZOS).tobytes()


OFFERED = {  # A1111's names, URLs and file names (modules/realesrgan_model.py, esrgan_model.py, SwinIR)
    "ESRGAN_4x": ("https://github.com/cszn/KAIR/releases/download/v1.0/ESRGAN.pth", "ESRGAN", "ESRGAN_4x.pth"),
    "R-ESRGAN 4x+": ("https://github.com/xinntao/Real-ESRGAN/releases/download/v0.1.0/RealESRGAN_x4plus.pth",
                     "RealESRGAN", "RealESRGAN_x4plus.pth"),
    "R-ESRGAN 4x+ Anime6B": ("https://github.com/xinntao/Real-ESRGAN/releases/download/v0.2.2.4/"
                             "RealESRGAN_x4plus_anime_6B.pth", "RealESRGAN", "RealESRGAN_x4plus_anime_6B.pth"),
    "SwinIR 4x": ("https://github.com/JingyunLiang/SwinIR/releases/download/v0.0/"
                  "003_realSR_BSRGAN_DFOWMFC_s64w8_SwinIR-L_x4_GAN.pth", "SwinIR", "SwinIR_4x.pth"),
}


@pytest.fixture()
def empty_models(tmp_path, monkeypatch):
    """A models folder with no upscaler file; downloads fail loudly unless a test says otherwise."""
    saved = paths_internal.models_path
    paths_internal.configure(str(tmp_path), str(tmp_path / "models"))
    monkeypatch.setitem(opts.data, "ESRGAN_tile", 0)

    def no_download(url, path, timeout=None):
        raise AssertionError(f"downloaded {url}")

    monkeypatch.setattr(modelloader, "download", no_download)
    monkeypatch.setattr(modelloader, "offline", lambda: False)
    yield tmp_path / "models"
    paths_internal.configure(str(tmp_path), saved)
    upscaler.sd_upscalers.clear()


def refreshed() -> dict:
    return {d.name: d for d in upscaler.refresh_upscalers(SimpleNamespace(use_cpu=[]))}


def test_a1111s_models_are_offered_by_name_before_their_file_exists(empty_models):
    listed = refreshed()
    for name, (url, _, _) in OFFERED.items():
        assert listed[name].data_path == url and listed[name].scale == 4


def test_an_offered_models_file_in_its_folder_is_used_without_a_download(empty_models):
    path = write_esrgan_x4(empty_models / "RealESRGAN" / "RealESRGAN_x4plus.pth")  # the real file's name
    data = refreshed()["R-ESRGAN 4x+"]
    assert data.data_path == str(path)
    assert "RealESRGAN_x4plus" not in refreshed()  # listed once, under A1111's name
    image = random_image()
    result = np.asarray(data.scaler.upscale(image, 4, data.data_path), dtype=np.int16)
    tensor = torch.from_numpy(np.asarray(image, dtype=np.float32) / 255).permute(2, 0, 1)[None]
    with torch.inference_mode():
        expected = esrgan_x4()(tensor).clamp(0, 1).mul(255).round()[0].permute(1, 2, 0).numpy().astype(np.int16)
    assert np.array_equal(result, expected)


def test_choosing_an_offered_model_downloads_its_file_once(empty_models, monkeypatch):
    fetched = []

    def fake_download(url, path, timeout=None):
        fetched.append((url, path))
        write_esrgan_x4(Path(path))

    monkeypatch.setattr(modelloader, "download", fake_download)
    data = refreshed()["ESRGAN_4x"]
    for _ in range(2):
        assert data.scaler.upscale(random_image(), 4, data.data_path).size == (192, 128)
    assert fetched == [(OFFERED["ESRGAN_4x"][0], str(empty_models / "ESRGAN" / "ESRGAN_4x.pth"))]
    assert refreshed()["ESRGAN_4x"].data_path == str(empty_models / "ESRGAN" / "ESRGAN_4x.pth")


@pytest.mark.parametrize("name", list(OFFERED))
def test_a_failed_download_says_which_file_from_where_into_which_folder(empty_models, monkeypatch, name):
    def refused(url, path, timeout=None):
        raise OSError("connection refused")

    monkeypatch.setattr(modelloader, "download", refused)
    url, folder, file_name = OFFERED[name]
    data = refreshed()[name]
    with pytest.raises(upscaler_spandrel.ModelNotDownloaded) as raised:
        data.scaler.upscale(random_image(), 4, data.data_path)
    assert str(raised.value) == (f"{name}: could not download {file_name} from {url} (connection refused). "
                                 f"Download it and put it in {empty_models / folder}")
    assert isinstance(raised.value, ValueError)  # a user's matter: a message on the page, a 422 from the API
