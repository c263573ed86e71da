"""The extension's preprocessors ("modules") by its names: model-free ones in numpy/scipy, model-based ones listed.

Each takes an RGB uint8 array and gives the detected map the ControlNet sees (RGB uint8; inpaint_only: RGBA, the
alpha being the area to repaint). Model-based ones need annotator files: those built in (BUILT, annotators.py) fetch a
missing one once; the others name the file and where it goes.
"""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image
from scipy import ndimage

from modules.controlnet import (
    annotator_dwpose,
    annotator_lineart_anime,
    annotator_midas,
    annotator_mlsd,
    annotator_normal_bae,
    annotator_openpose,
    annotator_openpose_parts,
    annotator_pidinet,
    annotators,
)
from modules.controlnet.units import REFERENCE_MODULES


@dataclass(frozen=True)
class Slider:
    name: str
    value: float
    min: float
    max: float
    step: float = 1.0


@dataclass(frozen=True)
class Preprocessor:
    name: str
    run: Callable | None  # (rgb array, threshold_a, threshold_b) -> map; None: needs an annotator model
    sliders: tuple[Slider, ...] = ()
    annotator: tuple[str, str | tuple[str, ...]] | None = None  # (folder under annotator/downloads, file name(s))
    uses_resolution: bool = True


AnnotatorMissingError = annotators.AnnotatorMissingError


def _gray(img: np.ndarray) -> np.ndarray:
    return img.astype(np.float32) @ np.array([0.299, 0.587, 0.114], dtype=np.float32)


def _rgb(channel: np.ndarray) -> np.ndarray:
    return np.repeat(np.clip(channel, 0, 255).astype(np.uint8)[..., None], 3, axis=2)


def _blur(img: np.ndarray, sigma: float) -> np.ndarray:
    sigmas = (sigma, sigma, 0) if img.ndim == 3 else sigma
    return ndimage.gaussian_filter(img.astype(np.float32), sigmas, mode="reflect")


def canny(img: np.ndarray, low: float, high: float) -> np.ndarray:
    """Canny: Sobel gradients (L1 magnitude, as OpenCV's default), thinning across the edge, hysteresis."""
    gray = _gray(img)
    gx, gy = ndimage.sobel(gray, axis=1), ndimage.sobel(gray, axis=0)
    magnitude = np.abs(gx) + np.abs(gy)
    angle = (np.rad2deg(np.arctan2(gy, gx)) + 180.0) % 180.0
    direction = np.digitize(angle, [22.5, 67.5, 112.5, 157.5]) % 4  # 0: horizontal gradient, 1: 45°, 2: vertical, 3: 135°
    offsets = {0: (0, 1), 1: (1, 1), 2: (1, 0), 3: (1, -1)}
    padded = np.pad(magnitude, 1)
    h, w = magnitude.shape
    thin = np.zeros_like(magnitude, dtype=bool)
    for d, (dy, dx) in offsets.items():
        ahead = padded[1 + dy:1 + dy + h, 1 + dx:1 + dx + w]
        behind = padded[1 - dy:1 - dy + h, 1 - dx:1 - dx + w]
        thin |= (direction == d) & (magnitude >= ahead) & (magnitude > behind)
    strong = thin & (magnitude > high)
    weak = thin & (magnitude > low)
    labels, _ = ndimage.label(weak, structure=np.ones((3, 3)))
    keep = np.unique(labels[strong])
    edges = np.isin(labels, keep[keep > 0])
    return _rgb(edges * 255.0)


def invert(img: np.ndarray, *_) -> np.ndarray:
    return 255 - img


def threshold(img: np.ndarray, level: float, _b: float) -> np.ndarray:
    return _rgb((_gray(img) > level) * 255.0)


def scribble_xdog(img: np.ndarray, level: float, _b: float) -> np.ndarray:
    """Difference of Gaussians, thresholded into white lines on black."""
    dog = 255.0 - np.min(_blur(img, 5.0) - _blur(img, 0.5), axis=2).clip(0, 255)
    return _rgb((2 * (255.0 - dog) > level) * 255.0)


def blur_gaussian(img: np.ndarray, sigma: float, _b: float) -> np.ndarray:
    return np.clip(_blur(img, sigma), 0, 255).astype(np.uint8)


