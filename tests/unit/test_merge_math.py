"""Checkpoint merge math, default names and the streaming safetensors writer, on tiny tensors."""
from __future__ import annotations

import json

import pytest
import safetensors
import torch

from modules.extras_merge import (
    MergeError,
    SafetensorsWriter,
    add_difference,
    default_filename,
    get_difference,
    is_partial_merge,
    merge_into,
    merge_tensor,
    weighted_sum,
)

CONV_IN = "model.diffusion_model.input_blocks.0.0.weight"


def _random(*shape, seed=0, dtype=torch.float32):
    return torch.randn(*shape, generator=torch.Generator().manual_seed(seed)).to(dtype)


def test_weighted_sum_exact_values():
    a = torch.tensor([1.0, 2.0, -4.0, 0.5])
    b = torch.tensor([3.0, 6.0, 0.0, 0.5])
    assert torch.equal(weighted_sum(a, b, 0.25), torch.tensor([1.5, 3.0, -3.0, 0.5]))
    assert torch.equal(weighted_sum(a, b, 0.75), torch.tensor([2.5, 5.0, -1.0, 0.5]))


def test_weighted_sum_is_the_a1111_formula():
    a, b = _random(64, seed=1), _random(64, seed=2)
    for m in (0.1, 0.3, 0.5, 0.8):
        expected = (1 - m) * a.double() + m * b.double()
        assert torch.allclose(weighted_sum(a, b, m).double(), expected, rtol=0, atol=1e-6)


def test_weighted_sum_ends_and_self_merge_are_exact():
    a, b = _random(257, seed=3), _random(257, seed=4)
    assert torch.equal(weighted_sum(a, b, 0.0), a)
    assert torch.equal(weighted_sum(a, b, 1.0), b)
    for m in (0.05, 0.37, 0.5, 0.63, 0.99):
        assert torch.equal(weighted_sum(a, a, m), a)


def test_add_difference_exact_values():
    a, b, c = torch.tensor([1.0, 2.0]), torch.tensor([5.0, 4.0]), torch.tensor([1.0, 8.0])
    assert torch.equal(get_difference(b, c), torch.tensor([4.0, -4.0]))
    assert torch.equal(add_difference(a, get_difference(b, c), 0.5), torch.tensor([3.0, 0.0]))
    assert torch.equal(add_difference(a, get_difference(b, b), 0.7), a)


def test_merge_tensor_add_difference_without_c_keeps_a():
    a, b = _random(3, 4, seed=5), _random(3, 4, seed=6)
    assert torch.equal(merge_tensor("k", a, b, None, "Add difference", 0.9), a)
    assert torch.equal(merge_tensor("k", a, b, b, "Add difference", 0.9), a)


def test_merge_tensor_computes_half_inputs_in_float32():
    a, b = _random(8, seed=7, dtype=torch.float16), _random(8, seed=8, dtype=torch.float16)
    merged = merge_tensor("k", a, b, None, "Weighted sum", 0.3)
    assert merged.dtype == torch.float32
    assert torch.equal(merged, torch.lerp(a.float(), b.float(), 0.3))


@pytest.mark.parametrize("method", ["Weighted sum", "Add difference"])
def test_inpainting_a_with_normal_b_merges_first_four_input_channels(method):
    a, b, c = _random(6, 9, 3, 3, seed=9), _random(6, 4, 3, 3, seed=10), _random(6, 4, 3, 3, seed=11)
    merged = merge_tensor(CONV_IN, a, b, c, method, 0.4)
    expected_head = torch.lerp(a[:, :4], b, 0.4) if method == "Weighted sum" else a[:, :4] + (b - c) * 0.4
    assert merged.shape == a.shape
    assert torch.equal(merged[:, :4], expected_head)
    assert torch.equal(merged[:, 4:], a[:, 4:])
    assert not torch.equal(merged[:, :4], a[:, :4])


def test_normal_a_with_inpainting_b_is_refused():
    with pytest.raises(MergeError, match="A must be the inpainting model"):
        merge_tensor(CONV_IN, _random(6, 4, 3, 3), _random(6, 9, 3, 3), None, "Weighted sum", 0.5)


@pytest.mark.parametrize("a_shape,b_shape", [((6, 4), (6, 5)), ((6, 9, 3, 3), (5, 4, 3, 3)), ((4,), (9,))])
def test_other_shape_mismatches_are_refused(a_shape, b_shape):
    with pytest.raises(MergeError, match=r"Bad dimensions for merged layer k: A=\[.*\], B=\[.*\]"):
        is_partial_merge("k", a_shape, b_shape)


def test_is_partial_merge():
    assert is_partial_merge("k", (6, 9, 3, 3), (6, 4, 3, 3)) is True
    assert is_partial_merge("k", (6, 4, 3, 3), (6, 4, 3, 3)) is False


@pytest.mark.parametrize("method,with_c", [("Weighted sum", False), ("Add difference", True),
                                           ("Add difference", False)])
@pytest.mark.parametrize("dtypes", [(torch.float16,) * 3, (torch.bfloat16,) * 3, (torch.float32,) * 3,
                                    (torch.float64,) * 3, (torch.float16, torch.float32, torch.bfloat16)])
