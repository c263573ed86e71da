"""The model-based preprocessors built in (softedge_hed, lineart_realistic/coarse): annotator files of the original
key layout found in either folder, fetched once when missing, and a clear message when they cannot be had."""
from __future__ import annotations

import os
from pathlib import Path

import httpx
import numpy as np
import pytest
import torch
from PIL import Image

from modules import devices, modelloader, sd_models
from modules.controlnet import annotators, preprocessors
from tests.fixtures.controlnets import write_annotator, write_depth_anything


def picture() -> Image.Image:
    return Image.fromarray(np.random.default_rng(0).integers(0, 256, (40, 56, 3), dtype=np.uint8))


def dirs(tmp_path):
    return preprocessors.annotator_dirs(str(tmp_path / "models"), str(tmp_path))


def constant_output(module: torch.nn.Module, last: list[str], bias: float) -> dict:
    """The module's weights with the given output layers zeroed and biased: its map is then known exactly."""
    sd = {k: v.clone() for k, v in module.state_dict().items()}
    for name in last:
        sd[f"{name}.weight"].zero_()
        sd[f"{name}.bias"].fill_(bias)
    return sd


def test_hed_from_the_extensions_folder_gives_the_sigmoid_of_its_edge_maps(tmp_path):
    path = tmp_path / "extensions" / "sd-webui-controlnet" / "annotator" / "downloads" / "hed" / "ControlNetHED.pth"
    made = write_annotator(path, "hed")
    torch.save(constant_output(made, [f"block{i}.projection" for i in range(1, 6)], 0.0), path)
    result = np.asarray(preprocessors.detect("softedge_hed", picture(), 40, -1, -1, dirs(tmp_path)))
    assert result.shape == (40, 56, 3) and (result == 127).all()  # sigmoid(0) * 255
    write_annotator(path, "hed", seed=1)
    varied = np.asarray(preprocessors.detect("hed", picture(), 40, -1, -1, dirs(tmp_path)))
    assert varied.shape == (40, 56, 3) and len(np.unique(varied)) > 1
    assert np.array_equal(varied[..., 0], varied[..., 2])


@pytest.mark.parametrize("name, file", [("lineart_realistic", "sk_model.pth"), ("lineart_coarse", "sk_model2.pth")])
def test_lineart_is_inverted_white_lines_on_black(tmp_path, name, file):
    path = tmp_path / "models" / "ControlNetAnnotators" / "lineart" / file
    made = write_annotator(path, "lineart")
    for bias, expected in ((30.0, 0), (-30.0, 255)):  # the generator's white paper -> black, its ink -> white
        torch.save(constant_output(made, ["model4.1"], bias), path)
        result = np.asarray(preprocessors.detect(name, picture(), 32, -1, -1, dirs(tmp_path)))
        assert result.shape == (32, 45, 3) and (result == expected).all()


def test_a_missing_file_is_downloaded_once_into_models(tmp_path, monkeypatch):
    source = tmp_path / "served.pth"
    write_annotator(source, "lineart")
    calls = []

    def fake_download(url, path, timeout=None):
        calls.append(url)
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        Path(path).write_bytes(source.read_bytes())
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.setattr(modelloader, "download", fake_download)
    for _ in range(2):
        preprocessors.detect("lineart_realistic", picture(), 32, -1, -1, dirs(tmp_path))
    assert calls == ["https://huggingface.co/lllyasviel/Annotators/resolve/main/sk_model.pth"]
    assert (tmp_path / "models" / "ControlNetAnnotators" / "lineart" / "sk_model.pth").is_file()


@pytest.mark.parametrize("offline", [True, False])
def test_when_the_file_cannot_be_had_the_message_names_it_and_where_it_goes(tmp_path, monkeypatch, offline):
    def unreachable(url, path, timeout=None):
        raise httpx.ConnectError("no network")
    if offline:
        monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    else:
        monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.setattr(modelloader, "download", unreachable)
    with pytest.raises(preprocessors.AnnotatorMissingError) as error:
        preprocessors.detect("softedge_hed", picture(), 32, -1, -1, dirs(tmp_path))
    message = str(error.value)
    assert "ControlNetHED.pth" in message and str(tmp_path / "models" / "ControlNetAnnotators" / "hed") in message
    assert "annotator/downloads/hed" in message
    assert ("HF_HUB_OFFLINE" if offline else "no network") in message
    assert not (tmp_path / "models" / "ControlNetAnnotators" / "hed" / "ControlNetHED.pth").exists()


