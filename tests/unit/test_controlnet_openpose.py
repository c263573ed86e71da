"""openpose: the body model loads from a file of the original layout, and peaks + PAFs are grouped into people and
drawn as the extension draws them."""
from __future__ import annotations

import httpx
import numpy as np
import pytest
import torch
from PIL import Image

from modules import modelloader
from modules.controlnet import annotator_openpose as openpose, preprocessors
from tests.fixtures.annotator_files import write_openpose

# a standing person (x, y) in a 160 x 160 map: nose, neck, right arm, left arm, right leg, left leg, eyes, ears
BODY = [(80, 40), (80, 60), (60, 60), (50, 85), (45, 110), (100, 60), (110, 85), (115, 110), (68, 105), (66, 130),
        (64, 150), (92, 105), (94, 130), (96, 150), (70, 30), (90, 30), (58, 36), (102, 36)]


def synthetic_maps(bodies, h: int, w: int) -> tuple[np.ndarray, np.ndarray]:
    """Heatmaps with a blob on each part, PAFs holding each limb's unit direction along its segment."""
    heatmaps, pafs = np.zeros((h, w, 19)), np.zeros((h, w, 38))
    yy, xx = np.mgrid[0:h, 0:w]
    for body in bodies:
        for part, (x, y) in enumerate(body):
            heatmaps[..., part] += np.exp(-((xx - x) ** 2 + (yy - y) ** 2) / (2 * 2.0 ** 2))
        for (a, b), (cx, cy) in zip(openpose.LIMBS, openpose.PAF_CHANNELS):
            (xa, ya), (xb, yb) = body[a], body[b]
            length = np.hypot(xb - xa, yb - ya)
            for t in np.linspace(0, 1, 200):
                x, y = round(xa + t * (xb - xa)), round(ya + t * (yb - ya))
                pafs[y - 1:y + 2, x - 1:x + 2, cx] = (xb - xa) / length
                pafs[y - 1:y + 2, x - 1:x + 2, cy] = (yb - ya) / length
    return heatmaps, pafs


def test_peaks_and_pafs_group_into_one_person_at_the_parts():
    heatmaps, pafs = synthetic_maps([BODY], 160, 160)
    found = openpose.peaks(heatmaps)
    assert [[(x, y) for x, y, *_ in part] for part in found] == [[p] for p in BODY]
    persons = openpose.people(found, openpose.connections(found, pafs, 160))
    assert persons == [[tuple(map(float, p)) for p in BODY]]


def test_two_people_side_by_side_are_two_skeletons():
    other = [(x + 150, y) for x, y in BODY]
    heatmaps, pafs = synthetic_maps([BODY, other], 160, 320)
    found = openpose.peaks(heatmaps)
    persons = openpose.people(found, openpose.connections(found, pafs, 160))
    assert sorted(persons) == sorted([[tuple(map(float, p)) for p in body] for body in (BODY, other)])


def test_without_pafs_nothing_is_grouped():
    heatmaps, _ = synthetic_maps([BODY], 160, 160)
    found = openpose.peaks(heatmaps)
    assert openpose.people(found, openpose.connections(found, np.zeros((160, 160, 38)), 160)) == []


def test_the_skeleton_is_drawn_in_the_limb_and_joint_colours_on_black():
    canvas = openpose.draw([[tuple(map(float, p)) for p in BODY]], 160, 160)
    assert canvas.shape == (160, 160, 3) and canvas.dtype == np.uint8
    for (a, b), color in zip(openpose.LIMBS[:openpose.DRAWN_LIMBS], openpose.COLORS):
        (xa, ya), (xb, yb) = BODY[a], BODY[b]
        mid = canvas[(ya + yb) // 2, (xa + xb) // 2]
        if np.hypot(xb - xa, yb - ya) > 16:  # the middle of a long limb is clear of the joints' dots
            assert tuple(mid) == tuple(int(c * 0.6) for c in color), (a, b)
    for (x, y), color in zip(BODY, openpose.COLORS):
        assert tuple(canvas[y, x]) == color
    assert not canvas[:20].any() and not canvas[:, :35].any()  # black around the figure
    # the two ear-to-shoulder links help the grouping but are not drawn
    assert not canvas[46:51, 57:62].any()


def test_the_body_model_loads_every_tensor_from_the_file_and_detect_gives_a_colour_map(tmp_path):
    path = tmp_path / "models" / "ControlNetAnnotators" / "openpose" / "body_pose_model.pth"
    tensors = write_openpose(path)
    model = openpose.load(path)
    assert model.stages == 6
    state = model.state_dict()
    assert set(state) == set(tensors) and all(torch.equal(state[k], tensors[k]) for k in tensors)
    pafs, heatmaps = model(torch.zeros(1, 3, 64, 48))
    assert pafs.shape == (1, 38, 8, 6) and heatmaps.shape == (1, 19, 8, 6) and (heatmaps >= 0).all()
    image = Image.fromarray(np.random.default_rng(0).integers(0, 256, (40, 56, 3), dtype=np.uint8))
    dirs = preprocessors.annotator_dirs(str(tmp_path / "models"), str(tmp_path))
    first = np.asarray(preprocessors.detect("openpose", image, 40, -1, -1, dirs))
    assert first.shape == (40, 56, 3) and first.dtype == np.uint8
    assert np.array_equal(first, np.asarray(preprocessors.detect("openpose", image, 40, -1, -1, dirs)))


def test_a_body_model_that_cannot_be_had_is_named_with_where_it_goes(tmp_path, monkeypatch):
    def unreachable(url, path, timeout=None):
        raise httpx.ConnectError("no network")
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr(modelloader, "download", unreachable)
    dirs = preprocessors.annotator_dirs(str(tmp_path / "models"), str(tmp_path))
    with pytest.raises(preprocessors.AnnotatorMissingError) as error:
        preprocessors.detect("openpose", Image.new("RGB", (32, 32)), 32, -1, -1, dirs)
    message = str(error.value)
    assert "body_pose_model.pth" in message and "HF_HUB_OFFLINE" in message
    assert str(tmp_path / "models" / "ControlNetAnnotators" / "openpose") in message
    assert "annotator/downloads/openpose" in message
