"""Per-image noise: batches reproduce singles bit for bit; variation, seed resize and ENSD as A1111 defines them."""
import torch

from modules.rng import ImageRNG, slerp

SHAPE = (4, 8, 8)


def test_batch_noise_equals_single_noise_initial_and_ancestral():
    batch = ImageRNG(SHAPE, [10, 11, 12])
    first, nxt = batch.first(), batch.next()
    for k, seed in enumerate([10, 11, 12]):
        single = ImageRNG(SHAPE, [seed])
        assert torch.equal(first[k], single.first()[0])
        assert torch.equal(nxt[k], single.next()[0])


def test_first_draw_is_the_seeded_generator_output():
    expected = torch.randn(SHAPE, generator=torch.Generator().manual_seed(42))
    assert torch.equal(ImageRNG(SHAPE, [42]).first()[0], expected)


def test_variation_strength_zero_and_one():
    base = ImageRNG(SHAPE, [1]).first()
    assert torch.equal(ImageRNG(SHAPE, [1], subseeds=[2], subseed_strength=0.0).first(), base)
    other = ImageRNG(SHAPE, [2]).first()
    full = ImageRNG(SHAPE, [1], subseeds=[2], subseed_strength=1.0).first()
    assert torch.allclose(full, other, atol=1e-5)
    half = ImageRNG(SHAPE, [1], subseeds=[2], subseed_strength=0.5).first()
    assert torch.allclose(half[0], slerp(0.5, base[0], other[0]))


def test_seed_resize_pastes_the_old_noise_in_the_centre():
    small = ImageRNG((4, 8, 8), [3]).first()[0]
    big = ImageRNG((4, 8, 16), [3], seed_resize_from_h=64, seed_resize_from_w=64).first()[0]
    assert torch.equal(big[:, :, 4:12], small)
    cropped = ImageRNG((4, 8, 4), [3], seed_resize_from_h=64, seed_resize_from_w=64).first()[0]
    assert torch.equal(cropped, small[:, :, 2:6])


def test_ensd_reseeds_ancestral_noise_only():
    plain, delta = ImageRNG(SHAPE, [5]), ImageRNG(SHAPE, [5], eta_noise_seed_delta=31337)
    assert torch.equal(plain.first(), delta.first())
    expected = torch.randn(SHAPE, generator=torch.Generator().manual_seed(5 + 31337))
    assert torch.equal(delta.next()[0], expected)
    assert not torch.equal(plain.next(), delta.next())


def test_next_before_first_is_first():
    assert torch.equal(ImageRNG(SHAPE, [9], subseeds=[4], subseed_strength=0.5).next(),
                       ImageRNG(SHAPE, [9], subseeds=[4], subseed_strength=0.5).first())
