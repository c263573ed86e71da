"""ControlNet files: found in their folders, loaded from every layout through one path, wrong family refused."""
from __future__ import annotations

import pytest
import torch
from safetensors.torch import save_file

from modules import processing
from modules.controlnet import models
from modules.shared_cmd_options import cmd_opts
from tests.fixtures.controlnets import write_controlnet
from tests.integration.engine_helpers import start_engine


@pytest.fixture()
def engine(tiny_models_dir, tmp_path):
    return start_engine(tiny_models_dir, tmp_path)


def model(name: str):
    return processing.manager_for(processing.StableDiffusionProcessingTxt2Img()).get(processing.resolve_checkpoint(name))


def same_weights(a: torch.nn.Module, b: torch.nn.Module) -> bool:
    sa, sb = a.state_dict(), b.state_dict()
    return set(sa) == set(sb) and all(torch.equal(sa[k].float(), sb[k].float()) for k in sa)


@pytest.mark.parametrize("family, checkpoint", [("v1", "tiny_sd1"), ("xl_base", "tiny_sdxl")])
def test_original_and_diffusers_layouts_load_the_same_weights(engine, tmp_path, family, checkpoint):
    made = write_controlnet(tmp_path / "cn.safetensors", family)
    save_file({k: v.contiguous() for k, v in made.state_dict().items()}, str(tmp_path / "cn_diffusers.safetensors"))
    target = model(checkpoint)
    assert same_weights(models.load(tmp_path / "cn.safetensors", target), made)
    assert same_weights(models.load(tmp_path / "cn_diffusers.safetensors", target), made)


def test_fp16_pruned_pth_loads_in_the_model_dtype(engine, tmp_path):
    made = write_controlnet(tmp_path / "control_sd15_fp16.pth", "v1", half=True)
    loaded = models.load(tmp_path / "control_sd15_fp16.pth", model("tiny_sd1"))
    assert next(loaded.parameters()).dtype == torch.float32
    assert same_weights(loaded, made.half())


def test_wrong_family_is_refused_naming_both(engine, tmp_path):
    write_controlnet(tmp_path / "control_sd15_canny.safetensors", "v1")
    with pytest.raises(models.ControlNetFamilyError, match=r"control_sd15_canny is for SD1 .* tiny_sdxl .* is SDXL"):
        models.load(tmp_path / "control_sd15_canny.safetensors", model("tiny_sdxl"))


def test_models_are_found_in_all_folders(tmp_path, monkeypatch):
    write_controlnet(tmp_path / "models" / "ControlNet" / "sub" / "a_canny.safetensors")
    write_controlnet(tmp_path / "extra" / "b_depth.pth")
    write_controlnet(tmp_path / "extensions" / "sd-webui-controlnet" / "models" / "c_tile.safetensors")
    (tmp_path / "models" / "ControlNet" / "notes.txt").write_text("not a model")
    monkeypatch.setattr(cmd_opts, "controlnet_dir", str(tmp_path / "extra"), raising=False)
    dirs = models.model_dirs(cmd_opts, str(tmp_path / "models"), str(tmp_path))
    found = models.list_models(dirs)
    assert [m.name for m in found] == ["a_canny", "b_depth", "c_tile"]
    assert models.find_model(f"b_depth [{'0' * 8}]", dirs).path == tmp_path / "extra" / "b_depth.pth"
    assert len(found[0].shorthash) == 8
    with pytest.raises(FileNotFoundError, match="nope"):
        models.find_model("nope", dirs)
