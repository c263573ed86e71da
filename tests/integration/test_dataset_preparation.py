"""Train > Preprocess images on a few synthetic images: A1111's output names, sizes, splits, flips, focal crops,
captions (existing .txt actions, DeepBooru on a tiny model) and the data-folder rule for the destination."""
from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from modules import autocrop, dataset_preparation as prep, deepbooru, paths_internal
from modules.shared_options import opts
from tests.fixtures import interrogators


@pytest.fixture
def data_dir(tmp_path, monkeypatch):
    monkeypatch.setattr(paths_internal, "data_path", str(tmp_path))
    src = tmp_path / "raw"
    src.mkdir()
    rng = np.random.RandomState(0)
    Image.fromarray((rng.rand(64, 64, 3) * 255).astype(np.uint8)).save(src / "b_square.png")
    Image.fromarray((rng.rand(200, 64, 3) * 255).astype(np.uint8)).save(src / "a_tall.jpg")
    (src / "a_tall.txt").write_text("a tall thing", encoding="utf8")
    (src / "notes.md").write_text("not an image", encoding="utf8")
    return tmp_path


def outputs(folder):
    return sorted(p.name for p in folder.iterdir())


def test_resize_flip_and_existing_captions_with_a1111_names(data_dir):
    message = prep.preprocess(prep.PreprocessOptions("raw", "out", 32, 32, existing_caption_action="copy", flip=True))
    out = data_dir / "out"
    # entries in name order: a_tall.jpg (0), a_tall.txt (1), b_square.png (2), notes.md (3)
    assert outputs(out) == ["00000-0-a_tall.png", "00000-0-a_tall.txt", "00000-1-a_tall.png", "00000-1-a_tall.txt",
                            "00002-0-b_square.png", "00002-1-b_square.png"]
    assert "4 image(s)" in message
    first, flipped = (Image.open(out / f"00000-{i}-a_tall.png") for i in (0, 1))
    assert first.size == (32, 32) and np.array_equal(np.asarray(flipped), np.asarray(first)[:, ::-1])
    assert (out / "00000-0-a_tall.txt").read_text(encoding="utf8") == "a tall thing"


def test_split_oversized_images_into_overlapping_pieces(data_dir):
    prep.preprocess(prep.PreprocessOptions("raw", "split", 32, 32, split=True, split_threshold=0.5, overlap_ratio=0.2))
    names = outputs(data_dir / "split")
    # 64x200 -> 32x100: ceil((100 - 6.4) / 25.6) = 4 pieces; the square one is only resized
    assert names == [f"00000-{i}-a_tall.png" for i in range(4)] + ["00002-0-b_square.png"]
    assert all(Image.open(data_dir / "split" / n).size == (32, 32) for n in names)
    pieces = [np.asarray(Image.open(data_dir / "split" / f"00000-{i}-a_tall.png")) for i in (0, 3)]
    whole = np.asarray(Image.open(data_dir / "raw" / "a_tall.jpg").convert("RGB").resize((32, 100)))
    assert np.array_equal(pieces[0], whole[:32]) and np.array_equal(pieces[1], whole[-32:])


def test_focal_crop_follows_the_detail_and_writes_a_debug_image(data_dir):
    tall = np.full((300, 100, 3), 128, np.uint8)
    tall[200:260, 20:80] = (np.random.RandomState(1).rand(60, 60, 3) > 0.5) * 255  # all the detail is low down
    Image.fromarray(tall).save(data_dir / "raw" / "c_detail.png")
    settings = autocrop.Settings(50, 50, corner_points_weight=0.5, entropy_points_weight=0.5, face_points_weight=0.0,
                                 annotate_image=True)
    crop, debug = autocrop.crop_image(Image.fromarray(tall), settings)
    assert crop.size == (50, 50) and debug.size == (50, 150)
    detail_rows = np.nonzero(np.asarray(crop).std(axis=(1, 2)) > 20)[0]
    assert len(detail_rows) > 20  # the crop holds the noisy patch, not the flat top
    prep.preprocess(prep.PreprocessOptions("raw", "focal", 50, 50, focal_crop=True, focal_crop_face_weight=0.0,
                                           focal_crop_debug=True))
    assert {"00003-0-c_detail.png", "00003-1-c_detail.png"} <= set(outputs(data_dir / "focal"))  # crop, debug image
    face_only = autocrop.Settings(50, 50, 0.0, 0.0, 1.0, find_faces=lambda image: [(0, 100, 20, 120)])
    assert autocrop.focal_point(Image.fromarray(tall).resize((50, 150)), face_only) == autocrop.PointOfInterest(10, 106)  # a third down the box


def test_deepbooru_captions_prepended_to_the_existing_ones(data_dir, monkeypatch):
    models = data_dir / "models"
    interrogators.write_deepbooru(models / "torch_deepdanbooru" / deepbooru.MODEL_FILE)
    monkeypatch.setattr(paths_internal, "models_path", str(models))
    monkeypatch.setattr(deepbooru, "model", deepbooru.DeepDanbooru())
    monkeypatch.setitem(opts.data, "interrogate_deepbooru_score_threshold", 0.0)
    prep.preprocess(prep.PreprocessOptions("raw", "tagged", 32, 32, existing_caption_action="prepend", caption_deepbooru=True))
    caption = (data_dir / "tagged" / "00000-0-a_tall.txt").read_text(encoding="utf8")
    assert caption.startswith("a tall thing 1girl, blue sky, flower")
    assert (data_dir / "tagged" / "00002-0-b_square.txt").read_text(encoding="utf8").startswith("1girl, blue sky")


@pytest.mark.parametrize("dst", ["../elsewhere", "/tmp/elsewhere", "raw"])
def test_destination_outside_the_data_folder_or_the_source_is_refused(data_dir, dst):
    with pytest.raises(ValueError, match="inside the data folder|same directory"):
        prep.preprocess(prep.PreprocessOptions("raw", dst))
    assert not (data_dir.parent / "elsewhere").exists()
