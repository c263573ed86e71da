"""A1111's cache.json: per-file computed values (hashes, metadata) kept valid while the file's mtime does not move."""
import json
import logging
import os
import tempfile
import threading

log = logging.getLogger(__name__)

CACHE_FILE_ENV = "SD_WEBUI_CACHE_FILE"


class CacheFile:
    """One JSON cache file `{subsection: {title: entry}}`; every method is safe to call from several threads."""

    def __init__(self, filename: str, aside_filename: str):
        self.filename = filename
        self.aside_filename = aside_filename
        self._lock = threading.RLock()
        self._data: dict | None = None

    def subsection(self, name: str) -> dict:
        """The live dict of one subsection (A1111's `cache(subsection)`), created when missing."""
        with self._lock:
            return self._loaded().setdefault(name, {})

    def lookup(self, subsection: str, title: str, filename: str) -> dict | None:
        """The entry for `title` if `filename` was not modified after it was stored, else None."""
        try:
            mtime = os.path.getmtime(filename)
        except FileNotFoundError:
            return None
        with self._lock:
            entry = self.subsection(subsection).get(title)
        if not isinstance(entry, dict) or not isinstance(entry.get("mtime"), (int, float)) or mtime > entry["mtime"]:
            return None
        return entry

    def store(self, subsection: str, title: str, entry: dict) -> None:
        """Set one entry and write the whole cache to disk."""
        with self._lock:
            self.subsection(subsection)[title] = entry
            self.dump()

    def cached_data_for_file(self, subsection: str, title: str, filename: str, func):
        """`func()`'s result for a file, computed again only after the file changes (A1111 name)."""
        entry = self.lookup(subsection, title, filename)
        if entry is not None and "value" in entry:
            return entry["value"]
        # mtime taken before computing, so a change made meanwhile invalidates the entry
        mtime = os.path.getmtime(filename)
        value = func()
        if value is not None:
            self.store(subsection, title, {"mtime": mtime, "value": value})
        return value

    def dump(self) -> None:
        """Write the cache atomically: a temp file in the same folder, then os.replace."""
        with self._lock:
            text = json.dumps(self._loaded(), indent=4, ensure_ascii=False)
            folder = os.path.dirname(os.path.abspath(self.filename))
            os.makedirs(folder, exist_ok=True)
            fd, tmp = tempfile.mkstemp(dir=folder, prefix=".cache-", suffix=".tmp")
            try:
                with os.fdopen(fd, "w", encoding="utf8") as file:
                    file.write(text)
                os.replace(tmp, self.filename)
            except BaseException:
                os.unlink(tmp)
                raise

    def _loaded(self) -> dict:
        if self._data is None:
            self._data = self._read()
        return self._data

    def _read(self) -> dict:
        if not os.path.isfile(self.filename):
            return {}
        try:
            with open(self.filename, encoding="utf8") as file:
                data = json.load(file)
            if isinstance(data, dict):
                return data
        except (ValueError, UnicodeDecodeError):
            pass
        # keep the unreadable file for inspection and start afresh rather than fail every hash lookup
        os.makedirs(os.path.dirname(os.path.abspath(self.aside_filename)), exist_ok=True)
        os.replace(self.filename, self.aside_filename)
        log.error("%s could not be read; moved to %s and a new cache started", self.filename, self.aside_filename)
        return {}


_instances: dict[str, CacheFile] = {}
_instances_lock = threading.Lock()


def default_cache(data_dir: str | None = None) -> CacheFile:
    """The cache of a data dir (`<data_dir>/cache.json`, or $SD_WEBUI_CACHE_FILE); one shared object per file."""
    if data_dir is None:
        from modules.paths_internal import data_path as data_dir
    filename = os.path.abspath(os.environ.get(CACHE_FILE_ENV) or os.path.join(data_dir, "cache.json"))
    with _instances_lock:
        if filename not in _instances:
            _instances[filename] = CacheFile(filename, os.path.join(data_dir, "tmp", "cache.json"))
        return _instances[filename]


def cache(subsection: str) -> dict:
    """A1111's `modules.cache.cache`: the live dict of one subsection of the default cache."""
    return default_cache().subsection(subsection)


def dump_cache() -> None:
    """A1111's `modules.cache.dump_cache`: write the default cache to disk."""
    default_cache().dump()


def cached_data_for_file(subsection: str, title: str, filename: str, func):
    """A1111's `modules.cache.cached_data_for_file` on the default cache."""
    return default_cache().cached_data_for_file(subsection, title, filename, func)
