"""openpose: the CMU body model (body_pose_model.pth) and the grouping of its peaks into skeletons, drawn as the
extension draws them (coloured limbs and joints on black; hands and faces, of openpose_hand/full and DWPose, too).

The network is a VGG stem followed by stages of two branches, part affinity fields (PAFs, branch L1) and part
heatmaps (L2), each stage reading the previous stage's maps beside the stem's features. Layers keep the file's flat
names (conv1_1, conv5_1_CPM_L1, Mconv1_stage2_L1, ...) and take their sizes from its tensors.
"""
from __future__ import annotations

import colorsys
import math
import re
from pathlib import Path

import numpy as np
import torch
from PIL import Image, ImageDraw
from scipy import ndimage
from torch import nn
from torch.nn import functional as F

from modules.controlnet import annotators
from modules.sd_models_loader import materialize, read_state_dict

PARTS = 18  # COCO body parts; the heatmaps' last channel is the background
# limbs as (part, part), 0-based: neck-shoulders, arms, neck-hips, legs, neck-nose, face, and two ear-shoulder links
# that help grouping but are not drawn
LIMBS = [(1, 2), (1, 5), (2, 3), (3, 4), (5, 6), (6, 7), (1, 8), (8, 9), (9, 10), (1, 11), (11, 12), (12, 13),
         (1, 0), (0, 14), (14, 16), (0, 15), (15, 17), (2, 16), (5, 17)]
# the PAF channels (x, y) of each limb
PAF_CHANNELS = [(12, 13), (20, 21), (14, 15), (16, 17), (22, 23), (24, 25), (0, 1), (2, 3), (4, 5), (6, 7), (8, 9),
                (10, 11), (28, 29), (30, 31), (34, 35), (32, 33), (36, 37), (18, 19), (26, 27)]
DRAWN_LIMBS = 17
COLORS = [(255, 0, 0), (255, 85, 0), (255, 170, 0), (255, 255, 0), (170, 255, 0), (85, 255, 0), (0, 255, 0),
          (0, 255, 85), (0, 255, 170), (0, 255, 255), (0, 170, 255), (0, 85, 255), (0, 0, 255), (85, 0, 255),
          (170, 0, 255), (255, 0, 255), (255, 0, 170), (255, 0, 85)]
STEM = ["conv1_1", "conv1_2", "pool", "conv2_1", "conv2_2", "pool", "conv3_1", "conv3_2", "conv3_3", "conv3_4", "pool",
        "conv4_1", "conv4_2", "conv4_3_CPM", "conv4_4_CPM"]
HAND_EDGES = [(0, 1), (1, 2), (2, 3), (3, 4), (0, 5), (5, 6), (6, 7), (7, 8), (0, 9), (9, 10), (10, 11), (11, 12),
              (0, 13), (13, 14), (14, 15), (15, 16), (0, 17), (17, 18), (18, 19), (19, 20)]
NET_HEIGHT = 184  # the extension's one scale: 0.5 x a 368 box
PEAK_THRESHOLD, PAF_THRESHOLD, SAMPLES = 0.1, 0.05, 10


