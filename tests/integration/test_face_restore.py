"""Restore faces while generating, with a random GFPGAN file made by the fixtures (spandrel's GFPGAN has fixed
sizes, so each restoration costs seconds on a CPU: the restoring tests are few)."""
from __future__ import annotations

import importlib.util
from types import SimpleNamespace

import numpy as np
import pytest

from modules import face_restoration, infotext_utils
from modules.shared_cmd_options import cmd_opts
from modules.shared_options import opts
from tests.fixtures.upscalers import write_gfpgan
from tests.integration.engine_helpers import pixels, start_engine, txt2img

SD1 = "tiny_sd1"


@pytest.fixture(scope="module")
def gfpgan_dir(tmp_path_factory):
    folder = tmp_path_factory.mktemp("GFPGAN")
    write_gfpgan(folder / "GFPGANv1.4.safetensors")
    return folder


@pytest.fixture()
def engine(tiny_models_dir, tmp_path, gfpgan_dir, monkeypatch):
    manager = start_engine(tiny_models_dir, tmp_path)
    monkeypatch.setattr(cmd_opts, "gfpgan_models_path", str(gfpgan_dir), raising=False)
    monkeypatch.setattr(cmd_opts, "codeformer_models_path", str(tmp_path / "Codeformer"), raising=False)
    face_restoration.setup_face_restorers(cmd_opts)
    opts.set("face_restoration_model", "GFPGAN")
    yield manager
    face_restoration.face_restorers.clear()


def test_restore_faces_changes_the_image_and_writes_the_key(engine):
    plain = txt2img(SD1)
    opts.set("face_restoration", True)
    restored = txt2img(SD1)
    assert restored.images[0].size == plain.images[0].size
    assert np.abs(pixels(restored.images[0]) - pixels(plain.images[0])).mean() > 5
    assert "Seed: 1234, Face restoration: GFPGAN, Size: 64x64" in restored.infotexts[0]
    assert "Face restoration" not in plain.infotexts[0]
    assert infotext_utils.parse_generation_parameters(restored.infotexts[0])["Face restoration"] == "GFPGAN"


def test_off_leaves_the_image_bit_identical(engine):
    plain = txt2img(SD1)
    opts.set("face_restoration", True)
    switched_off_per_job = txt2img(SD1, restore_faces=False)
    opts.set("face_restoration", False)
    setting_off = txt2img(SD1)
    assert np.array_equal(pixels(plain.images[0]), pixels(switched_off_per_job.images[0]))
    assert np.array_equal(pixels(plain.images[0]), pixels(setting_off.images[0]))
    assert plain.infotexts[0] == setting_off.infotexts[0] == switched_off_per_job.infotexts[0]


def test_missing_model_file_names_the_folder(engine, tmp_path):
    face_restoration.setup_face_restorers(SimpleNamespace(gfpgan_models_path=str(tmp_path / "empty"),
                                                          codeformer_models_path=None))
    with pytest.raises(FileNotFoundError, match=f"No GFPGAN model file found in {tmp_path / 'empty'}"):
        txt2img(SD1, restore_faces=True)


def test_codeformer_without_its_optional_package_says_so(engine):
    if importlib.util.find_spec("spandrel_extra_arches") is not None:
        pytest.skip("spandrel_extra_arches is installed here")
    opts.set("face_restoration_model", "CodeFormer")
    with pytest.raises(ValueError, match="CodeFormer needs the optional package spandrel_extra_arches"):
        txt2img(SD1, restore_faces=True)


def test_unknown_model_name_lists_the_choices(engine):
    opts.set("face_restoration_model", "RestoreFormer")
    with pytest.raises(ValueError, match="Face restoration model not found: RestoreFormer. Available: CodeFormer, GFPGAN"):
        txt2img(SD1, restore_faces=True)


def test_apply_if_enabled_reports_the_model():
    image = np.zeros((8, 8, 3), dtype=np.uint8)
    off = SimpleNamespace(face_restoration=False, face_restoration_model="GFPGAN", code_former_weight=0.5)
    assert face_restoration.apply_if_enabled(image, off) == (image, None)
    assert face_restoration.apply_if_enabled(image, off, enabled=False)[1] is None
