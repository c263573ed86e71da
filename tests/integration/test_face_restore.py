"""Restore faces while generating: a random GFPGAN file made by the fixtures and a crafted RetinaFace that finds one
face in the top-left corner of every image (tests/fixtures/faces.py). spandrel's GFPGAN has fixed sizes, so each
restored face costs seconds on a CPU: one test restores a face, the others stop before or find none."""
from __future__ import annotations

import os
import sys
from types import SimpleNamespace

import numpy as np
import pytest

from modules import face_detection, face_restoration, infotext_utils
from modules.shared_cmd_options import cmd_opts
from modules.shared_options import opts
from tests.fixtures.faces import write_beacon_detector
from tests.fixtures.upscalers import write_codeformer, write_gfpgan
from tests.integration.engine_helpers import pixels, start_engine, txt2img

SD1 = "tiny_sd1"
# the beacon's face on a 64x64 image: box 0.8..13.6; its 512 crop covers the square -5.6..20 (twice the box's side)
CROP_END = 20
IMAGE = np.zeros((64, 64, 3), dtype=np.uint8)


@pytest.fixture(scope="module")
def gfpgan_file(tmp_path_factory):
    return write_gfpgan(tmp_path_factory.mktemp("gfpgan") / "GFPGANv1.4.safetensors")


def _gfpgan_dir(folder, gfpgan_file, corners: tuple[str, ...] | None):
    """A GFPGAN folder with the model and, unless corners is None, a beacon detector for those corners."""
    folder.mkdir()
    os.symlink(gfpgan_file, folder / gfpgan_file.name)
    if corners is not None:
        write_beacon_detector(folder / face_detection.MOBILENET_FILE, corners)
    return folder


@pytest.fixture()
def use_gfpgan_dir(tiny_models_dir, tmp_path, monkeypatch):
    start_engine(tiny_models_dir, tmp_path)
    monkeypatch.setattr(face_detection, "DOWNLOAD_URL", "http://127.0.0.1:9/detection_Resnet50_Final.pth")
    monkeypatch.setattr(cmd_opts, "codeformer_models_path", str(tmp_path / "Codeformer"), raising=False)

    def use(folder):
        monkeypatch.setattr(cmd_opts, "gfpgan_models_path", str(folder), raising=False)
        face_restoration.setup_face_restorers(cmd_opts)
        opts.set("face_restoration_model", "GFPGAN")

    yield use
    face_restoration.face_restorers.clear()


def test_restore_faces_changes_the_face_only_and_writes_the_key(use_gfpgan_dir, tmp_path, gfpgan_file):
    use_gfpgan_dir(_gfpgan_dir(tmp_path / "GFPGAN", gfpgan_file, ("top_left",)))
    plain = txt2img(SD1)
    opts.set("face_restoration", True)
    restored = txt2img(SD1)
    before, after = pixels(plain.images[0]), pixels(restored.images[0])
    assert after.shape == before.shape
    changed = np.argwhere((after != before).any(axis=-1))
    assert changed.size and changed.max() <= CROP_END
    assert np.array_equal(after[CROP_END + 1:], before[CROP_END + 1:])
    assert np.array_equal(after[:, CROP_END + 1:], before[:, CROP_END + 1:])
    assert np.abs(after[2:12, 2:12] - before[2:12, 2:12]).mean() > 5  # the face itself is repainted
    assert "Seed: 1234, Face restoration: GFPGAN, Size: 64x64" in restored.infotexts[0]
    assert "Face restoration" not in plain.infotexts[0]
    assert infotext_utils.parse_generation_parameters(restored.infotexts[0])["Face restoration"] == "GFPGAN"


def test_no_face_found_leaves_the_image_bit_identical(use_gfpgan_dir, tmp_path, gfpgan_file):
    use_gfpgan_dir(_gfpgan_dir(tmp_path / "GFPGAN", gfpgan_file, ()))
    plain = txt2img(SD1)
    restored = txt2img(SD1, restore_faces=True)
    assert np.array_equal(pixels(plain.images[0]), pixels(restored.images[0]))
    assert "Face restoration: GFPGAN" in restored.infotexts[0]  # asked for, as A1111 writes it


