"""Schedule types and the model's sigma table, checked against values computed independently with numpy."""

import math

import numpy as np
import pytest
import torch

from modules import sd_schedulers
from modules.sd_samplers_common import ModelSigmas

# SD1's training schedule ("scaled_linear" betas), in float64 numpy, independent of the code under test
_BETAS = np.linspace(0.00085**0.5, 0.012**0.5, 1000) ** 2
_ALPHAS_CUMPROD = np.cumprod(1 - _BETAS)
REF_SIGMAS = np.sqrt((1 - _ALPHAS_CUMPROD) / _ALPHAS_CUMPROD)


def ref_sigma_at(t):
    """Sigma at continuous timesteps, interpolating log sigma linearly."""
    return np.exp(np.interp(t, np.arange(1000), np.log(REF_SIGMAS)))


@pytest.fixture(scope="module")
def model_sigmas():
    return ModelSigmas(torch.from_numpy(_ALPHAS_CUMPROD))


def compute(label, n, model_sigmas, **kwargs):
    return sd_schedulers.compute_sigmas(sd_schedulers.schedulers_map[label], n, model_sigmas,
                                        is_sdxl=kwargs.pop("is_sdxl", False), **kwargs)


def with_zero(values):
    return np.append(np.asarray(values, dtype=np.float64), 0.0)


def assert_close(actual: torch.Tensor, expected, rtol=1e-5):
    np.testing.assert_allclose(actual.numpy().astype(np.float64), expected, rtol=rtol, atol=1e-7)


# --- the model's sigma table -----------------------------------------------------------------------------------


def test_model_sigma_range_matches_sd1(model_sigmas):
    assert model_sigmas.sigma_max == pytest.approx(14.6146, abs=1e-4)
    assert model_sigmas.sigma_min == pytest.approx(0.0292, abs=1e-4)
    assert model_sigmas.sigmas.dtype == torch.float32
    assert len(model_sigmas) == 1000
    assert torch.all(model_sigmas.sigmas[1:] > model_sigmas.sigmas[:-1])


def test_sigma_to_t_hits_training_steps_and_interpolates_in_log_sigma(model_sigmas):
    steps = torch.tensor([0, 1, 250, 998, 999])
    assert torch.allclose(model_sigmas.sigma_to_t(model_sigmas.sigmas[steps]), steps.float(), atol=1e-3)
    between = math.sqrt(REF_SIGMAS[500] * REF_SIGMAS[501])  # log-space midpoint of steps 500 and 501
    assert float(model_sigmas.sigma_to_t(torch.tensor(between))) == pytest.approx(500.5, abs=1e-3)
    assert float(model_sigmas.t_to_sigma(torch.tensor(500.5))) == pytest.approx(between, rel=1e-5)


def test_sigma_t_round_trip_keeps_shape(model_sigmas):
    sigma = torch.tensor([[0.05, 0.7], [3.0, 14.0]])
    t = model_sigmas.sigma_to_t(sigma)
    assert t.shape == (2, 2)
    assert torch.allclose(model_sigmas.t_to_sigma(t), sigma, rtol=1e-5)


def test_model_sigmas_rejects_a_non_vector():
    with pytest.raises(ValueError, match="1-D"):
        ModelSigmas(torch.ones(2, 2))


# --- every schedule type ---------------------------------------------------------------------------------------


def test_the_list_holds_the_a1111_schedule_types_in_order():
    assert [s.label for s in sd_schedulers.schedulers] == [
        "Uniform", "Karras", "Exponential", "Polyexponential", "SGM Uniform", "KL Optimal", "Align Your Steps",
        "Simple", "Normal", "DDIM", "Beta"]
    assert [s.name for s in sd_schedulers.schedulers] == [
        "uniform", "karras", "exponential", "polyexponential", "sgm_uniform", "kl_optimal", "align_your_steps",
        "simple", "normal", "ddim", "beta"]


@pytest.mark.parametrize("label", [s.label for s in sd_schedulers.schedulers])
@pytest.mark.parametrize("n", [1, 2, 7, 20])
def test_each_schedule_gives_n_plus_one_descending_sigmas_ending_in_zero(label, n, model_sigmas):
    sigmas = compute(label, n, model_sigmas)
    assert sigmas.dtype == torch.float32
    assert sigmas.shape == (n + 1,)
    assert float(sigmas[-1]) == 0.0
    assert torch.all(sigmas[:-1] > 0)
    assert torch.all(sigmas[1:] < sigmas[:-1])


def test_karras_and_exponential_span_the_model_range(model_sigmas):
    for label in ("Karras", "Exponential", "Polyexponential", "KL Optimal"):
        sigmas = compute(label, 10, model_sigmas)
        assert float(sigmas[0]) == pytest.approx(14.6146, abs=1e-3), label
        assert float(sigmas[-2]) == pytest.approx(0.0292, abs=1e-4), label


def test_karras_spacing_is_even_in_sigma_to_the_one_over_rho(model_sigmas):
    sigmas = compute("Karras", 5, model_sigmas).double().numpy()
    lo, hi = model_sigmas.sigma_min ** (1 / 7), model_sigmas.sigma_max ** (1 / 7)
    np.testing.assert_allclose(sigmas[:-1], (hi + np.linspace(0, 1, 5) * (lo - hi)) ** 7, rtol=1e-6)


def test_exponential_has_a_constant_ratio_and_polyexponential_rho_1_equals_it(model_sigmas):
    sigmas = compute("Exponential", 6, model_sigmas).double()
    ratios = sigmas[1:-1] / sigmas[:-2]
    assert torch.allclose(ratios, ratios[0].expand_as(ratios), rtol=1e-5)
    assert torch.equal(compute("Polyexponential", 6, model_sigmas), compute("Exponential", 6, model_sigmas))
    poly_2 = compute("Polyexponential", 6, model_sigmas, rho=2.0)
    assert not torch.equal(poly_2, compute("Exponential", 6, model_sigmas))


