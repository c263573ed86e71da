"""The merger's memory-mapped safetensors reader: the same tensors as safetensors' own reader, one tensor resident."""
from __future__ import annotations

import gc

import pytest
import safetensors
import torch
from safetensors.torch import save_file

from modules.extras_merge import CheckpointReader, SafetensorsWriter

MIB = 2**20


def _random(*shape, seed, dtype=torch.float32):
    return torch.randn(*shape, generator=torch.Generator().manual_seed(seed)).to(dtype)


def _tensors() -> dict[str, torch.Tensor]:
    """Every dtype a checkpoint may hold; a 3-byte int8 first puts every later tensor at an unaligned file offset."""
    return {
        "i8": torch.tensor([-3, 0, 5], dtype=torch.int8),
        "f32": _random(3, 5, seed=1),
        "f16": _random(7, seed=2, dtype=torch.float16),
        "bf16": _random(2, 3, seed=3, dtype=torch.bfloat16),
        "f64": _random(2, 2, seed=4, dtype=torch.float64),
        "i64": torch.arange(77, dtype=torch.int64)[None],
        "i32": torch.tensor([7, -1 << 30], dtype=torch.int32),
        "u8": torch.tensor([0, 255], dtype=torch.uint8),
        "bool": torch.tensor([True, False, True]),
        "f8": _random(4, seed=5).to(torch.float8_e4m3fn),
        "scalar": torch.tensor(2.5),
        "empty": torch.empty(0, 4),
    }


def _bytes(tensor: torch.Tensor) -> torch.Tensor:
    return tensor.reshape(-1).view(torch.uint8)


def _write_ours(path, tensors):
    with open(path, "wb") as file:
        writer = SafetensorsWriter(file, [(k, t.dtype, tuple(t.shape)) for k, t in tensors.items()], {})
        for tensor in tensors.values():
            writer.write_tensor(tensor)
        writer.finish()


@pytest.mark.parametrize("writer", ["safetensors", "ours-unaligned"])
def test_every_tensor_equals_safetensors_own_reading(tmp_path, writer):
    tensors, path = _tensors(), tmp_path / "x.safetensors"
    if writer == "safetensors":
        save_file(tensors, str(path))
    else:
        _write_ours(path, tensors)
    reader = CheckpointReader(str(path))
    first = reader.get_tensor("f32")
    with safetensors.safe_open(str(path), framework="pt") as f:
        for key in [*tensors, "f32", "i8"]:  # read again after other keys dropped their pages: the same bytes
            expected, got = f.get_tensor(key), reader.get_tensor(key)
            assert got.dtype == expected.dtype == tensors[key].dtype, key
            assert got.shape == expected.shape == tensors[key].shape, key
            assert torch.equal(_bytes(got), _bytes(expected)), key
        assert torch.equal(first, f.get_tensor("f32"))  # a tensor kept while others were read stays right
    reader.close()


def _resident_bytes(path) -> int:
    """Bytes of `path` mapped and resident in this process, from /proc/self/smaps."""
    total, inside = 0, False
    with open("/proc/self/smaps") as smaps:
        for line in smaps:
            fields = line.split()
            if "-" in fields[0] and len(fields) >= 5:  # a mapping's header line: range perms offset dev inode [path]
                inside = len(fields) >= 6 and fields[5] == str(path)
            elif inside and fields[0] == "Rss:":
                total += int(fields[1]) * 1024
    return total


def test_only_the_tensor_in_use_stays_resident(tmp_path):
    path = tmp_path / "big.safetensors"
    save_file({"one": _random(4 * MIB, seed=1), "two": _random(4 * MIB, seed=2)}, str(path))  # 16 MiB each
    reader = CheckpointReader(str(path))
    one = reader.get_tensor("one")
    assert float(one.abs().sum()) > 0  # touches every page of "one"
    assert _resident_bytes(path) >= 16 * MIB
    two = reader.get_tensor("two")
    assert _resident_bytes(path) < 4 * MIB, "the previous tensor's pages were not given back"
    assert float(two.abs().sum()) > 0
    assert 16 * MIB <= _resident_bytes(path) < 20 * MIB
    reader.close()


def test_close_keeps_live_tensors_valid_and_unmaps_with_the_last(tmp_path):
    path = tmp_path / "x.safetensors"
    expected = _random(1000, seed=3)
    save_file({"w": expected}, str(path))
    reader = CheckpointReader(str(path))
    tensor = reader.get_tensor("w")
    reader.close()
    gc.collect()
    assert torch.equal(tensor, expected)
    assert _resident_bytes(path) > 0
    del tensor
    gc.collect()
    with open("/proc/self/maps") as maps:
        assert str(path) not in maps.read()
