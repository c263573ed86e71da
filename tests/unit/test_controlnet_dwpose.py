"""dw_openpose_full: YOLOX's boxes and RTMPose's SimCC decoded to image pixels, COCO-WholeBody turned into OpenPose's
body order, the drawing of bodies, hands and faces, and the two ONNX files loaded through the preprocessor's path."""
from __future__ import annotations

import httpx
import numpy as np
import pytest
from PIL import Image

from modules import modelloader
from modules.controlnet import annotator_dwpose as dw, annotator_openpose, preprocessors
from tests.fixtures.annotator_files import write_dwpose


def _anchor(level_offset: int, grid: int, gx: int, gy: int) -> int:
    return level_offset + gy * grid + gx


def test_yolox_output_decodes_to_person_boxes_in_image_pixels_after_nms():
    out = np.zeros((1, 8400, 85), dtype=np.float32)
    best = _anchor(0, 80, 10, 5)  # stride 8, cell (10, 5)
    out[0, best, :6] = [0.5, 0.5, np.log(4.0), np.log(8.0), 0.9, 0.9]
    overlapping = _anchor(0, 80, 11, 5)  # one cell right, same size: IoU above 0.45, lower score
    out[0, overlapping, :6] = [0.5, 0.5, np.log(4.0), np.log(8.0), 0.8, 0.8]
    far = _anchor(6400 + 1600, 20, 3, 15)  # stride 32, cell (3, 15)
    out[0, far, :6] = [0.0, 0.0, 0.0, 0.0, 0.7, 0.7]
    not_a_person = _anchor(6400, 40, 20, 20)
    out[0, not_a_person, [4, 6]] = [0.9, 0.9]
    boxes = dw.person_boxes(out, ratio=0.5)
    cx, cy = 10.5 * 8, 5.5 * 8
    np.testing.assert_allclose(boxes, [[(cx - 16) / 0.5, (cy - 32) / 0.5, (cx + 16) / 0.5, (cy + 32) / 0.5],
                                       [(96 - 16) / 0.5, (480 - 16) / 0.5, (96 + 16) / 0.5, (480 + 16) / 0.5]])


def test_weak_detections_give_no_people_or_the_whole_image_as_the_extension_does():
    out = np.zeros((1, 8400, 85), dtype=np.float32)
    assert dw.person_boxes(out, 1.0) is None
    out[0, 0, 4:6] = [0.45, 0.45]  # 0.2: above the detection floor, under the person threshold
    assert dw.person_boxes(out, 1.0).shape == (0, 4)


def test_a_simcc_peak_maps_through_the_crop_back_to_its_image_pixel():
    center, size = dw.crop_transform(np.array([100.0, 50.0, 200.0, 350.0]))
    np.testing.assert_allclose(center, [150, 200])
    np.testing.assert_allclose(size, [375 * 0.75, 375])  # grown by 1.25, widened to 288:384
    simcc_x, simcc_y = np.zeros((1, 2, 576)), np.zeros((1, 2, 768))
    simcc_x[0, 0, 288], simcc_y[0, 0, 100] = 0.9, 0.7
    simcc_x[0, 1, 5] = 0.8  # no y response: score 0, point at -1
    points, scores = dw.simcc_decode(simcc_x, simcc_y)
    np.testing.assert_allclose(points[0], [[144, 50], [-0.5, -0.5]])
    np.testing.assert_allclose(scores[0], [0.7, 0.0])
    np.testing.assert_allclose(dw.to_image(points[0, 0], center, size), [150, 50 / 384 * 375 + 200 - 187.5])
    # the crop is the same transform's other way: a bright dot in the image lands at the crop pixel mapping back to it
    img = np.zeros((400, 300, 3), dtype=np.uint8)
    img[61, 150] = 255
    crop = dw.crop(img, center, size)
    assert crop.shape == (3, 384, 288)
    y, x = np.unravel_index(crop[0].argmax(), crop[0].shape)
    np.testing.assert_allclose(dw.to_image(np.array([x, y], dtype=float), center, size), [150, 61], atol=1)


def test_wholebody_keypoints_become_openpose_body_order_with_the_neck():
    keypoints = np.stack([np.arange(133), np.arange(133) + 1000], -1)[None].astype(np.float64)
    scores = np.full((1, 133), 0.9)
    info = dw.openpose_order(keypoints, scores)
    assert info.shape == (1, 134, 3)
    coco = {0: 0, 2: 6, 3: 8, 4: 10, 5: 5, 6: 7, 7: 9, 8: 12, 9: 14, 10: 16, 11: 11, 12: 13, 13: 15, 14: 2, 15: 1,
            16: 4, 17: 3}
    for op, c in coco.items():
        assert info[0, op, 0] == c, op
    np.testing.assert_allclose(info[0, 1], [5.5, 1005.5, 1.0])  # between the shoulders
    assert info[0, 24, 0] == 23 and info[0, 92, 0] == 91 and info[0, 133, 0] == 132  # face, left and right hands
    scores[0, 6] = 0.2
    assert dw.openpose_order(keypoints, scores)[0, 1, 2] == 0.0  # one weak shoulder: no neck
    people = dw.poses(dw.openpose_order(keypoints, scores))
    assert people[0]["body"][2] is None and people[0]["body"][1] is None and people[0]["body"][0] == (0.0, 1000.0)
    assert len(people[0]["face"]) == 70 and people[0]["face"][68:] == [people[0]["body"][14], people[0]["body"][15]]
    assert people[0]["left_hand"][0] == (91.0, 1091.0) and people[0]["right_hand"][20] == (132.0, 1132.0)
    scores[0, 91:112] = 0.1
    assert dw.poses(dw.openpose_order(keypoints, scores))[0]["left_hand"] is None


