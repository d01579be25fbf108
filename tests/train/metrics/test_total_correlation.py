"""Total correlation of the aggregate posterior: closed forms for Gaussian data with Gaussian encoders."""

import math

import numpy as np
import pytest

from infodropout.train.metrics import total_correlation

M, S = 4000, 0.5


def gaussian_encoder(mixing: np.ndarray, seed: int = 0):
    """x ~ N(0, A A^T), q(z | x) = N(x, s^2 I): q(z) = N(0, Sigma0 + s^2 I), in closed form."""
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(M, len(mixing))) @ mixing.T
    scale = np.full(x.shape, S)
    z = x + S * rng.normal(size=x.shape)
    cov = mixing @ mixing.T + S**2 * np.eye(len(mixing))
    return x, scale, z, cov


def closed_form_tc(cov: np.ndarray) -> float:
    return 0.5 * (np.log(np.diag(cov)).sum() - np.linalg.slogdet(cov)[1])


CORRELATED = np.array([[1.0, 0.0, 0.0], [0.8, 0.6, 0.0], [0.3, 0.5, 0.7]])


def test_independent_dimensions_have_zero_total_correlation():
    loc, scale, z, _ = gaussian_encoder(np.diag([1.0, 0.7, 1.4]))
    result = total_correlation(loc, scale, z, num_data=10**6)
    for estimator in ("mss", "mws"):
        assert abs(result[f"tc_{estimator}"]) <= 0.05
        assert abs(result[f"tc_{estimator}"]) <= 4 * result[f"tc_{estimator}_se"] + 0.01


def test_correlated_gaussian_matches_the_closed_form():
    loc, scale, z, cov = gaussian_encoder(CORRELATED)
    expected = closed_form_tc(cov)  # 0.5 (sum_d log S_dd - log det S), S = Sigma0 + s^2 I
    assert expected > 0.3
    result = total_correlation(loc, scale, z, num_data=10**6)
    for estimator in ("mss", "mws"):
        tolerance = max(0.05, 4 * result[f"tc_{estimator}_se"])
        assert result[f"tc_{estimator}"] == pytest.approx(expected, abs=tolerance), estimator


def test_entropies_and_mutual_information_match_the_closed_form():
    loc, scale, z, cov = gaussian_encoder(CORRELATED, seed=1)
    result = total_correlation(loc, scale, z, num_data=10**6)
    entropy = 0.5 * np.linalg.slogdet(2 * math.pi * math.e * cov)[1]
    marginal = 0.5 * np.log(2 * math.pi * math.e * np.diag(cov))
    conditional = 0.5 * np.log(2 * math.pi * math.e * S**2)  # H(z_d | x), per dimension
    assert result["entropy_mss"] == pytest.approx(entropy, abs=0.05)
    np.testing.assert_allclose(result["marginal_entropy_mss"], marginal, atol=0.05)
    assert result["mutual_info_mss"] == pytest.approx(entropy - 3 * conditional, abs=0.05)
    np.testing.assert_allclose(result["mutual_info_per_dim_mss"], marginal - conditional, atol=0.05)
    # TC = sum_d H(z_d) - H(z) for each estimator, by construction of the estimates
    for e in ("mss", "mws"):
        assert result[f"tc_{e}"] == pytest.approx(result[f"marginal_entropy_{e}"].sum() - result[f"entropy_{e}"])


def test_mss_with_the_whole_data_set_is_mws():
    """With M = N the stratified weights are 1/N for the sample's own posterior and for every other one."""
    loc, scale, z, _ = gaussian_encoder(CORRELATED)
    a = total_correlation(loc[:500], scale[:500], z[:500], num_data=500)
    assert a["tc_mss"] == pytest.approx(a["tc_mws"], abs=1e-12)
    np.testing.assert_allclose(a["marginal_entropy_mss"], a["marginal_entropy_mws"], atol=1e-12)


def test_invariant_under_an_affine_map_of_each_dimension():
    """TC is invariant under elementwise bijections (such as log for a log-normal latent): exactly so for
    the estimates under an affine map, whose Jacobian shifts every density of a dimension alike."""
    loc, scale, z, _ = gaussian_encoder(CORRELATED)
    a, b = np.array([2.0, -0.1, 30.0]), np.array([1.0, 5.0, -3.0])
    base = total_correlation(loc[:800], scale[:800], z[:800], num_data=10**5)
    moved = total_correlation(a * loc[:800] + b, abs(a) * scale[:800], a * z[:800] + b, num_data=10**5)
    assert moved["tc_mss"] == pytest.approx(base["tc_mss"], abs=1e-9)
    assert moved["tc_mws"] == pytest.approx(base["tc_mws"], abs=1e-9)
    np.testing.assert_allclose(moved["marginal_entropy_mss"], base["marginal_entropy_mss"] + np.log(abs(a)), atol=1e-9)


def test_blocks_and_subsets_do_not_change_the_estimate():
    loc, scale, z, _ = gaussian_encoder(CORRELATED)
    loc, scale, z = loc[:300], scale[:300], z[:300]
    whole = total_correlation(loc, scale, z, num_data=1000, chunk_size=300)
    assert total_correlation(loc, scale, z, num_data=1000, chunk_size=7)["tc_mss"] == pytest.approx(whole["tc_mss"])
    part = total_correlation(loc, scale, z, num_data=1000, num_samples=100, seed=3)
    assert part["num_samples"] == 100 and part["num_points"] == 300
    assert part["tc_mss"] == pytest.approx(whole["tc_mss"], abs=4 * part["tc_mss_se"])


def test_narrow_posteriors_stay_finite():
    """Posteriors far narrower than their spacing: each sample's own density dominates by 1e5 nats."""
    rng = np.random.default_rng(4)
    loc = np.stack([rng.permutation(200) for _ in range(4)], axis=1).astype(np.float64)  # spacing 1 per dimension
    scale = np.full(loc.shape, 1e-3)
    result = total_correlation(loc, scale, loc + scale * rng.normal(size=loc.shape), num_data=10**6)
    # every density is the sample's own, weighted 1/N (MSS) or 1/M (MWS): TC -> (D - 1) log N or log M
    assert result["tc_mss"] == pytest.approx(3 * math.log(10**6), rel=1e-6)
    assert result["tc_mws"] == pytest.approx(3 * math.log(200), rel=1e-6)


def test_bad_input_is_a_one_line_error():
    loc = np.zeros((10, 2))
    with pytest.raises(ValueError, match="scale: shape"):
        total_correlation(loc, np.ones((10, 3)), loc, 10)
    with pytest.raises(ValueError, match="scale: expected positive"):
        total_correlation(loc, np.zeros((10, 2)), loc, 10)
    with pytest.raises(ValueError, match="num_data=5: smaller than the 10"):
        total_correlation(loc, np.ones((10, 2)), loc, 5)
    with pytest.raises(ValueError, match="sample: contains NaN"):
        total_correlation(loc, np.ones((10, 2)), np.full((10, 2), np.nan), 10)