@pytest.mark.parametrize("out_dtype", [torch.float16, torch.float32, torch.float64])
def test_merge_into_is_merge_tensor_bit_for_bit(method, with_c, dtypes, out_dtype):
    """Chunk by chunk (11 chunks of 100 over 1073 elements, the last one short) into `out`, as merge_tensor + cast."""
    a, b, c = (_random(37, 29, seed=20 + i, dtype=dtype) for i, dtype in enumerate(dtypes))
    c = c if with_c else None
    originals = [t.clone() for t in (a, b, c) if t is not None]
    out = torch.full((37, 29), float("nan"), dtype=out_dtype)
    scratch = torch.empty(3, 100)

    assert merge_into(out, a, b, c, method, 0.3, scratch) is out
    expected = merge_tensor("k", a, b, c, method, 0.3).to(out_dtype)
    assert torch.equal(out, expected)
    assert all(torch.equal(t, o) for t, o in zip((a, b, c), originals))  # inputs untouched: they may be file views
    if method == "Weighted sum" or with_c:
        assert not torch.equal(expected, a.float().to(out_dtype))


def test_merge_into_reads_strided_inputs_in_logical_order():
    a, b, c = _random(6, 8, seed=30), _random(8, 6, seed=31).t(), _random(6, 8, seed=32)
    out = torch.empty(6, 8, dtype=torch.float16)
    merge_into(out, a, b, c, "Add difference", 0.7, torch.empty(3, 5))
    assert torch.equal(out, (a + (b - c) * 0.7).half())


def test_default_filenames_as_a1111():
    assert default_filename("Weighted sum", "a", "b", None, 0.3) == "0.7(a) + 0.3(b)"
    assert default_filename("Weighted sum", "x", "y", None, 1 / 3) == "0.67(x) + 0.33(y)"
    assert default_filename("Add difference", "a", "b", "c", 0.25) == "a + 0.25(b - c)"
    assert default_filename("No interpolation", "a", None, None, 0.3) == "a"


def _write(path, tensors, metadata):
    entries = [(k, t.dtype, tuple(t.shape)) for k, t in tensors.items()]
    with open(path, "wb") as file:
        writer = SafetensorsWriter(file, entries, metadata)
        for tensor in tensors.values():
            writer.write_tensor(tensor)
        writer.finish()
    return writer


def test_writer_round_trips_every_dtype_through_safe_open(tmp_path):
    tensors = {
        "f32": _random(3, 5, seed=1),
        "f16": _random(7, seed=2, dtype=torch.float16),
        "bf16": _random(2, 3, seed=3, dtype=torch.bfloat16),
        "f64": _random(2, seed=4, dtype=torch.float64),
        "i64": torch.arange(77, dtype=torch.int64)[None],
        "i8": torch.tensor([-3, 0, 5], dtype=torch.int8),
        "bool": torch.tensor([True, False, True]),
        "scalar": torch.tensor(2.5),
        "empty": torch.empty(0),
        "strided": _random(4, 6, seed=5).t(),  # not contiguous: written in logical order
    }
    path = tmp_path / "out.safetensors"
    writer = _write(path, tensors, {"format": "pt", "note": "ü"})
    with safetensors.safe_open(str(path), framework="pt") as f:
        assert f.metadata() == {"format": "pt", "note": "ü"}
        assert sorted(f.keys()) == sorted(tensors)
        for key, tensor in tensors.items():
            got = f.get_tensor(key)
            assert got.dtype == tensor.dtype and got.shape == tensor.shape
            assert torch.equal(got, tensor), key
    raw = path.read_bytes()
    header_len = int.from_bytes(raw[:8], "little")
    assert header_len % 8 == 0 and writer.header_size == 8 + header_len
    assert len(raw) == writer.header_size + writer.data_size
    header = json.loads(raw[8:8 + header_len])
    assert header["f32"] == {"dtype": "F32", "shape": [3, 5], "data_offsets": [0, 60]}


def test_writer_without_metadata_writes_no_metadata(tmp_path):
    path = tmp_path / "plain.safetensors"
    _write(path, {"w": torch.ones(2)}, {})
    with safetensors.safe_open(str(path), framework="pt") as f:
        assert f.metadata() is None


def test_writer_refuses_a_tensor_other_than_planned(tmp_path):
    with open(tmp_path / "x.safetensors", "wb") as file:
        writer = SafetensorsWriter(file, [("w", torch.float16, (2, 2))], {})
        with pytest.raises(RuntimeError, match=r"w: planned torch.float16 \[2, 2\], got torch.float32 \[2, 2\]"):
            writer.write_tensor(torch.ones(2, 2))
        with pytest.raises(RuntimeError, match="0 of 1 tensors written"):
            writer.finish()


def test_writer_refuses_dtypes_safetensors_cannot_store(tmp_path):
    with open(tmp_path / "x.safetensors", "wb") as file, pytest.raises(MergeError, match="cannot store torch.complex64"):
        SafetensorsWriter(file, [("w", torch.complex64, (2,))], {})
