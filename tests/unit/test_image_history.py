"""The image history's index: lists every image of the output folders newest first, filters by text, model and day,
notices new, changed and deleted files, keeps its index and thumbnails on disk, deletes only into the trash."""
from __future__ import annotations

import os

import pytest
from PIL import Image, PngImagePlugin

from modules import image_history, paths_internal


def save(path, prompt: str | None, model: str = "tiny_sd1", when: int = 0, size=(64, 48)):
    path.parent.mkdir(parents=True, exist_ok=True)
    meta = PngImagePlugin.PngInfo()
    if prompt is not None:
        meta.add_text("parameters", f"{prompt}\nSteps: 4, Sampler: Euler, Seed: 1, Size: 64x48, Model: {model}")
    Image.new("RGB", size, (200, 10, 10)).save(path, pnginfo=meta)
    if when:
        os.utime(path, (when, when))
    return str(path)


@pytest.fixture
def folders(tmp_path, monkeypatch):
    monkeypatch.setattr(paths_internal, "data_path", str(tmp_path / "data"))
    outputs = tmp_path / "outputs"
    return outputs, lambda: [("txt2img", str(outputs / "txt2img-images")), ("img2img", str(outputs / "img2img-images")),
                             ("grids", str(outputs / "txt2img-grids"))]


DAY1, DAY2, DAY3 = 1_700_000_000, 1_700_100_000, 1_700_200_000  # 2023-11-14/15/17, a day or more apart


def test_lists_newest_first_and_filters(folders):
    outputs, dirs = folders
    old = save(outputs / "txt2img-images" / "2023-11-14" / "00000-1.png", "a red cube", when=DAY1)
    mid = save(outputs / "img2img-images" / "00001-2.png", "a blue sphere", model="other", when=DAY2)
    new = save(outputs / "txt2img-grids" / "grid-0000.png", "a red cone", when=DAY3)
    (outputs / "txt2img-images" / "notes.txt").write_text("a red note")  # not an image: ignored
    history = image_history.ImageHistory(dirs)
    listed = history.images()
    assert [i.path for i in listed] == [new, mid, old]
    assert [i.kind for i in listed] == ["grids", "img2img", "txt2img"]
    assert listed[1].prompt == "a blue sphere" and listed[1].model == "other"
    assert [i.path for i in history.search("RED")] == [new, old]
    assert [i.path for i in history.search(model="other")] == [mid]
    day = listed[2].date
    assert [i.path for i in history.search(date=day)] == [old]
    assert [i.path for i in history.search("red", model="tiny_sd1", date=day[:4])] == [new, old]
    assert history.models() == ["other", "tiny_sd1"]


def test_notices_new_changed_and_deleted_files_and_keeps_its_index(folders, monkeypatch):
    outputs, dirs = folders
    first = save(outputs / "txt2img-images" / "a.png", "first", when=DAY1)
    history = image_history.ImageHistory(dirs)
    assert [i.prompt for i in history.images()] == ["first"]
    second = save(outputs / "txt2img-images" / "b.png", "second", when=DAY2)
    assert [i.prompt for i in history.images()] == ["second", "first"]
    save(outputs / "txt2img-images" / "a.png", "first, redone", when=DAY3)  # rewritten: read again
    assert [i.prompt for i in history.images()] == ["first, redone", "second"]
    os.remove(second)
    assert [i.path for i in history.images()] == [first]

    # a new index (a restart) reads the saved one: no image file is opened for infotext again
    opened = []
    monkeypatch.setattr(image_history, "_read_infotext", lambda path: opened.append(path) or "")
    again = image_history.ImageHistory(dirs)
    assert [i.prompt for i in again.images()] == ["first, redone"]
    assert opened == []
    assert os.path.isfile(os.path.join(image_history.cache_dir(), "index.json"))


def test_thumbnails_are_cached_per_path_and_time(folders):
    outputs, dirs = folders
    save(outputs / "txt2img-images" / "big.png", "big", size=(640, 320), when=DAY1)
    history = image_history.ImageHistory(dirs)
    image = history.images()[0]
    thumb = history.thumbnail(image)
    assert thumb.startswith(image_history.cache_dir())
    with Image.open(thumb) as small:
        assert small.size == (256, 128)
    made = os.stat(thumb).st_mtime_ns
    assert history.thumbnail(image) == thumb and os.stat(thumb).st_mtime_ns == made  # not made again
    save(outputs / "txt2img-images" / "big.png", "big", size=(640, 320), when=DAY2)
    assert history.thumbnail(history.images()[0]) != thumb  # a changed file gets a new one


def test_delete_moves_into_the_trash_and_refuses_other_files(folders, tmp_path):
    outputs, dirs = folders
    path = save(outputs / "txt2img-images" / "gone.png", "gone", when=DAY1)
    (outputs / "txt2img-images" / "gone.txt").write_text("infotext")
    history = image_history.ImageHistory(dirs)
    assert [i.path for i in history.images()] == [path]
    target = history.delete(path)
    assert target.startswith(image_history.trash_dir()) and os.path.isfile(target)
    assert os.path.isfile(os.path.splitext(target)[0] + ".txt")
    assert not os.path.exists(path) and history.images() == []

    outside = save(tmp_path / "elsewhere" / "mine.png", "not an output")
    with pytest.raises(ValueError, match="Not an image of the output folders"):
        history.delete(outside)
    with pytest.raises(ValueError, match="Not an image of the output folders"):
        history.delete(str(outputs / "txt2img-images" / ".." / ".." / "elsewhere" / "mine.png"))
    assert os.path.isfile(outside)


def test_output_folders_follow_the_outdir_settings(monkeypatch):
    from modules.shared_options import opts

    monkeypatch.setitem(opts.data, "outdir_samples", "")
    monkeypatch.setitem(opts.data, "outdir_grids", "")
    kinds = [kind for kind, _ in image_history.output_folders()]
    assert kinds == ["txt2img", "img2img", "extras", "grids", "grids"]
    monkeypatch.setitem(opts.data, "outdir_samples", "all-here")
    monkeypatch.setitem(opts.data, "outdir_grids", "grids-here")
    assert image_history.output_folders() == [("images", os.path.abspath("all-here")), ("grids", os.path.abspath("grids-here"))]