def tile_resample(img: np.ndarray, rate: float, _b: float) -> np.ndarray:
    """Down-sampled by `rate`: the tile model fills the detail back in."""
    if rate <= 1:
        return img
    h, w = img.shape[:2]
    small = Image.fromarray(img).resize((max(int(w / rate), 1), max(int(h / rate), 1)), Image.Resampling.LANCZOS)
    return np.asarray(small)


def tile_colorfix(img: np.ndarray, variation: float, _b: float) -> np.ndarray:
    """The colours only (a wide blur), so the tile model keeps them while it sharpens."""
    return blur_gaussian(img, variation, 0)


def shuffle(img: np.ndarray, *_) -> np.ndarray:
    """The image's content moved along a smooth random flow (fixed seed, so a map is reproducible)."""
    h, w = img.shape[:2]
    rng = np.random.default_rng(0)
    flows = [ndimage.gaussian_filter(rng.standard_normal((h, w)), max(h, w) / 16) for _ in range(2)]
    flows = [f / (np.abs(f).max() + 1e-8) * max(h, w) / 4 for f in flows]
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    coords = [np.clip(yy + flows[0], 0, h - 1), np.clip(xx + flows[1], 0, w - 1)]
    return np.stack([ndimage.map_coordinates(img[..., c], coords, order=1) for c in range(3)], axis=2)


