"""Textual inversion embeddings in A1111's formats, found in the embeddings folder and triggered by file name.

Formats: A1111 .pt (`string_to_param`), .safetensors/.pt with `emb_params`, a single-tensor dict (diffusers concepts),
and SDXL files with `clip_l` + `clip_g`. An embedding only applies to a model whose text encoders have its width
(A1111's "expected shape"); others are skipped with a note. The vectors are inserted during encoding
(prompt_encoding), the tokenizer is never changed.
"""
from __future__ import annotations

import logging
import os
from dataclasses import dataclass

import safetensors.torch
import torch

from modules import hashes
from modules.shared_cmd_options import cmd_opts

log = logging.getLogger(__name__)
EMBEDDING_EXTENSIONS = (".pt", ".bin", ".safetensors")
SDXL_VECTORS = {"text_encoder": "clip_l", "text_encoder_2": "clip_g"}  # encoder component -> key in an SDXL file


@dataclass(eq=False)
class Embedding:
    name: str
    vec: torch.Tensor | dict[str, torch.Tensor]  # [n, width], or SDXL {"clip_l": [n, 768], "clip_g": [n, 1280]}
    filename: str | None = None
    hash: str | None = None

    @property
    def vectors(self) -> int:
        return next(iter(self.vec.values())).shape[0] if isinstance(self.vec, dict) else self.vec.shape[0]

    @property
    def shape(self) -> int:
        """Vector width; for SDXL the two encoders' widths added, as A1111 compares it."""
        if isinstance(self.vec, dict):
            return sum(v.shape[-1] for v in self.vec.values())
        return self.vec.shape[-1]

    @property
    def shorthash(self) -> str | None:
        return self.hash[:12] if self.hash else None

    def vectors_for(self, encoder_name: str) -> torch.Tensor:
        return self.vec[SDXL_VECTORS[encoder_name]] if isinstance(self.vec, dict) else self.vec


def embedding_from_data(data: dict, name: str, filename: str | None = None) -> Embedding:
    """An Embedding from a loaded file's dict; ValueError when the dict is none of the known formats."""
    if "clip_l" in data and "clip_g" in data:
        vec = {key: _as_matrix(data[key]) for key in ("clip_l", "clip_g")}
    elif "string_to_param" in data:
        params = data["string_to_param"]
        if len(params) != 1:
            raise ValueError(f"{name}: embedding file has {len(params)} parameters in string_to_param, expected 1")
        vec = _as_matrix(next(iter(params.values())))
    elif "emb_params" in data:
        vec = _as_matrix(data["emb_params"])
    elif len(data) == 1 and isinstance(next(iter(data.values())), torch.Tensor):
        vec = _as_matrix(next(iter(data.values())))
    else:
        raise ValueError(f"{name}: not a textual inversion embedding (keys: {', '.join(map(str, list(data)[:5]))})")
    return Embedding(name, vec, filename)


def _as_matrix(tensor) -> torch.Tensor:
    if not isinstance(tensor, torch.Tensor):
        raise ValueError("embedding vectors are not a tensor")
    tensor = tensor.detach().to("cpu", torch.float32)
    return tensor.unsqueeze(0) if tensor.ndim == 1 else tensor


def load_embedding_file(path: str) -> Embedding:
    name = os.path.splitext(os.path.basename(path))[0]
    if path.lower().endswith(".safetensors"):
        data = safetensors.torch.load_file(path)
    else:
        data = torch.load(path, map_location="cpu", weights_only=True)
    if not isinstance(data, dict):
        raise ValueError(f"{name}: not a textual inversion embedding")
    embedding = embedding_from_data(data, name, path)
    if not cmd_opts.no_hashing:
        embedding.hash = hashes.sha256(path, f"textual_inversion/{name}")
    return embedding


def expected_shape(model) -> int:
    """The width an embedding must have for this model: its text encoders' token-embedding widths added."""
    widths = [getattr(te, "text_model", te).embeddings.token_embedding.embedding_dim for te in model.text_encoders.values()]
    return sum(widths)


