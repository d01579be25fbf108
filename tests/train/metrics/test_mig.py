"""MIG: disentanglement_lib's known answers, the discrete mutual information against scikit-learn,
and exact gaps on hand-built codes."""

import math

import numpy as np
import pytest
from sklearn.metrics import mutual_info_score

from infodropout.train.metrics import discrete_entropy, discrete_mutual_info, histogram_discretize, mig


def identity_factors(n: int, num_factors: int = 10, num_classes: int = 10, seed: int = 0) -> np.ndarray:
    """disentanglement_lib's dummy data: independent uniform factor classes, their own observations."""
    return np.random.default_rng(seed).integers(0, num_classes, size=(n, num_factors))


def test_identity_representation_scores_one():
    factors = identity_factors(3000)
    result = mig(factors.astype(np.float64), factors)
    assert 0.9 <= result["mig"] <= 1.0
    # each integer value lands in a bin of its own: the plug-in information of latent k about factor k is H(y_k)
    np.testing.assert_allclose(np.diag(result["normalized"]), 1.0, atol=1e-12)


def test_affine_transform_of_the_identity_gives_the_same_mig():
    factors = identity_factors(3000)
    codes = factors.astype(np.float64)
    scaled = 3.5 * codes - 2.0 + np.arange(10)  # equal-width bins move with an affine map of each latent
    assert mig(scaled, factors)["mig"] == pytest.approx(mig(codes, factors)["mig"], abs=1e-12)


def test_constant_and_noise_representations_score_low():
    factors = identity_factors(3000)
    assert mig(np.zeros((3000, 10)), factors)["mig"] == 0.0
    noise = np.random.default_rng(1).normal(size=(3000, 10))
    assert mig(noise, factors)["mig"] <= 0.2


def test_duplicated_latents_score_zero():
    factors = identity_factors(3000)
    codes = factors.astype(np.float64)
    result = mig(np.hstack([codes, codes]), factors)
    assert result["mig"] == pytest.approx(0.0, abs=1e-12)


def test_half_captured_factor_gives_the_exact_gap():
    """y uniform on 4 classes, latent 0 = y, latent 1 = y // 2: I = log 4 and log 2, MIG = (log 4 - log 2) / log 4."""
    y = np.tile(np.arange(4), 500)[:, None]
    codes = np.c_[y[:, 0], y[:, 0] // 2].astype(np.float64)
    result = mig(codes, y)
    np.testing.assert_allclose(result["mutual_info"][:, 0], [math.log(4), math.log(2)], rtol=1e-12)
    assert result["factor_entropy"][0] == pytest.approx(math.log(4))
    assert result["mig"] == pytest.approx(0.5, abs=1e-12)


def test_discrete_mutual_info_is_sklearns():
    rng = np.random.default_rng(2)
    codes = rng.integers(0, 7, size=(500, 3))
    labels = np.c_[codes[:, 0] // 2, rng.integers(0, 4, 500)]
    ours = discrete_mutual_info(codes, labels)
    for d in range(3):
        for k in range(2):
            assert ours[d, k] == pytest.approx(mutual_info_score(labels[:, k], codes[:, d]), abs=1e-12)
    np.testing.assert_allclose(discrete_entropy(labels), [mutual_info_score(c, c) for c in labels.T], atol=1e-12)


def test_histogram_bins_are_equal_width_over_the_range():
    x = np.array([[0.0], [0.49], [0.51], [9.99], [10.0]])
    bins = histogram_discretize(x, 20)  # width 0.5
    assert bins[:, 0].tolist() == [0, 0, 1, 19, 19]
    assert histogram_discretize(np.full((5, 1), 3.0), 20)[:, 0].tolist() == [10] * 5  # one bin


@pytest.mark.parametrize(
    "codes, factors, match",
    [
        (np.zeros((10, 3)), np.zeros((9, 2), dtype=int), "factors: 9 rows for 10 points"),
        (np.zeros((10, 3)), np.c_[np.zeros(10, int), np.arange(10)], "factors: factor 0 is constant"),
        (np.full((10, 3), np.nan), np.c_[np.arange(10), np.arange(10)], "representation: contains NaN"),
        (np.zeros(10), np.c_[np.arange(10)], r"representation: expected a 2-d array \(N, D\)"),
        (np.zeros((10, 3)), np.arange(10), r"factors: expected a 2-d array \(N, K\)"),
        (np.zeros((10, 1)), np.c_[np.arange(10)], "representation: expected at least 2 latent dimension"),
        (np.zeros((10, 2)), np.c_[np.arange(10) + 0.5], "factors: expected discrete classes"),
    ],
)
def test_bad_input_is_a_one_line_error(codes, factors, match):
    with pytest.raises(ValueError, match=match) as info:
        mig(codes, factors)
    assert "\n" not in str(info.value)
