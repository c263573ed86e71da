"""Checkpoint Merger (A1111's `run_modelmerger`): No interpolation, Weighted sum and Add difference of checkpoints.

Everything that can be checked is checked before any tensor is read: arguments, families, shapes, disk space. Then
the inputs are streamed key by key (one tensor per input mapped at a time), each output tensor is computed in
fixed-size float32 chunks into a reused buffer and written, so peak RAM stays near one output tensor; the file is
written under a temporary name in the target folder and renamed when complete, so a failure never leaves a partial
checkpoint.
"""
from __future__ import annotations

import contextlib
import json
import logging
import mmap
import os
import pickle
import re
import shutil
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from typing import BinaryIO

import safetensors
import torch

from modules import paths_internal, sd_models, sd_models_config, sd_vae
from modules.shared_cmd_options import cmd_opts
from modules.shared_state import state

log = logging.getLogger(__name__)

INTERP_METHODS = ("No interpolation", "Weighted sum", "Add difference")
CHECKPOINT_FORMATS = ("ckpt", "safetensors")
CONFIG_SOURCES = ("A, B or C", "B", "C", "Don't")  # the UI radio; the engine takes the index, as A1111's does
SKIP_ON_MERGE_SUFFIX = "embeddings.position_ids"  # token positions, not weights: always A's
NORMAL_IN_CHANNELS, INPAINT_IN_CHANNELS = 4, 9
DISK_MARGIN_BYTES = 16 * 1024 * 1024
MERGE_CHUNK = 1 << 20  # elements per step of the float32 math: work for every thread, yet it stays in the caches

SAFETENSORS_DTYPES = {
    torch.float64: "F64", torch.float32: "F32", torch.float16: "F16", torch.bfloat16: "BF16",
    torch.int64: "I64", torch.int32: "I32", torch.int16: "I16", torch.int8: "I8", torch.uint8: "U8",
    torch.uint16: "U16", torch.uint32: "U32", torch.uint64: "U64", torch.bool: "BOOL",
    torch.float8_e4m3fn: "F8_E4M3", torch.float8_e5m2: "F8_E5M2",
}
TORCH_DTYPES = {name: dtype for dtype, name in SAFETENSORS_DTYPES.items()}


class MergeError(ValueError):
    """A merge the user asked for that cannot be done; nothing was written."""


@dataclass(frozen=True)
class MergeResult:
    filename: str             # the new checkpoint's path
    title: str                # its title in the checkpoint registry
    message: str
    kept_from_a: list[str]    # keys A1111 would merge that B lacks: copied from A unchanged
    left_out: list[str]       # keys of B or C that A lacks: not in the result (A1111 drops them)


# --- the math -------------------------------------------------------------------------------------------------------

def weighted_sum(a: torch.Tensor, b: torch.Tensor, multiplier: float) -> torch.Tensor:
    """A·(1−M) + B·M, computed as a lerp so that M=0 gives A and A with itself gives A, bit for bit."""
    return torch.lerp(a, b, multiplier)


def get_difference(b: torch.Tensor, c: torch.Tensor) -> torch.Tensor:
    return b - c


def add_difference(a: torch.Tensor, difference: torch.Tensor, multiplier: float) -> torch.Tensor:
    """A + (B − C)·M."""
    return a + difference * multiplier


def is_partial_merge(key: str, a_shape, b_shape) -> bool:
    """True when A is an inpainting model and B a normal one at this key (only the first 4 input channels merge)."""
    a_shape, b_shape = tuple(a_shape), tuple(b_shape)
    if a_shape == b_shape:
        return False
    if len(a_shape) >= 2 and len(a_shape) == len(b_shape) and (a_shape[0], *a_shape[2:]) == (b_shape[0], *b_shape[2:]):
        if a_shape[1] == NORMAL_IN_CHANNELS and b_shape[1] == INPAINT_IN_CHANNELS:
            raise MergeError("When merging an inpainting model with a normal one, A must be the inpainting model.")
        if a_shape[1] == INPAINT_IN_CHANNELS and b_shape[1] == NORMAL_IN_CHANNELS:
            return True
    raise MergeError(f"Bad dimensions for merged layer {key}: A={list(a_shape)}, B={list(b_shape)}")


