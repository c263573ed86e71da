"""Model hashes (full sha256, kohya addnet, legacy) and the cache.json that keeps them (reference §4)."""
import builtins
import hashlib
import json
import os
import threading

import numpy as np
import pytest
from safetensors.numpy import save_file

from modules import cache as cache_module
from modules.cache import CacheFile, default_cache
from modules.hashes import addnet_hash_safetensors, calculate_sha256, legacy_model_hash, sha256, sha256_from_cache


def _bytes(size):
    return bytes((i * 31 + i // 251) % 256 for i in range(size))


@pytest.fixture
def store(tmp_path):
    return CacheFile(str(tmp_path / "data" / "cache.json"), str(tmp_path / "data" / "tmp" / "cache.json"))


@pytest.fixture
def model(tmp_path):
    path = tmp_path / "model.safetensors"
    path.write_bytes(_bytes(3 * 1024 * 1024 + 17))
    return str(path)


@pytest.fixture
def opens(monkeypatch):
    """Counts how often each path is opened, to prove a cache hit does not read the file."""
    counts = {}
    real_open = builtins.open

    def counting_open(file, *args, **kwargs):
        counts[str(file)] = counts.get(str(file), 0) + 1
        return real_open(file, *args, **kwargs)

    monkeypatch.setattr(builtins, "open", counting_open)
    return counts


def test_calculate_sha256_known_answer(tmp_path):
    path = tmp_path / "abc.bin"
    path.write_bytes(b"abc")
    assert calculate_sha256(str(path)) == "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"


def test_calculate_sha256_of_a_multi_block_file(model):
    with open(model, "rb") as file:
        assert calculate_sha256(model) == hashlib.sha256(file.read()).hexdigest()


def test_addnet_hash_is_sha256_of_the_tensor_data(tmp_path):
    path = str(tmp_path / "lora.safetensors")
    weights = np.arange(12, dtype=np.float32).reshape(3, 4)
    save_file({"lora_up.weight": weights}, path, metadata={"ss_network_dim": "4"})
    with open(path, "rb") as file:
        value = addnet_hash_safetensors(file)
    assert value == hashlib.sha256(weights.tobytes()).hexdigest()
    assert value != calculate_sha256(path)


def test_legacy_hash_reads_64k_at_1mib(tmp_path):
    data = _bytes(0x100000 + 0x10000 + 500)
    path = tmp_path / "old.ckpt"
    path.write_bytes(data)
    expected = hashlib.sha256(data[0x100000:0x110000]).hexdigest()[:8]
    assert legacy_model_hash(str(path)) == expected
    assert expected != hashlib.sha256(data).hexdigest()[:8]


def test_legacy_hash_of_missing_and_short_files(tmp_path):
    assert legacy_model_hash(str(tmp_path / "absent.ckpt")) == "NOFILE"
    short = tmp_path / "short.ckpt"
    short.write_bytes(b"x" * 100)
    assert legacy_model_hash(str(short)) == "e3b0c442"  # nothing at 1 MiB: sha256 of no bytes


def test_sha256_is_cached_in_a1111_shape(store, model, opens):
    expected = calculate_sha256(model)
    assert sha256(model, "checkpoint/model", cache_file=store) == expected
    assert opens[model] == 2

    assert sha256(model, "checkpoint/model", cache_file=store) == expected
    assert opens[model] == 2  # served from the cache, the file was not read again

    with open(store.filename, encoding="utf8") as file:
        on_disk = json.load(file)
    assert on_disk == {"hashes": {"checkpoint/model": {"mtime": os.path.getmtime(model), "sha256": expected}}}


def test_cache_file_is_reused_by_a_new_process(store, model, opens):
    expected = sha256(model, "checkpoint/model", cache_file=store)
    reopened = CacheFile(store.filename, store.aside_filename)
    before = opens[model]
    assert sha256_from_cache(model, "checkpoint/model", cache_file=reopened) == expected
    assert sha256(model, "checkpoint/model", cache_file=reopened) == expected
    assert opens[model] == before


def test_newer_mtime_invalidates_older_does_not(store, model):
    first = sha256(model, "checkpoint/model", cache_file=store)
    stored_mtime = os.path.getmtime(model)

    os.utime(model, (stored_mtime - 100, stored_mtime - 100))
    assert sha256_from_cache(model, "checkpoint/model", cache_file=store) == first

    with open(model, "ab") as file:
        file.write(b"more")
    os.utime(model, (stored_mtime + 100, stored_mtime + 100))
    assert sha256_from_cache(model, "checkpoint/model", cache_file=store) is None
    second = sha256(model, "checkpoint/model", cache_file=store)
    with open(model, "rb") as file:
        assert second == hashlib.sha256(file.read()).hexdigest() != first
    assert store.subsection("hashes")["checkpoint/model"]["mtime"] == stored_mtime + 100


def test_addnet_hashes_have_their_own_subsection(store, tmp_path):
    path = str(tmp_path / "lora.safetensors")
    weights = np.ones((2, 2), dtype=np.float32)
    save_file({"w": weights}, path)
    assert sha256(path, "lora/lora", use_addnet_hash=True, cache_file=store) == hashlib.sha256(weights.tobytes()).hexdigest()
    assert sha256_from_cache(path, "lora/lora", cache_file=store) is None
    assert set(store.subsection("hashes-addnet")) == {"lora/lora"}


def test_missing_file_has_no_hash(store, tmp_path):
    assert sha256(str(tmp_path / "absent.safetensors"), "checkpoint/absent", cache_file=store) is None
    assert not os.path.exists(store.filename)


def test_corrupt_cache_is_moved_aside_and_replaced(store, model):
    os.makedirs(os.path.dirname(store.filename))
    with open(store.filename, "w", encoding="utf8") as file:
        file.write('{"hashes": {')
    assert sha256_from_cache(model, "checkpoint/model", cache_file=store) is None
    with open(store.aside_filename, encoding="utf8") as file:
        assert file.read() == '{"hashes": {'
    value = sha256(model, "checkpoint/model", cache_file=store)
    with open(store.filename, encoding="utf8") as file:
        assert json.load(file)["hashes"]["checkpoint/model"]["sha256"] == value


def test_cache_that_is_not_an_object_counts_as_corrupt(store):
    os.makedirs(os.path.dirname(store.filename))
    with open(store.filename, "w", encoding="utf8") as file:
        file.write("[1, 2]")
    assert store.subsection("hashes") == {}
    assert os.path.exists(store.aside_filename)


def test_writes_are_atomic_and_leave_no_temp_files(store, model):
    sha256(model, "checkpoint/model", cache_file=store)
    assert os.listdir(os.path.dirname(store.filename)) == ["cache.json"]


def test_concurrent_stores_all_reach_the_file(store):
    def put(index):
        store.store("hashes", f"checkpoint/m{index}", {"mtime": 1.0, "sha256": f"{index:064x}"})

    threads = [threading.Thread(target=put, args=(index,)) for index in range(16)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    with open(store.filename, encoding="utf8") as file:
        assert len(json.load(file)["hashes"]) == 16


def test_cached_data_for_file_recomputes_only_after_a_change(store, model):
    calls = []

    def compute():
        calls.append(1)
        return {"ss_network_dim": len(calls)}

    assert store.cached_data_for_file("safetensors-metadata", "lora/model", model, compute) == {"ss_network_dim": 1}
    assert store.cached_data_for_file("safetensors-metadata", "lora/model", model, compute) == {"ss_network_dim": 1}
    mtime = os.path.getmtime(model) + 50
    os.utime(model, (mtime, mtime))
    assert store.cached_data_for_file("safetensors-metadata", "lora/model", model, compute) == {"ss_network_dim": 2}


def test_default_cache_location(tmp_path, monkeypatch):
    monkeypatch.delenv(cache_module.CACHE_FILE_ENV, raising=False)
    data_dir = str(tmp_path / "data")
    in_data_dir = default_cache(data_dir)
    assert in_data_dir.filename == os.path.join(data_dir, "cache.json")
    assert in_data_dir.aside_filename == os.path.join(data_dir, "tmp", "cache.json")
    assert default_cache(data_dir) is in_data_dir

    custom = str(tmp_path / "elsewhere" / "my-cache.json")
    monkeypatch.setenv(cache_module.CACHE_FILE_ENV, custom)
    assert default_cache(data_dir).filename == custom
