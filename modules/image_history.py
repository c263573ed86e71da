"""The image history: every image in the output folders (txt2img, img2img, extras, grids, as the outdir settings say),
newest first, with its prompt and model read from its infotext, filtered by text, model and date; thumbnails and an
index cached under the data folder, keyed by path and modification time, so that a listing of thousands of images
reads only what changed. Deleting moves an image into the data folder's trash."""
from __future__ import annotations

import datetime
import hashlib
import json
import os
import shutil
import tempfile
import threading
from collections.abc import Callable
from dataclasses import dataclass

from PIL import Image, UnidentifiedImageError

from modules import images, infotext_utils, paths_internal
from modules.shared_options import opts

IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".webp", ".avif")
THUMBNAIL_SIZE = 256
INDEX_VERSION = 1


@dataclass(frozen=True)
class HistoryImage:
    path: str
    mtime_ns: int
    kind: str  # "txt2img", "img2img", "extras", "grids" or "images" (one folder for all)
    prompt: str
    model: str
    infotext: str

    @property
    def date(self) -> str:
        """The day the file was written, YYYY-MM-DD (local time)."""
        return datetime.datetime.fromtimestamp(self.mtime_ns / 1e9).date().isoformat()


def output_folders() -> list[tuple[str, str]]:
    """(kind, absolute folder) of each place images are saved, as the outdir settings say (relative folders are
    relative to the working folder, as images.save_image writes them)."""
    if opts.outdir_samples:
        samples = [("images", opts.outdir_samples)]
    else:
        samples = [("txt2img", opts.outdir_txt2img_samples), ("img2img", opts.outdir_img2img_samples),
                   ("extras", opts.outdir_extras_samples)]
    grids = [("grids", opts.outdir_grids)] if opts.outdir_grids else [
        ("grids", opts.outdir_txt2img_grids), ("grids", opts.outdir_img2img_grids)]
    return [(kind, os.path.abspath(folder)) for kind, folder in samples + grids if folder]


def cache_dir() -> str:
    return os.path.join(paths_internal.data_path, "cache", "history")


def trash_dir() -> str:
    return os.path.join(paths_internal.data_path, "trash")


def _write_atomic(path: str, write: Callable[[str], None]) -> None:
    """write(temporary path) beside `path`, then move it into place: a reader never sees half a file."""
    folder = os.path.dirname(path)
    os.makedirs(folder, exist_ok=True)
    handle, temp = tempfile.mkstemp(dir=folder, prefix=".tmp-")
    os.close(handle)
    try:
        write(temp)
        os.replace(temp, path)
    except BaseException:
        if os.path.exists(temp):
            os.remove(temp)
        raise


def _read_infotext(path: str) -> str:
    try:
        with Image.open(path) as image:
            return images.read_info_from_image(image)[0] or ""
    except (UnidentifiedImageError, OSError, ValueError):
        return ""


def _describe(path: str, mtime_ns: int, kind: str) -> HistoryImage:
    infotext = _read_infotext(path)
    params = infotext_utils.parse_generation_parameters(infotext) if infotext else {}
    return HistoryImage(path, mtime_ns, kind, str(params.get("Prompt", "")), str(params.get("Model", "")), infotext)