def merge_tensor(key: str, a: torch.Tensor, b: torch.Tensor, c: torch.Tensor | None, interp_method: str,
                 multiplier: float) -> torch.Tensor:
    """One merged tensor, in float32. For Add difference, a key missing from C (c None) leaves A unchanged."""
    a32 = a.float()
    if interp_method == "Weighted sum":
        b32 = b.float()

        def blend(x):
            return weighted_sum(x, b32, multiplier)
    elif c is None:  # A1111 zeroes B−C where C lacks the key
        return a32
    else:
        difference = get_difference(b.float(), c.float())

        def blend(x):
            return add_difference(x, difference, multiplier)
    if not is_partial_merge(key, a.shape, b.shape):
        return blend(a32)
    merged = a32.clone()
    merged[:, :NORMAL_IN_CHANNELS] = blend(a32[:, :NORMAL_IN_CHANNELS])
    return merged


def merge_into(out: torch.Tensor, a: torch.Tensor, b: torch.Tensor, c: torch.Tensor | None, interp_method: str,
               multiplier: float, scratch: torch.Tensor) -> torch.Tensor:
    """merge_tensor's result for A and B of one shape, cast to out's dtype and written into `out`, bit for bit.

    The float32 math runs a chunk at a time through the three rows of `scratch`, in place: no tensor is allocated,
    each input is read once and each chunk stays in the CPU caches from its conversion to its cast into `out`.
    """
    flat_out, flat_a, flat_b = out.view(-1), a.reshape(-1), b.reshape(-1)
    flat_c = c.reshape(-1) if c is not None else None
    for start in range(0, flat_out.numel(), scratch.shape[1]):
        stop = min(start + scratch.shape[1], flat_out.numel())
        x, y, z = (row[:stop - start] for row in scratch)
        x.copy_(flat_a[start:stop])
        if interp_method == "Weighted sum":
            x.lerp_(y.copy_(flat_b[start:stop]), multiplier)
        elif flat_c is not None:  # A + (B − C)·M with add_difference's roundings: B − C, then ·M, then + A
            x.add_(y.copy_(flat_b[start:stop]).sub_(z.copy_(flat_c[start:stop])).mul_(multiplier))
        flat_out[start:stop].copy_(x)
    return out


def default_filename(interp_method: str, a: str, b: str | None, c: str | None, multiplier: float) -> str:
    """A1111's default output names, from the models' model_name."""
    if interp_method == "Weighted sum":
        return f"{round(1 - multiplier, 2)}({a}) + {round(multiplier, 2)}({b})"
    if interp_method == "Add difference":
        return f"{a} + {round(multiplier, 2)}({b} - {c})"
    return a


# --- reading --------------------------------------------------------------------------------------------------------

