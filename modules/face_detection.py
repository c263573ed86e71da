"""Face detection for face restoration: RetinaFace (Deng et al., 2019) as facexlib trained it, in our own torch code.

The modules carry the parameter names of facexlib's weight files, so `detection_Resnet50_Final.pth` (the one A1111
uses) and `detection_mobilenet0.25_Final.pth` load strictly. The files live in models/GFPGAN (or
--gfpgan-models-path), beside the GFPGAN models, as in A1111; when neither is there the ResNet-50 file is downloaded
once from facexlib's release page. A detector finds each face's box, score and 5 landmarks (left eye, right eye,
nose tip, left and right mouth corner), which face_restoration_utils aligns to its template.
"""
from __future__ import annotations

import functools
import logging
import math
import os
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image
from torch import nn

from modules import modelloader

log = logging.getLogger(__name__)

RESNET50_FILE = "detection_Resnet50_Final.pth"
MOBILENET_FILE = "detection_mobilenet0.25_Final.pth"
DETECTOR_FILES = (RESNET50_FILE, MOBILENET_FILE)  # looked for in this order; the first is downloaded when none is there
DOWNLOAD_URL = f"https://github.com/xinntao/facexlib/releases/download/v0.1.0/{RESNET50_FILE}"
BGR_MEAN = (104.0, 117.0, 123.0)  # the training images' channel means: the net sees BGR pixels (0..255) minus these


@dataclass(frozen=True)
class RetinaFaceConfig:
    backbone: str
    in_channel: int  # the backbone's three feature maps have 2x, 4x and 8x this many channels
    out_channel: int  # width of the FPN, SSH and heads
    min_sizes: tuple[tuple[int, ...], ...] = ((16, 32), (64, 128), (256, 512))  # anchor sides per level, in pixels
    steps: tuple[int, ...] = (8, 16, 32)  # stride of each level
    variances: tuple[float, float] = (0.1, 0.2)  # scale of the centre and size deltas

    @property
    def leaky(self) -> float:
        return 0.1 if self.out_channel <= 64 else 0.0  # facexlib: leaky ReLU only in the narrow (mobilenet) necks


CONFIGS = {"mobilenet0.25": RetinaFaceConfig("mobilenet0.25", 32, 64), "resnet50": RetinaFaceConfig("resnet50", 256, 256)}


