"""Restore the faces of an image one by one (A1111's modules.face_restoration_utils), as GFPGAN's face helper does.

Each detected face is aligned to the FFHQ 5-point template of a 512x512 crop by the similarity transform (rotation,
uniform scale, shift) that best maps its landmarks onto the template, restored by the model, warped back and blended
in with a feathered mask: the mask of the crop's footprint, eroded so that its half-covered rim goes, eroded again and
blurred over a width that grows with the face. Pixels outside a face's footprint are never touched; no face found
leaves the image as it was.
"""
from __future__ import annotations

from collections.abc import Callable

import numpy as np
import torch
from numpy.lib.stride_tricks import sliding_window_view

from modules.face_detection import FaceDetector

FACE_SIZE = 512  # the crop GFPGAN and CodeFormer were trained on
# where FFHQ's aligned 512x512 faces have their eyes, nose tip and mouth corners (the template GFPGAN was trained with)
FFHQ_TEMPLATE = np.array([[192.98138, 239.94708], [318.90277, 240.1936], [256.63416, 314.01935],
                          [201.26117, 371.41043], [313.08905, 371.15118]])
BORDER_RGB = (132.0, 133.0, 135.0)  # GFPGAN's grey where a crop reaches past the image
# the kernels OpenCV's GaussianBlur uses for these sizes when no sigma is given: GFPGAN's feathering of small faces
SMALL_GAUSSIANS = {3: (0.25, 0.5, 0.25), 5: (0.0625, 0.25, 0.375, 0.25, 0.0625),
                   7: (0.03125, 0.109375, 0.21875, 0.28125, 0.21875, 0.109375, 0.03125)}


def face_template(face_size: int = FACE_SIZE) -> np.ndarray:
    return FFHQ_TEMPLATE * (face_size / 512.0)


def similarity_transform(src: np.ndarray, dst: np.ndarray) -> np.ndarray:
    """The 2x3 matrix [[a, -b, tx], [b, a, ty]] minimising the squared distances from M @ src to dst."""
    src, dst = np.asarray(src, dtype=np.float64), np.asarray(dst, dtype=np.float64)
    x, y = src[:, 0], src[:, 1]
    ones, zeros = np.ones_like(x), np.zeros_like(x)
    # each point gives two linear equations in (a, b, tx, ty): a*x - b*y + tx = u and b*x + a*y + ty = v
    system = np.concatenate([np.stack([x, -y, ones, zeros], axis=1), np.stack([y, x, zeros, ones], axis=1)])
    (a, b, tx, ty), *_ = np.linalg.lstsq(system, np.concatenate([dst[:, 0], dst[:, 1]]), rcond=None)
    return np.array([[a, -b, tx], [b, a, ty]])


def invert_affine(matrix: np.ndarray) -> np.ndarray:
    linear_inverse = np.linalg.inv(matrix[:, :2])
    return np.concatenate([linear_inverse, -linear_inverse @ matrix[:, 2:]], axis=1)


def sample_affine(image: np.ndarray, matrix: np.ndarray, width: int, height: int, origin: tuple[int, int] = (0, 0),
                  border: tuple[float, ...] | float = 0.0) -> np.ndarray:
    """A (height, width, C) float32 array whose pixel (x, y) is `image` at matrix @ (x + origin x, y + origin y, 1),
    interpolated bilinearly; taps outside `image` read `border`. Pixel centres sit on integer coordinates."""
    ys, xs = np.mgrid[origin[1]:origin[1] + height, origin[0]:origin[0] + width].astype(np.float64)
    src_x = matrix[0, 0] * xs + matrix[0, 1] * ys + matrix[0, 2]
    src_y = matrix[1, 0] * xs + matrix[1, 1] * ys + matrix[1, 2]
    x0, y0 = np.floor(src_x), np.floor(src_y)
    fx, fy = (src_x - x0)[..., None], (src_y - y0)[..., None]
    x0, y0 = x0.astype(np.int64), y0.astype(np.int64)
    fill = np.broadcast_to(np.asarray(border, dtype=np.float32), (image.shape[2],))
    result = np.zeros((height, width, image.shape[2]), dtype=np.float64)
    for dx, dy, weight in ((0, 0, (1 - fx) * (1 - fy)), (1, 0, fx * (1 - fy)), (0, 1, (1 - fx) * fy), (1, 1, fx * fy)):
        tap_x, tap_y = x0 + dx, y0 + dy
        inside = (tap_x >= 0) & (tap_x < image.shape[1]) & (tap_y >= 0) & (tap_y < image.shape[0])
        taps = image[np.clip(tap_y, 0, image.shape[0] - 1), np.clip(tap_x, 0, image.shape[1] - 1)]
        result += weight * np.where(inside[..., None], taps, fill)
    return result.astype(np.float32)


