"""CFGDenoiser.combine_denoised with one CFG scale per image (requests batched together): each row equals the same
rows combined alone with that image's scale, bit for bit, with and without AND."""
from __future__ import annotations

import torch

from modules.sd_samplers_cfg_denoiser import CFGDenoiser


def test_per_image_scales_equal_separate_runs():
    torch.manual_seed(0)
    x_out = torch.randn(6, 4, 8, 8)  # 3 cond rows, then 3 uncond rows
    plain = [[(0, 1.0)], [(1, 1.0)], [(2, 1.0)]]
    scales = [7.0, 4.5, 1.0]
    batched = CFGDenoiser().combine_denoised(x_out, plain, x_out[3:], torch.tensor(scales))
    for i, scale in enumerate(scales):
        single = CFGDenoiser().combine_denoised(x_out[[i, 3 + i]], [[(0, 1.0)]], x_out[3 + i:4 + i], scale)
        assert torch.equal(batched[i:i + 1], single)


def test_per_image_scales_with_and():
    torch.manual_seed(1)
    x_out = torch.randn(5, 4, 8, 8)  # image 0: cond rows 0 and 1 (AND); image 1: cond row 2; then 2 uncond rows
    conds = [[(0, 1.0), (1, 0.5)], [(2, 1.0)]]
    batched = CFGDenoiser().combine_denoised(x_out, conds, x_out[3:], torch.tensor([6.0, 3.0]))
    first = CFGDenoiser().combine_denoised(x_out[[0, 1, 3, 4]], [[(0, 1.0), (1, 0.5)], [(2, 1.0)]], x_out[3:], 6.0)
    second = CFGDenoiser().combine_denoised(x_out, conds, x_out[3:], 3.0)
    assert torch.equal(batched[0], first[0]) and torch.equal(batched[1], second[1])


def test_a_float_scale_is_unchanged():
    torch.manual_seed(2)
    x_out = torch.randn(4, 4, 8, 8)
    got = CFGDenoiser().combine_denoised(x_out, [[(0, 1.0)], [(1, 1.0)]], x_out[2:], 7.0)
    assert torch.equal(got, x_out[2:] + (x_out[:2] - x_out[2:]) * 7.0)
