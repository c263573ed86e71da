"""grid_only_if_multiple on the tiny SD1 checkpoint: a one-image job makes a grid only when the setting is off."""
from __future__ import annotations

import pytest

from modules.shared_options import opts
from tests.integration.engine_helpers import pixels, start_engine, txt2img


@pytest.fixture()
def engine(tiny_models_dir, tmp_path):
    return start_engine(tiny_models_dir, tmp_path)


@pytest.mark.parametrize("only_if_multiple, images", [(True, 1), (False, 2)])
def test_grid_only_if_multiple(engine, only_if_multiple, images):
    opts.set("return_grid", True)
    opts.set("grid_only_if_multiple", only_if_multiple)
    processed = txt2img("tiny_sd1.safetensors", steps=2, do_not_save_grid=False)
    assert len(processed.images) == images and processed.index_of_first_image == images - 1
    assert (pixels(processed.images[0]) == pixels(processed.images[-1])).all()  # a grid of one is that image
