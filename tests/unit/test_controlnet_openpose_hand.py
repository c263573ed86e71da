"""openpose_hand: the hand model loads from a file of the original layout, boxes sit beyond the wrists, and the
keypoints come from the strongest area of each heatmap."""
from __future__ import annotations

import httpx
import numpy as np
import pytest
import torch
from PIL import Image

from modules import modelloader
from modules.controlnet import annotator_openpose_hand as hand, preprocessors
from tests.fixtures.annotator_files import write_openpose, write_openpose_hand


def _arm_person(shoulder, elbow, wrist, left: bool = True):
    person = [None] * 18
    person[5 if left else 2], person[6 if left else 3], person[7 if left else 4] = shoulder, elbow, wrist
    return person


def test_a_hand_box_lies_a_third_of_the_forearm_beyond_the_wrist():
    person = _arm_person((50.0, 50.0), (50.0, 80.0), (50.0, 110.0))
    # forearm 30, 0.9 x upper arm 27: side 45, centred 10 past the wrist
    assert hand.boxes(person, 200, 200) == [(27, 97, 45, True)]
    assert hand.boxes(person, 120, 200) == [(27, 97, 22, True)]  # clipped by the image's bottom
    assert hand.boxes(person, 115, 200) == []  # under 20 pixels once clipped
    right = _arm_person((150.0, 50.0), (150.0, 70.0), (150.0, 90.0), left=False)
    assert hand.boxes(right, 200, 200) == [(135, 81, 30, False)]
    person[6] = None
    assert hand.boxes(person, 200, 200) == []  # an incomplete arm has no hand box


def test_each_keypoint_is_the_peak_of_the_strongest_area():
    maps = np.zeros((128, 128, 22))
    yy, xx = np.mgrid[0:128, 0:128]
    maps[..., 0] = np.exp(-((xx - 40) ** 2 + (yy - 60) ** 2) / (2 * 4.0 ** 2))
    # part 1: a wide low blob outweighs a narrow higher spike
    maps[..., 1] = 0.5 * np.exp(-((xx - 90) ** 2 + (yy - 30) ** 2) / (2 * 8.0 ** 2))
    maps[100, 20, 1] = 3.0
    found = hand.peaks(maps, 256)
    assert found[0] == (80, 120) and found[1] == (180, 60)
    assert found[2:] == [None] * 19


def test_the_hand_model_loads_every_tensor_and_finds_points_in_the_box(tmp_path):
    path = tmp_path / "hand_pose_model.pth"
    tensors = write_openpose_hand(path)
    model = hand.load(path)
    state = model.state_dict()
    assert set(state) == set(tensors) and all(torch.equal(state[k], tensors[k]) for k in tensors)
    assert len(model.stages) == 6 and model(torch.zeros(1, 3, 64, 48)).shape == (1, 22, 8, 6)
    img = np.random.default_rng(0).integers(0, 256, (200, 200, 3), dtype=np.uint8)
    found = hand.hands(model, img, _arm_person((50.0, 50.0), (50.0, 80.0), (50.0, 110.0)))
    assert found["right_hand"] is None and len(found["left_hand"]) == 21
    for point in found["left_hand"]:
        assert point is None or (27 <= point[0] < 72 and 97 <= point[1] < 142)


def test_openpose_hand_runs_through_detect_with_both_files(tmp_path):
    folder = tmp_path / "models" / "ControlNetAnnotators" / "openpose"
    write_openpose(folder / "body_pose_model.pth")
    write_openpose_hand(folder / "hand_pose_model.pth")
    image = Image.fromarray(np.random.default_rng(0).integers(0, 256, (40, 56, 3), dtype=np.uint8))
    dirs = preprocessors.annotator_dirs(str(tmp_path / "models"), str(tmp_path))
    first = np.asarray(preprocessors.detect("openpose_hand", image, 40, -1, -1, dirs))
    assert first.shape == (40, 56, 3) and first.dtype == np.uint8
    assert np.array_equal(first, np.asarray(preprocessors.detect("openpose_hand", image, 40, -1, -1, dirs)))


def test_a_missing_hand_model_is_named(tmp_path, monkeypatch):
    def unreachable(url, path, timeout=None):
        raise httpx.ConnectError("no network")
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr(modelloader, "download", unreachable)
    write_openpose(tmp_path / "models" / "ControlNetAnnotators" / "openpose" / "body_pose_model.pth")
    dirs = preprocessors.annotator_dirs(str(tmp_path / "models"), str(tmp_path))
    with pytest.raises(preprocessors.AnnotatorMissingError, match="; hand_pose_model.pth could not be downloaded"):
        preprocessors.detect("openpose_hand", Image.new("RGB", (32, 32)), 32, -1, -1, dirs)
