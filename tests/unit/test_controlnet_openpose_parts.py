"""openpose_hand / face / full: the hand and face models load from files of the original layout, the hand boxes sit
beyond the wrists and the face box around the head, and the points come from the heatmaps."""
from __future__ import annotations

import httpx
import numpy as np
import pytest
import torch
from PIL import Image

from modules import modelloader
from modules.controlnet import annotator_openpose, annotator_openpose_parts as parts, preprocessors
from tests.fixtures.annotator_files import write_openpose, write_openpose_face, write_openpose_hand


def _arm_person(shoulder, elbow, wrist, left: bool = True):
    person = [None] * 18
    person[5 if left else 2], person[6 if left else 3], person[7 if left else 4] = shoulder, elbow, wrist
    return person


def test_a_hand_box_lies_a_third_of_the_forearm_beyond_the_wrist():
    person = _arm_person((50.0, 50.0), (50.0, 80.0), (50.0, 110.0))
    # forearm 30, 0.9 x upper arm 27: side 45, centred 10 past the wrist
    assert parts.boxes(person, 200, 200) == [(27, 97, 45, True)]
    assert parts.boxes(person, 120, 200) == [(27, 97, 22, True)]  # clipped by the image's bottom
    assert parts.boxes(person, 115, 200) == []  # under 20 pixels once clipped
    right = _arm_person((150.0, 50.0), (150.0, 70.0), (150.0, 90.0), left=False)
    assert parts.boxes(right, 200, 200) == [(135, 81, 30, False)]
    person[6] = None
    assert parts.boxes(person, 200, 200) == []  # an incomplete arm has no hand box


def test_each_keypoint_is_the_peak_of_the_strongest_area():
    maps = np.zeros((128, 128, 22))
    yy, xx = np.mgrid[0:128, 0:128]
    maps[..., 0] = np.exp(-((xx - 40) ** 2 + (yy - 60) ** 2) / (2 * 4.0 ** 2))
    # part 1: a wide low blob outweighs a narrow higher spike
    maps[..., 1] = 0.5 * np.exp(-((xx - 90) ** 2 + (yy - 30) ** 2) / (2 * 8.0 ** 2))
    maps[100, 20, 1] = 3.0
    found = parts.peaks(maps, 256)
    assert found[0] == (80, 120) and found[1] == (180, 60)
    assert found[2:] == [None] * 19


def test_the_hand_model_loads_every_tensor_and_finds_points_in_the_box(tmp_path):
    path = tmp_path / "hand_pose_model.pth"
    tensors = write_openpose_hand(path)
    model = parts.load(path)
    state = model.state_dict()
    assert set(state) == set(tensors) and all(torch.equal(state[k], tensors[k]) for k in tensors)
    assert len(model.stages) == 6 and model(torch.zeros(1, 3, 64, 48)).shape == (1, 22, 8, 6)
    img = np.random.default_rng(0).integers(0, 256, (200, 200, 3), dtype=np.uint8)
    found = parts.hands(model, img, _arm_person((50.0, 50.0), (50.0, 80.0), (50.0, 110.0)))
    assert found["right_hand"] is None and len(found["left_hand"]) == 21 and any(found["left_hand"])
    for point in found["left_hand"]:
        assert point is None or (27 <= point[0] < 72 and 97 <= point[1] < 142)


def test_a_face_box_surrounds_the_head():
    person = [None] * 18
    person[0], person[14], person[16] = (100.0, 100.0), (90.0, 95.0), (80.0, 100.0)  # nose, an eye, an ear
    assert parts.face_box(person, 200, 200) == (70, 70, 60)  # 3 x 10 from the eye, 1.5 x 20 from the ear
    assert parts.face_box(person, 200, 95) == (70, 70, 25)  # clipped at the right edge
    assert parts.face_box(person, 85, 200) is None  # under 20 pixels once clipped
    person[14] = person[16] = None
    assert parts.face_box(person, 200, 200) is None  # no eye or ear


