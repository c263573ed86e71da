"""openpose_hand / openpose_face / openpose_full: the CMU hand model (hand_pose_model.pth) on a square box beyond each
wrist the body model found, its 21 keypoints from heatmaps averaged over four scales; the face model (facenet.pth) on
a square box around the head, a point per heatmap that passes its threshold.

Both networks are a VGG stem then stages of one branch (conv6_*_CPM, then Mconv*_stage2..6), each later stage reading
the previous heatmaps beside the stem's features; layers keep the files' flat names, sizes read from their tensors.
"""
from __future__ import annotations

import math
import re
from pathlib import Path

import numpy as np
import torch
from scipy import ndimage
from torch import nn
from torch.nn import functional as F

from modules.controlnet import annotator_openpose, annotators
from modules.sd_models_loader import materialize, read_state_dict

STEM = ["conv1_1", "conv1_2", "pool", "conv2_1", "conv2_2", "pool", "conv3_1", "conv3_2", "conv3_3", "conv3_4", "pool",
        "conv4_1", "conv4_2", "conv4_3", "conv4_4", "conv5_1", "conv5_2", "conv5_3_CPM"]
SCALES = (0.5, 1.0, 1.5, 2.0)
BOX_SIZE, MAP_SIZE, PEAK_THRESHOLD = 368, 128, 0.05
KEYPOINTS = 21
FACE_SIZE, FACE_THRESHOLD = 384, 0.05


class PartPose(nn.Module):
    def __init__(self, sd: dict[str, torch.Tensor]):
        super().__init__()
        self.stages = [["conv6_1_CPM", "conv6_2_CPM"]]
        for stage in sorted({int(m.group(1)) for k in sd if (m := re.match(r"Mconv\d+_stage(\d+)\.", k))}):
            found = {m.group(0): int(m.group(1)) for k in sd
                     if (m := re.match(rf"Mconv(\d+)_stage{stage}(?=\.weight$)", k))}
            self.stages.append(sorted(found, key=found.get))
        for name in [n for n in STEM if n != "pool"] + [n for stage in self.stages for n in stage]:
            self.add_module(name, annotator_openpose._conv(sd[f"{name}.weight"]))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for name in STEM:
            x = F.max_pool2d(x, 2, 2) if name == "pool" else F.relu(getattr(self, name)(x))
        features, h = x, x
        for stage in self.stages:
            for i, name in enumerate(stage):
                h = getattr(self, name)(h)
                if i < len(stage) - 1:  # each stage's last layer is unrectified
                    h = F.relu(h)
            out = h
            h = torch.cat([h, features], 1)
        return out


def load(path: Path) -> PartPose:
    sd = {k: v.float() for k, v in read_state_dict(path)[0].items()}
    with torch.device("meta"):
        model = PartPose(sd)
    materialize(model, sd, f"annotator {path.name}")
    return model.eval()


def boxes(person: list[tuple[float, float] | None], height: int, width: int) -> list[tuple[int, int, int, bool]]:
    """(x, y, side, is_left) of the square box beyond each wrist whose arm is complete: a third of the forearm past
    the wrist, 1.5x the longer of forearm and 0.9x upper arm wide, clipped to the image; boxes under 20 pixels are
    dropped (OpenPose's hand detector)."""
    found = []
    for shoulder, elbow, wrist, is_left in ((5, 6, 7, True), (2, 3, 4, False)):
        if any(person[i] is None for i in (shoulder, elbow, wrist)):
            continue
        (x1, y1), (x2, y2), (x3, y3) = person[shoulder], person[elbow], person[wrist]
        side = 1.5 * max(math.hypot(x3 - x2, y3 - y2), 0.9 * math.hypot(x2 - x1, y2 - y1))
        x = max(x3 + (x3 - x2) / 3 - side / 2, 0)
        y = max(y3 + (y3 - y2) / 3 - side / 2, 0)
        side = min(side if x + side <= width else width - x, side if y + side <= height else height - y)
        if side >= 20:
            found.append((int(x), int(y), int(side), is_left))
    return found


def heatmaps(model: PartPose, crop: np.ndarray) -> np.ndarray:
    """The 21 + 1 heatmaps (128 x 128 x 22) of a square RGB crop, averaged over the four scales of a 368 box."""
    blurred = ndimage.gaussian_filter(crop[..., ::-1].astype(np.float32), (0.8, 0.8, 0), mode="mirror", truncate=4.0)
    x = torch.from_numpy(blurred.round().clip(0, 255)).permute(2, 0, 1)[None].to(annotators.device_of(model))  # BGR
    total = torch.zeros(1, KEYPOINTS + 1, MAP_SIZE, MAP_SIZE, device=x.device)
    for scale in SCALES:
        size = int(scale * BOX_SIZE)
        scaled = annotator_openpose._resize(x, (size, size))
        padded = F.pad(scaled / 256.0 - 0.5, (0, -size % 8, 0, -size % 8))
        with torch.inference_mode():
            out = model(padded)
        out = annotator_openpose._resize(out, (out.shape[-2] * 8, out.shape[-1] * 8))[..., :size, :size]
        total += annotator_openpose._resize(out, (MAP_SIZE, MAP_SIZE)) / len(SCALES)
    return total[0].permute(1, 2, 0).cpu().numpy().astype(np.float64)