class CheckpointReader:
    """One input checkpoint: names, shapes and dtypes up front, tensor data one key at a time.

    .safetensors: safe_open validates the file and tells names, shapes, dtypes and metadata; tensors are then views
    of a private memory map of the file, so their bytes come from the page cache without a copy or a fresh
    allocation. Handing out a tensor drops the previous one's pages from this process (they stay in the page cache
    and come back if that tensor is read again), so resident memory holds one tensor per input, not the file.
    .ckpt/.pt: only through torch's weights-only unpickling, memory-mapped when the file is in torch's zip format.
    """

    def __init__(self, path: str):
        self.path = path
        self.name = os.path.basename(path)
        self.metadata: dict[str, str] = {}
        self._map: mmap.mmap | None = None
        self._mapped: tuple[int, int] | None = None  # file range of the tensor handed out last
        self._offsets: dict[str, tuple[int, int]] = {}
        self._tensors: dict[str, torch.Tensor] = {}
        try:
            if path.lower().endswith(".safetensors"):
                with safetensors.safe_open(path, framework="pt") as f:
                    self.metadata = f.metadata() or {}
                    self._info = {k: _slice_info(self.name, k, f.get_slice(k)) for k in f.keys()}
                self._offsets = _data_offsets(path)
                with open(path, "rb") as file:  # copy-on-write: writable views for torch, the file never changes
                    self._map = mmap.mmap(file.fileno(), 0, access=mmap.ACCESS_COPY)
            else:
                self._tensors = _load_ckpt(path)
                self._info = {k: (tuple(t.shape), t.dtype) for k, t in self._tensors.items()}
        except MergeError:
            raise
        except Exception as e:  # corrupt or truncated files raise many different types
            raise MergeError(f"Could not read {self.name}: the file is corrupt, truncated or not a checkpoint ({e})") from e

    def keys(self) -> list[str]:
        return list(self._info)

    def __contains__(self, key: str) -> bool:
        return key in self._info

    def shape(self, key: str) -> tuple[int, ...]:
        return self._info[key][0]

    def dtype(self, key: str) -> torch.dtype:
        return self._info[key][1]

    def get_tensor(self, key: str) -> torch.Tensor:
        if self._map is None:
            return self._tensors[key]
        start, end = self._offsets[key]
        shape, dtype = self._info[key]
        if self._mapped is not None:
            dropped = self._mapped[0] - self._mapped[0] % mmap.PAGESIZE  # madvise ranges start on a page
            self._map.madvise(mmap.MADV_DONTNEED, dropped, self._mapped[1] - dropped)
        self._mapped = (start, end) if end > start else None
        if end == start:  # frombuffer refuses empty ranges
            return torch.empty(shape, dtype=dtype)
        data = torch.frombuffer(self._map, dtype=torch.uint8, count=end - start, offset=start)
        return data.view(dtype).reshape(shape)

    def meta_state_dict(self) -> dict[str, torch.Tensor]:
        """Shapes and dtypes as meta tensors (no memory): enough for family detection."""
        return {k: torch.empty(shape, dtype=dtype, device="meta") for k, (shape, dtype) in self._info.items()}

    def close(self) -> None:
        self._map = None  # not mmap.close(): a tensor still alive holds the map, which is unmapped with the last one
        self._tensors = {}


def _slice_info(name: str, key: str, part) -> tuple[tuple[int, ...], torch.dtype]:
    dtype = TORCH_DTYPES.get(part.get_dtype())
    if dtype is None:
        raise MergeError(f"{name}: tensor {key} has a data type this merger does not know ({part.get_dtype()})")
    return tuple(part.get_shape()), dtype


def _data_offsets(path: str) -> dict[str, tuple[int, int]]:
    """Absolute file offsets of each tensor's bytes, from the safetensors header (already validated by safe_open)."""
    with open(path, "rb") as file:
        header_size = int.from_bytes(file.read(8), "little")
        header = json.loads(file.read(header_size))
    data_start = 8 + header_size
    return {k: (data_start + v["data_offsets"][0], data_start + v["data_offsets"][1])
            for k, v in header.items() if k != "__metadata__"}


def _load_ckpt(path: str) -> dict[str, torch.Tensor]:
    name = os.path.basename(path)
    try:
        try:
            data = torch.load(path, map_location="cpu", weights_only=True, mmap=True)
        except RuntimeError:  # legacy (non-zip) torch files cannot be memory-mapped
            data = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as e:
        raise MergeError(f"Refused to read {name}: it contains pickled code, not only tensors; "
                         f"convert it to .safetensors with a tool you trust") from e
    if isinstance(data, dict) and isinstance(data.get("state_dict"), dict):
        data = data["state_dict"]
    if not isinstance(data, dict) or not all(isinstance(v, torch.Tensor) for v in data.values()):
        raise MergeError(f"Could not read {name}: it holds no state dict of tensors")
    return data


def open_checkpoint(path: str) -> CheckpointReader:
    return CheckpointReader(path)