def test_off_leaves_the_image_bit_identical(use_gfpgan_dir, tmp_path, gfpgan_file):
    use_gfpgan_dir(_gfpgan_dir(tmp_path / "GFPGAN", gfpgan_file, ("top_left",)))
    plain = txt2img(SD1)
    opts.set("face_restoration", True)
    switched_off_per_job = txt2img(SD1, restore_faces=False)
    opts.set("face_restoration", False)
    setting_off = txt2img(SD1)
    assert np.array_equal(pixels(plain.images[0]), pixels(switched_off_per_job.images[0]))
    assert np.array_equal(pixels(plain.images[0]), pixels(setting_off.images[0]))
    assert plain.infotexts[0] == setting_off.infotexts[0] == switched_off_per_job.infotexts[0]


def test_missing_detector_file_names_the_file_and_the_folder(use_gfpgan_dir, tmp_path, gfpgan_file):
    folder = _gfpgan_dir(tmp_path / "GFPGAN", gfpgan_file, None)
    use_gfpgan_dir(folder)
    with pytest.raises(FileNotFoundError, match=f"Face detector file not found: face restoration needs "
                                                f"detection_Resnet50_Final.pth \\(or detection_mobilenet0.25_Final.pth\\) "
                                                f"in {folder}"):
        txt2img(SD1, restore_faces=True)


# the messages below reach a job as the one above does; calling the restorer directly spares a generation each

def test_missing_model_file_names_the_folder(use_gfpgan_dir, tmp_path):
    use_gfpgan_dir(tmp_path / "empty")
    with pytest.raises(FileNotFoundError, match=f"No GFPGAN model file found in {tmp_path / 'empty'}"):
        face_restoration.restore_faces(IMAGE, opts)


def test_a_detector_file_alone_is_no_gfpgan_model(use_gfpgan_dir, tmp_path):
    folder = tmp_path / "GFPGAN"
    write_beacon_detector(folder / face_detection.MOBILENET_FILE)
    use_gfpgan_dir(folder)
    with pytest.raises(FileNotFoundError, match=f"No GFPGAN model file found in {folder}"):
        face_restoration.restore_faces(IMAGE, opts)


def test_codeformer_restores_the_face_only(use_gfpgan_dir, tmp_path):
    """CodeFormer (spandrel_extra_arches, a test requirement) with its weight setting, through the same detection,
    alignment and paste-back as GFPGAN."""
    write_codeformer(tmp_path / "Codeformer" / "codeformer-v0.1.0.pth")
    use_gfpgan_dir(tmp_path / "detector")
    write_beacon_detector(tmp_path / "detector" / face_detection.MOBILENET_FILE, ("top_left",))
    opts.set("face_restoration_model", "CodeFormer")
    opts.set("code_former_weight", 0.3)
    image = np.random.default_rng(0).integers(0, 256, (64, 64, 3), dtype=np.uint8)
    restored = face_restoration.restore_faces(image, opts).astype(np.int16)
    changed = np.argwhere((restored != image).any(axis=-1))
    assert changed.size and changed.max() <= CROP_END
    assert np.array_equal(restored[CROP_END + 1:], image[CROP_END + 1:])
    assert np.abs(restored[2:12, 2:12] - image[2:12, 2:12]).mean() > 5


def test_codeformer_without_its_optional_package_says_so(use_gfpgan_dir, tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "spandrel_extra_arches", None)  # as if not installed: importing it fails
    use_gfpgan_dir(tmp_path / "empty")
    opts.set("face_restoration_model", "CodeFormer")
    with pytest.raises(ValueError, match="CodeFormer needs the optional package spandrel_extra_arches"):
        face_restoration.restore_faces(IMAGE, opts)


def test_unknown_model_name_lists_the_choices(use_gfpgan_dir, tmp_path):
    use_gfpgan_dir(tmp_path / "empty")
    assert opts.set("face_restoration_model", "RestoreFormer") is False  # the setting refuses it (its choices)
    chosen = SimpleNamespace(face_restoration_model="RestoreFormer", code_former_weight=0.5)  # e.g. an old config
    with pytest.raises(ValueError, match="Face restoration model not found: RestoreFormer. Available: CodeFormer, GFPGAN"):
        face_restoration.restore_faces(IMAGE, chosen)


def test_apply_if_enabled_reports_the_model():
    image = np.zeros((8, 8, 3), dtype=np.uint8)
    off = SimpleNamespace(face_restoration=False, face_restoration_model="GFPGAN", code_former_weight=0.5)
    assert face_restoration.apply_if_enabled(image, off) == (image, None)
    assert face_restoration.apply_if_enabled(image, off, enabled=False)[1] is None