class EmbeddingDatabase:
    """The embeddings of some folders, read again whenever a file there is added, removed or changed."""

    def __init__(self, dirs: list[str] | None = None):
        self.embedding_dirs: list[str] = list(dirs or [])
        self.word_embeddings: dict[str, Embedding] = {}
        self.skipped_embeddings: dict[str, Embedding] = {}  # for the last model asked about
        self.errors: dict[str, str] = {}  # file -> why it could not be read
        self._signature: tuple = ()

    def add_embedding_dir(self, path: str) -> None:
        self.embedding_dirs.append(path)

    def _files(self) -> list[tuple[str, float]]:
        found = []
        for root in self.embedding_dirs:
            if not os.path.isdir(root):
                continue
            for dirpath, _, files in sorted(os.walk(root, followlinks=True)):
                for fn in sorted(files, key=str.lower):
                    if fn.lower().endswith(EMBEDDING_EXTENSIONS):
                        path = os.path.join(dirpath, fn)
                        found.append((path, os.path.getmtime(path)))
        return found

    def load_textual_inversion_embeddings(self, force_reload: bool = False) -> bool:
        """(Re)load every embedding when the folders changed; returns whether anything was read."""
        files = self._files()
        signature = tuple(files)
        if signature == self._signature and not force_reload:
            return False
        self._signature = signature
        self.word_embeddings, self.errors = {}, {}
        for path, _ in files:
            try:
                embedding = load_embedding_file(path)
            except Exception as e:  # a broken file must not stop the others or the job
                self.errors[path] = str(e)
                log.error("Could not load textual inversion embedding %s: %s", path, e)
                continue
            if embedding.name in self.word_embeddings:
                log.warning("Duplicate embedding name %s: %s ignored", embedding.name, path)
                continue
            self.word_embeddings[embedding.name] = embedding
        log.info("Textual inversion embeddings loaded (%d): %s", len(self.word_embeddings), ", ".join(self.word_embeddings))
        return True

    def usable_for(self, model) -> dict[str, Embedding]:
        """The embeddings that fit this model; the rest go to skipped_embeddings with a note in the log."""
        self.load_textual_inversion_embeddings()
        shape = expected_shape(model)
        usable = {n: e for n, e in self.word_embeddings.items() if e.shape == shape and _fits_encoders(e, model)}
        skipped = {n: e for n, e in self.word_embeddings.items() if n not in usable}
        if skipped.keys() != self.skipped_embeddings.keys() and skipped:
            log.info("Textual inversion embeddings skipped for %s (%d, made for another model family): %s",
                     model.family.label, len(skipped), ", ".join(skipped))
        self.skipped_embeddings = skipped
        return usable


def _fits_encoders(embedding: Embedding, model) -> bool:
    """SDXL files only fit models with both SDXL encoders; single-tensor files only single-encoder models."""
    return isinstance(embedding.vec, dict) == (set(model.text_encoders) == set(SDXL_VECTORS))


class TokenLookup:
    """Finds embeddings in one tokenizer's token stream: an embedding matches where its name's tokens appear."""

    def __init__(self, embeddings: dict[str, Embedding], tokenizer, encoder_name: str):
        self.encoder_name = encoder_name
        self.by_first_token: dict[int, list[tuple[list[int], Embedding]]] = {}
        for embedding in embeddings.values():
            ids = tokenizer(embedding.name, add_special_tokens=False)["input_ids"]
            if ids:
                self.by_first_token.setdefault(ids[0], []).append((ids, embedding))
        for candidates in self.by_first_token.values():
            candidates.sort(key=lambda item: len(item[0]), reverse=True)  # the longest name wins

    def find_embedding_at_position(self, tokens: list[int], offset: int) -> tuple[Embedding | None, int]:
        for ids, embedding in self.by_first_token.get(tokens[offset], ()):
            if tokens[offset:offset + len(ids)] == ids:
                return embedding, len(ids)
        return None, 0

    def vectors(self, embedding: Embedding) -> torch.Tensor:
        return embedding.vectors_for(self.encoder_name)

    def vector_count(self, embedding: Embedding) -> int:
        return self.vectors(embedding).shape[0]


_databases: dict[tuple[str, ...], EmbeddingDatabase] = {}


def embedding_db() -> EmbeddingDatabase:
    """The database of the configured embeddings folder (--embeddings-dir), one per folder."""
    dirs = (cmd_opts.embeddings_dir,)
    if dirs not in _databases:
        _databases[dirs] = EmbeddingDatabase(list(dirs))
    return _databases[dirs]
