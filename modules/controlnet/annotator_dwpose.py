"""dw_openpose_full: DWPose, a YOLOX-L person detector (yolox_l.onnx) then the RTMPose whole-body model
(dw-ll_ucoco_384.onnx, 133 COCO-WholeBody keypoints) on each person's crop, run with onnxruntime; drawn as the extension
draws it: the body as openpose draws it, hands as HSV-coloured edges with blue joints, the face as white dots.

Both networks take RGB as the extension feeds them. The detector sees the image letterboxed into 640x640 (grey 114)
and gives, per anchor of the stride-8/16/32 grids, (dx, dy, log w, log h, objectness, 80 class scores). The pose model
sees a 288x384 crop around each person (the box grown by 1.25 to that aspect) and gives SimCC: per keypoint, a score
for every half pixel of the crop along x (576) and y (768).
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from scipy import ndimage
from torch.nn import functional as F

from modules.controlnet import annotator_openpose, annotators

DET_SIZE = 640
STRIDES = (8, 16, 32)
POSE_SIZE = (288, 384)  # (w, h)
SIMCC_SPLIT = 2.0  # SimCC bins per crop pixel
BOX_PADDING = 1.25
MEAN = np.array([123.675, 116.28, 103.53], dtype=np.float32)
STD = np.array([58.395, 57.12, 57.375], dtype=np.float32)
NMS_IOU, DET_MIN, PERSON_MIN, KEYPOINT_MIN = 0.45, 0.1, 0.3, 0.3
# COCO-WholeBody (with the neck inserted at 17) -> OpenPose's body order: openpose[i] = coco[j]
OPENPOSE_FROM_COCO = dict(zip([1, 2, 3, 4, 6, 7, 8, 9, 10, 12, 13, 14, 15, 16, 17],
                              [17, 6, 8, 10, 7, 9, 12, 14, 16, 13, 15, 2, 1, 4, 3]))
FACE, LEFT_HAND, RIGHT_HAND = slice(24, 92), slice(92, 113), slice(113, 134)  # after the neck's insertion


def load(path: Path):
    """The ONNX network as an onnxruntime session (CUDA when onnxruntime has it)."""
    import onnxruntime

    available = onnxruntime.get_available_providers()
    providers = [p for p in ("CUDAExecutionProvider", "CPUExecutionProvider") if p in available]
    return onnxruntime.InferenceSession(str(path), providers=providers)


def _run(session, x: np.ndarray) -> list[np.ndarray]:
    return session.run(None, {session.get_inputs()[0].name: x.astype(np.float32)})


def letterbox(img: np.ndarray) -> tuple[np.ndarray, float]:
    """(1 x 3 x 640 x 640 float, scale): the image scaled to fit (bilinear, as OpenCV's INTER_LINEAR), top-left, on
    grey 114."""
    h, w = img.shape[:2]
    ratio = min(DET_SIZE / h, DET_SIZE / w)
    size = (int(h * ratio), int(w * ratio))
    x = torch.from_numpy(img.astype(np.float32)).permute(2, 0, 1)[None]
    x = F.interpolate(x, size=size, mode="bilinear", align_corners=False).round().clamp(0, 255)
    out = np.full((1, 3, DET_SIZE, DET_SIZE), 114.0, dtype=np.float32)
    out[:, :, :size[0], :size[1]] = x.numpy()
    return out, ratio


def nms(boxes: np.ndarray, scores: np.ndarray, iou: float) -> list[int]:
    """Greedy non-maximum suppression, best first (areas counted inclusively, as the extension does)."""
    areas = (boxes[:, 2] - boxes[:, 0] + 1) * (boxes[:, 3] - boxes[:, 1] + 1)
    order, keep = scores.argsort()[::-1], []
    while order.size:
        i, rest = order[0], order[1:]
        keep.append(int(i))
        w = np.maximum(0.0, np.minimum(boxes[i, 2], boxes[rest, 2]) - np.maximum(boxes[i, 0], boxes[rest, 0]) + 1)
        h = np.maximum(0.0, np.minimum(boxes[i, 3], boxes[rest, 3]) - np.maximum(boxes[i, 1], boxes[rest, 1]) + 1)
        overlap = w * h / (areas[i] + areas[rest] - w * h)
        order = rest[overlap <= iou]
    return keep


def person_boxes(output: np.ndarray, ratio: float) -> np.ndarray | None:
    """The detector's [1, N, 85] output -> person boxes (x0, y0, x1, y1) in image pixels. None when nothing scores
    DET_MIN; boxes kept by NMS but all under PERSON_MIN give an empty array (the extension then poses the whole
    image)."""
    grids, strides = [], []
    for stride in STRIDES:
        n = DET_SIZE // stride
        yy, xx = np.mgrid[0:n, 0:n]
        grids.append(np.stack([xx.ravel(), yy.ravel()], 1))
        strides.append(np.full((n * n, 1), stride))
    grid, stride = np.concatenate(grids), np.concatenate(strides)
    pred = output[0].astype(np.float64)
    centers = (pred[:, :2] + grid) * stride
    sizes = np.exp(pred[:, 2:4]) * stride
    boxes = np.concatenate([centers - sizes / 2, centers + sizes / 2], 1) / ratio
    scores = pred[:, 4] * pred[:, 5]  # objectness x "person"
    valid = scores > DET_MIN
    if not valid.any():
        return None
    boxes, scores = boxes[valid], scores[valid]
    keep = nms(boxes, scores, NMS_IOU)
    return boxes[keep][scores[keep] > PERSON_MIN]


def crop_transform(box: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(center, size) of the crop around a box: grown by BOX_PADDING, then widened or heightened to 288:384."""
    center = np.array([box[0] + box[2], box[1] + box[3]]) / 2
    w, h = (box[2] - box[0]) * BOX_PADDING, (box[3] - box[1]) * BOX_PADDING
    aspect = POSE_SIZE[0] / POSE_SIZE[1]
    size = np.array([w, w / aspect]) if w > h * aspect else np.array([h * aspect, h])
    return center, size


def crop(img: np.ndarray, center: np.ndarray, size: np.ndarray) -> np.ndarray:
    """The 384 x 288 crop (bilinear, black outside the image), normalised, as 3 x 384 x 288."""
    scale = size[0] / POSE_SIZE[0]  # image pixels per crop pixel (the same both ways after the aspect fix)
    origin = center - size / 2
    out = np.stack([ndimage.affine_transform(img[..., c].astype(np.float32), [scale, scale], offset=origin[::-1],
                                             output_shape=POSE_SIZE[::-1], order=1, mode="constant", cval=0.0)
                    for c in range(3)], axis=2)
    return ((out - MEAN) / STD).transpose(2, 0, 1)


def simcc_decode(simcc_x: np.ndarray, simcc_y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(N, K, Wx), (N, K, Wy) -> keypoints (N, K, 2) in crop pixels and scores (N, K): each axis's best bin, the
    score the lower of the two maxima; a score <= 0 puts the point at -1."""
    locs = np.stack([simcc_x.argmax(-1), simcc_y.argmax(-1)], -1).astype(np.float32)
    scores = np.minimum(simcc_x.max(-1), simcc_y.max(-1))
    locs[scores <= 0] = -1
    return locs / SIMCC_SPLIT, scores


def to_image(points: np.ndarray, center: np.ndarray, size: np.ndarray) -> np.ndarray:
    """Crop pixels -> image pixels (the crop's inverse)."""
    return points / np.array(POSE_SIZE) * size + center - size / 2


def openpose_order(keypoints: np.ndarray, scores: np.ndarray) -> np.ndarray:
    """(N, 133, 2), (N, 133) -> (N, 134, 3) of (x, y, score): the neck (between the shoulders, score 1 when both
    shoulders pass KEYPOINT_MIN, else 0) inserted at 17, and the body's first 18 reordered as OpenPose's."""
    info = np.concatenate([keypoints, scores[..., None]], -1)
    neck = info[:, [5, 6]].mean(1)
    neck[:, 2] = ((info[:, 5, 2] > KEYPOINT_MIN) & (info[:, 6, 2] > KEYPOINT_MIN)).astype(info.dtype)
    info = np.insert(info, 17, neck, axis=1)
    info[:, list(OPENPOSE_FROM_COCO)] = info[:, list(OPENPOSE_FROM_COCO.values())]
    return info


def _part(points: np.ndarray) -> list[tuple[float, float] | None] | None:
    kept = [(float(x), float(y)) if score >= KEYPOINT_MIN else None for x, y, score in points]
    return None if all(p is None for p in kept) else kept


def poses(info: np.ndarray) -> list[dict]:
    """Per person: body (18 points or None each), left_hand / right_hand (21) and face (68 + the two eyes), a part
    being None when none of its points passes KEYPOINT_MIN."""
    result = []
    for person in info:
        body = _part(person[:18]) or [None] * 18
        face = _part(person[FACE])
        if face is not None:
            face += [body[14], body[15]]
        result.append({"body": body, "left_hand": _part(person[LEFT_HAND]), "right_hand": _part(person[RIGHT_HAND]),
                       "face": face})
    return result


def detect(det, pose, img: np.ndarray) -> list[dict]:
    """The people in an RGB image, from the two sessions."""
    x, ratio = letterbox(img)
    boxes = person_boxes(_run(det, x)[0], ratio)
    if boxes is None:
        return []
    if len(boxes) == 0:
        boxes = np.array([[0, 0, img.shape[1], img.shape[0]]], dtype=np.float64)
    crops = [crop_transform(box) for box in boxes]
    # one crop a run: the released pose model may have a batch of 1
    simcc = [_run(pose, crop(img, c, s)[None])[:2] for c, s in crops]
    points, scores = simcc_decode(np.concatenate([x for x, _ in simcc]), np.concatenate([y for _, y in simcc]))
    points = np.stack([to_image(p, c, s) for p, (c, s) in zip(points, crops)])
    return poses(openpose_order(points, scores))


def dw_openpose_full(paths: tuple[Path, Path], img: np.ndarray) -> np.ndarray:
    """Bodies, hands and faces drawn on black, on the image padded as the extension pads it. `paths`: (detector,
    pose model)."""
    h, w = img.shape[:2]
    padded = annotators.pad64(img)
    people = detect(load(paths[0]), load(paths[1]), padded)
    return annotator_openpose.draw_people(people, *padded.shape[:2])[:h, :w]