def test_hands_are_hsv_edges_with_blue_joints_and_the_face_white_dots():
    hand = [(20.0, 70.0)] + [(50.0 + 25 * (i % 4), 30.0 + 20 * (i // 4)) for i in range(20)]  # fingers spread
    face = [(100.0 + 5 * i, 20.0) for i in range(10)] + [(0.0, 30.0)]  # a point at x 0 is not drawn
    canvas = annotator_openpose.draw_people([{"body": [None] * 18, "left_hand": hand, "right_hand": None, "face": face}], 140, 200)
    assert canvas.shape == (140, 200, 3) and canvas.dtype == np.uint8
    for point in hand:
        assert tuple(canvas[int(point[1]), int(point[0])]) == (0, 0, 255)
    for i, (a, b) in enumerate(annotator_openpose.HAND_EDGES):
        (xa, ya), (xb, yb) = hand[a], hand[b]
        if np.hypot(xb - xa, yb - ya) > 12:  # the middle is clear of the joints' dots
            assert tuple(canvas[round((ya + yb) / 2), round((xa + xb) / 2)]) == annotator_openpose._hand_color(i), i
    assert annotator_openpose._hand_color(0) == (255, 0, 0) and annotator_openpose._hand_color(5) == (128, 255, 0)
    for x, y in face[:-1]:
        assert tuple(canvas[int(y), int(x)]) == (255, 255, 255)
    assert not canvas[25:36, :4].any()
    assert not canvas[:10].any() and not canvas[:, 160:].any()


def test_the_body_is_drawn_as_openpose_draws_it():
    body = [(40.0 + 4 * i, 30.0 + 3 * i) for i in range(18)]
    person = {"body": body, "left_hand": None, "right_hand": None, "face": None}
    np.testing.assert_array_equal(annotator_openpose.draw_people([person], 100, 120), annotator_openpose.draw([body], 100, 120))


def test_both_onnx_files_load_through_detect_and_the_people_are_drawn_where_they_are(tmp_path):
    det, pose = write_dwpose(tmp_path / "models" / "ControlNetAnnotators" / "openpose")
    assert [i.name for i in dw.load(det).get_inputs()] == ["images"]
    assert [o.name for o in dw.load(pose).get_outputs()] == ["simcc_x", "simcc_y"]
    img = np.zeros((128, 128, 3), dtype=np.uint8)
    img[40:88, 40:88] = 255  # the tiny detector's "person": a bright patch
    dirs = preprocessors.annotator_dirs(str(tmp_path / "models"), str(tmp_path))
    first = np.asarray(preprocessors.detect("dw_openpose_full", Image.fromarray(img), 128, -1, -1, dirs))
    assert first.shape == (128, 128, 3) and first.dtype == np.uint8
    # every keypoint sits at its box's centre: the face's white dots land inside the patch
    white = np.argwhere((first == 255).all(-1))
    assert len(white) and (white.min(0) >= 40).all() and (white.max(0) < 88).all()
    assert np.array_equal(first, np.asarray(preprocessors.detect("dw_openpose_full", Image.fromarray(img), 128, -1, -1,
                                                                  dirs)))
    black = np.asarray(preprocessors.detect("dw_openpose_full", Image.new("RGB", (96, 64)), 64, -1, -1, dirs))
    assert black.shape == (64, 96, 3) and not black.any()  # nobody found: a black map


def test_missing_dwpose_files_are_both_named_with_where_they_go(tmp_path, monkeypatch):
    def unreachable(url, path, timeout=None):
        raise httpx.ConnectError("no network")
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr(modelloader, "download", unreachable)
    dirs = preprocessors.annotator_dirs(str(tmp_path / "models"), str(tmp_path))
    with pytest.raises(preprocessors.AnnotatorMissingError) as error:
        preprocessors.detect("dw_openpose_full", Image.new("RGB", (32, 32)), 32, -1, -1, dirs)
    message = str(error.value)
    assert "dw_openpose_full" in message and "yolox_l.onnx, dw-ll_ucoco_384.onnx could not be downloaded" in message
    assert "HF_HUB_OFFLINE" in message and str(tmp_path / "models" / "ControlNetAnnotators" / "openpose") in message
    assert "annotator/downloads/openpose" in message
    write_dwpose(tmp_path / "extensions" / "sd-webui-controlnet" / "annotator" / "downloads" / "openpose")
    (tmp_path / "extensions" / "sd-webui-controlnet" / "annotator" / "downloads" / "openpose" / "yolox_l.onnx").unlink()
    with pytest.raises(preprocessors.AnnotatorMissingError, match="; yolox_l.onnx could not be downloaded"):
        preprocessors.detect("dw_openpose_full", Image.new("RGB", (32, 32)), 32, -1, -1, dirs)