def read_metadata(*model_names: str | None) -> dict:
    """The merged metadata of the named checkpoints (later ones win), for the tab's "Read metadata" button."""
    metadata = {}
    for name in model_names:
        info = sd_models.get_closet_checkpoint_match(name) if name else None
        if info is not None and info.filename.lower().endswith(".safetensors"):
            metadata.update(sd_models.read_metadata_from_safetensors(info.filename))
    return metadata


# --- writing --------------------------------------------------------------------------------------------------------

class SafetensorsWriter:
    """Writes the safetensors layout one tensor at a time (the library has no incremental writer).

    Layout: 8-byte little-endian header length, the JSON header (dtype, shape, data_offsets per tensor; space-padded
    to a multiple of 8), then the raw little-endian tensor bytes in header order. Every shape and dtype is known
    before the first tensor is computed, so the header is written first and no tensor is kept after it is written.
    """

    def __init__(self, file: BinaryIO, entries: list[tuple[str, torch.dtype, tuple[int, ...]]], metadata: dict[str, str]):
        self.file = file
        self.entries = entries
        self.written = 0
        header: dict = {"__metadata__": metadata} if metadata else {}
        offset = 0
        for key, dtype, shape in entries:
            if dtype not in SAFETENSORS_DTYPES:
                raise MergeError(f"tensor {key}: safetensors cannot store {dtype}")
            size = _nbytes(shape, dtype)
            header[key] = {"dtype": SAFETENSORS_DTYPES[dtype], "shape": list(shape), "data_offsets": [offset, offset + size]}
            offset += size
        encoded = json.dumps(header, separators=(",", ":"), ensure_ascii=False).encode("utf8")
        encoded += b" " * (-len(encoded) % 8)  # tensor data starts 8-byte aligned
        self.header_size = 8 + len(encoded)
        self.data_size = offset
        file.write(len(encoded).to_bytes(8, "little"))
        file.write(encoded)

    def write_tensor(self, tensor: torch.Tensor) -> None:
        key, dtype, shape = self.entries[self.written]
        if tensor.dtype != dtype or tuple(tensor.shape) != tuple(shape):
            raise RuntimeError(f"{key}: planned {dtype} {list(shape)}, got {tensor.dtype} {list(tensor.shape)}")
        self.file.write(tensor.detach().cpu().reshape(-1).view(torch.uint8).numpy())
        self.written += 1

    def finish(self) -> None:
        if self.written != len(self.entries):
            raise RuntimeError(f"safetensors writer: {self.written} of {len(self.entries)} tensors written")


def _nbytes(shape, dtype: torch.dtype) -> int:
    count = 1
    for n in shape:
        count *= int(n)
    return count * dtype.itemsize


