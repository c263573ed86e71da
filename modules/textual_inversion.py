"""Textual inversion embeddings in A1111's formats, found in the embeddings folder and triggered by file name.

Formats: A1111 .pt (`string_to_param`), .safetensors/.pt with `emb_params`, a single-tensor dict (diffusers concepts),
SDXL files with `clip_l` + `clip_g`, and .png images carrying an embedding in their `sd-ti-embedding` chunk (named by
the chunk's `name`; other .png files there are previews and are passed over). An embedding only applies to a model whose text encoders have its width
(A1111's "expected shape"); others are skipped with a note. The vectors are inserted during encoding
(prompt_encoding), the tokenizer is never changed.
"""
from __future__ import annotations

import logging
import os
import sys
from dataclasses import dataclass

import safetensors.torch
import torch

from modules import hashes, image_embedding
from modules.shared_cmd_options import cmd_opts

log = logging.getLogger(__name__)
EMBEDDING_EXTENSIONS = (".pt", ".bin", ".safetensors")
IMAGE_EXTENSIONS = (".png",)
PREVIEW_SUFFIX = ".preview.png"  # extra networks card images, never embeddings
SDXL_VECTORS = {"text_encoder": "clip_l", "text_encoder_2": "clip_g"}  # encoder component -> key in an SDXL file


@dataclass(eq=False)
class Embedding:
    name: str
    vec: torch.Tensor | dict[str, torch.Tensor]  # [n, width], or SDXL {"clip_l": [n, 768], "clip_g": [n, 1280]}
    filename: str | None = None
    hash: str | None = None
    step: int | None = None  # training steps done, for resuming
    sd_checkpoint: str | None = None  # short hash of the checkpoint it was trained on
    sd_checkpoint_name: str | None = None

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

    def info(self) -> dict:
        return {"name": self.name, "step": self.step, "sd_checkpoint": self.sd_checkpoint,
                "sd_checkpoint_name": self.sd_checkpoint_name}

    def data(self) -> dict:
        """A1111's dict of the embedding (what its .pt holds; SDXL: `clip_l` and `clip_g`), vectors on the CPU."""
        if isinstance(self.vec, dict):
            tensors = {key: value.detach().to("cpu", torch.float32).contiguous() for key, value in self.vec.items()}
        else:
            tensors = {"string_to_token": {"*": 265}, "string_to_param": {"*": self.vec.detach().to("cpu", torch.float32)}}
        return {**tensors, **self.info()}

    def checksum(self) -> str:
        return vectors_checksum(self.vec)

    def save(self, filename: str) -> None:
        """Write A1111's format: SDXL vectors as .safetensors (`clip_l`, `clip_g`, training info in the metadata),
        others as .pt with `string_to_param`; atomically, so a reader never sees half a file."""
        tmp = f"{filename}.tmp"
        data = self.data()
        if isinstance(self.vec, dict):
            tensors = {key: data.pop(key) for key in SDXL_VECTORS.values()}
            safetensors.torch.save_file(tensors, tmp, metadata={k: str(v) for k, v in data.items() if v is not None})
        else:
            torch.save(data, tmp)
        os.replace(tmp, filename)


def vectors_checksum(vec: torch.Tensor | dict[str, torch.Tensor]) -> str:
    """A1111's 4-hex embedding checksum of the vectors (x100, truncated to integers, folded into 32 bits): it names
    the state an optimizer's saved state belongs to. SDXL: clip_l's values, then clip_g's."""
    parts = [vec[key] for key in SDXL_VECTORS.values()] if isinstance(vec, dict) else [vec]
    folded = 0
    for part in parts:
        for value in (part.detach().to("cpu", torch.float32).reshape(-1) * 100).tolist():
            folded = ((folded * 281) ^ (int(value) * 997)) & 0xFFFFFFFF
    return f"{folded & 0xFFFF:04x}"


class NotAnEmbedding(ValueError):
    """An image in the embeddings folder that carries no embedding (a preview): passed over, not an error."""


def embedding_from_data(data: dict, name: str, filename: str | None = None, info: dict | None = None) -> Embedding:
    """An Embedding from a loaded file's dict; ValueError when the dict is none of the known formats.
    info: the training record (step, sd_checkpoint, sd_checkpoint_name): the .pt dict itself, a .safetensors' metadata."""
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
    info = info or {}
    step = info.get("step")
    return Embedding(name, vec, filename, step=int(step) if isinstance(step, (int, str)) and str(step).isdigit() else None,
                     sd_checkpoint=_text_or_none(info.get("sd_checkpoint")),
                     sd_checkpoint_name=_text_or_none(info.get("sd_checkpoint_name")))


def _text_or_none(value) -> str | None:
    return value if isinstance(value, str) else None


def _as_matrix(tensor) -> torch.Tensor:
    if not isinstance(tensor, torch.Tensor):
        raise ValueError("embedding vectors are not a tensor")
    tensor = tensor.detach().to("cpu", torch.float32)
    return tensor.unsqueeze(0) if tensor.ndim == 1 else tensor


