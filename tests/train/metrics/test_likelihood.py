"""Importance-weighted log-likelihood: exact on a conjugate Gaussian model, the ELBO at K = 1, the IWAE order."""

import math

import numpy as np
import pytest

from infodropout.train.metrics import iw_log_likelihood, log_mean_exp

SIGMA = 0.5  # z ~ N(0, 1), x | z ~ N(z, SIGMA^2): p(x) = N(0, 1 + SIGMA^2), p(z | x) = N(x / (1 + SIGMA^2), ...)


def log_normal(x, loc, scale):
    return -0.5 * ((x - loc) / scale) ** 2 - np.log(scale) - 0.5 * math.log(2 * math.pi)


def conjugate_log_weights(x, num_samples, shrink, scale, seed=0):
    """log w = log p(x | z) + log p(z) - log q(z | x) with the proposal q(z | x) = N(shrink * x, scale^2)."""
    rng = np.random.default_rng(seed)
    z = shrink * x[None] + scale * rng.normal(size=(num_samples, len(x)))  # (K, N)
    return log_normal(x[None], z, SIGMA) + log_normal(z, 0.0, 1.0) - log_normal(z, shrink * x[None], scale)


def exact_log_likelihood(x):
    return log_normal(x, 0.0, math.sqrt(1 + SIGMA**2))


def exact_elbo(x, shrink, scale):
    """E_q[log p(x|z) + log p(z) - log q(z|x)] in closed form for the Gaussian proposal."""
    mean_sq_x = (x - shrink * x) ** 2 + scale**2  # E_q[(x - z)^2]
    mean_sq_z = (shrink * x) ** 2 + scale**2  # E_q[z^2]
    log_px_z = -0.5 * mean_sq_x / SIGMA**2 - math.log(SIGMA) - 0.5 * math.log(2 * math.pi)
    log_pz = -0.5 * mean_sq_z - 0.5 * math.log(2 * math.pi)
    entropy = 0.5 * math.log(2 * math.pi * math.e * scale**2)
    return log_px_z + log_pz + entropy


X = np.linspace(-2.0, 2.0, 9)
POSTERIOR = (1 / (1 + SIGMA**2), math.sqrt(SIGMA**2 / (1 + SIGMA**2)))


def test_the_exact_posterior_gives_log_p_x_with_every_sample():
    lw = conjugate_log_weights(X, 5, *POSTERIOR)
    result = iw_log_likelihood(lw)
    np.testing.assert_allclose(result["log_likelihood"], exact_log_likelihood(X), atol=1e-12)
    np.testing.assert_allclose(result["ess"], 5.0, rtol=1e-9)


def test_many_samples_approach_log_p_x_from_a_poor_proposal():
    lw = conjugate_log_weights(X, 20000, shrink=0.5, scale=0.8)
    result = iw_log_likelihood(lw)
    np.testing.assert_allclose(result["log_likelihood"], exact_log_likelihood(X), atol=0.02)
    assert result["mean"] == pytest.approx(exact_log_likelihood(X).mean(), abs=0.01)


def test_one_sample_is_the_elbo_in_expectation():
    lw = conjugate_log_weights(X, 20000, shrink=0.5, scale=0.8)
    result = iw_log_likelihood(lw)
    se = lw.std(axis=0) / math.sqrt(lw.shape[0])
    np.testing.assert_array_less(np.abs(result["elbo"] - exact_elbo(X, 0.5, 0.8)), 4 * se + 1e-9)
    single = iw_log_likelihood(lw[:1])  # K = 1: the estimate is log w itself
    np.testing.assert_array_equal(single["log_likelihood"], lw[0])


def test_the_estimate_increases_with_the_number_of_samples_and_stays_below_log_p_x():
    x = np.tile(X, 200)
    lw = conjugate_log_weights(x, 1000, shrink=0.3, scale=0.5, seed=1)
    means = [iw_log_likelihood(lw[:k])["mean"] for k in (1, 10, 100, 1000)]
    assert means == sorted(means)
    assert means[-1] <= exact_log_likelihood(x).mean() + 0.01
    assert means[-1] - means[0] > 0.1


def test_large_log_weights_do_not_overflow():
    lw = np.array([[-1e4, 1e4], [-1e4 + math.log(3), 1e4 - 50.0]])
    result = iw_log_likelihood(lw)
    assert result["log_likelihood"][0] == pytest.approx(-1e4 + math.log(2))
    assert result["log_likelihood"][1] == pytest.approx(1e4 + math.log((1 + math.exp(-50)) / 2))
    assert log_mean_exp(np.array([[-np.inf], [-np.inf]]))[0] == -np.inf


def test_bad_input_is_a_one_line_error():
    with pytest.raises(ValueError, match=r"log_weights: expected a 2-d array \(K samples, N examples\)"):
        iw_log_likelihood(np.zeros(5))
    with pytest.raises(ValueError, match="log_weights: contains NaN or \\+inf"):
        iw_log_likelihood(np.array([[0.0, np.nan]]))
