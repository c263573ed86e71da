"""Alignment to the FFHQ template, feathered paste-back and face-by-face restoration, with stand-in detectors and
restorers (no network runs here)."""
from __future__ import annotations

import math

import numpy as np
import torch

from modules import face_restoration_utils as fru
from modules.face_detection import DetectedFace


def _similarity(scale: float, degrees: float, shift: tuple[float, float]) -> np.ndarray:
    angle = math.radians(degrees)
    return np.array([[scale * math.cos(angle), -scale * math.sin(angle), shift[0]],
                     [scale * math.sin(angle), scale * math.cos(angle), shift[1]]])


def _apply(matrix: np.ndarray, points: np.ndarray) -> np.ndarray:
    return points @ matrix[:, :2].T + matrix[:, 2]


class StandInDetector:
    device = torch.device("cpu")

    def __init__(self, *landmarks: np.ndarray):
        self.faces = [DetectedFace(np.zeros(4), 0.99, points) for points in landmarks]

    def detect(self, np_image):
        return self.faces


def test_the_similarity_transform_maps_the_landmarks_onto_the_template():
    template = fru.face_template()
    placement = _similarity(0.1, 30, (40, 38))  # template -> image
    landmarks = _apply(placement, template)
    matrix = fru.similarity_transform(landmarks, template)
    np.testing.assert_allclose(_apply(matrix, landmarks), template, atol=1e-4)
    np.testing.assert_allclose(matrix, fru.invert_affine(placement), atol=1e-9)


def test_the_similarity_transform_is_the_least_squares_fit():
    src = np.array([[0.0, 0.0], [2.0, 0.0], [0.0, 2.0], [2.0, 2.0]])
    dst = src * 3 + np.array([[0.1, 0], [-0.1, 0], [0.1, 0], [-0.1, 0]])  # x pulled 0.1 toward the middle
    matrix = fru.similarity_transform(src, dst)
    # the best uniform scale is 3 - 0.2 * 4 / 8 = 2.95 (x and y residuals share it), no rotation, shift 0.05
    np.testing.assert_allclose(matrix, [[2.95, 0, 0.05], [0, 2.95, 0.05]], atol=1e-12)


def test_alignment_puts_each_image_point_where_the_template_says():
    yy, xx = np.mgrid[0:80, 0:80]
    image = np.stack([2 * xx, 3 * yy, np.zeros_like(xx)], axis=-1).astype(np.uint8)  # pixel (x, y) holds (2x, 3y, 0)
    placement = _similarity(0.1, 30, (40, 38))
    crop, _ = fru.align_face(image, _apply(placement, fru.face_template()))
    assert crop.shape == (512, 512, 3) and crop.dtype == np.float32
    for u, v in [(256, 314), (193, 240), (100, 400)]:
        x, y = _apply(placement, np.array([[u, v]], dtype=float))[0]
        np.testing.assert_allclose(crop[v, u], [2 * x, 3 * y, 0], atol=1e-3)  # bilinear is exact on a linear image
    assert crop[0, 511].tolist() == list(fru.BORDER_RGB)  # this corner lands at x 84 of 80: GFPGAN's grey


def test_erode_and_blur_follow_opencvs_rules():
    mask = np.ones((5, 5))
    mask[2, 2] = 0
    eroded = fru.erode(mask, 2)  # anchor at 1: each pixel takes the minimum of itself and its upper-left neighbours
    assert np.argwhere(eroded == 0).tolist() == [[2, 2], [2, 3], [3, 2], [3, 3]]
    assert fru.erode(np.ones((4, 4)), 3).min() == 1  # the image edge erodes nothing
    delta = np.zeros((5, 5))
    delta[2, 2] = 1
    kernel = np.array([0.25, 0.5, 0.25])  # OpenCV's fixed 3-tap kernel
    np.testing.assert_array_equal(fru.gaussian_blur(delta, 3)[1:4, 1:4], np.outer(kernel, kernel))
    assert fru.gaussian_blur(delta, 3).sum() == 1
    wide = np.exp(-np.arange(-4, 5) ** 2 / (2 * 1.7 ** 2))  # 9 taps: sigma 0.3 * (4 - 1) + 0.8 = 1.7
    np.testing.assert_allclose(fru.gaussian_kernel(9), wide / wide.sum(), atol=1e-15)
    corner = np.zeros((5, 5))
    corner[0, 0] = 1
    assert fru.gaussian_blur(corner, 3)[0, :2].tolist() == [0.25, 0.125]  # mirrored edge: 0.5 * 0.5, 0.5 * 0.25


def test_paste_back_changes_only_pixels_inside_the_faces_footprint():
    image = np.random.default_rng(1).integers(0, 256, (48, 56, 3)).astype(np.float32)
    original = image.copy()
    placement = _similarity(0.0625, 0, (8, 6))  # the 512 crop covers the square x 8..40, y 6..38
    matrix = fru.invert_affine(placement)
    fru.paste_face(image, np.full((512, 512, 3), 255, np.float32), matrix)
    changed = np.argwhere((image != original).any(axis=-1))
    assert changed.size
    assert changed[:, 0].min() >= 6 and changed[:, 0].max() <= 38
    assert changed[:, 1].min() >= 8 and changed[:, 1].max() <= 40
    assert image[22, 24].tolist() == [255, 255, 255]  # the middle of the face is the restored face only
    band = image[22, 8:14, 0]  # the feathered rim: between the old pixel and the face
    assert (band < 255).any()


def test_restoring_face_by_face(monkeypatch):
    image = np.random.default_rng(2).integers(0, 256, (40, 80, 3), dtype=np.uint8)
    left = _apply(_similarity(0.375, 0, (4, 4)), fru.face_template(64))  # a 64 crop on the square x 4..28, y 4..28
    right = _apply(_similarity(0.375, 10, (50, 6)), fru.face_template(64))
    seen = []

    def restore_face(tensor):
        seen.append(tensor.clone())
        return -torch.ones_like(tensor)  # a black face

    result = fru.restore_with_face_helper(image, StandInDetector(left, right), restore_face, face_size=64)
    assert result.dtype == np.uint8 and result.shape == image.shape
    assert [t.shape for t in seen] == [(1, 3, 64, 64)] * 2
    assert all(t.min() >= -1 and t.max() <= 1 for t in seen)
    crop, _ = fru.align_face(image, left, 64)  # the net got the aligned crop, scaled to [-1, 1]
    np.testing.assert_allclose(seen[0][0].permute(1, 2, 0).numpy(), crop / 127.5 - 1, atol=1e-6)
    assert result[16, 16].tolist() == [0, 0, 0] and result[20, 60].tolist() == [0, 0, 0]
    changed = (result != image).any(axis=-1)
    assert not changed[:, 30:44].any()  # between the two faces nothing moved
    assert not changed[30:, :30].any()


def test_no_face_leaves_the_image_as_it_was():
    image = np.random.default_rng(3).integers(0, 256, (24, 24, 3), dtype=np.uint8)

    def restore_face(tensor):
        raise AssertionError("no face, no restoration")

    assert fru.restore_with_face_helper(image, StandInDetector(), restore_face) is image
