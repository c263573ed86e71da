"""The model-free preprocessors on a synthetic image, and the offline message of a model-based one."""
from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from modules.controlnet import preprocessors


def square(size=64) -> Image.Image:
    image = np.zeros((size, size, 3), dtype=np.uint8)
    image[16:48, 16:48] = 255
    return Image.fromarray(image)


def detect(name, image=None, res=64, a=-1, b=-1, **kw) -> np.ndarray:
    return np.asarray(preprocessors.detect(name, image or square(), res, a, b, [], **kw))


def test_canny_edges_lie_on_the_square_border():
    edges = detect("canny")[..., 0] > 0
    ys, xs = np.nonzero(edges)
    assert edges.any()
    # every edge pixel is within a pixel of the square's outline, and each side has edges
    on_border = (np.minimum(np.abs(ys[:, None] - [15, 16, 47, 48]).min(1), np.abs(xs[:, None] - [15, 16, 47, 48]).min(1)) == 0)
    assert on_border.all()
    assert not edges[20:44, 20:44].any() and not edges[:10].any()
    for side in (edges[16:48, 14:18], edges[16:48, 46:50], edges[14:18, 16:48], edges[46:50, 16:48]):
        assert side.sum() >= 24


def test_canny_high_threshold_above_every_gradient_gives_no_edges():
    assert not detect("canny", a=100, b=10_000).any()


def test_invert_and_threshold():
    assert np.array_equal(detect("invert"), 255 - np.asarray(square()))
    grey = Image.fromarray(np.full((64, 64, 3), 100, dtype=np.uint8))
    assert detect("threshold", grey, a=99).min() == 255 and detect("threshold", grey, a=101).max() == 0


def test_resolution_sets_the_short_side():
    wide = square().resize((128, 64))
    assert preprocessors.detect("canny", wide, 32, -1, -1, []).size == (64, 32)


def test_blur_colour_and_tile_maps():
    blurred = detect("blur_gaussian", a=4)
    assert 0 < blurred[16, 32, 0] < 255 and blurred[32, 32, 0] > 200
    assert detect("tile_resample", a=2).shape == (32, 32, 3)
    colour = detect("color", square(128), res=128)
    assert len(np.unique(colour.reshape(-1, 3), axis=0)) <= 4  # a 2x2 grid of cells


def test_lines_and_scribbles_mark_the_outline_only():
    for name in ("lineart_standard", "scribble_xdog"):
        lines = detect(name)[..., 0].astype(int)
        outline = max(lines[16:48, 14:18].max(), lines[16:48, 46:50].max())
        assert outline >= 64, name
        assert lines[2, 2] <= outline // 8 and lines[32, 32] <= outline // 8, name


def test_shuffle_keeps_colours_and_is_reproducible():
    a, b = detect("shuffle"), detect("shuffle")
    assert np.array_equal(a, b) and not np.array_equal(a, np.asarray(square()))
    assert a.min() == 0 and a.max() == 255


def test_inpaint_only_carries_the_mask_as_alpha():
    mask = Image.new("L", (64, 64), 0)
    mask.paste(255, (0, 0, 32, 64))
    out = detect("inpaint_only", mask=mask)
    assert out.shape == (64, 64, 4) and out[0, 0, 3] == 255 and out[0, 63, 3] == 0


def test_aliases_and_unknown_names():
    assert preprocessors.resolve("invert (from white bg & black line)").name == "invert"
    with pytest.raises(ValueError, match="Unknown ControlNet preprocessor 'nope'"):
        preprocessors.resolve("nope")


def test_missing_annotator_names_the_file_and_where_it_goes(tmp_path):
    dirs = preprocessors.annotator_dirs(str(tmp_path / "models"), str(tmp_path))
    with pytest.raises(preprocessors.AnnotatorMissingError) as error:
        preprocessors.detect("seg_ofade20k", square(), 64, -1, -1, dirs)  # one not built in: never downloaded
    message = str(error.value)
    assert "250_16_swin_l_oneformer_ade20k_160k.pth" in message
    assert str(tmp_path / "models" / "ControlNetAnnotators" / "oneformer") in message
    assert "annotator/downloads/oneformer" in message and "not downloaded" in message