def peaks(maps: np.ndarray, side: int) -> list[tuple[int, int] | None]:
    """Each keypoint: the maximum of its heatmap within the connected area (smoothed above the threshold) holding the
    most response, in crop pixels; None when nothing passes."""
    found = []
    for part in range(KEYPOINTS):
        raw = maps[..., part]
        labels, count = ndimage.label(ndimage.gaussian_filter(raw, sigma=3) > PEAK_THRESHOLD, structure=np.ones((3, 3)))
        if count == 0:
            found.append(None)
            continue
        best = 1 + int(np.argmax(ndimage.sum(raw, labels, range(1, count + 1))))
        y, x = np.unravel_index(np.where(labels == best, raw, 0).argmax(), raw.shape)
        point = (int(x * side / MAP_SIZE), int(y * side / MAP_SIZE))
        found.append(None if 0 in point else point)  # the extension reads a 0 coordinate as "not found"
    return found


def hands(model: PartPose, img: np.ndarray, person) -> dict:
    """{"left_hand": ..., "right_hand": ...}: 21 points (image pixels or None) each, or None without a box."""
    result = {"left_hand": None, "right_hand": None}
    for x, y, side, is_left in boxes(person, *img.shape[:2]):
        points = peaks(heatmaps(model, img[y:y + side, x:x + side]), side)
        result["left_hand" if is_left else "right_hand"] = [None if p is None else (float(p[0] + x), float(p[1] + y))
                                                            for p in points]
    return result


def face_box(person: list[tuple[float, float] | None], height: int, width: int) -> tuple[int, int, int] | None:
    """(x, y, side) of the square around the nose, reaching 3x the farthest eye or 1.5x the farthest ear each way,
    clipped as the extension clips it (its check against the image's edge uses half the side); None under 20 pixels
    or without the nose and any eye or ear."""
    nose = person[0]
    if nose is None or all(person[i] is None for i in (14, 15, 16, 17)):
        return None
    half = 0.0
    for i, factor in ((14, 3.0), (15, 3.0), (16, 1.5), (17, 1.5)):
        if person[i] is not None:
            half = max(half, factor * max(abs(nose[0] - person[i][0]), abs(nose[1] - person[i][1])))
    x, y = max(nose[0] - half, 0), max(nose[1] - half, 0)
    side = min(2 * half if x + half <= width else width - x, 2 * half if y + half <= height else height - y)
    return (int(x), int(y), int(side)) if side >= 20 else None


def face_points(model: PartPose, crop: np.ndarray) -> list[tuple[int, int]]:
    """The crop's face points (crop pixels): each heatmap's maximum where it passes the threshold, the background's
    included as in the extension; points on the crop's top or left edge are dropped, as the extension drops them."""
    h, w = crop.shape[:2]
    x = torch.from_numpy(np.ascontiguousarray(crop[..., ::-1]).astype(np.float32)).permute(2, 0, 1)[None]  # BGR
    x = annotator_openpose._resize(x.to(annotators.device_of(model)), (FACE_SIZE, FACE_SIZE)).round().clamp(0, 255) / 256.0 - 0.5
    with torch.inference_mode():
        maps = F.interpolate(model(x), size=(h, w), mode="bilinear", align_corners=True)[0].cpu().numpy()
    found = []
    for part in maps:
        if (part > FACE_THRESHOLD).any():
            py, px = np.unravel_index(np.where(part > FACE_THRESHOLD, part, -np.inf).argmax(), part.shape)
            if px > 0 and py > 0:
                found.append((int(px), int(py)))
    return found


def _openpose_with(paths: tuple[Path, ...], img: np.ndarray, hand: bool, face: bool) -> np.ndarray:
    """Bodies with their hands and/or faces drawn on black, on the image padded as the extension pads it. `paths`:
    the body model, then the hand model and/or the face model."""
    h, w = img.shape[:2]
    padded = annotators.pad64(img)
    persons = annotator_openpose.detect_people(annotators.cached(paths[0], annotator_openpose.load), padded)
    hand_model = annotators.cached(paths[1], load) if hand else None
    face_model = annotators.cached(paths[-1], load) if face else None
    people = []
    for person in persons:
        entry = {"body": person, "left_hand": None, "right_hand": None, "face": None}
        if hand_model is not None:
            entry.update(hands(hand_model, padded, person))
        if face_model is not None and (box := face_box(person, *padded.shape[:2])) is not None:
            x, y, side = box
            entry["face"] = [(float(px + x), float(py + y)) for px, py in
                             face_points(face_model, padded[y:y + side, x:x + side])]
        people.append(entry)
    return annotator_openpose.draw_people(people, *padded.shape[:2])[:h, :w]


def openpose_hand(paths: tuple[Path, Path], img: np.ndarray) -> np.ndarray:
    return _openpose_with(paths, img, hand=True, face=False)


def openpose_face(paths: tuple[Path, Path], img: np.ndarray) -> np.ndarray:
    return _openpose_with(paths, img, hand=False, face=True)


def openpose_full(paths: tuple[Path, Path, Path], img: np.ndarray) -> np.ndarray:
    return _openpose_with(paths, img, hand=True, face=True)