def conv_bn(cin: int, cout: int, kernel: int = 3, stride: int = 1, leaky: float | None = None, groups: int = 1):
    """Convolution without bias, batch norm, then a leaky ReLU unless leaky is None (keys .0 and .1)."""
    layers = [nn.Conv2d(cin, cout, kernel, stride, kernel // 2, groups=groups, bias=False), nn.BatchNorm2d(cout)]
    if leaky is not None:
        layers.append(nn.LeakyReLU(leaky))
    return nn.Sequential(*layers)


def depthwise_separable(cin: int, cout: int, stride: int) -> nn.Sequential:
    """MobileNet's depthwise 3x3 then pointwise 1x1 (keys .0/.1 and .3/.4)."""
    return nn.Sequential(*conv_bn(cin, cin, 3, stride, 0.1, groups=cin), *conv_bn(cin, cout, 1, 1, 0.1))


class MobileNetBody(nn.Module):
    """MobileNet-0.25: three stages at strides 8, 16 and 32 with 64, 128 and 256 channels."""

    def __init__(self):
        super().__init__()
        self.stage1 = nn.Sequential(conv_bn(3, 8, 3, 2, 0.1), depthwise_separable(8, 16, 1),
                                    depthwise_separable(16, 32, 2), depthwise_separable(32, 32, 1),
                                    depthwise_separable(32, 64, 2), depthwise_separable(64, 64, 1))
        self.stage2 = nn.Sequential(depthwise_separable(64, 128, 2), *(depthwise_separable(128, 128, 1) for _ in range(5)))
        self.stage3 = nn.Sequential(depthwise_separable(128, 256, 2), depthwise_separable(256, 256, 1))

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        first = self.stage1(x)
        second = self.stage2(first)
        return [first, second, self.stage3(second)]


class ResNetBody(nn.Module):
    """torchvision's ResNet-50 up to layer4 (no pooling or classifier), whose layer2-4 feed the FPN."""

    def __init__(self):
        super().__init__()
        from torchvision.models import resnet50

        resnet = resnet50(weights=None)
        self.conv1, self.bn1, self.relu, self.maxpool = resnet.conv1, resnet.bn1, resnet.relu, resnet.maxpool
        self.layer1, self.layer2, self.layer3, self.layer4 = resnet.layer1, resnet.layer2, resnet.layer3, resnet.layer4

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        first = self.layer2(self.layer1(self.maxpool(self.relu(self.bn1(self.conv1(x))))))
        second = self.layer3(first)
        return [first, second, self.layer4(second)]


class FPN(nn.Module):
    """Feature pyramid: each level plus the upsampled coarser one, smoothed by a 3x3 conv."""

    def __init__(self, in_channels: tuple[int, int, int], out_channels: int, leaky: float):
        super().__init__()
        self.output1, self.output2, self.output3 = (conv_bn(c, out_channels, 1, 1, leaky) for c in in_channels)
        self.merge1 = conv_bn(out_channels, out_channels, 3, 1, leaky)
        self.merge2 = conv_bn(out_channels, out_channels, 3, 1, leaky)

    def forward(self, features: list[torch.Tensor]) -> list[torch.Tensor]:
        third = self.output3(features[2])
        second = self.merge2(self.output2(features[1]) + F.interpolate(third, size=features[1].shape[2:], mode="nearest"))
        first = self.merge1(self.output1(features[0]) + F.interpolate(second, size=features[0].shape[2:], mode="nearest"))
        return [first, second, third]


class SSH(nn.Module):
    """Context module: 3x3, 5x5 and 7x7 receptive fields (as stacked 3x3 convs) concatenated, half/quarter/quarter."""

    def __init__(self, channels: int, leaky: float):
        super().__init__()
        self.conv3X3 = conv_bn(channels, channels // 2)
        self.conv5X5_1 = conv_bn(channels, channels // 4, leaky=leaky)
        self.conv5X5_2 = conv_bn(channels // 4, channels // 4)
        self.conv7X7_2 = conv_bn(channels // 4, channels // 4, leaky=leaky)
        self.conv7x7_3 = conv_bn(channels // 4, channels // 4)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        five = self.conv5X5_1(x)
        seven = self.conv7x7_3(self.conv7X7_2(five))
        return F.relu(torch.cat([self.conv3X3(x), self.conv5X5_2(five), seven], dim=1))


class Head(nn.Module):
    """A 1x1 conv giving `values` numbers per anchor, flattened to (batch, rows*cols*anchors, values)."""

    def __init__(self, channels: int, values: int, anchors: int = 2):
        super().__init__()
        self.values = values
        self.conv1x1 = nn.Conv2d(channels, anchors * values, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv1x1(x).permute(0, 2, 3, 1).reshape(x.shape[0], -1, self.values)


class RetinaFace(nn.Module):
    """forward(BGR image minus BGR_MEAN, NCHW) -> (box deltas (N, A, 4), face/background probabilities (N, A, 2),
    landmark deltas (N, A, 10)) for the A anchors of prior_boxes."""

    def __init__(self, config: RetinaFaceConfig):
        super().__init__()
        self.config = config
        self.body = MobileNetBody() if config.backbone == "mobilenet0.25" else ResNetBody()
        widths = (config.in_channel * 2, config.in_channel * 4, config.in_channel * 8)
        self.fpn = FPN(widths, config.out_channel, config.leaky)
        self.ssh1, self.ssh2, self.ssh3 = (SSH(config.out_channel, config.leaky) for _ in range(3))
        self.ClassHead = nn.ModuleList(Head(config.out_channel, 2) for _ in range(3))
        self.BboxHead = nn.ModuleList(Head(config.out_channel, 4) for _ in range(3))
        self.LandmarkHead = nn.ModuleList(Head(config.out_channel, 10) for _ in range(3))

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        pyramid = self.fpn(self.body(x))
        features = [ssh(level) for ssh, level in zip((self.ssh1, self.ssh2, self.ssh3), pyramid)]
        boxes = torch.cat([head(f) for head, f in zip(self.BboxHead, features)], dim=1)
        scores = torch.cat([head(f) for head, f in zip(self.ClassHead, features)], dim=1)
        landmarks = torch.cat([head(f) for head, f in zip(self.LandmarkHead, features)], dim=1)
        return boxes, scores.softmax(dim=-1), landmarks


def prior_boxes(height: int, width: int, config: RetinaFaceConfig) -> torch.Tensor:
    """The anchors (cx, cy, w, h) as fractions of the image, in the heads' order: level, row, column, size."""
    levels = []
    for step, sizes in zip(config.steps, config.min_sizes):
        rows, cols = math.ceil(height / step), math.ceil(width / step)
        cy = ((torch.arange(rows, dtype=torch.float64) + 0.5) * step / height).view(rows, 1, 1).expand(rows, cols, len(sizes))
        cx = ((torch.arange(cols, dtype=torch.float64) + 0.5) * step / width).view(1, cols, 1).expand(rows, cols, len(sizes))
        side = torch.tensor(sizes, dtype=torch.float64).view(1, 1, -1).expand(rows, cols, len(sizes))
        levels.append(torch.stack([cx, cy, side / width, side / height], dim=-1).reshape(-1, 4))
    return torch.cat(levels).float()


def decode_boxes(deltas: torch.Tensor, priors: torch.Tensor, variances: tuple[float, float]) -> torch.Tensor:
    """(x1, y1, x2, y2) per anchor: the centre moves by deltas * variance * anchor size, the size scales by exp."""
    centre = priors[:, :2] + deltas[:, :2] * variances[0] * priors[:, 2:]
    size = priors[:, 2:] * torch.exp(deltas[:, 2:] * variances[1])
    return torch.cat([centre - size / 2, centre + size / 2], dim=1)


def decode_landmarks(deltas: torch.Tensor, priors: torch.Tensor, variances: tuple[float, float]) -> torch.Tensor:
    """(x, y) x 5 per anchor: each point is the anchor centre moved by its delta * variance * anchor size."""
    return priors[:, :2].repeat(1, 5) + deltas * variances[0] * priors[:, 2:].repeat(1, 5)


@dataclass
class DetectedFace:
    box: np.ndarray  # (x1, y1, x2, y2) in image pixels
    score: float
    landmarks: np.ndarray  # (5, 2): left eye, right eye, nose tip, left mouth corner, right mouth corner


def select_faces(boxes: torch.Tensor, scores: torch.Tensor, landmarks: torch.Tensor, conf_threshold: float,
                 nms_threshold: float, eye_dist_threshold: float) -> list[DetectedFace]:
    """The confident detections, best first, without overlapping duplicates (NMS) nor faces whose eyes are closer
    than eye_dist_threshold pixels (side views, tiny faces)."""
    from torchvision.ops import nms

    confident = scores > conf_threshold
    boxes, scores, landmarks = boxes[confident].float(), scores[confident].float(), landmarks[confident].float()
    kept = nms(boxes, scores, nms_threshold).cpu()
    faces = []
    for index in kept.tolist():
        points = landmarks[index].view(5, 2).cpu().double().numpy()
        if np.hypot(*(points[1] - points[0])) < eye_dist_threshold:
            continue
        faces.append(DetectedFace(boxes[index].cpu().double().numpy(), float(scores[index]), points))
    return faces


class FaceDetector:
    """A loaded RetinaFace on its device; detect() takes an RGB uint8 array (height, width, 3)."""

    def __init__(self, net: RetinaFace, device: torch.device):
        self.net = net
        self.device = device

    @torch.inference_mode()
    def detect(self, np_image: np.ndarray, conf_threshold: float = 0.97, nms_threshold: float = 0.4,
               resize: int = 640, eye_dist_threshold: float = 5.0) -> list[DetectedFace]:
        """The faces of np_image, found on a copy whose shorter side is `resize` pixels (A1111's settings)."""
        height, width = np_image.shape[:2]
        scale = min(height, width) / resize
        size = (max(1, int(width / scale)), max(1, int(height / scale)))
        image = Image.fromarray(np_image).convert("RGB")
        small = np.asarray(image.resize(size, resample=Image.Resampling.LANCZOS) if size != image.size else image)
        bgr = small[:, :, ::-1].astype(np.float32) - np.array(BGR_MEAN, dtype=np.float32)
        tensor = torch.from_numpy(np.ascontiguousarray(bgr.transpose(2, 0, 1))).unsqueeze(0).to(self.device)
        deltas, scores, landmark_deltas = self.net(tensor)
        config = self.net.config
        priors = prior_boxes(size[1], size[0], config).to(self.device)
        to_pixels = torch.tensor([width, height], dtype=torch.float32, device=self.device)  # fractions -> original px
        boxes = decode_boxes(deltas[0], priors, config.variances) * to_pixels.repeat(2)
        landmarks = decode_landmarks(landmark_deltas[0], priors, config.variances) * to_pixels.repeat(5)
        return select_faces(boxes, scores[0, :, 1], landmarks, conf_threshold, nms_threshold, eye_dist_threshold)


def is_detector_file(filename: str) -> bool:
    """facexlib's helper weights (detection_*, parsing_*) share the GFPGAN folder but are no restorers."""
    return os.path.basename(filename).lower().startswith(("detection_", "parsing_"))


def read_weights(path: str) -> dict[str, torch.Tensor]:
    """The tensors of a facexlib weight file (weights-only unpickling), without DataParallel's `module.` prefix."""
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:  # a pickle that needs more than tensors is refused rather than executed
        raise ValueError(f"Cannot read {path} as plain weights: {error}") from error
    if not isinstance(state, dict):
        raise TypeError(f"{os.path.basename(path)} does not hold a state dict")
    return {key.removeprefix("module."): value for key, value in state.items()}


def config_for(state: dict[str, torch.Tensor], filename: str) -> RetinaFaceConfig:
    if "body.stage1.0.0.weight" in state:
        return CONFIGS["mobilenet0.25"]
    if "body.conv1.weight" in state:
        return CONFIGS["resnet50"]
    raise ValueError(f"{filename} is not a RetinaFace face detector (facexlib's ResNet-50 or MobileNet-0.25 layout)")


def load_detector(path: str, device: torch.device) -> FaceDetector:
    """The RetinaFace in `path` on `device` in float32; every tensor must match the architecture exactly."""
    state = read_weights(path)
    config = config_for(state, os.path.basename(path))
    with torch.device("meta"):  # no random initialisation: every tensor comes from the file
        net = RetinaFace(config)
    try:
        net.load_state_dict(state, strict=True, assign=True)
    except RuntimeError as error:
        raise ValueError(f"{os.path.basename(path)} does not match RetinaFace {config.backbone}: {error}") from error
    net = net.float().to(device).eval()
    log.info("Loaded face detector %s (RetinaFace %s) on %s", path, config.backbone, device)
    return FaceDetector(net, device)


@functools.lru_cache(maxsize=1)
def _cached_detector(path: str, mtime: float, device: torch.device) -> FaceDetector:
    return load_detector(path, device)


def missing_message(dirname: str, reason: str = "") -> str:
    why = f" (download from {DOWNLOAD_URL} failed: {reason})" if reason else ""
    return (f"Face detector file not found: face restoration needs {RESNET50_FILE} (or {MOBILENET_FILE}) in "
            f"{dirname}{why}. Download it from {DOWNLOAD_URL} on a computer that is online and put it into that folder.")


def download_detector(dirname: str) -> str:
    """Fetch the ResNet-50 detector into dirname (whole or not at all); FileNotFoundError with the clear message."""
    try:
        return modelloader.load_file_from_url(DOWNLOAD_URL, model_dir=dirname, file_name=RESNET50_FILE)
    except modelloader.DownloadError as error:
        raise FileNotFoundError(missing_message(dirname, str(error))) from error


def find_detector_file(dirname: str, download: bool = True) -> str:
    """The detector file in dirname, downloaded there first when none is present and `download` allows."""
    for name in DETECTOR_FILES:
        path = os.path.join(dirname, name)
        if os.path.isfile(path):
            return path
    if download:
        return download_detector(dirname)
    raise FileNotFoundError(missing_message(dirname))


def get_detector(dirname: str, device: torch.device, download: bool = True) -> FaceDetector:
    """The detector of dirname on device, loaded once and reloaded when its file changes."""
    path = os.path.abspath(find_detector_file(dirname, download))
    return _cached_detector(path, os.path.getmtime(path), device)
