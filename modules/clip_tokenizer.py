"""CLIP tokenizer files built offline from the BPE vocabulary shipped inside the open-clip-torch wheel."""

from __future__ import annotations

import gzip
import importlib.util
import json
import os
import shutil
import tempfile
from pathlib import Path

from transformers import CLIPTokenizer

PAD_CLIP_L = "<|endoftext|>"  # SD1, SDXL tokenizer 1
PAD_OPEN_CLIP = "!"  # SD2, SDXL tokenizer 2, SDXL refiner

BOS = "<|startoftext|>"
EOS = "<|endoftext|>"
MODEL_MAX_LENGTH = 77
VOCAB_SIZE = 49408
_MERGE_COUNT = VOCAB_SIZE - 2 * 256 - 2  # vocab = bytes, bytes + "</w>", merges, bos, eos
_BPE_FILE = "bpe_simple_vocab_16e6.txt.gz"
_FILES = ("vocab.json", "merges.txt", "special_tokens_map.json", "tokenizer_config.json")
_PAD_DIR_NAMES = {PAD_CLIP_L: "endoftext", PAD_OPEN_CLIP: "exclamation"}


def bpe_archive_path() -> Path:
    """Locate open_clip's BPE file without importing open_clip (its import needs torchvision)."""
    spec = importlib.util.find_spec("open_clip")
    if spec is None or not spec.submodule_search_locations:
        raise RuntimeError(f"open-clip-torch is not installed: its {_BPE_FILE} is needed to build CLIP tokenizers")
    path = Path(next(iter(spec.submodule_search_locations))) / _BPE_FILE
    if not path.is_file():
        raise RuntimeError(f"CLIP BPE vocabulary missing: {path}")
    return path


def _byte_to_unicode() -> dict[int, str]:
    """The GPT-2/CLIP byte map: printable bytes map to themselves, the rest to code points from 256 up."""
    printable = [*range(ord("!"), ord("~") + 1), *range(ord("¡"), ord("¬") + 1), *range(ord("®"), ord("ÿ") + 1)]
    mapping = {b: chr(b) for b in printable}
    extra = 0
    for b in range(256):
        if b not in mapping:
            mapping[b] = chr(256 + extra)
            extra += 1
    return mapping


def _read_merges(archive: Path) -> list[str]:
    lines = gzip.decompress(archive.read_bytes()).decode("utf-8").split("\n")
    merges = lines[1 : 1 + _MERGE_COUNT]  # line 0 is the file's header
    if len(merges) != _MERGE_COUNT:
        raise RuntimeError(f"{archive} holds {len(merges)} merges, expected {_MERGE_COUNT}")
    return merges


def _build_vocab(merges: list[str]) -> dict[str, int]:
    symbols = list(_byte_to_unicode().values())
    tokens = symbols + [s + "</w>" for s in symbols] + [m.replace(" ", "") for m in merges] + [BOS, EOS]
    return {token: i for i, token in enumerate(tokens)}


def _write_files(folder: Path, pad_token: str) -> None:
    merges = _read_merges(bpe_archive_path())
    (folder / "vocab.json").write_text(json.dumps(_build_vocab(merges), ensure_ascii=False), encoding="utf-8")
    (folder / "merges.txt").write_text("#version: 0.2\n" + "\n".join(merges) + "\n", encoding="utf-8")
    special = {"bos_token": BOS, "eos_token": EOS, "unk_token": EOS, "pad_token": pad_token}
    (folder / "special_tokens_map.json").write_text(json.dumps(special, indent=2), encoding="utf-8")
    config = {
        **special,
        "tokenizer_class": "CLIPTokenizer",
        "model_max_length": MODEL_MAX_LENGTH,  # without it transformers pads to ~1e30 (stack-notes P5)
        "do_lower_case": True,
        "add_prefix_space": False,
        "errors": "replace",
    }
    (folder / "tokenizer_config.json").write_text(json.dumps(config, indent=2), encoding="utf-8")


def _is_complete(dest: Path) -> bool:
    return all((dest / name).is_file() for name in _FILES)


def ensure_tokenizer_dir(dest: Path, pad_token: str) -> Path:
    """Write CLIP tokenizer files padding with `pad_token` into `dest` unless they are already there."""
    dest = Path(dest)
    if _is_complete(dest):
        return dest
    dest.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{dest.name}-", dir=dest.parent))
    try:
        _write_files(staging, pad_token)
        if dest.exists() and not _is_complete(dest):
            shutil.rmtree(dest)  # a partial folder not made by this function (its writes are atomic)
        os.rename(staging, dest)
    except OSError:
        if not _is_complete(dest):  # a concurrent writer finishing first is fine
            raise
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return dest


def tokenizer_dir_name(pad_token: str) -> str:
    if pad_token not in _PAD_DIR_NAMES:
        raise ValueError(f"unsupported CLIP pad token {pad_token!r}: use {PAD_CLIP_L!r} or {PAD_OPEN_CLIP!r}")
    return f"clip-tokenizer-{_PAD_DIR_NAMES[pad_token]}"


def load_tokenizer(cache_dir: Path, pad_token: str) -> CLIPTokenizer:
    """A CLIPTokenizer padding with `pad_token`, built once under `cache_dir`."""
    folder = ensure_tokenizer_dir(Path(cache_dir) / tokenizer_dir_name(pad_token), pad_token)
    return CLIPTokenizer.from_pretrained(str(folder))
