"""Live previews: the cheap linear map (exact pixels, shapes, grids) and the Full VAE decode."""
import types

import numpy as np
import pytest
import torch
from diffusers import AutoencoderKL

from modules import live_preview, sd_vae_approx, shared_options


def model_stub(latent_space="sd", memory_mode="normal", vae=None):
    plan = types.SimpleNamespace(memory_mode=memory_mode)
    return types.SimpleNamespace(latent_space=latent_space, plan=plan, vae=vae, device=torch.device("cpu"))


def expected_pixel(factors_row):
    return [round(min(max((v + 1) / 2, 0), 1) * 255) for v in factors_row]


@pytest.mark.parametrize("space", ["sd", "sdxl"])
def test_cheap_maps_each_latent_channel_through_its_factors(space):
    latents = torch.zeros(1, 4, 3, 5)
    latents[0, 2, 1, 4] = 1.0  # one pixel: channel 2 only
    image = live_preview.approx_cheap(latents, space)[0]
    assert image.size == (5, 3) and image.mode == "RGB"
    pixels = np.asarray(image)
    assert pixels[1, 4].tolist() == expected_pixel(sd_vae_approx.LATENT_RGB_FACTORS[space][2].tolist())
    assert pixels[0, 0].tolist() == [128, 128, 128]  # a zero latent is mid grey


def test_cheap_clamps_out_of_range_values():
    latents = torch.zeros(1, 4, 1, 2)
    latents[0, 3, 0, 0] = 100.0  # far beyond the range: every negative factor saturates at black
    latents[0, 3, 0, 1] = -100.0
    pixels = np.asarray(live_preview.approx_cheap(latents, "sd")[0])
    assert pixels[0, 0].tolist() == [0, 0, 0]
    assert pixels[0, 1].tolist() == [255, 255, 255]


def test_preview_of_a_batch_is_a_grid_or_the_first_image():
    latents = torch.randn(4, 4, 8, 6, generator=torch.Generator().manual_seed(0))
    grid = live_preview.preview_image(latents, model_stub(), live_preview.CHEAP, grid=True)
    assert grid.size == (2 * 6, 2 * 8)
    first = live_preview.preview_image(latents, model_stub(), live_preview.CHEAP, grid=False)
    assert first.size == (6, 8)
    assert np.array_equal(np.asarray(first), np.asarray(grid)[:8, :6])


@pytest.mark.parametrize("method, memory_mode, allow, expected", [
    ("Full", "normal", False, "Full"),
    ("Full", "medvram", False, "Approx NN"),
    ("Full", "lowvram", True, "Full"),
    ("Approx NN", "normal", False, "Approx NN"),
    ("TAESD", "normal", False, "TAESD"),
    ("Approx cheap", "normal", False, "Approx cheap"),
])
def test_effective_method(monkeypatch, method, memory_mode, allow, expected):
    monkeypatch.setitem(shared_options.opts.data, "live_preview_allow_lowvram_full", allow)
    assert live_preview.effective_method(method, model_stub(memory_mode=memory_mode)) == expected


def test_full_decodes_with_the_vae_at_image_size():
    torch.manual_seed(0)
    vae = AutoencoderKL(down_block_types=("DownEncoderBlock2D",) * 4, up_block_types=("UpDecoderBlock2D",) * 4,
                        block_out_channels=(32,) * 4, layers_per_block=1, latent_channels=4, norm_num_groups=32).eval()
    latents = torch.randn(2, 4, 2, 3, generator=torch.Generator().manual_seed(1))
    full = live_preview.latents_to_images(latents, model_stub(vae=vae), live_preview.FULL)
    assert [image.size for image in full] == [(24, 16), (24, 16)]
    cheap = live_preview.latents_to_images(latents, model_stub(vae=vae), live_preview.CHEAP)
    assert [image.size for image in cheap] == [(3, 2), (3, 2)]


def test_decode_preview_without_a_model_uses_sd_factors(monkeypatch):
    monkeypatch.setattr(live_preview.sd_models, "model_manager", None)
    monkeypatch.setitem(shared_options.opts.data, "show_progress_type", "Full")
    monkeypatch.setitem(shared_options.opts.data, "show_progress_grid", True)
    latents = torch.zeros(1, 4, 2, 2)
    latents[0, 0] = 0.5
    image = live_preview.decode_preview(latents)
    assert np.asarray(image)[0, 0].tolist() == expected_pixel((0.5 * sd_vae_approx.LATENT_RGB_FACTORS["sd"][0]).tolist())