def test_the_face_model_loads_and_gives_points_inside_its_crop(tmp_path):
    path = tmp_path / "facenet.pth"
    tensors = write_openpose_face(path)
    model = parts.load(path)
    assert set(model.state_dict()) == set(tensors)
    assert model(torch.zeros(1, 3, 64, 64)).shape == (1, 71, 8, 8)
    crop = np.random.default_rng(1).integers(0, 256, (60, 60, 3), dtype=np.uint8)
    points = parts.face_points(model, crop)
    assert 0 < len(points) <= 71 and all(0 < x < 60 and 0 < y < 60 for x, y in points)
    assert points == parts.face_points(model, crop)


@pytest.mark.parametrize("name", ["openpose_hand", "openpose_face", "openpose_full"])
def test_the_part_preprocessors_run_through_detect_with_their_files(tmp_path, name):
    folder = tmp_path / "models" / "ControlNetAnnotators" / "openpose"
    write_openpose(folder / "body_pose_model.pth")
    write_openpose_hand(folder / "hand_pose_model.pth")
    write_openpose_face(folder / "facenet.pth")
    image = Image.fromarray(np.random.default_rng(0).integers(0, 256, (40, 56, 3), dtype=np.uint8))
    dirs = preprocessors.annotator_dirs(str(tmp_path / "models"), str(tmp_path))
    first = np.asarray(preprocessors.detect(name, image, 40, -1, -1, dirs))
    assert first.shape == (40, 56, 3) and first.dtype == np.uint8
    assert np.array_equal(first, np.asarray(preprocessors.detect(name, image, 40, -1, -1, dirs)))


def test_missing_hand_and_face_models_are_named(tmp_path, monkeypatch):
    def unreachable(url, path, timeout=None):
        raise httpx.ConnectError("no network")
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr(modelloader, "download", unreachable)
    write_openpose(tmp_path / "models" / "ControlNetAnnotators" / "openpose" / "body_pose_model.pth")
    dirs = preprocessors.annotator_dirs(str(tmp_path / "models"), str(tmp_path))
    with pytest.raises(preprocessors.AnnotatorMissingError, match="; hand_pose_model.pth could not be downloaded"):
        preprocessors.detect("openpose_hand", Image.new("RGB", (32, 32)), 32, -1, -1, dirs)
    with pytest.raises(preprocessors.AnnotatorMissingError,
                       match="files body_pose_model.pth, hand_pose_model.pth, facenet.pth; hand_pose_model.pth, "
                             "facenet.pth could not be downloaded"):
        preprocessors.detect("openpose_full", Image.new("RGB", (32, 32)), 32, -1, -1, dirs)


def test_openpose_full_draws_hands_and_face_in_their_boxes(tmp_path, monkeypatch):
    folder = tmp_path / "models" / "ControlNetAnnotators" / "openpose"
    write_openpose(folder / "body_pose_model.pth")
    write_openpose_hand(folder / "hand_pose_model.pth")
    write_openpose_face(folder / "facenet.pth")
    person = [None] * 18
    person[0], person[14], person[16] = (100.0, 40.0), (90.0, 35.0), (80.0, 40.0)  # face box (70, 10, 60)
    person[5], person[6], person[7] = (50.0, 50.0), (50.0, 80.0), (50.0, 110.0)  # left hand box (27, 97, 45)
    monkeypatch.setattr(annotator_openpose, "detect_people", lambda model, img: [person])
    image = Image.fromarray(np.random.default_rng(0).integers(0, 256, (192, 192, 3), dtype=np.uint8))
    dirs = preprocessors.annotator_dirs(str(tmp_path / "models"), str(tmp_path))
    canvas = np.asarray(preprocessors.detect("openpose_full", image, 192, -1, -1, dirs))
    body_only = annotator_openpose.draw([person], 192, 192)
    changed = np.argwhere((canvas != body_only).any(-1))
    white = np.argwhere((canvas == 255).all(-1))
    blue = np.argwhere((canvas == (0, 0, 255)).all(-1))
    assert len(white) and len(blue) and len(changed)
    assert (white.min(0) >= (10 - 3, 70 - 3)).all() and (white.max(0) <= (70 + 3, 130 + 3)).all()  # (y, x)
    assert (blue.min(0) >= (97 - 4, 27 - 4)).all() and (blue.max(0) <= (142 + 4, 72 + 4)).all()
