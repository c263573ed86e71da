"""Shared fixtures: tiny original-layout checkpoints built once per session, and the `cuda` marker."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

# Tests never download: every download path (SD 1.5, face detector, preview decoders) answers "offline" unless a test
# unsets this to exercise its online branch against a local or unreachable endpoint.
os.environ["HF_HUB_OFFLINE"] = "1"
# One compute thread (here and in the apps the browser tests start): the tiny models' ops are too small to gain from
# a second one, and on a 2-core machine shared with the app server and Chromium, torch's threads waiting on each
# other made a generation many times slower. Set before torch is imported; a caller's own value wins.
os.environ.setdefault("OMP_NUM_THREADS", "1")


def pytest_collection_modifyitems(config, items):
    cuda_items = [item for item in items if item.get_closest_marker("cuda")]
    if not cuda_items:
        return
    import torch  # only when needed: pure unit runs stay free of the torch import

    if torch.cuda.is_available():
        return
    skip = pytest.mark.skip(reason="needs a CUDA device")
    for item in cuda_items:
        item.add_marker(skip)


@pytest.fixture(scope="session")
def tiny_ckpt_dir(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("tiny-checkpoints")


@pytest.fixture(scope="session")
def sd1_ckpt(tiny_ckpt_dir):
    from tests.fixtures.checkpoints import write_sd1

    return write_sd1(tiny_ckpt_dir / "tiny_sd1.safetensors")


@pytest.fixture(scope="session")
def sd1_inpaint_ckpt(tiny_ckpt_dir):
    from tests.fixtures.checkpoints import write_sd1

    return write_sd1(tiny_ckpt_dir / "tiny_sd1_inpainting.safetensors", inpainting=True)


@pytest.fixture(scope="session")
def sd2v_ckpt(tiny_ckpt_dir):
    from tests.fixtures.checkpoints import write_sd2

    return write_sd2(tiny_ckpt_dir / "tiny_sd2_v.safetensors", v_prediction=True)


@pytest.fixture(scope="session")
def sdxl_ckpt(tiny_ckpt_dir):
    from tests.fixtures.checkpoints import write_sdxl

    return write_sdxl(tiny_ckpt_dir / "tiny_sdxl.safetensors")


@pytest.fixture(scope="session")
def sdxl_refiner_ckpt(tiny_ckpt_dir):
    from tests.fixtures.checkpoints import write_sdxl_refiner

    return write_sdxl_refiner(tiny_ckpt_dir / "tiny_sdxl_refiner.safetensors")


@pytest.fixture(scope="session")
def vae_file(tiny_ckpt_dir) -> Path:
    """A bare-key A1111 'SD VAE' .safetensors file."""
    from tests.fixtures.checkpoints import write_vae

    path = tiny_ckpt_dir / "tiny_vae.safetensors"
    write_vae(path)
    return path


@pytest.fixture(scope="session")
def tiny_models_dir(tmp_path_factory, sd1_ckpt, sdxl_ckpt, sdxl_refiner_ckpt, vae_file) -> Path:
    """A `models/` tree: Stable-diffusion/ tiny_sd1, tiny_sdxl, refiners/tiny_sdxl_refiner; VAE/tiny_vae."""
    root = tmp_path_factory.mktemp("models")
    placement = {
        sd1_ckpt.path: root / "Stable-diffusion" / sd1_ckpt.path.name,
        sdxl_ckpt.path: root / "Stable-diffusion" / sdxl_ckpt.path.name,
        sdxl_refiner_ckpt.path: root / "Stable-diffusion" / "refiners" / sdxl_refiner_ckpt.path.name,
        vae_file: root / "VAE" / vae_file.name,
    }
    for source, dest in placement.items():
        dest.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(source, dest)  # copies, so a test damaging this tree can't damage the session files
    return root
