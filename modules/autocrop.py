"""Auto focal point crop (A1111's textual_inversion.autocrop), for dataset preparation: the crop of the wanted size that
centres, as far as the frame allows, on the weighted average of three points of interest:

- edges: the centroid of up to 100 strong corners (Shi-Tomasi: the smaller eigenvalue of the local structure tensor,
  with a minimum distance between corners), the bottom tenth ignored so watermarks do not pull the crop;
- entropy: the centre of the crop-sized window, slid along the long side, whose black-and-white version is the most
  mixed;
- faces: the centroid of the faces a face detector finds (a third of the way down each box: eyes, not chin).
Each weight is shared among the kinds that found something. The image is first scaled so its short side fits the crop.
"""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
from PIL import Image, ImageDraw
from scipy import ndimage

GREEN, BLUE, RED, YELLOW = "#0F0", "#00F", "#F00", "#ff0"
MAX_CORNERS = 100
CORNER_QUALITY = 0.04  # corners weaker than this share of the strongest are dropped
ENTROPY_STEP = 4  # pixels the entropy window moves at a time

FaceFinder = Callable[[Image.Image], list[tuple[float, float, float, float]]]  # image -> face boxes (x1, y1, x2, y2)


@dataclass
class PointOfInterest:
    x: float
    y: float
    weight: float = 1.0
    size: float = 10

    def bounding(self, size: float) -> list[float]:
        return [self.x - size // 2, self.y - size // 2, self.x + size // 2, self.y + size // 2]


@dataclass
class Settings:
    crop_width: int = 512
    crop_height: int = 512
    corner_points_weight: float = 0.5
    entropy_points_weight: float = 0.5
    face_points_weight: float = 0.5
    annotate_image: bool = False
    find_faces: FaceFinder | None = None


def scale_to_cover(im: Image.Image, width: int, height: int) -> Image.Image:
    """A1111's scaling: the image's short side to the crop's matching side (a square follows the crop's long side)."""
    if im.width > im.height:
        scale = height / im.height
    elif im.height > im.width:
        scale = width / im.width
    else:
        scale = max(width, height) / im.width
    return im.resize((int(im.width * scale), int(im.height * scale)))


def crop_image(im: Image.Image, settings: Settings) -> list[Image.Image]:
    """The crop, and with annotate_image a copy of the scaled image showing the points and the crop."""
    im = scale_to_cover(im, settings.crop_width, settings.crop_height)
    debug = im.copy() if settings.annotate_image else None
    focus = focal_point(im, settings, debug)
    x1 = int(min(max(focus.x - settings.crop_width // 2, 0), im.width - settings.crop_width))
    y1 = int(min(max(focus.y - settings.crop_height // 2, 0), im.height - settings.crop_height))
    box = (x1, y1, x1 + settings.crop_width, y1 + settings.crop_height)
    results = [im.crop(box)]
    if debug is not None:
        ImageDraw.Draw(debug).rectangle([box[0], box[1], box[2] - 1, box[3] - 1], outline=GREEN)
        results.append(debug)
    return results


def focal_point(im: Image.Image, settings: Settings, debug: Image.Image | None = None) -> PointOfInterest:
    kinds = [
        ("Edge", BLUE, settings.corner_points_weight, image_corner_points),
        ("Entropy", YELLOW, settings.entropy_points_weight, image_entropy_points),
        ("Face", RED, settings.face_points_weight, image_face_points),
    ]
    found = [(label, color, weight, points) for label, color, weight, find in kinds
             if weight > 0 and (points := find(im, settings))]
    total = sum(weight for _, _, weight, _ in found)
    centroids = []
    for label, color, weight, points in found:
        center = centroid(points)
        center.weight = weight / total
        centroids.append(center)
        if debug is not None:
            annotate(debug, label, color, center, points)
    average = poi_average(centroids, im)
    if debug is not None:
        ImageDraw.Draw(debug).ellipse(average.bounding(min(im.size) * 0.07), outline=GREEN)
    return average


def annotate(debug: Image.Image, label: str, color: str, center: PointOfInterest, points: list[PointOfInterest]) -> None:
    draw = ImageDraw.Draw(debug)
    box = center.bounding(min(debug.size) * 0.07 * center.weight)
    draw.text((box[0], box[1] - 15), f"{label}: {center.weight:.02f}", fill=color)
    draw.ellipse(box, outline=color)
    for point in points if len(points) > 1 else []:
        draw.rectangle(point.bounding(4), outline=color)


def image_corner_points(im: Image.Image, settings: Settings) -> list[PointOfInterest]:
    gray = np.asarray(im.convert("L"), dtype=np.float64)
    gray[int(im.height * 0.9):, :] = 0x99  # a flat band: no corners near the bottom edge
    gx, gy = ndimage.sobel(gray, axis=1), ndimage.sobel(gray, axis=0)
    sxx, syy, sxy = (ndimage.uniform_filter(a, size=3) for a in (gx * gx, gy * gy, gx * gy))
    response = (sxx + syy) / 2 - np.sqrt(((sxx - syy) / 2) ** 2 + sxy ** 2)  # the structure tensor's smaller eigenvalue
    if response.max() <= 0:
        return []
    local_max = response == ndimage.maximum_filter(response, size=3)
    ys, xs = np.nonzero(local_max & (response >= CORNER_QUALITY * response.max()))
    order = np.argsort(-response[ys, xs], kind="stable")
    min_distance = min(im.width, im.height) * 0.06
    chosen: list[tuple[int, int]] = []
    for y, x in zip(ys[order], xs[order]):
        if all((x - cx) ** 2 + (y - cy) ** 2 >= min_distance ** 2 for cx, cy in chosen):
            chosen.append((int(x), int(y)))
            if len(chosen) == MAX_CORNERS:
                break
    return [PointOfInterest(x, y, size=4, weight=1 / len(chosen)) for x, y in chosen]


def image_entropy(im: Image.Image) -> float:
    """A1111's measure, kept for the same crops: -sum(log2 p) over the black/white histogram's non-empty bins."""
    band = np.asarray(im.convert("1"), dtype=np.uint8)
    hist = np.bincount(band.ravel(), minlength=2).astype(np.float64)
    hist = hist[hist > 0]
    return float(-np.log2(hist / hist.sum()).sum())


def image_entropy_points(im: Image.Image, settings: Settings) -> list[PointOfInterest]:
    if im.width == im.height:
        return []
    landscape = im.width > im.height
    limit = im.width if landscape else im.height
    best, best_entropy, offset = 0, 0.0, 0
    while offset + (settings.crop_width if landscape else settings.crop_height) < limit:
        box = (offset, 0, offset + settings.crop_width, settings.crop_height) if landscape else \
            (0, offset, settings.crop_width, offset + settings.crop_height)
        entropy = image_entropy(im.crop(box))
        if entropy > best_entropy:
            best, best_entropy = offset, entropy
        offset += ENTROPY_STEP
    x = best + settings.crop_width / 2 if landscape else settings.crop_width / 2
    y = settings.crop_height / 2 if landscape else best + settings.crop_height / 2
    return [PointOfInterest(int(x), int(y), size=25, weight=1.0)]


def image_face_points(im: Image.Image, settings: Settings) -> list[PointOfInterest]:
    boxes = settings.find_faces(im) if settings.find_faces else []
    return [PointOfInterest(int(x1 + (x2 - x1) * 0.5), int(y1 + (y2 - y1) * 0.33), size=x2 - x1, weight=1 / len(boxes))
            for x1, y1, x2, y2 in boxes]


def centroid(points: list[PointOfInterest]) -> PointOfInterest:
    return PointOfInterest(sum(p.x for p in points) / len(points), sum(p.y for p in points) / len(points))


def poi_average(points: list[PointOfInterest], im: Image.Image) -> PointOfInterest:
    """The weighted average point; the image's centre when nothing was found."""
    weight = sum(p.weight for p in points)
    if not weight:
        return PointOfInterest(im.width // 2, im.height // 2)
    return PointOfInterest(round(sum(p.x * p.weight for p in points) / weight),
                           round(sum(p.y * p.weight for p in points) / weight))

