"""Model file hashes as A1111 computes them (full sha256, kohya "addnet" hash, legacy 8-hex hash), cached in cache.json."""
import hashlib
import logging
import os

from modules.cache import CacheFile, default_cache

log = logging.getLogger(__name__)

_BLOCK = 1024 * 1024


def _sha256_of_stream(file) -> str:
    digest = hashlib.sha256()
    for chunk in iter(lambda: file.read(_BLOCK), b""):
        digest.update(chunk)
    return digest.hexdigest()


def calculate_sha256(filename) -> str:
    """sha256 of the whole file, read in 1 MiB blocks."""
    with open(filename, "rb") as file:
        return _sha256_of_stream(file)


def addnet_hash_safetensors(b) -> str:
    """kohya's hash of an open safetensors file: sha256 of the tensor data after the 8-byte length and JSON header."""
    b.seek(0)
    header_length = int.from_bytes(b.read(8), "little")
    b.seek(8 + header_length)
    return _sha256_of_stream(b)


def legacy_model_hash(filename) -> str:
    """A1111's old checkpoint hash: first 8 hex of sha256 of the 64 KiB at offset 1 MiB; "NOFILE" when missing."""
    try:
        with open(filename, "rb") as file:
            file.seek(0x100000)
            return hashlib.sha256(file.read(0x10000)).hexdigest()[:8]
    except FileNotFoundError:
        return "NOFILE"


def _subsection(use_addnet_hash: bool) -> str:
    return "hashes-addnet" if use_addnet_hash else "hashes"


def sha256_from_cache(filename, title, use_addnet_hash=False, *, cache_file: CacheFile | None = None) -> str | None:
    """The cached hash of `filename` under `title` ("checkpoint/<name>", "lora/<name>", ...) if still valid."""
    cache_file = cache_file or default_cache()
    entry = cache_file.lookup(_subsection(use_addnet_hash), title, filename)
    return entry.get("sha256") if entry is not None else None


def sha256(filename, title, use_addnet_hash=False, *, cache_file: CacheFile | None = None) -> str | None:
    """The file's sha256 (or addnet hash), from the cache or computed and stored; None when the file is missing."""
    cache_file = cache_file or default_cache()
    cached = sha256_from_cache(filename, title, use_addnet_hash, cache_file=cache_file)
    if cached is not None:
        return cached
    try:
        # mtime taken before reading, so a change made while hashing invalidates the entry
        mtime = os.path.getmtime(filename)
    except FileNotFoundError:
        return None
    log.info("Calculating sha256 for %s", filename)
    if use_addnet_hash:
        with open(filename, "rb") as file:
            value = addnet_hash_safetensors(file)
    else:
        value = calculate_sha256(filename)
    cache_file.store(_subsection(use_addnet_hash), title, {"mtime": mtime, "sha256": value})
    return value
