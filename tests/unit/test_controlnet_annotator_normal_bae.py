"""normal_bae: Bae et al.'s surface-normal net as our own module, loaded from the original scannet.pt layout."""
from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from modules.controlnet import annotator_normal_bae, annotators, preprocessors
from tests.fixtures.controlnets import write_normal_bae

FILE = ("normal_bae", "scannet.pt")


def dirs(tmp_path):
    return preprocessors.annotator_dirs(str(tmp_path / "models"), str(tmp_path))


def picture() -> Image.Image:
    return Image.fromarray(np.random.default_rng(0).integers(0, 256, (40, 56, 3), dtype=np.uint8))


def test_every_weight_comes_from_the_file(tmp_path):
    path = tmp_path / "extensions" / "sd-webui-controlnet" / "annotator" / "downloads" / FILE[0] / FILE[1]
    sd = write_normal_bae(path)
    assert annotators.annotator_file("normal_bae", *FILE, dirs(tmp_path)) == path
    loaded = annotator_normal_bae.load_normal_bae(path).state_dict()
    assert loaded.keys() == {k.removeprefix("module.") for k in sd}
    assert all(torch.equal(loaded[k.removeprefix("module.")], v.to(loaded[k.removeprefix("module.")].dtype))
               for k, v in sd.items())


def test_the_encoder_is_timms_tf_efficientnet():
    timm = pytest.importorskip("timm")
    reference = timm.create_model("tf_efficientnet_b0", pretrained=False, num_classes=0).eval()
    with torch.no_grad():
        for m in reference.modules():
            if isinstance(m, torch.nn.BatchNorm2d):
                m.running_mean.normal_(0, 0.1)
                m.running_var.uniform_(0.5, 1.5)
    sd = {f"encoder.original_model.{k}": v for k, v in reference.state_dict().items()}
    ours = annotator_normal_bae.EfficientNet(sd, "encoder.original_model.")
    ours.load_state_dict({k.removeprefix("encoder.original_model."): v for k, v in sd.items()})
    x = torch.randn(1, 3, 64, 96)
    with torch.no_grad():
        features = [x]  # Bae et al. run the modules in order and read outputs 4, 5, 6, 8 and 11 (head conv, pre-norm)
        for name, module in reference.named_children():
            for part in (module if name == "blocks" else [module]):
                features.append(part(features[-1]))
        expected = [features[i] for i in (3, 4, 5, 7, 10)]  # timm folds the stem's activation into bn1: one fewer
        got = ours.eval()(x)
    assert [tuple(t.shape) for t in got] == [tuple(t.shape) for t in expected]
    assert all(torch.allclose(a, b, atol=1e-5) for a, b in zip(got, expected))


def test_the_map_is_the_unit_normals_as_rgb(tmp_path):
    path = tmp_path / "extensions" / "sd-webui-controlnet" / "annotator" / "downloads" / FILE[0] / FILE[1]
    write_normal_bae(path)
    image = picture()
    result = np.asarray(preprocessors.detect("normal_bae", image, 40, -1, -1, dirs(tmp_path)))
    model = annotator_normal_bae.load_normal_bae(path)
    padded = np.pad(np.asarray(image), ((0, 24), (0, 8), (0, 0)), mode="edge")
    x = (torch.from_numpy(padded / 255.0).float().permute(2, 0, 1)[None] - torch.tensor([0.485, 0.456, 0.406])[:, None, None]) \
        / torch.tensor([0.229, 0.224, 0.225])[:, None, None]
    with torch.no_grad():
        normal = model(x)[0, :3, :40, :56].permute(1, 2, 0)
    expected = ((normal + 1) * 0.5 * 255.0).clamp(0, 255).numpy().astype(np.uint8)
    assert result.shape == (40, 56, 3) and len(np.unique(expected)) > 32
    assert np.abs(result.astype(int) - expected.astype(int)).max() <= 1
    lengths = np.linalg.norm(result / 127.5 - 1.0, axis=2)
    assert np.abs(lengths - 1).max() < 0.02  # unit vectors, up to 8-bit rounding
    assert np.array_equal(result, np.asarray(preprocessors.detect("normal_bae", image, 40, -1, -1, dirs(tmp_path))))


def test_a_constant_prediction_gives_the_flat_normal_colour(tmp_path):
    path = tmp_path / "models" / "ControlNetAnnotators" / FILE[0] / FILE[1]
    sd = write_normal_bae(path)
    sd["module.decoder.out_conv_res1.6.weight"].zero_()
    sd["module.decoder.out_conv_res1.6.bias"].copy_(torch.tensor([0.0, 0.0, 5.0, 0.0]))  # facing the camera
    torch.save({"model": sd}, path)
    result = np.asarray(preprocessors.detect("normal_bae", picture(), 40, -1, -1, dirs(tmp_path)))
    assert result.shape == (40, 56, 3) and (result == [127, 127, 255]).all()