@contextlib.contextmanager
def _atomic_output(filename: str):
    """A temporary file beside `filename`, renamed onto it only when the block completes."""
    fd, tmp = tempfile.mkstemp(dir=os.path.dirname(filename), prefix=".merging-", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as file:
            yield file
        os.chmod(tmp, 0o644)  # mkstemp creates 0600; a checkpoint is an ordinary file
        os.replace(tmp, filename)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


# --- planning -------------------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class _Entry:
    key: str
    shape: tuple[int, ...]
    dtype: torch.dtype    # the output dtype
    source: str           # "a" (copied), "merge" (A with B, and C), "vae" (baked-in VAE)


@dataclass
class _Inputs:
    a: CheckpointReader
    b: CheckpointReader | None
    c: CheckpointReader | None
    vae: CheckpointReader | None
    vae_keys: dict[str, str]   # bare VAE key -> key in the VAE file


def _merges(key: str, inputs: _Inputs) -> bool:
    """A1111's rule: keys with "model" in the name that B has too; position ids and non-float tensors stay A's."""
    a, b = inputs.a, inputs.b
    return (b is not None and "model" in key and key in b and not key.endswith(SKIP_ON_MERGE_SUFFIX)
            and a.dtype(key).is_floating_point and b.dtype(key).is_floating_point)


def _plan(inputs: _Inputs, save_as_half: bool, discard: re.Pattern | None) -> tuple[list[_Entry], bool, list[str]]:
    """Output tensors in order; whether the result is an inpainting merge; keys A1111 would merge that B lacks."""
    a, b, c = inputs.a, inputs.b, inputs.c
    entries, partial, kept_from_a = [], False, []
    for key in a.keys():
        if discard is not None and discard.search(key):
            continue
        shape, dtype, source = a.shape(key), a.dtype(key), "a"
        bare = key.removeprefix(sd_models_config.VAE)
        if inputs.vae is not None and key.startswith(sd_models_config.VAE) and bare in inputs.vae_keys:
            vae_key = inputs.vae_keys[bare]
            if inputs.vae.shape(vae_key) != shape:
                raise MergeError(f"The VAE {inputs.vae.name} does not fit this model: {bare} is "
                                 f"{list(inputs.vae.shape(vae_key))}, the model's is {list(shape)}")
            source, dtype = "vae", inputs.vae.dtype(vae_key)
        elif _merges(key, inputs):
            partial |= is_partial_merge(key, shape, b.shape(key))
            if c is not None and key in c and c.shape(key) != b.shape(key):
                raise MergeError(f"Bad dimensions for merged layer {key}: B={list(b.shape(key))}, C={list(c.shape(key))}")
            source = "merge"
            dtype = torch.promote_types(dtype, b.dtype(key))
            if c is not None and key in c and c.dtype(key).is_floating_point:
                dtype = torch.promote_types(dtype, c.dtype(key))
        elif b is not None and "model" in key and key not in b:
            kept_from_a.append(key)
        if save_as_half and dtype.is_floating_point:
            dtype = torch.float16
        entries.append(_Entry(key, shape, dtype, source))
    return entries, partial, kept_from_a


def _produce(entry: _Entry, inputs: _Inputs, interp_method: str, multiplier: float, out: torch.Tensor,
             scratch: torch.Tensor) -> torch.Tensor:
    """The output tensor of `entry`: computed into `out` (an uninitialised tensor of its shape and dtype), or the
    input tensor itself where it is copied unchanged."""
    if entry.source == "vae":
        tensor = inputs.vae.get_tensor(inputs.vae_keys[entry.key.removeprefix(sd_models_config.VAE)])
    elif entry.source == "merge":
        a, b = inputs.a.get_tensor(entry.key), inputs.b.get_tensor(entry.key)
        c = inputs.c.get_tensor(entry.key) if inputs.c is not None and entry.key in inputs.c else None
        if not is_partial_merge(entry.key, a.shape, b.shape):
            return merge_into(out, a, b, c, interp_method, multiplier, scratch)
        tensor = merge_tensor(entry.key, a, b, c, interp_method, multiplier)
    else:
        tensor = inputs.a.get_tensor(entry.key)
    return tensor if tensor.dtype == entry.dtype else out.copy_(tensor)


# --- the merge ------------------------------------------------------------------------------------------------------

def _resolve(name: str | None, role: str) -> sd_models.CheckpointInfo:
    info = sd_models.get_closet_checkpoint_match(name) if name else None
    if info is None:
        raise MergeError(f"Checkpoint not found for {role}: {name}. Available: "
                         f"{', '.join(sd_models.checkpoint_registry.titles()) or 'none'}")
    return info


def _check_arguments(primary, secondary, tertiary, interp_method, checkpoint_format, config_source, custom_name):
    if interp_method not in INTERP_METHODS:
        raise MergeError(f"Unknown interpolation method {interp_method!r}; use one of {', '.join(INTERP_METHODS)}")
    if checkpoint_format not in CHECKPOINT_FORMATS:
        raise MergeError(f"Unknown checkpoint format {checkpoint_format!r}; use ckpt or safetensors")
    if config_source not in range(len(CONFIG_SOURCES)):
        raise MergeError(f"config_source must be 0..3 ({', '.join(CONFIG_SOURCES)}), not {config_source!r}")
    if not primary:
        raise MergeError("Failed: Merging requires a primary model.")
    if interp_method != "No interpolation" and not secondary:
        raise MergeError("Failed: Merging requires a secondary model.")
    if interp_method == "Add difference" and not tertiary:
        raise MergeError(f"Failed: Interpolation method ({interp_method}) requires a tertiary model.")
    if custom_name and (custom_name != os.path.basename(custom_name) or custom_name in (".", "..")):
        raise MergeError(f"Custom name must be a file name without folders, not {custom_name!r}")


def _compile_discard(discard_weights: str) -> re.Pattern | None:
    if not discard_weights:
        return None
    try:
        return re.compile(discard_weights)
    except re.error as e:
        raise MergeError(f"Discard weights: {discard_weights!r} is not a valid regular expression ({e})") from e


def _user_metadata(metadata_json: str) -> dict:
    if not metadata_json or not metadata_json.strip():
        return {}
    try:
        value = json.loads(metadata_json)
    except ValueError as e:
        raise MergeError(f"Metadata is not valid JSON: {e}") from e
    if not isinstance(value, dict):
        raise MergeError("Metadata JSON must be an object of name: value pairs")
    return value


def _check_families(readers: list[CheckpointReader]) -> None:
    families = []
    for reader in readers:
        try:
            families.append(sd_models_config.detect_family(reader.meta_state_dict(), reader.metadata))
        except sd_models_config.UnknownModelError as e:
            raise MergeError(f"Cannot merge {reader.name}: {e}") from e
    first = families[0]
    for reader, family in zip(readers[1:], families[1:]):
        if family.name != first.name:
            raise MergeError(f"Cannot merge {readers[0].name} ({sd_models_config.FAMILY_LABELS[first.name]}) with "
                             f"{reader.name} ({sd_models_config.FAMILY_LABELS[family.name]}): "
                             f"checkpoints of different model families have different layers")


def _check_disk_space(folder: str, needed: int) -> None:
    free = shutil.disk_usage(folder).free
    if free < needed + DISK_MARGIN_BYTES:
        raise MergeError(f"Not enough free disk space in {folder}: the merged checkpoint needs about "
                         f"{_size(needed)}, {_size(free)} are free")


def _size(n: int) -> str:
    return f"{n / 2**30:.2f} GiB" if n >= 2**30 else f"{n / 2**20:.1f} MiB"


def _sha256(info: sd_models.CheckpointInfo) -> str | None:
    if not cmd_opts.no_hashing:
        info.calculate_shorthash()
    return info.sha256


def _merge_metadata(models: list[sd_models.CheckpointInfo], readers: list[CheckpointReader], recipe: dict,
                    add_merge_recipe: bool, copy_metadata_fields: bool, user_metadata: dict) -> dict:
    """The output's safetensors metadata, as A1111 writes it (values that are not strings are stored as JSON)."""
    metadata: dict = {}
    if copy_metadata_fields:
        for reader in readers:
            metadata.update(reader.metadata)
    metadata.update(user_metadata)
    metadata["format"] = "pt"
    if add_merge_recipe:
        state.textinfo = "Hashing the merged models"
        hashes = [_sha256(info) for info in models]
        roles = ("primary_model_hash", "secondary_model_hash", "tertiary_model_hash")
        full_recipe = {"type": "webui", **{role: None for role in roles}, **dict(zip(roles, hashes)), **recipe}
        merge_models = {}
        for info, reader, sha in zip(models, readers, hashes):
            parsed = sd_models.decode_metadata(reader.metadata)
            if sha:
                merge_models[sha] = {"name": info.name, "legacy_hash": info.hash,
                                     "sd_merge_recipe": parsed.get("sd_merge_recipe")}
            if isinstance(parsed.get("sd_merge_models"), dict):
                merge_models.update(parsed["sd_merge_models"])
        metadata["sd_merge_recipe"] = json.dumps(full_recipe)
        metadata["sd_merge_models"] = json.dumps(merge_models)
    return {k: v if isinstance(v, str) else json.dumps(v) for k, v in metadata.items()}


def copy_config(output: str, config_source: int, models: list[sd_models.CheckpointInfo | None]) -> None:
    """A1111's "Copy config from": the .yaml beside A (else B, else C), B, C, or none."""
    candidates = {0: models, 1: models[1:2], 2: models[2:3]}.get(config_source, [])
    for info in candidates:
        config = os.path.splitext(info.filename)[0] + ".yaml" if info else None
        if config and os.path.isfile(config):
            shutil.copyfile(config, os.path.splitext(output)[0] + ".yaml")
            return


def _write(filename: str, checkpoint_format: str, entries: list[_Entry], metadata: dict,
           produce: Callable[[_Entry, torch.Tensor], torch.Tensor]) -> None:
    """Write the output; `produce(entry, out)` gives each tensor, computed into `out` or not."""
    with _atomic_output(filename) as file:
        if checkpoint_format == "safetensors":
            writer = SafetensorsWriter(file, [(e.key, e.dtype, e.shape) for e in entries], metadata)
            # one buffer for every output tensor: written before the next is computed, so it can be reused
            buffer = torch.empty(max((_nbytes(e.shape, e.dtype) for e in entries), default=0), dtype=torch.uint8)
            for entry in entries:
                out = buffer[:_nbytes(entry.shape, entry.dtype)].view(entry.dtype).view(entry.shape)
                writer.write_tensor(produce(entry, out))
                state.sampling_step += 1
            writer.finish()
        else:
            state_dict = {}
            for entry in entries:
                state_dict[entry.key] = produce(entry, torch.empty(entry.shape, dtype=entry.dtype))
                state.sampling_step += 1
            torch.save({"state_dict": state_dict}, file)


def _output_filename(name: str, inputs: list[sd_models.CheckpointInfo]) -> str:
    """Where A1111 saves: --ckpt-dir, else models/Stable-diffusion; never over one of the inputs."""
    folder = cmd_opts.ckpt_dir or os.path.join(paths_internal.models_path, "Stable-diffusion")
    os.makedirs(folder, exist_ok=True)
    filename = os.path.join(folder, name)
    if os.path.exists(filename) and any(os.path.samefile(filename, info.filename) for info in inputs):
        raise MergeError(f"The result would replace {name}, one of the models being merged; choose a custom name")
    return filename


def _open_inputs(stack: contextlib.ExitStack, models: list[sd_models.CheckpointInfo | None],
                 vae_file: str | None) -> _Inputs:
    """Open A, B, C (None where unused) and the VAE to bake in; the stack closes them."""

    def opened(path):
        if path is None:
            return None
        reader = open_checkpoint(path)
        stack.callback(reader.close)
        return reader

    a, b, c = (opened(info.filename if info else None) for info in models)
    _check_families([r for r in (a, b, c) if r is not None])
    vae = opened(vae_file)
    vae_keys = {k.removeprefix(sd_models_config.VAE): k for k in vae.keys()} if vae else {}
    return _Inputs(a, b, c, vae, vae_keys)


def run_modelmerger(primary_model_name: str, secondary_model_name: str | None = None,
                    tertiary_model_name: str | None = None, interp_method: str = "Weighted sum",
                    multiplier: float = 0.3, save_as_half: bool = False, custom_name: str = "",
                    checkpoint_format: str = "safetensors", config_source: int = 0, bake_in_vae: str = "None",
                    discard_weights: str = "", save_metadata: bool = True, add_merge_recipe: bool = True,
                    copy_metadata_fields: bool = True, metadata_json: str = "") -> MergeResult:
    """Merge checkpoints as A1111's Checkpoint Merger does and register the result.

    Models are named as the registry knows them (title, name, hash...). `config_source` is the index into
    CONFIG_SOURCES; `bake_in_vae` a name from `sd_vae.vae_dict` or "None". Raises MergeError, with nothing
    written, for anything the user can fix.
    """
    _check_arguments(primary_model_name, secondary_model_name, tertiary_model_name, interp_method, checkpoint_format,
                     config_source, custom_name)
    discard = _compile_discard(discard_weights)
    user_metadata = _user_metadata(metadata_json) if save_metadata else {}
    baking = bake_in_vae not in ("None", "", None)
    vae_file = sd_vae.vae_dict.get(bake_in_vae) if baking else None
    if baking and vae_file is None:
        raise MergeError(f"VAE not found: {bake_in_vae}. Available: None, {', '.join(sorted(sd_vae.vae_dict))}")
    models = [_resolve(primary_model_name, "the primary model (A)"),
              _resolve(secondary_model_name, "the secondary model (B)") if interp_method != "No interpolation" else None,
              _resolve(tertiary_model_name, "the tertiary model (C)") if interp_method == "Add difference" else None]
    used = [info for info in models if info is not None]

    state.begin(job="model-merge")
    try:
        with contextlib.ExitStack() as stack:
            state.textinfo = "Reading checkpoint headers"
            inputs = _open_inputs(stack, models, vae_file)
            entries, partial, kept_from_a = _plan(inputs, save_as_half, discard)
            left_out = sorted({k for r in (inputs.b, inputs.c) if r is not None for k in r.keys() if k not in inputs.a})

            name = custom_name or default_filename(interp_method, *[i.model_name if i else None for i in models],
                                                   multiplier)
            filename = _output_filename(name + (".inpainting" if partial else "") + "." + checkpoint_format, used)
            _check_disk_space(os.path.dirname(filename), sum(_nbytes(e.shape, e.dtype) for e in entries))

            metadata = {}
            if save_metadata and checkpoint_format == "safetensors":
                recipe = {"interp_method": interp_method, "multiplier": multiplier, "save_as_half": save_as_half,
                          "custom_name": custom_name, "config_source": config_source, "bake_in_vae": bake_in_vae,
                          "discard_weights": discard_weights, "is_inpainting": partial, "is_instruct_pix2pix": False}
                readers = [r for r in (inputs.a, inputs.b, inputs.c) if r is not None]
                metadata = _merge_metadata(used, readers, recipe, add_merge_recipe, copy_metadata_fields, user_metadata)

            state.textinfo = "Merging and saving"
            state.sampling_step, state.sampling_steps = 0, len(entries)
            log.info("Merging %s into %s", ", ".join(i.name for i in used), filename)
            scratch = torch.empty(3, MERGE_CHUNK)  # merge_into's float32 working rows, shared by every key
            _write(filename, checkpoint_format, entries, metadata,
                   lambda entry, out: _produce(entry, inputs, interp_method, float(multiplier), out, scratch))
        copy_config(filename, config_source, models)
        return _register(filename, kept_from_a, left_out)
    finally:
        state.end()


def _register(filename: str, kept_from_a: list[str], left_out: list[str]) -> MergeResult:
    state.textinfo = "Adding the checkpoint to the list"
    sd_models.list_models(cmd_opts)
    registry = sd_models.checkpoint_registry
    info = next((i for i in registry.checkpoints_list.values() if i.filename == os.path.abspath(filename)), None)
    if info is None:  # a name the scan skips (such as "x.vae.safetensors") is still the user's merged model
        info = sd_models.CheckpointInfo(filename, os.path.dirname(filename))
        registry.register(info)
    if not cmd_opts.no_hashing:
        info.calculate_shorthash()
    message = f"Checkpoint saved to {filename}"
    if kept_from_a:
        message += f"; {len(kept_from_a)} weights missing from B were copied from A unchanged"
    if left_out:
        message += f"; {len(left_out)} weights of B/C that A lacks were left out"
    log.info(message)
    state.textinfo = "Checkpoint saved"
    return MergeResult(filename, info.title, message, kept_from_a, left_out)