def align_face(np_image: np.ndarray, landmarks: np.ndarray, face_size: int = FACE_SIZE) -> tuple[np.ndarray, np.ndarray]:
    """(the face_size x face_size float32 crop with the landmarks on the template, the image -> crop matrix)."""
    matrix = similarity_transform(landmarks, face_template(face_size))
    crop = sample_affine(np_image.astype(np.float32), invert_affine(matrix), face_size, face_size, border=BORDER_RGB)
    return crop, matrix


def erode(mask: np.ndarray, size: int) -> np.ndarray:
    """Minimum over a size x size square (anchor at size // 2, as OpenCV); the image edge erodes nothing."""
    if size < 1:
        return mask
    before, after = size // 2, size - 1 - size // 2
    padded = np.pad(mask, ((before, after), (before, after)), constant_values=1.0)
    rows = sliding_window_view(padded, size, axis=0).min(axis=-1)
    return sliding_window_view(rows, size, axis=1).min(axis=-1)


def gaussian_kernel(size: int) -> np.ndarray:
    """OpenCV's Gaussian for an odd size and no sigma: its fixed kernels up to 7 taps, else sigma from the size."""
    if size in SMALL_GAUSSIANS:
        return np.array(SMALL_GAUSSIANS[size])
    sigma = 0.3 * ((size - 1) * 0.5 - 1) + 0.8
    offsets = np.arange(size) - size // 2
    kernel = np.exp(-(offsets ** 2) / (2 * sigma ** 2))
    return kernel / kernel.sum()


def gaussian_blur(mask: np.ndarray, size: int) -> np.ndarray:
    """Blur with gaussian_kernel(size) along both axes; mirrored edges (OpenCV's default border)."""
    if size <= 1:
        return mask
    kernel = gaussian_kernel(size)
    radius = size // 2
    padded = np.pad(mask, radius, mode="reflect")
    rows = sliding_window_view(padded, size, axis=0) @ kernel
    return sliding_window_view(rows, size, axis=1) @ kernel


def paste_face(image: np.ndarray, face: np.ndarray, matrix: np.ndarray) -> np.ndarray:
    """`image` (float32, changed in place and returned) with `face` (a crop taken with `matrix`) blended back in."""
    height, width = image.shape[:2]
    face_size = face.shape[0]
    corners = invert_affine(matrix) @ np.array([[0, face_size, 0, face_size], [0, 0, face_size, face_size], [1, 1, 1, 1]])
    extent = max(np.ptp(corners[0]), np.ptp(corners[1]))
    margin = int(extent / 10) + 4  # wider than the blur reaches: the window's own edge stays outside the mask
    left, top = max(int(np.floor(corners[0].min())) - margin, 0), max(int(np.floor(corners[1].min())) - margin, 0)
    right = min(int(np.ceil(corners[0].max())) + margin, width)
    bottom = min(int(np.ceil(corners[1].max())) + margin, height)
    if right <= left or bottom <= top:
        return image
    window = (right - left, bottom - top)
    coverage = sample_affine(np.ones((face_size, face_size, 1), np.float32), matrix, *window, (left, top))[..., 0]
    core = erode(coverage, 2)  # drop the rim that the crop only half covers
    edge = int(np.sqrt(core.sum())) // 20  # feather width grows with the face
    soft = gaussian_blur(erode(core, 2 * edge), 2 * edge + 1)[..., None]
    restored = sample_affine(face, matrix, *window, (left, top)) * core[..., None]
    region = image[top:bottom, left:right]
    image[top:bottom, left:right] = soft * restored + (1 - soft) * region
    return image


def restore_with_face_helper(np_image: np.ndarray, face_helper: FaceDetector,
                             restore_face: Callable[[torch.Tensor], torch.Tensor], face_size: int = FACE_SIZE) -> np.ndarray:
    """np_image (RGB uint8, height x width x 3) with every face that face_helper finds restored by restore_face.

    restore_face takes and returns a (1, 3, face_size, face_size) float32 RGB tensor in [-1, 1] on the detector's
    device. Faces are cut from the original image and pasted back in the detector's order (best score first)."""
    faces = face_helper.detect(np_image)
    if not faces:
        return np_image
    result = np_image.astype(np.float32)
    for face in faces:
        crop, matrix = align_face(np_image, face.landmarks, face_size)
        tensor = torch.from_numpy(crop).permute(2, 0, 1).unsqueeze(0).to(face_helper.device) / 127.5 - 1
        restored = restore_face(tensor).float().clamp(-1, 1).add(1).mul(127.5)
        paste_face(result, restored[0].permute(1, 2, 0).cpu().numpy(), matrix)
    return np.clip(np.rint(result), 0, 255).astype(np.uint8)