def load_embedding_file(path: str) -> Embedding:
    """The embedding of a file; NotAnEmbedding for an image without an embedding chunk, ValueError for other files
    that hold none."""
    name = os.path.splitext(os.path.basename(path))[0]
    if path.lower().endswith(IMAGE_EXTENSIONS):
        data = image_embedding.embedding_data_from_image(path)
        if data is None:
            raise NotAnEmbedding(f"{path} carries no {image_embedding.EMBEDDING_CHUNK} chunk")
        name = str(data.get("name") or name)  # A1111: the name stored in the chunk, not the image's file name
        info = data
    elif path.lower().endswith(".safetensors"):
        data = safetensors.torch.load_file(path)
        with safetensors.safe_open(path, framework="pt") as f:
            info = f.metadata() or {}
    else:
        data = torch.load(path, map_location="cpu", weights_only=True)
        info = data if isinstance(data, dict) else {}
    if not isinstance(data, dict):
        raise ValueError(f"{name}: not a textual inversion embedding")
    embedding = embedding_from_data(data, name, path, info)
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
                    lower = fn.lower()
                    if lower.endswith(EMBEDDING_EXTENSIONS + IMAGE_EXTENSIONS) and not lower.endswith(PREVIEW_SUFFIX):
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
            except NotAnEmbedding:
                continue
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


MAX_VECTORS_PER_TOKEN = 75
TOKENIZER_OF = {"text_encoder": "tokenizer", "text_encoder_2": "tokenizer_2"}


def current_model():
    """The checkpoint jobs run on now, loaded if needed (the one chosen in the settings)."""
    from modules import processing  # imported here: processing imports this module

    return processing.main_model(processing.StableDiffusionProcessing())


def clean_name(name: str) -> str:
    """A1111's file-name rule for created embeddings and hypernetworks: letters, digits and `._- ` only."""
    cleaned = "".join(c for c in str(name or "") if c.isalnum() or c in "._- ").strip()
    if not cleaned:
        raise ValueError("Name cannot be empty: use letters, digits, '.', '_', '-' or spaces")
    return cleaned


def init_vectors(model, encoder_name: str, init_text: str, count: int) -> torch.Tensor:
    """[count, width] vectors from the init text's token embeddings, spread over its tokens as A1111 does
    (vector i takes token i * tokens // count); zeros for an empty text."""
    encoder = model.text_encoders[encoder_name]
    token_embedding = getattr(encoder, "text_model", encoder).embeddings.token_embedding
    vec = torch.zeros(count, token_embedding.embedding_dim)
    ids = model.tokenizers[TOKENIZER_OF[encoder_name]](init_text, add_special_tokens=False)["input_ids"] if init_text else []
    if ids:
        with torch.no_grad():
            embedded = token_embedding.weight[torch.tensor(ids, device=token_embedding.weight.device)]
        embedded = embedded.detach().to("cpu", torch.float32)
        for i in range(count):
            vec[i] = embedded[i * len(ids) // count]
    return vec


def create_embedding(name: str, num_vectors_per_token: int, overwrite_old: bool, init_text: str = "*", model=None) -> str:
    """Write a new embedding for `model` (default: the current one) into the embeddings folder and load it; its file.

    SD1/SD2: `<name>.pt` (string_to_param); SDXL: `<name>.safetensors` with clip_l and clip_g."""
    name = clean_name(name)
    count = int(num_vectors_per_token)
    if not 1 <= count <= MAX_VECTORS_PER_TOKEN:
        raise ValueError(f"Number of vectors per token must be between 1 and {MAX_VECTORS_PER_TOKEN}, got {count}")
    model = model or current_model()
    encoders = set(model.text_encoders)
    if encoders == set(SDXL_VECTORS):
        vec: torch.Tensor | dict = {SDXL_VECTORS[e]: init_vectors(model, e, init_text, count) for e in sorted(encoders)}
        extension = ".safetensors"
    elif encoders == {"text_encoder"}:
        vec, extension = init_vectors(model, "text_encoder", init_text, count), ".pt"
    else:
        raise ValueError(f"Embeddings cannot be created for {model.family.label} checkpoints")
    folder = cmd_opts.embeddings_dir
    os.makedirs(folder, exist_ok=True)
    filename = os.path.join(folder, name + extension)
    if not overwrite_old:
        existing = [name + ext for ext in EMBEDDING_EXTENSIONS if os.path.exists(os.path.join(folder, name + ext))]
        if existing:
            raise ValueError(f"Embedding file {existing[0]} already exists in {folder}: choose another name or tick "
                             f"Overwrite Old Embedding")
    Embedding(name, vec, step=0).save(filename)
    embedding_db().load_textual_inversion_embeddings(force_reload=True)
    return filename


# A1111 keeps this module at modules/textual_inversion/textual_inversion.py and extensions import it by that name
textual_inversion = sys.modules[f"{__name__}.textual_inversion"] = sys.modules[__name__]