def test_overrides_of_range_and_rho(model_sigmas):
    sigmas = compute("Karras", 4, model_sigmas, sigma_min=0.1, sigma_max=10.0, rho=3.0).double().numpy()
    expected = (10 ** (1 / 3) + np.linspace(0, 1, 4) * (0.1 ** (1 / 3) - 10 ** (1 / 3))) ** 3
    np.testing.assert_allclose(sigmas, with_zero(expected), rtol=1e-6)


def test_sgm_uniform_drops_the_last_of_n_plus_one_timesteps(model_sigmas):
    assert_close(compute("SGM Uniform", 4, model_sigmas), with_zero(ref_sigma_at([999, 749.25, 499.5, 249.75])))


def test_simple_takes_every_thousand_over_n_th_training_sigma(model_sigmas):
    assert_close(compute("Simple", 4, model_sigmas), with_zero(REF_SIGMAS[[999, 749, 499, 249]]), rtol=1e-6)
    assert_close(compute("Simple", 3, model_sigmas), with_zero(REF_SIGMAS[[999, 666, 333]]), rtol=1e-6)


def test_normal_and_uniform_space_timesteps_linearly(model_sigmas):
    expected = with_zero(ref_sigma_at([999, 666, 333, 0]))
    assert_close(compute("Normal", 4, model_sigmas), expected)
    assert_close(compute("Uniform", 4, model_sigmas), expected)


def test_normal_follows_a_sigma_override_but_uniform_does_not(model_sigmas):
    sigma_max = float(REF_SIGMAS[899])
    expected = with_zero(ref_sigma_at([899, 599.33333, 299.66667, 0]))
    assert_close(compute("Normal", 4, model_sigmas, sigma_max=sigma_max), expected)
    assert_close(compute("Uniform", 4, model_sigmas, sigma_max=sigma_max), with_zero(ref_sigma_at([999, 666, 333, 0])))


def test_ddim_uses_the_strided_timestep_grid(model_sigmas):
    assert_close(compute("DDIM", 4, model_sigmas), with_zero(REF_SIGMAS[[751, 501, 251, 1]]), rtol=1e-6)
    assert sd_schedulers.ddim_timesteps(3, 1000) == [667, 334, 1]


def test_kl_optimal_is_evenly_spaced_in_arctan(model_sigmas):
    lo, hi = model_sigmas.sigma_min, model_sigmas.sigma_max
    middle = math.tan((math.atan(hi) + math.atan(lo)) / 2)
    assert_close(compute("KL Optimal", 3, model_sigmas), with_zero([hi, middle, lo]))


def test_align_your_steps_uses_the_family_table_and_interpolates_log_linearly(model_sigmas):
    assert_close(compute("Align Your Steps", 11, model_sigmas), with_zero(sd_schedulers.AYS_SIGMAS_SD15))
    assert_close(compute("Align Your Steps", 11, model_sigmas, is_sdxl=True), with_zero(sd_schedulers.AYS_SIGMAS_SDXL))
    assert sd_schedulers.AYS_SIGMAS_SD15[1] == 6.475 and sd_schedulers.AYS_SIGMAS_SDXL[1] == 6.315
    fine = compute("Align Your Steps", 21, model_sigmas).double().numpy()
    table = np.array(sd_schedulers.AYS_SIGMAS_SD15)
    np.testing.assert_allclose(fine[:-1:2], table, rtol=1e-5)  # the table's points stay
    np.testing.assert_allclose(fine[1:-1:2], np.sqrt(table[:-1] * table[1:]), rtol=1e-5)  # geometric midpoints


def test_beta_puts_timesteps_at_beta_quantiles(model_sigmas):
    # Beta(0.6, 0.6) is symmetric: the middle of three points is the median timestep
    assert_close(compute("Beta", 3, model_sigmas), with_zero(ref_sigma_at([999, 499.5, 0])))
    # Beta(1, 1) is uniform: the same timesteps as Normal
    uniform_beta = compute("Beta", 5, model_sigmas, beta_alpha=1.0, beta_beta=1.0)
    assert_close(uniform_beta, compute("Normal", 5, model_sigmas).double().numpy())
    mid = compute("Beta", 5, model_sigmas)
    assert float(mid[1]) > float(compute("Normal", 5, model_sigmas)[1])  # dense near the ends, sparse in the middle


def test_lookup_by_name_label_and_alias():
    sgm = sd_schedulers.schedulers_map["sgm_uniform"]
    assert sd_schedulers.schedulers_map["SGM Uniform"] is sgm
    assert sd_schedulers.schedulers_map["SGMUniform"] is sgm
    assert sd_schedulers.find_scheduler("sgmuniform") is sgm
    assert sd_schedulers.find_scheduler(" KARRAS ") is sd_schedulers.schedulers_map["karras"]
    assert sd_schedulers.find_scheduler("Automatic") is None
    assert sd_schedulers.find_scheduler("nope") is None


def test_scheduler_metadata_for_the_api():
    by_name = {s.name: s for s in sd_schedulers.schedulers}
    assert by_name["karras"].default_rho == 7.0
    assert by_name["polyexponential"].default_rho == 1.0
    assert by_name["exponential"].default_rho == -1.0
    assert {s.name for s in sd_schedulers.schedulers if s.need_inner_model} == {
        "uniform", "sgm_uniform", "simple", "normal", "ddim", "beta"}


def test_a_schedule_needs_a_step(model_sigmas):
    with pytest.raises(ValueError, match="at least 1 step"):
        compute("Karras", 0, model_sigmas)
