"""depth_midas: MiDaS v3 DPT-Hybrid from the original file's layout, run as transformers' DPTForDepthEstimation."""
from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from modules.controlnet import annotator_midas, annotators, preprocessors
from modules.sd_models_loader import CheckpointLoadError
from tests.fixtures.controlnets import write_midas

FILE = ("midas", "dpt_hybrid-midas-501f0c75.pt")


def dirs(tmp_path):
    return preprocessors.annotator_dirs(str(tmp_path / "models"), str(tmp_path))


def picture(h: int, w: int) -> Image.Image:
    return Image.fromarray(np.random.default_rng(0).integers(0, 256, (h, w, 3), dtype=np.uint8))


def stretched(depth: torch.Tensor) -> np.ndarray:
    return ((depth - depth.min()) / (depth.max() - depth.min()) * 255.0).clamp(0, 255).numpy().astype(np.uint8)


def test_every_weight_comes_from_the_file_and_the_classifier_is_left_out(tmp_path):
    path = tmp_path / "models" / "ControlNetAnnotators" / FILE[0] / FILE[1]
    made = write_midas(path)
    assert annotators.annotator_file("depth_midas", *FILE, dirs(tmp_path)) == path
    loaded = annotator_midas.load_midas(path).state_dict()
    assert loaded.keys() == made.state_dict().keys()
    assert all(torch.equal(loaded[k], v) for k, v in made.state_dict().items())
    sd = torch.load(path)
    del sd["scratch.refinenet2.out_conv.weight"]
    torch.save(sd, path)
    with pytest.raises(CheckpointLoadError, match="1 missing"):
        annotator_midas.load_midas(path)


def test_the_map_is_the_models_depth_stretched_to_0_255_near_bright(tmp_path):
    path = tmp_path / "extensions" / "sd-webui-controlnet" / "annotator" / "downloads" / FILE[0] / FILE[1]
    made = write_midas(path)
    image = picture(64, 64)  # transformers' own forward takes only the square size it was made for
    result = np.asarray(preprocessors.detect("depth", image, 64, -1, -1, dirs(tmp_path)))  # the extension's old name
    x = torch.from_numpy(np.asarray(image, dtype=np.float32) / 127.5 - 1.0).permute(2, 0, 1)[None]
    with torch.no_grad():
        expected = stretched(made(pixel_values=x).predicted_depth[0])
    assert result.shape == (64, 64, 3) and len(np.unique(expected)) > 32
    assert np.abs(result[..., 0].astype(int) - expected.astype(int)).max() <= 1
    assert np.array_equal(result[..., 0], result[..., 2])


def test_any_size_runs_padded_to_64_and_cut_back(tmp_path):
    path = tmp_path / "models" / "ControlNetAnnotators" / FILE[0] / FILE[1]
    made = write_midas(path, seed=1)
    image = picture(40, 100)
    result = np.asarray(preprocessors.detect("depth_midas", image, 40, -1, -1, dirs(tmp_path)))
    padded = np.pad(np.asarray(image), ((0, 24), (0, 28), (0, 0)), mode="edge")
    x = torch.from_numpy(padded.astype(np.float32) / 127.5 - 1.0).permute(2, 0, 1)[None]
    with torch.no_grad():
        depth = annotator_midas.predict(made, x)[0]
    assert depth.shape == (64, 128)
    expected = stretched(depth)[:40, :100]
    assert result.shape == (40, 100, 3) and len(np.unique(expected)) > 16
    assert np.abs(result[..., 0].astype(int) - expected.astype(int)).max() <= 1
