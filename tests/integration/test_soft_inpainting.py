"""Soft inpainting (the built-in always-on script) on the tiny SD1 checkpoint: with a hard mask its per-step blend is
plain inpainting's, a soft mask changes the transition, and its infotext pastes back into its controls."""
from __future__ import annotations

from dataclasses import astuple

import numpy as np
import pytest
import torch
from PIL import Image, ImageDraw

from modules import infotext_utils, processing, scripts, soft_inpainting as si, ui_scripts
from modules.shared_options import opts
from tests.integration.engine_helpers import pixels, start_engine

SIZE = 128
BOX = (16, 16, 40, 40)
REACH = 56  # of the composite: the soft latent mask's and percentile filters' latent pixels, the resize, the blur


@pytest.fixture()
def runner(tiny_models_dir, tmp_path):
    start_engine(tiny_models_dir, tmp_path)
    opts.set("sd_model_checkpoint", "tiny_sd1")
    scripts.load_scripts()
    return scripts.scripts_img2img.ensure_args(True)


def picture() -> Image.Image:
    rng = np.random.default_rng(3)
    return Image.fromarray(np.kron(rng.integers(0, 255, (SIZE // 8, SIZE // 8, 3)), np.ones((8, 8, 1))).astype(np.uint8))


def square_mask() -> Image.Image:
    mask = Image.new("L", (SIZE, SIZE), 0)
    ImageDraw.Draw(mask).rectangle(BOX, fill=255)
    return mask


def run(runner, monkeypatch, soft=None, **kwargs):
    """An inpainting job, soft inpainting on with `soft` (its six values); (result, the latents sampled)."""
    args = runner.default_args()
    script = runner.find("Soft Inpainting")
    values = [True, *soft] if soft is not None else [False]
    args[script.args_from:script.args_from + len(values)] = values
    sampled = []
    decode = processing.decode_to_tensor
    monkeypatch.setattr(processing, "decode_to_tensor", lambda model, latents, *a: sampled.append(latents) or
                        decode(model, latents, *a))
    fields = dict(prompt="a red cube", steps=6, width=SIZE, height=SIZE, seed=1234, sampler_name="Euler", cfg_scale=7.0,
                  init_images=[picture()], mask=square_mask(), mask_blur=0, inpaint_full_res=False,
                  denoising_strength=0.9, do_not_save_samples=True, do_not_save_grid=True)
    fields.update(kwargs)
    p = processing.StableDiffusionProcessingImg2Img(**fields, scripts=runner, script_args=args)
    result = processing.process_images(p)
    return result, sampled[0], p


SETTINGS = (2.0, 3.0, 8.0, 0.5, 0.5, 2.0)


def test_blend_of_a_hard_mask_is_plain_inpaintings_blend():
    """nmask ** (sigma**bias * strength) stays 0 or 1 for a hard mask, and the length-preserving blend at t = 0 or 1
    gives back one side: every step is plain inpainting's blend, whatever the settings (A1111's maths)."""
    torch.manual_seed(0)
    original, current = torch.randn(1, 4, 8, 8), torch.randn(1, 4, 8, 8)
    nmask = torch.zeros(1, 4, 8, 8)
    nmask[..., 2:6, 2:6] = 1
    for settings in (si.Settings(), si.Settings(*SETTINGS)):
        t = si.step_weight(settings, nmask, 3.5)
        assert torch.equal(t, nmask)
        blended = si.latent_blend(settings, original.clone(), current.clone(), t)
        torch.testing.assert_close(blended, original * (1 - nmask) + current * nmask, rtol=1e-4, atol=1e-4)
    half = si.latent_blend(si.Settings(), original.clone(), current.clone(), torch.full_like(nmask, 0.5))
    assert not torch.allclose(half, (original + current) / 2, atol=1e-3)  # lengths kept, not a plain lerp


def test_with_a_mask_of_ones_it_samples_as_plain_inpainting(runner, monkeypatch):
    """A mask of ones weighs every step to the sampled latent: the same latents and image as plain inpainting."""
    full = Image.new("L", (SIZE, SIZE), 255)
    plain, plain_latents, _ = run(runner, monkeypatch, mask=full)
    soft, soft_latents, p = run(runner, monkeypatch, soft=SETTINGS, mask=full)
    assert p.mask_round is False and bool((p.nmask == 1).all())
    torch.testing.assert_close(soft_latents, plain_latents, rtol=1e-4, atol=1e-4)
    assert np.abs(pixels(soft.images[0]) - pixels(plain.images[0])).max() <= 1


def test_the_original_stays_outside_the_masks_reach(runner, monkeypatch):
    soft, _, _ = run(runner, monkeypatch, soft=SETTINGS)
    far = np.ones((SIZE, SIZE), bool)
    far[:BOX[3] + REACH, :BOX[2] + REACH] = False
    assert far.sum() > 2000
    out, original = pixels(soft.images[0]), pixels(picture())
    assert np.array_equal(out[far], original[far])
    assert not np.array_equal(out[BOX[1]:BOX[3], BOX[0]:BOX[2]], original[BOX[1]:BOX[3], BOX[0]:BOX[2]])


def test_soft_mask_changes_the_edges_of_the_masked_region(runner, monkeypatch):
    plain, _, _ = run(runner, monkeypatch, mask_blur=8)
    soft, _, _ = run(runner, monkeypatch, soft=astuple(si.Settings()), mask_blur=8)
    a, b = pixels(plain.images[0]), pixels(soft.images[0])
    edge = np.zeros((SIZE, SIZE), bool)
    edge[max(BOX[1] - 12, 0):BOX[3] + 12, max(BOX[0] - 12, 0):BOX[2] + 12] = True
    edge[BOX[1] + 8:BOX[3] - 8, BOX[0] + 8:BOX[2] - 8] = False
    assert np.abs(a[edge] - b[edge]).mean() > 1


def test_infotext_round_trips_into_the_controls(runner, monkeypatch):
    result, _, _ = run(runner, monkeypatch, soft=SETTINGS, mask_blur=4)
    assert "Soft inpainting enabled: True, Soft inpainting schedule bias: 2.0, " in result.info
    params = infotext_utils.parse_generation_parameters(result.info)
    script = runner.find("Soft Inpainting")
    ui_scripts.hidden_script_controls(script)  # the page's controls, as the tab builds them
    pasted = [params[key] for _, key in script.infotext_fields]
    assert pasted == ["True", *map(str, SETTINGS)]  # the checkbox and the sliders read these texts
    assert [component.elem_id for component, _ in script.infotext_fields] == [
        "soft_inpainting_enabled-checkbox", "mask_blend_power", "mask_blend_scale", "inpaint_detail_preservation",
        "composite_mask_influence", "composite_difference_threshold", "composite_difference_contrast"]
