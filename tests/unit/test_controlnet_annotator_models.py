"""softedge_pidinet / pidisafe, lineart_anime and mlsd: files of the original layouts load with every tensor used,
the maps they give, and the message when a file cannot be had."""
from __future__ import annotations

import httpx
import numpy as np
import pytest
import torch
from PIL import Image

from modules import modelloader
from modules.controlnet import annotator_lineart_anime, annotator_mlsd, annotator_pidinet, preprocessors
from tests.fixtures.annotator_files import write_lineart_anime, write_mlsd, write_pidinet


def picture() -> Image.Image:
    return Image.fromarray(np.random.default_rng(0).integers(0, 256, (40, 56, 3), dtype=np.uint8))


def dirs(tmp_path):
    return preprocessors.annotator_dirs(str(tmp_path / "models"), str(tmp_path))


def annotator_path(tmp_path, folder: str, file: str):
    return tmp_path / "models" / "ControlNetAnnotators" / folder / file


def assert_loaded_from(model: torch.nn.Module, tensors: dict) -> None:
    state = model.state_dict()
    assert set(state) == set(tensors)
    assert all(torch.equal(state[k], tensors[k].float()) for k in tensors)


def constant(tensors: dict, layer: str, bias: float) -> dict:
    """The tensors with `layer` zeroed but for its bias: the network's output is then known."""
    out = dict(tensors)
    out[f"{layer}.weight"] = torch.zeros_like(tensors[f"{layer}.weight"])
    out[f"{layer}.bias"] = torch.full_like(tensors[f"{layer}.bias"], bias)
    return out


def detect(tmp_path, name: str, a: float = -1, b: float = -1) -> np.ndarray:
    return np.asarray(preprocessors.detect(name, picture(), 40, a, b, dirs(tmp_path)))


# --- PiDiNet