def _conv(weight: torch.Tensor) -> nn.Conv2d:
    k = weight.shape[-1]
    return nn.Conv2d(weight.shape[1], weight.shape[0], k, padding=k // 2)


class BodyPose(nn.Module):
    """The stem and `stages` stages of (PAF, heatmap) branches, built from the file's tensor shapes."""

    def __init__(self, sd: dict[str, torch.Tensor]):
        super().__init__()
        self.stages = len({m.group(1) for k in sd if (m := re.match(r"Mconv\d+_stage(\d+)_L1\.", k))}) + 1
        for name in STEM:
            if name != "pool":
                self.add_module(name, _conv(sd[f"{name}.weight"]))
        for stage in range(1, self.stages + 1):
            for branch in (1, 2):
                for name in self.branch(sd, stage, branch):
                    self.add_module(name, _conv(sd[f"{name}.weight"]))
        self.layers = {stage: {b: self.branch(sd, stage, b) for b in (1, 2)} for stage in range(1, self.stages + 1)}

    @staticmethod
    def branch(sd, stage: int, branch: int) -> list[str]:
        pattern = rf"conv5_(\d+)_CPM_L{branch}" if stage == 1 else rf"Mconv(\d+)_stage{stage}_L{branch}"
        found = {m.group(0): int(m.group(1)) for k in sd if (m := re.match(pattern + r"(?=\.weight$)", k))}
        return sorted(found, key=found.get)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        for name in STEM:
            x = F.max_pool2d(x, 2, 2) if name == "pool" else F.relu(getattr(self, name)(x))
        features, h = x, x
        for stage in range(1, self.stages + 1):
            outputs = []
            for branch in (1, 2):
                y, names = h, self.layers[stage][branch]
                for i, name in enumerate(names):
                    y = getattr(self, name)(y)
                    # ReLU between layers; the extension's list of unrectified layers names the last stage's L1
                    # twice, so its last heatmaps are rectified too: kept, so our maps are the extension's
                    if i < len(names) - 1 or (stage == self.stages and branch == 2):
                        y = F.relu(y)
                outputs.append(y)
            h = torch.cat([*outputs, features], 1)
        return outputs[0], outputs[1]


def _resize(x: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """Area when shrinking, bicubic when enlarging (the extension: OpenCV's area / Lanczos)."""
    if size[0] * size[1] < x.shape[-2] * x.shape[-1]:
        return F.interpolate(x, size=size, mode="area")
    return F.interpolate(x, size=size, mode="bicubic", align_corners=False)


def maps(model: BodyPose, img: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(heatmaps H x W x 19, PAFs H x W x 38) at the image's size, from one pass at NET_HEIGHT."""
    h, w = img.shape[:2]
    scale = NET_HEIGHT / h
    x = torch.from_numpy(np.ascontiguousarray(img[..., ::-1]).astype(np.float32)).permute(2, 0, 1)[None]  # BGR
    x = _resize(x.to(annotators.device_of(model)), (int(h * scale), int(w * scale)))
    sh, sw = x.shape[-2:]
    x = F.pad(x / 256.0 - 0.5, (0, -sw % 8, 0, -sh % 8))  # grey padding: 128 / 256 - 0.5 = 0
    with torch.inference_mode():
        pafs, heatmaps = model(x)
    out = []
    for m in (heatmaps, pafs):
        m = F.interpolate(m, scale_factor=8, mode="bicubic", align_corners=False)[..., :sh, :sw]
        out.append(_resize(m, (h, w))[0].permute(1, 2, 0).cpu().numpy().astype(np.float64))
    return out[0], out[1]


def peaks(heatmaps: np.ndarray) -> list[list[tuple[float, float, float, int]]]:
    """Each part's local maxima of its smoothed heatmap above the threshold: (x, y, score, id), ids counted over all."""
    found, next_id = [], 0
    for part in range(PARTS):
        raw = heatmaps[..., part]
        smooth = ndimage.gaussian_filter(raw, sigma=3)
        padded = np.pad(smooth, 1)
        is_peak = smooth > PEAK_THRESHOLD
        for dy, dx in ((-1, 0), (1, 0), (0, -1), (0, 1)):
            is_peak &= smooth >= padded[1 + dy:1 + dy + raw.shape[0], 1 + dx:1 + dx + raw.shape[1]]
        ys, xs = np.nonzero(is_peak)  # row by row
        found.append([(int(x), int(y), float(raw[y, x]), next_id + n) for n, (x, y) in enumerate(zip(xs, ys))])
        next_id += len(xs)
    return found


def connections(found, pafs: np.ndarray, height: int) -> list[np.ndarray | None]:
    """Per limb, the chosen (id A, id B, score, index A, index B): the pairs whose straight line follows the limb's
    PAF best, each peak used once."""
    result = []
    for (a, b), (cx, cy) in zip(LIMBS, PAF_CHANNELS):
        cand_a, cand_b = found[a], found[b]
        if not cand_a or not cand_b:
            result.append(None)
            continue
        scored = []
        for i, pa in enumerate(cand_a):
            for j, pb in enumerate(cand_b):
                vec = np.subtract(pb[:2], pa[:2]).astype(np.float64)
                norm = max(0.001, math.hypot(*vec))
                vec /= norm
                xs = np.rint(np.linspace(pa[0], pb[0], SAMPLES)).astype(int)
                ys = np.rint(np.linspace(pa[1], pb[1], SAMPLES)).astype(int)
                along = pafs[ys, xs, cx] * vec[0] + pafs[ys, xs, cy] * vec[1]
                score = along.sum() / SAMPLES + min(0.5 * height / norm - 1, 0)
                if np.count_nonzero(along > PAF_THRESHOLD) > 0.8 * SAMPLES and score > 0:
                    scored.append((i, j, score))
        scored.sort(key=lambda c: c[2], reverse=True)
        chosen, used_a, used_b = [], set(), set()
        for i, j, score in scored:
            if i not in used_a and j not in used_b:
                chosen.append((cand_a[i][3], cand_b[j][3], score, i, j))
                used_a.add(i)
                used_b.add(j)
                if len(chosen) >= min(len(cand_a), len(cand_b)):
                    break
        result.append(np.array(chosen, dtype=np.float64).reshape(-1, 5))
    return result


def people(found, limbs: list[np.ndarray | None]) -> list[list[tuple[float, float] | None]]:
    """The peaks grouped into people, limb by limb: a row per person holds its part ids, total score and part count;
    rows sharing a limb's end are extended or merged; people of fewer than 4 parts or a low mean score are dropped."""
    candidates = np.array([p for part in found for p in part], dtype=np.float64).reshape(-1, 4)
    rows = np.zeros((0, PARTS + 2)) - 1
    for k, chosen in enumerate(limbs):
        if chosen is None:
            continue
        a, b = LIMBS[k]
        for id_a, id_b, score, *_ in chosen:
            hits = [r for r in range(len(rows)) if rows[r][a] == id_a or rows[r][b] == id_b][:2]
            if len(hits) == 1 or (len(hits) == 2 and ((rows[hits[0]][:-2] >= 0) & (rows[hits[1]][:-2] >= 0)).any()):
                row = rows[hits[0]]
                if len(hits) == 2 or row[b] != id_b:
                    row[b] = id_b
                    row[-1] += 1
                    row[-2] += candidates[int(id_b), 2] + score
            elif len(hits) == 2:  # two disjoint people joined by this limb: one person
                first, second = hits
                rows[first][:-2] += rows[second][:-2] + 1
                rows[first][-2:] += rows[second][-2:]
                rows[first][-2] += score
                rows = np.delete(rows, second, 0)
            elif k < DRAWN_LIMBS:
                row = np.zeros(PARTS + 2) - 1
                row[a], row[b] = id_a, id_b
                row[-1] = 2
                row[-2] = candidates[int(id_a), 2] + candidates[int(id_b), 2] + score
                rows = np.vstack([rows, row])
    kept = [r for r in rows if r[-1] >= 4 and r[-2] / r[-1] >= 0.4]
    return [[tuple(candidates[int(i), :2]) if i >= 0 else None for i in r[:PARTS]] for r in kept]


def _limb_polygon(p: tuple[float, float], q: tuple[float, float], half_width: int = 4) -> list[tuple[int, int]]:
    """The ellipse from p to q, `half_width` across, as a polygon of one point per degree (OpenCV's ellipse2Poly)."""
    cx, cy = int((p[0] + q[0]) / 2), int((p[1] + q[1]) / 2)
    half_length = int(math.hypot(p[0] - q[0], p[1] - q[1]) / 2)
    angle = math.radians(int(math.degrees(math.atan2(p[1] - q[1], p[0] - q[0]))))
    ca, sa = math.cos(angle), math.sin(angle)
    points = []
    for t in range(361):
        x, y = half_length * math.cos(math.radians(t)), half_width * math.sin(math.radians(t))
        points.append((round(cx + x * ca - y * sa), round(cy + x * sa + y * ca)))
    return points


def draw(persons: list[list[tuple[float, float] | None]], height: int, width: int) -> np.ndarray:
    """Limbs as ellipses at 60% of their colour, then joints as radius-4 dots, on black (RGB)."""
    canvas = Image.new("RGB", (width, height))
    pen = ImageDraw.Draw(canvas)
    for keypoints in persons:
        for (a, b), color in zip(LIMBS[:DRAWN_LIMBS], COLORS):
            if keypoints[a] is not None and keypoints[b] is not None:
                pen.polygon(_limb_polygon(keypoints[a], keypoints[b]), fill=tuple(int(c * 0.6) for c in color))
        for point, color in zip(keypoints, COLORS):
            if point is not None:
                x, y = int(point[0]), int(point[1])
                pen.ellipse((x - 4, y - 4, x + 4, y + 4), fill=color)
    return np.asarray(canvas)


def _hand_color(edge: int) -> tuple[int, int, int]:
    return tuple(round(c * 255) for c in colorsys.hsv_to_rgb(edge / len(HAND_EDGES), 1.0, 1.0))


def draw_people(people: list[dict], height: int, width: int) -> np.ndarray:
    """Bodies as openpose draws them, then hands (edges 2 wide in HSV hues, blue joints of radius 4) and faces (white
    dots of radius 3); points at pixel 0 of either axis are not drawn, as in the extension."""
    canvas = Image.fromarray(draw([p["body"] for p in people], height, width))
    pen = ImageDraw.Draw(canvas)

    def pixel(point):
        return None if point is None or int(point[0]) < 1 or int(point[1]) < 1 else (int(point[0]), int(point[1]))

    for person in people:
        for hand in (person["left_hand"], person["right_hand"]):
            if hand is None:
                continue
            for i, (a, b) in enumerate(HAND_EDGES):
                if (pa := pixel(hand[a])) and (pb := pixel(hand[b])):
                    pen.line([pa, pb], fill=_hand_color(i), width=2)
            for point in map(pixel, hand):
                if point:
                    pen.ellipse((point[0] - 4, point[1] - 4, point[0] + 4, point[1] + 4), fill=(0, 0, 255))
        for point in map(pixel, person["face"] or []):
            if point:
                pen.ellipse((point[0] - 3, point[1] - 3, point[0] + 3, point[1] + 3), fill=(255, 255, 255))
    return np.asarray(canvas)


def load(path: Path) -> BodyPose:
    sd = {k: v.float() for k, v in read_state_dict(path)[0].items()}
    with torch.device("meta"):
        model = BodyPose(sd)
    materialize(model, sd, f"annotator {path.name}")
    return model.eval()


def detect_people(model: BodyPose, img: np.ndarray) -> list[list[tuple[float, float] | None]]:
    """The bodies in an RGB image: 18 points (pixels or None) each."""
    heatmaps, pafs = maps(model, img)
    found = peaks(heatmaps)
    return people(found, connections(found, pafs, img.shape[0]))


def openpose(path: Path, img: np.ndarray) -> np.ndarray:
    """The bodies found in the image drawn on black, on the image padded as the extension pads it."""
    h, w = img.shape[:2]
    padded = annotators.pad64(img)
    return draw(detect_people(annotators.cached(path, load), padded), *padded.shape[:2])[:h, :w]