def color(img: np.ndarray, *_) -> np.ndarray:
    """A grid of 64-pixel colour cells."""
    h, w = img.shape[:2]
    small = Image.fromarray(img).resize((max(w // 64, 1), max(h // 64, 1)), Image.Resampling.BICUBIC)
    return np.asarray(small.resize((w, h), Image.Resampling.NEAREST))


def lineart_standard(img: np.ndarray, *_) -> np.ndarray:
    """Dark lines on a light background, found as what is darker than its blurred surroundings."""
    x = img.astype(np.float32)
    intensity = np.min(_blur(x, 6.0) - x, axis=2).clip(0, 255)
    bright = intensity[intensity > 8]
    intensity /= max(16.0, float(np.median(bright)) if bright.size else 16.0)
    return _rgb(intensity * 127.0)


_RES = Slider("Preprocessor Resolution", 512, 64, 2048)
MODEL_FREE = [
    Preprocessor("none", None, uses_resolution=False),
    Preprocessor("invert", invert, (_RES,)),
    Preprocessor("canny", canny, (_RES, Slider("Canny Low Threshold", 100, 1, 255), Slider("Canny High Threshold", 200, 1, 255))),
    Preprocessor("threshold", threshold, (_RES, Slider("Binarization Threshold", 127, 0, 255))),
    Preprocessor("scribble_xdog", scribble_xdog, (_RES, Slider("XDoG Threshold", 32, 1, 64))),
    Preprocessor("blur_gaussian", blur_gaussian, (_RES, Slider("Sigma", 9.0, 0.01, 64.0, 0.01))),
    Preprocessor("tile_resample", tile_resample, (Slider("Down Sampling Rate", 1.0, 1.0, 8.0, 0.01),),
                 uses_resolution=False),
    Preprocessor("tile_colorfix", tile_colorfix, (Slider("Variation", 8.0, 3.0, 32.0),), uses_resolution=False),
    Preprocessor("inpaint_only", None, uses_resolution=False),
    Preprocessor("shuffle", shuffle, (_RES,)),
    Preprocessor("color", color, (_RES,)),
    Preprocessor("lineart_standard", lineart_standard, (_RES,)),
    # IP-Adapter's: the image goes as it is to the CLIP vision encoder the name picks (IP_ADAPTER_ENCODERS)
    Preprocessor("ip-adapter_clip_h", None, uses_resolution=False),
    Preprocessor("ip-adapter_clip_g", None, uses_resolution=False),
    # Reference: the image itself, which reference.py feeds through the UNet beside the generation
    *(Preprocessor(name, None, (Slider("Style Fidelity (only for Balanced mode)", 0.5, 0.0, 1.0, 0.01),),
                   uses_resolution=False) for name in REFERENCE_MODULES),
]
IP_ADAPTER_ENCODERS = {"ip-adapter_clip_h": "clip_h", "ip-adapter_clip_g": "clip_g"}
# model-based ones: (name, folder under annotator/downloads, file)
MODEL_BASED = [
    Preprocessor("depth_midas", None, (_RES,), ("midas", "dpt_hybrid-midas-501f0c75.pt")),
    Preprocessor("depth_anything_v2", None, (_RES,), ("depth_anything_v2", "depth_anything_v2_vitl.pth")),
    Preprocessor("openpose", None, (_RES,), ("openpose", "body_pose_model.pth")),
    Preprocessor("openpose_hand", None, (_RES,), ("openpose", ("body_pose_model.pth", "hand_pose_model.pth"))),
    Preprocessor("openpose_face", None, (_RES,), ("openpose", ("body_pose_model.pth", "facenet.pth"))),
    Preprocessor("openpose_full", None, (_RES,), ("openpose", ("body_pose_model.pth", "hand_pose_model.pth",
                                                               "facenet.pth"))),
    Preprocessor("dw_openpose_full", None, (_RES,), ("openpose", ("yolox_l.onnx", "dw-ll_ucoco_384.onnx"))),
    Preprocessor("lineart_realistic", None, (_RES,), ("lineart", "sk_model.pth")),
    Preprocessor("lineart_coarse", None, (_RES,), ("lineart", "sk_model2.pth")),
    Preprocessor("lineart_anime", None, (_RES,), ("lineart_anime", "netG.pth")),
    Preprocessor("softedge_hed", None, (_RES,), ("hed", "ControlNetHED.pth")),
    Preprocessor("softedge_pidinet", None, (_RES,), ("pidinet", "table5_pidinet.pth")),
    Preprocessor("softedge_pidisafe", None, (_RES,), ("pidinet", "table5_pidinet.pth")),
    Preprocessor("normal_bae", None, (_RES,), ("normal_bae", "scannet.pt")),
    Preprocessor("mlsd", None, (_RES, Slider("MLSD Value Threshold", 0.1, 0.01, 2.0, 0.01),
                                Slider("MLSD Distance Threshold", 0.1, 0.01, 20.0, 0.01)), ("mlsd", "mlsd_large_512_fp32.pth")),
    Preprocessor("seg_ofade20k", None, (_RES,), ("oneformer", "250_16_swin_l_oneformer_ade20k_160k.pth")),
]
PREPROCESSORS = {p.name: p for p in MODEL_FREE + MODEL_BASED}
# the model-based ones built in: name -> (annotator file, rgb array) -> map
BUILT = {"softedge_hed": annotators.hed, "softedge_pidinet": annotator_pidinet.pidinet,
         "softedge_pidisafe": annotator_pidinet.pidinet_safe, "lineart_realistic": annotators.lineart,
         "lineart_coarse": annotators.lineart, "lineart_anime": annotator_lineart_anime.lineart_anime,
         "depth_anything_v2": annotators.depth_anything_v2, "depth_midas": annotator_midas.depth_midas,
         "normal_bae": annotator_normal_bae.normal_bae, "openpose": annotator_openpose.openpose,
         "dw_openpose_full": annotator_dwpose.dw_openpose_full,  # these get their files' paths
         "openpose_hand": annotator_openpose_parts.openpose_hand, "openpose_face": annotator_openpose_parts.openpose_face,
         "openpose_full": annotator_openpose_parts.openpose_full,
         "mlsd": annotator_mlsd.mlsd}  # mlsd also takes thresholds a and b (its sliders beyond the resolution)
# the extension's older names and its UI labels -> names
ALIASES = {
    "invert (from white bg & black line)": "invert",
    "lineart_standard (from white bg & black line)": "lineart_standard",
    "t2ia_color_grid": "color",
    "depth": "depth_midas",
    "hed": "softedge_hed",
    "pidinet": "softedge_pidinet",
    "pidinet_safe": "softedge_pidisafe",
    "lineart": "lineart_realistic",
    "oneformer_ade20k": "seg_ofade20k",
    "binary": "threshold",
    "ip-adapter_clip_sd15": "ip-adapter_clip_h",
    "ip-adapter_clip_sdxl_plus_vith": "ip-adapter_clip_h",
    "ip-adapter_clip_sdxl": "ip-adapter_clip_g",
}

LABELS = {"invert": "invert (from white bg & black line)",
          "lineart_standard": "lineart_standard (from white bg & black line)"}  # the extension's UI names


def resolve(name: str) -> Preprocessor:
    key = ALIASES.get(name, name)
    if key not in PREPROCESSORS:
        raise ValueError(f"Unknown ControlNet preprocessor {name!r}; known: {', '.join(PREPROCESSORS)}")
    return PREPROCESSORS[key]


def annotator_dirs(models_path: str, data_path: str) -> list[Path]:
    return [Path(models_path) / "ControlNetAnnotators",
            Path(data_path) / "extensions" / "sd-webui-controlnet" / "annotator" / "downloads"]


def _annotator_files(name: str, folder: str, files: str | tuple[str, ...], dirs: list[Path]) -> Path | tuple[Path, ...]:
    """The annotator file's path, or for several files their paths; those that cannot be had are named together."""
    if isinstance(files, str):
        return annotators.annotator_file(name, folder, files, dirs)
    found, missing = [], []
    for file in files:
        try:
            found.append(annotators.annotator_file(name, folder, file, dirs))
        except AnnotatorMissingError as e:
            missing.append((file, e.__cause__))
    if missing:
        where = " or ".join(str(d / folder) for d in dirs)
        raise AnnotatorMissingError(f"Preprocessor {name} needs the annotator files {', '.join(files)}; "
                                    f"{', '.join(f for f, _ in missing)} could not be downloaded ({missing[0][1]}): "
                                    f"put them in {where}")
    return tuple(found)


def detect(name: str, image: Image.Image, resolution: int, threshold_a: float, threshold_b: float,
           annotator_dirs: list[Path], mask: Image.Image | None = None) -> Image.Image:
    """The detected map of `image` at `resolution` (its short side), thresholds -1 meaning the module's defaults."""
    pre = resolve(name)
    annotator = None
    if pre.annotator is not None:
        folder, file = pre.annotator
        if pre.name in BUILT:
            annotator = _annotator_files(pre.name, folder, file, annotator_dirs)
        else:
            where = " or ".join(str(d / folder / file) for d in annotator_dirs)
            if not any((d / folder / file).is_file() for d in annotator_dirs):
                raise AnnotatorMissingError(f"Preprocessor {pre.name} needs the annotator file {file}: put it at "
                                            f"{where} (it is not downloaded automatically)")
            raise NotImplementedError(f"Preprocessor {pre.name} is not built in yet (found {file}); use 'none' with "
                                      f"a ready-made map")
    image = image.convert("RGB")
    if pre.name == "inpaint_only":
        alpha = (mask.convert("L") if mask is not None else Image.new("L", image.size, 0)).resize(image.size)
        return Image.merge("RGBA", (*image.split(), alpha))
    if pre.run is None and annotator is None:
        return image
    if pre.uses_resolution and resolution > 0:
        scale = resolution / min(image.size)
        image = image.resize((max(round(image.width * scale), 1), max(round(image.height * scale), 1)),
                             Image.Resampling.LANCZOS if scale < 1 else Image.Resampling.BICUBIC)
    defaults = [s.value for s in pre.sliders if s is not _RES] + [0.0, 0.0]
    a = threshold_a if threshold_a is not None and threshold_a >= 0 else defaults[0]
    b = threshold_b if threshold_b is not None and threshold_b >= 0 else defaults[1]
    if annotator is not None:
        thresholds = (float(a), float(b)) if any(s is not _RES for s in pre.sliders) else ()
        detected = BUILT[pre.name](annotator, np.asarray(image), *thresholds)
        return Image.fromarray(detected if detected.ndim == 3 else _rgb(detected))  # openpose, normal_bae: RGB
    return Image.fromarray(pre.run(np.asarray(image), float(a), float(b)))


def default_annotator_dirs() -> list[Path]:
    from modules import paths_internal

    return annotator_dirs(paths_internal.models_path, paths_internal.data_path)


# The extension's "Control Type" radio: each type's words, matched in preprocessor and model names.
CONTROL_TYPES = {"All": (), "Canny": ("canny",), "Depth": ("depth",), "OpenPose": ("openpose", "pose"),
                 "Lineart": ("lineart",), "SoftEdge": ("softedge", "hed", "pidi"), "Scribble": ("scribble",),
                 "Tile": ("tile", "blur"), "Inpaint": ("inpaint",), "Shuffle": ("shuffle",), "Color": ("color",),
                 "IP-Adapter": ("ip-adapter", "ip_adapter"), "Reference": ("reference",), "T2I-Adapter": ("t2i",)}


def filter_by_type(control_type: str, modules: list[str], model_names: list[str]) -> tuple[list[str], list[str]]:
    """(preprocessors, models) of a control type; "none" and the "None" model always stay."""
    words = CONTROL_TYPES.get(control_type, ())
    if not words:
        return modules, model_names

    def match(name: str) -> bool:
        return any(word in name.lower() for word in words)

    return (["none"] + [m for m in modules if m != "none" and match(m)],
            ["None"] + [m for m in model_names if m != "None" and match(m)])