def test_depth_anything_v2_from_the_original_layout_matches_transformers_model(tmp_path):
    path = tmp_path / "models" / "ControlNetAnnotators" / "depth_anything_v2" / "depth_anything_v2_vitl.pth"
    made = write_depth_anything(path)
    image = picture()
    result = np.asarray(preprocessors.detect("depth_anything_v2", image, 40, -1, -1, dirs(tmp_path)))
    # the same steps by hand over the model the file was made from: 518 on the short side in multiples of 14
    x = torch.from_numpy(np.asarray(image, dtype=np.float32) / 255.0).permute(2, 0, 1)[None]
    x = torch.nn.functional.interpolate(x, size=(518, 728), mode="bicubic", align_corners=False)
    x = (x - torch.tensor([0.485, 0.456, 0.406])[:, None, None]) / torch.tensor([0.229, 0.224, 0.225])[:, None, None]
    with torch.no_grad():
        depth = made(pixel_values=x).predicted_depth[:, None]
    depth = torch.nn.functional.interpolate(depth, size=(40, 56), mode="bilinear", align_corners=False)[0, 0]
    expected = ((depth - depth.min()) / (depth.max() - depth.min()) * 255.0).clamp(0, 255).numpy().astype(np.uint8)
    assert result.shape == (40, 56, 3) and len(np.unique(expected)) > 8
    assert np.abs(result[..., 0].astype(int) - expected.astype(int)).max() <= 1


def test_depth_anything_v2_is_fetched_from_its_authors_repository(tmp_path, monkeypatch):
    calls = []

    def unreachable(url, path, timeout=None):
        calls.append(url)
        raise httpx.ConnectError("no network")
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.setattr(modelloader, "download", unreachable)
    with pytest.raises(preprocessors.AnnotatorMissingError, match="depth_anything_v2_vitl.pth"):
        preprocessors.detect("depth_anything_v2", picture(), 32, -1, -1, dirs(tmp_path))
    assert calls == ["https://huggingface.co/depth-anything/Depth-Anything-V2-Large/resolve/main/depth_anything_v2_vitl.pth"]


@pytest.mark.parametrize("name, folder, file", [("depth_midas", "midas", "dpt_hybrid-midas-501f0c75.pt"),
                                                ("normal_bae", "normal_bae", "scannet.pt")])
def test_offline_the_midas_and_normal_files_are_named_with_where_they_go(tmp_path, monkeypatch, name, folder, file):
    calls = []
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr(modelloader, "download", lambda url, path, timeout=None: calls.append(url))
    with pytest.raises(preprocessors.AnnotatorMissingError) as error:
        preprocessors.detect(name, picture(), 32, -1, -1, dirs(tmp_path))
    message = str(error.value)
    assert file in message and str(tmp_path / "models" / "ControlNetAnnotators" / folder) in message
    assert f"annotator/downloads/{folder}" in message and "HF_HUB_OFFLINE" in message and calls == []


def test_an_annotator_is_built_once_per_file_on_the_managers_device_and_again_when_the_file_changes(tmp_path,
                                                                                                   monkeypatch):
    manager = sd_models.ModelManager(devices.DevicePlan(torch.device("cpu"), torch.float32, torch.float32),
                                     tmp_path / "cache")
    monkeypatch.setattr(sd_models, "model_manager", manager)
    reads = []
    read = annotators.read_state_dict
    monkeypatch.setattr(annotators, "read_state_dict", lambda path, *a, **k: reads.append(path) or read(path, *a, **k))
    path = tmp_path / "models" / "ControlNetAnnotators" / "hed" / "ControlNetHED.pth"
    write_annotator(path, "hed")
    first = [np.asarray(preprocessors.detect("softedge_hed", picture(), 40, -1, -1, dirs(tmp_path))) for _ in range(2)]
    assert reads == [path] and np.array_equal(*first)
    (key, model), = manager.auxiliary.items()
    assert key[:2] == ("annotator", str(path)) and "cpu" in key and torch.float32 in key
    write_annotator(path, "hed", seed=1)
    stat = path.stat()
    os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns + 1_000_000_000))  # a changed file: another mtime
    changed = np.asarray(preprocessors.detect("softedge_hed", picture(), 40, -1, -1, dirs(tmp_path)))
    assert reads == [path, path] and not np.array_equal(changed, first[0])


def test_annotators_do_not_push_control_models_out_of_the_managers_cache(tmp_path, monkeypatch):
    manager = sd_models.ModelManager(devices.DevicePlan(torch.device("cpu"), torch.float32, torch.float32),
                                     tmp_path / "cache")
    manager.auxiliary_limit = 1
    monkeypatch.setattr(sd_models, "model_manager", manager)
    control = manager.auxiliary_model(("controlnet", "a"), object)
    for file in ("sk_model.pth", "sk_model2.pth"):
        write_annotator(tmp_path / "models" / "ControlNetAnnotators" / "lineart" / file, "lineart")
    preprocessors.detect("lineart_realistic", picture(), 32, -1, -1, dirs(tmp_path))
    preprocessors.detect("lineart_coarse", picture(), 32, -1, -1, dirs(tmp_path))
    kinds = [key[0] for key in manager.auxiliary]
    assert kinds == ["controlnet", "annotator"] and manager.auxiliary[("controlnet", "a")] is control
    assert "sk_model2.pth" in list(manager.auxiliary)[1][1]  # the older annotator made room for the newer
