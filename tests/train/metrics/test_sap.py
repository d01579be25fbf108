"""SAP: disentanglement_lib's known answers (continuous scores), and the classifiers' ceiling 1 - 1/n."""

import numpy as np
import pytest

from infodropout.train.metrics import sap


def identity_factors(n: int, num_factors: int = 10, num_classes: int = 10, seed: int = 0) -> np.ndarray:
    """disentanglement_lib's dummy data: independent uniform factor classes, their own observations."""
    return np.random.default_rng(seed).integers(0, num_classes, size=(n, num_factors))


def test_identity_representation_scores_one_with_continuous_scores():
    factors = identity_factors(3000)
    assert 0.9 <= sap(factors.astype(np.float64), factors, continuous=True)["sap"] <= 1.0


def test_constant_and_duplicated_representations_score_zero():
    factors = identity_factors(3000)
    codes = factors.astype(np.float64)
    assert sap(np.zeros((3000, 10)), factors, continuous=True)["sap"] == 0.0
    assert sap(np.hstack([codes, codes]), factors, continuous=True)["sap"] == pytest.approx(0.0, abs=1e-12)


def test_identity_with_classifiers_reaches_one_minus_chance():
    """Three balanced classes: the right latent predicts its factor perfectly, any other one scores 1/3."""
    factors = identity_factors(3000, num_factors=4, num_classes=3)
    result = sap(factors.astype(np.float64), factors)
    assert result["sap"] == pytest.approx(2 / 3, abs=0.05)
    np.testing.assert_allclose(np.diag(result["score_matrix"]), 1.0)


def test_constant_and_duplicated_representations_score_zero_with_classifiers():
    factors = identity_factors(1500, num_factors=3, num_classes=3)
    codes = factors.astype(np.float64)
    assert sap(np.zeros((1500, 3)), factors)["sap"] == 0.0
    assert sap(np.hstack([codes, codes]), factors)["sap"] == pytest.approx(0.0, abs=1e-12)


def test_a_badly_scaled_latent_is_fitted_without_a_warning_escaping():
    factors = identity_factors(600, num_factors=2, num_classes=3)
    codes = np.c_[factors[:, 0] * 1e5, factors[:, 1]].astype(np.float64)
    result = sap(codes, factors)  # pytest turns any escaping warning into an error
    assert result["num_not_converged"] >= 0
    assert result["score_matrix"].shape == (2, 2)


def test_bad_input_is_a_one_line_error():
    factors = identity_factors(50, num_factors=2)
    with pytest.raises(ValueError, match="representation: expected at least 2 latent"):
        sap(np.zeros((50, 1)), factors)
    with pytest.raises(ValueError, match="c=0"):
        sap(np.zeros((50, 2)), factors, c=0)
    with pytest.raises(ValueError, match="test_fraction=1.5"):
        sap(np.zeros((50, 2)), factors, test_fraction=1.5)