def windows(x: torch.Tensor, size: int) -> torch.Tensor:
    """Each pixel's size x size neighbourhood (zero padded), flattened row by row: (H*W, size*size)."""
    return torch.nn.functional.unfold(x, size, padding=size // 2)[0].T


@pytest.mark.parametrize("kind", ["cd", "ad", "rd", "cv"])
def test_pixel_difference_convolutions_follow_their_definitions(kind):
    torch.manual_seed(0)
    x, w = torch.randn(1, 1, 9, 11), torch.randn(1, 1, 3, 3)
    conv = annotator_pidinet.PixelDifferenceConv(kind, w)
    conv.weight = torch.nn.Parameter(w)
    taps = w.flatten()
    if kind == "rd":  # ring at distance 2 minus ring at distance 1, weighted by taps 1..8
        n = windows(x, 5)
        outer, inner = [0, 2, 4, 10, 14, 20, 22, 24], [6, 7, 8, 11, 13, 16, 17, 18]
        expected = ((n[:, outer] - n[:, inner]) * taps[1:]).sum(1)
    else:
        n = windows(x, 3)
        if kind == "cd":  # each pixel minus the centre
            expected = ((n - x.flatten()[:, None]) * taps).sum(1)
        elif kind == "ad":  # each pixel minus its clockwise neighbour around the centre
            following = [1, 2, 5, 0, 4, 8, 3, 6, 7]
            expected = ((n - n[:, following]) * taps).sum(1)
        else:
            expected = (n * taps).sum(1)
    with torch.no_grad():
        assert torch.allclose(conv(x).flatten(), expected, atol=1e-5)


def test_pidinet_loads_every_tensor_of_the_checkpoint(tmp_path):
    path = annotator_path(tmp_path, "pidinet", "table5_pidinet.pth")
    tensors = write_pidinet(path)
    model = annotator_pidinet.load(path)
    assert_loaded_from(model, tensors)
    assert len(model.dilations) == len(model.attentions) == 4
    out = model(torch.rand(1, 3, 24, 40))
    assert out.shape == (1, 1, 24, 40) and 0 <= out.min() and out.max() <= 1


def test_softedge_pidinet_and_pidisafe_maps(tmp_path):
    path = annotator_path(tmp_path, "pidinet", "table5_pidinet.pth")
    tensors = write_pidinet(path)
    soft = detect(tmp_path, "softedge_pidinet")
    assert soft.shape == (40, 56, 3) and len(np.unique(soft)) > 8
    assert preprocessors.resolve("pidinet").name == "softedge_pidinet"
    assert preprocessors.resolve("pidinet_safe").name == "softedge_pidisafe"
    safe = detect(tmp_path, "softedge_pidisafe")
    assert set(np.unique(safe)) == {0, 127, 255}
    # the safe step: edges below 1/3 -> 0, below 2/3 -> half, else full
    edges = annotator_pidinet.edges(path, np.asarray(picture()))
    assert np.array_equal(safe[..., 0], np.select([edges < 1 / 3, edges < 2 / 3], [0, 127], 255))
    for bias, expected_soft, expected_safe in ((4.0, 250, 255), (-4.0, 4, 0)):
        torch.save({"state_dict": {f"module.{k}": v for k, v in constant(tensors, "classifier", bias).items()}}, path)
        assert (detect(tmp_path, "softedge_pidinet") == expected_soft).all()
        assert (detect(tmp_path, "softedge_pidisafe") == expected_safe).all()


# --- lineart_anime


def test_lineart_anime_loads_every_tensor_of_the_unet(tmp_path):
    path = annotator_path(tmp_path, "lineart_anime", "netG.pth")
    tensors = write_lineart_anime(path)
    model = annotator_lineart_anime.load(path)
    assert_loaded_from(model, tensors)
    assert model.levels == 8
    out = model(torch.rand(1, 3, 256, 512) * 2 - 1)
    assert out.shape == (1, 1, 256, 512) and out.abs().max() <= 1


def test_lineart_anime_gives_the_generators_ink_as_white_lines(tmp_path):
    path = annotator_path(tmp_path, "lineart_anime", "netG.pth")
    tensors = write_lineart_anime(path)
    varied = detect(tmp_path, "lineart_anime")
    assert varied.shape == (40, 56, 3) and len(np.unique(varied)) > 8
    assert np.array_equal(varied, detect(tmp_path, "lineart_anime"))
    for bias, expected in ((-5.0, 255), (5.0, 1)):  # tanh: ink (-1) -> white; paper (+1) -> black
        torch.save(constant(tensors, "model.model.3", bias), path)
        assert (detect(tmp_path, "lineart_anime") == expected).all()


# --- M-LSD


def line_maps(h: int, w: int, centre: tuple[int, int], ends: tuple[float, float, float, float], logit: float = 10.0):
    """Maps with one line centre (score logit) whose displacements reach the given ends; elsewhere no line."""
    maps = torch.zeros(1, 5, h, w)
    maps[0, 0] = -10.0
    y, x = centre
    maps[0, 0, y, x] = logit
    maps[0, 1:, y, x] = torch.tensor(ends)
    return maps


def test_mlsd_decodes_a_centre_and_its_displacements_into_a_segment_at_input_scale():
    maps = line_maps(32, 32, (10, 12), (-5.0, 0.0, 5.0, 0.0))
    assert annotator_mlsd.decode_lines(maps, 0.1, 0.1) == [(14.0, 20.0, 34.0, 20.0)]
    assert annotator_mlsd.decode_lines(maps, 0.1, 9.9) == [(14.0, 20.0, 34.0, 20.0)]
    assert annotator_mlsd.decode_lines(maps, 0.1, 10.0) == []  # b: the ends 10 map pixels apart are not enough
    assert annotator_mlsd.decode_lines(line_maps(32, 32, (10, 12), (-5.0, 0.0, 5.0, 0.0), logit=0.0), 0.5, 0.1) == []
    drawn = annotator_mlsd.draw_lines([(14.0, 20.0, 34.0, 20.0)], 64, 64)
    assert drawn[20, 14:35].min() == 255 and drawn.sum() == 21 * 255


def test_mlsd_keeps_only_local_maxima_of_the_centre_score():
    maps = line_maps(32, 32, (10, 12), (-5.0, -5.0, 5.0, 5.0))
    maps[0, 0, 10, 13] = 9.0  # beside the stronger centre: not a line of its own
    maps[0, 1:, 10, 13] = torch.tensor([0.0, -6.0, 0.0, 6.0])
    maps[0, 0, 25, 25] = 5.0
    maps[0, 1:, 25, 25] = torch.tensor([-2.0, 3.0, 2.0, -3.0])
    assert annotator_mlsd.decode_lines(maps, 0.1, 0.1) == [(14.0, 10.0, 34.0, 30.0), (46.0, 56.0, 54.0, 44.0)]


def test_mlsd_loads_every_tensor_and_gives_half_size_maps(tmp_path):
    path = annotator_path(tmp_path, "mlsd", "mlsd_large_512_fp32.pth")
    tensors = write_mlsd(path)
    assert_loaded_from(annotator_mlsd.load(path), tensors)
    # files saved by old torch lack the batch norms' counters
    torch.save({k: v for k, v in tensors.items() if not k.endswith("num_batches_tracked")}, path)
    model = annotator_mlsd.load(path)
    assert model(torch.rand(1, 4, 64, 96)).shape == (1, 9, 32, 48)


def test_mlsd_draws_lines_with_thresholds_a_and_b(tmp_path):
    path = annotator_path(tmp_path, "mlsd", "mlsd_large_512_fp32.pth")
    write_mlsd(path)
    lines = detect(tmp_path, "mlsd", 0.01, 0.01)
    assert lines.shape == (40, 56, 3) and set(np.unique(lines)) == {0, 255}
    assert np.array_equal(lines, detect(tmp_path, "mlsd", 0.01, 0.01))
    assert not detect(tmp_path, "mlsd", 2.0, 0.01).any()  # a: no centre scores above 2
    # by hand: the image padded to 64 x 64 with its edge, a fourth channel of ones, all scaled to -1..1
    padded = np.pad(np.asarray(picture()), ((0, 24), (0, 8), (0, 0)), mode="edge").astype(np.float32)
    x = torch.from_numpy(np.concatenate([padded, np.ones((64, 64, 1), np.float32)], 2)).permute(2, 0, 1)[None]
    with torch.no_grad():
        maps = annotator_mlsd.load(path)(x / 127.5 - 1.0)
    found = annotator_mlsd.decode_lines(maps, 0.01, 0.01)
    b = float(np.median([np.hypot(x1 - x0, y1 - y0) / 2 for x0, y0, x1, y1 in found]))  # in map pixels
    longer = annotator_mlsd.decode_lines(maps, 0.01, b)
    assert 0 < len(longer) < len(found)
    assert np.array_equal(detect(tmp_path, "mlsd", 0.01, b)[..., 0], annotator_mlsd.draw_lines(longer, 64, 64)[:40, :56])
    assert np.array_equal(lines[..., 0], annotator_mlsd.draw_lines(found, 64, 64)[:40, :56])
    assert np.array_equal(detect(tmp_path, "mlsd"), detect(tmp_path, "mlsd", 0.1, 0.1))  # -1: the sliders' defaults


@pytest.mark.parametrize("name, folder, file", [("softedge_pidinet", "pidinet", "table5_pidinet.pth"),
                                                ("lineart_anime", "lineart_anime", "netG.pth"),
                                                ("mlsd", "mlsd", "mlsd_large_512_fp32.pth")])
def test_offline_a_missing_file_is_named_with_where_it_goes(tmp_path, monkeypatch, name, folder, file):
    calls = []

    def unreachable(url, path, timeout=None):
        calls.append(url)
        raise httpx.ConnectError("no network")
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr(modelloader, "download", unreachable)
    with pytest.raises(preprocessors.AnnotatorMissingError) as error:
        detect(tmp_path, name)
    message = str(error.value)
    assert file in message and "HF_HUB_OFFLINE" in message
    assert str(tmp_path / "models" / "ControlNetAnnotators" / folder) in message
    assert f"annotator/downloads/{folder}" in message
    assert not calls and not annotator_path(tmp_path, folder, file).exists()