class ImageHistory:
    """The index of the output folders. `images()` rescans (a stat per file; infotext is read only for new or
    changed files) and saves the index when it changed."""

    def __init__(self, folders: Callable[[], list[tuple[str, str]]] = output_folders, cache: str | None = None):
        self.folders = folders
        self.cache = cache or cache_dir()
        self.index_path = os.path.join(self.cache, "index.json")
        self.lock = threading.Lock()
        self.known: dict[str, HistoryImage] | None = None

    def _load(self) -> dict[str, HistoryImage]:
        try:
            with open(self.index_path, encoding="utf8") as file:
                data = json.load(file)
        except (OSError, ValueError):
            return {}
        if data.get("version") != INDEX_VERSION:
            return {}
        return {entry[0]: HistoryImage(*entry) for entry in data.get("images", [])}

    def _save(self, known: dict[str, HistoryImage]) -> None:
        rows = [[i.path, i.mtime_ns, i.kind, i.prompt, i.model, i.infotext] for i in known.values()]

        def write(temp: str) -> None:
            with open(temp, "w", encoding="utf8") as file:
                json.dump({"version": INDEX_VERSION, "images": rows}, file)

        _write_atomic(self.index_path, write)

    def _scan(self) -> dict[str, tuple[int, str]]:
        """path -> (mtime_ns, kind) of every image in the folders (a folder inside another counts once)."""
        found: dict[str, tuple[int, str]] = {}
        for kind, folder in self.folders():
            for root, dirs, files in os.walk(folder):
                dirs[:] = [name for name in dirs if not name.startswith(".")]
                for name in files:
                    if name.lower().endswith(IMAGE_EXTENSIONS) and not name.startswith("."):
                        path = os.path.join(root, name)
                        if path not in found:
                            try:
                                found[path] = (os.stat(path).st_mtime_ns, kind)
                            except OSError:  # deleted meanwhile
                                pass
        return found

    def images(self) -> list[HistoryImage]:
        """Every image, newest first."""
        with self.lock:
            if self.known is None:
                self.known = self._load()
            found = self._scan()
            known = {}
            for path, (mtime_ns, kind) in found.items():
                entry = self.known.get(path)
                known[path] = entry if entry is not None and entry.mtime_ns == mtime_ns and entry.kind == kind \
                    else _describe(path, mtime_ns, kind)
            if known.keys() != self.known.keys() or any(known[p] is not self.known[p] for p in known):
                self._save(known)
            self.known = known
        return sorted(known.values(), key=lambda i: (i.mtime_ns, i.path), reverse=True)

    def search(self, text: str = "", model: str = "", date: str = "") -> list[HistoryImage]:
        """The images whose prompt (or whole infotext) holds `text` (case-insensitive), made with `model` (empty: any)
        on a day starting with `date` ("2024", "2024-05", "2024-05-17"), newest first."""
        text, date = text.strip().lower(), date.strip()
        return [i for i in self.images()
                if (not text or text in i.infotext.lower() or text in os.path.basename(i.path).lower())
                and (not model or i.model == model) and i.date.startswith(date)]

    def models(self) -> list[str]:
        return sorted({i.model for i in self.images() if i.model}, key=str.lower)

    def thumbnail(self, image: HistoryImage) -> str:
        """A small copy of the image (WebP) in the cache, made once per path and modification time."""
        key = hashlib.sha1(f"{image.path}\0{image.mtime_ns}".encode()).hexdigest()
        path = os.path.join(self.cache, "thumbnails", key[:2], key + ".webp")
        if not os.path.exists(path):
            with Image.open(image.path) as source:
                source.thumbnail((THUMBNAIL_SIZE, THUMBNAIL_SIZE))
                small = source.convert("RGBA" if source.mode in ("RGBA", "LA", "P") else "RGB")
            _write_atomic(path, lambda temp: small.save(temp, format="WEBP", quality=80))
        return path

    def find(self, path: str) -> HistoryImage | None:
        """The indexed image at `path` (as the index names it), or None: only these may be opened or deleted."""
        if self.known is None:
            self.images()
        return self.known.get(path)

    def delete(self, path: str) -> str:
        """Move the image (and its .txt infotext beside it) into the data folder's trash; returns where it went.
        Only an image of the index, inside an output folder, may be deleted."""
        image = self.find(path)
        real = os.path.realpath(path)
        inside = any(os.path.commonpath([real, os.path.realpath(folder)]) == os.path.realpath(folder)
                     for _, folder in self.folders())
        if image is None or not inside or not os.path.isfile(real):
            raise ValueError(f"Not an image of the output folders: {path}")
        stamp = datetime.datetime.now().strftime("%Y%m%d-%H%M%S-%f")
        target = os.path.join(trash_dir(), f"{stamp}-{os.path.basename(real)}")
        os.makedirs(trash_dir(), exist_ok=True)
        shutil.move(real, target)  # a rename on the same disk
        text = os.path.splitext(real)[0] + ".txt"
        if os.path.isfile(text):
            shutil.move(text, os.path.splitext(target)[0] + ".txt")
        with self.lock:
            if self.known is not None:
                self.known.pop(path, None)
        return target

