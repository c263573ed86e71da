"""Face restoration (A1111's modules.face_restoration names): GFPGAN, and CodeFormer when its optional package is there.

* GFPGAN files (e.g. GFPGANv1.4.pth) go into models/GFPGAN (or --gfpgan-models-path); spandrel loads them.
* CodeFormer's architecture ships in `spandrel_extra_arches`, which is NOT a default dependency: that package is MIT
  but carries architectures under non-commercial licences, CodeFormer's among them (S-Lab License 1.0). Whoever
  installs it (`pip install spandrel_extra_arches`) accepts those terms; its files go into models/Codeformer.
* Faces are found by RetinaFace (modules.face_detection; its file detection_Resnet50_Final.pth goes into the GFPGAN
  folder, for CodeFormer too, as in A1111), aligned to a 512x512 crop, restored and pasted back one by one
  (modules.face_restoration_utils). No face found: the image stays as it was.
"""
from __future__ import annotations

import logging
import os

import numpy as np
import torch
from PIL import Image

from modules import face_detection, face_restoration_utils
from modules.upscaler import MODEL_EXTENSIONS, default_models_path

log = logging.getLogger(__name__)


class FaceRestoration:
    """A face restorer; restore() takes and returns an RGB uint8 array of shape (height, width, 3)."""

    def name(self) -> str:
        return "None"

    def restore(self, np_image: np.ndarray, **kwargs) -> np.ndarray:
        return np_image


class FaceRestorerSpandrel(FaceRestoration):
    """A restorer whose model file is the first model file of its folder (face detector files aside); the face
    detector comes from detector_dirname (default models/GFPGAN)."""

    architecture = ""
    folder = ""
    cpu_part = ""  # the --use-cpu name of this part

    def __init__(self, dirname: str | None = None, detector_dirname: str | None = None):
        self.model_path = dirname or default_models_path(self.folder)
        self.detector_path = detector_dirname or default_models_path("GFPGAN")
        self._model = None
        self._model_key = None

    def name(self) -> str:
        return self.architecture

    def registry(self):
        from spandrel import MAIN_REGISTRY  # spandrel takes seconds to import: only once a face is restored

        return MAIN_REGISTRY

    def model_files(self) -> list[str]:
        if not os.path.isdir(self.model_path):
            return []
        return [os.path.join(self.model_path, f) for f in sorted(os.listdir(self.model_path), key=str.lower)
                if f.lower().endswith(MODEL_EXTENSIONS) and not face_detection.is_detector_file(f)]

    def load_model(self):
        from modules import upscaler_spandrel

        registry = self.registry()  # first: a missing optional package is the more useful message
        files = self.model_files()
        if not files:
            raise FileNotFoundError(f"No {self.name()} model file found in {self.model_path}: put a {self.name()} model "
                                    f"(.pth or .safetensors) there, or choose another face restoration model in Settings")
        key = (files[0], os.path.getmtime(files[0]))
        if self._model_key != key:
            self._model = upscaler_spandrel.load_spandrel_model(files[0], upscaler_spandrel.model_device(self.cpu_part),
                                                                 expected_architectures=(self.architecture,),
                                                                 registry=registry)
            self._model_key = key
        return self._model

    def run_net(self, net: torch.nn.Module, face: torch.Tensor, **kwargs) -> torch.Tensor:
        raise NotImplementedError

    def restore(self, np_image: np.ndarray, **kwargs) -> np.ndarray:
        descriptor = self.load_model()
        detector = face_detection.get_detector(self.detector_path, descriptor.device)

        def restore_face(face: torch.Tensor) -> torch.Tensor:
            return self.run_net(descriptor.model, face.to(descriptor.device, descriptor.dtype), **kwargs)

        rgb = np.asarray(Image.fromarray(np_image).convert("RGB"))
        with torch.inference_mode():
            return face_restoration_utils.restore_with_face_helper(rgb, detector, restore_face)


class FaceRestorerGFPGAN(FaceRestorerSpandrel):
    architecture = "GFPGAN"
    folder = "GFPGAN"
    cpu_part = "gfpgan"

    def run_net(self, net, face, **kwargs):
        # the noise stored in the file, not fresh noise: the same image restores to the same pixels every time
        return net(face, return_rgb=False, randomize_noise=False)[0]


class FaceRestorerCodeFormer(FaceRestorerSpandrel):
    """CodeFormer; weight w: 0 = maximum effect, 1 = minimum effect."""

    architecture = "CodeFormer"
    folder = "Codeformer"
    cpu_part = "codeformer"

    def registry(self):
        try:
            from spandrel_extra_arches import EXTRA_REGISTRY
        except ImportError as error:
            raise ValueError("CodeFormer needs the optional package spandrel_extra_arches (non-commercial licence for "
                             "CodeFormer): install it, or choose GFPGAN as the face restoration model") from error
        registry = super().registry().copy()
        registry.add(*EXTRA_REGISTRY)
        return registry

    def run_net(self, net, face, w: float = 0.5, **kwargs):
        return net(face, weight=w, adain=True)[0]


face_restorers: list[FaceRestoration] = []
"""The available restorers (A1111's shared.face_restorers); filled by setup_face_restorers."""


def setup_face_restorers(cmd_opts) -> list[FaceRestoration]:
    gfpgan_dir = getattr(cmd_opts, "gfpgan_models_path", None)
    face_restorers[:] = [FaceRestorerCodeFormer(getattr(cmd_opts, "codeformer_models_path", None), gfpgan_dir),
                         FaceRestorerGFPGAN(gfpgan_dir, gfpgan_dir)]
    return face_restorers


def get_restorer(name: str) -> FaceRestoration:
    if not face_restorers:
        from modules.shared_cmd_options import cmd_opts
        setup_face_restorers(cmd_opts)
    found = next((r for r in face_restorers if r.name() == name), None)
    if found is None:
        raise ValueError(f"Face restoration model not found: {name}. Available: "
                         f"{', '.join(r.name() for r in face_restorers)}")
    return found


def restore_faces(np_image: np.ndarray, opts=None) -> np.ndarray:
    """np_image with faces restored by the model chosen in Settings (opts.face_restoration_model)."""
    opts = _live_opts(opts)
    return get_restorer(opts.face_restoration_model).restore(np_image, w=opts.code_former_weight)


def apply_if_enabled(image_np: np.ndarray, opts=None, enabled: bool | None = None) -> tuple[np.ndarray, str | None]:
    """(image, model name) after restoring faces when enabled (default: opts.face_restoration); (image, None) when off."""
    opts = _live_opts(opts)
    if not (opts.face_restoration if enabled is None else enabled):
        return image_np, None
    return restore_faces(image_np, opts), opts.face_restoration_model


def _live_opts(opts):
    if opts is not None:
        return opts
    from modules import job_context

    return job_context.settings()
