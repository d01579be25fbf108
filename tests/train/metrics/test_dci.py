"""DCI: disentanglement_lib's hand-built importance matrices and its known answers for boosted trees."""

import importlib
import math

import numpy as np
import pytest

from infodropout.train.metrics import dci, dci_scores, restrict_dci

dci_module = importlib.import_module("infodropout.train.metrics.dci")  # the module, not its function dci

STACKED = 1 - math.log(2) / math.log(10)  # a factor spread equally over two of ten codes
SMALL = dict(n_estimators=10, test_fraction=0.4)


def identity_factors(n: int, num_factors: int = 4, num_classes: int = 4, seed: int = 0) -> np.ndarray:
    """disentanglement_lib's dummy data (fewer, smaller factors: boosted trees fit one tree per class)."""
    return np.random.default_rng(seed).integers(0, num_classes, size=(n, num_factors))


@pytest.mark.parametrize(
    "matrix, disentanglement, completeness",
    [
        (np.diag(5.0 * np.ones(5)), 1.0, 1.0),
        (np.array([[1.0, 0.0], [0.0, 1.0], [0.0, 0.0]]), 1.0, 1.0),  # an unused code
        (np.zeros((10, 10)), 0.0, 0.0),
        (np.vstack([np.diag(5.0 * np.ones(5))] * 2), 1.0, STACKED),  # redundant (stacked) codes
        (np.diag(5.0 * np.ones(5))[:2], 1.0, 1.0),  # missed factors
        (np.hstack([np.diag(5.0 * np.ones(5))] * 2), STACKED, 1.0),  # one code for two factors
    ],
    ids=["diagonal", "empty-code", "zero", "stacked-codes", "missed-factors", "one-code-two-factors"],
)
def test_hand_built_importance_matrices(matrix, disentanglement, completeness):
    scores = dci_scores(matrix)
    assert scores["disentanglement"] == pytest.approx(disentanglement, abs=1e-12)
    assert scores["completeness"] == pytest.approx(completeness, abs=1e-12)


def test_weights_are_the_shares_of_total_importance():
    r = np.array([[3.0, 1.0], [0.0, 4.0]])  # code 0 splits 3:1, code 1 is pure
    scores = dci_scores(r)
    h = -(0.75 * math.log(0.75) + 0.25 * math.log(0.25)) / math.log(2)
    assert scores["disentanglement"] == pytest.approx(0.5 * (1 - h) + 0.5 * 1.0)
    h_col = -(0.2 * math.log(0.2) + 0.8 * math.log(0.8)) / math.log(2)
    assert scores["completeness"] == pytest.approx(3 / 8 * 1.0 + 5 / 8 * (1 - h_col))


def test_identity_representation_scores_one():
    factors = identity_factors(800)
    result = dci(factors.astype(np.float64), factors, **SMALL)
    assert 0.9 <= result["disentanglement"] <= 1.0
    assert 0.9 <= result["completeness"] <= 1.0
    assert result["informativeness_test"] == 1.0


def test_monotone_transforms_do_not_change_dci():
    factors = identity_factors(800)
    codes = factors + 0.3 * np.random.default_rng(1).normal(size=factors.shape)
    a = dci(codes, factors, **SMALL)
    b = dci(np.exp(codes) + 5 * codes**3, factors, **SMALL)  # increasing in each latent
    np.testing.assert_allclose(b["importance_matrix"], a["importance_matrix"], atol=1e-9)
    assert b["informativeness_train"] == a["informativeness_train"]
    # thresholds sit midway between training values, which a nonlinear map moves: test points near them may flip
    assert b["informativeness_test"] == pytest.approx(a["informativeness_test"], abs=0.01)


def test_permuted_codes_score_low():
    """disentanglement_lib's bad representation: each code row randomly permuted (codes unrelated to factors)."""
    factors = identity_factors(800)
    rng = np.random.default_rng(2)
    codes = np.array([rng.permutation(row) for row in factors.astype(np.float64)])
    codes = codes + 0.01 * rng.normal(size=codes.shape)
    result = dci(codes, factors, **SMALL)
    assert result["disentanglement"] <= 0.2
    assert result["completeness"] <= 0.2


def test_duplicated_latents_are_disentangled_but_incomplete():
    factors = identity_factors(800)
    codes = factors.astype(np.float64)
    result = dci(np.hstack([codes, codes]), factors, **SMALL)
    assert result["disentanglement"] >= 0.9
    target = 1 - math.log(2) / math.log(8)  # each factor spread over two of eight codes
    assert abs(result["completeness"] - target) <= 0.1


def test_a_subset_of_factors_needs_no_refit():
    factors = identity_factors(600)
    codes = factors + 0.3 * np.random.default_rng(3).normal(size=factors.shape)
    full = dci(codes, factors, **SMALL)
    direct = dci(codes, factors[:, 1:], **SMALL)  # the same split; each factor's trees see all codes
    subset = restrict_dci(full, [1, 2, 3])
    for key in ("disentanglement", "completeness", "informativeness_train", "informativeness_test"):
        assert subset[key] == pytest.approx(direct[key], abs=1e-6), key


def test_explicit_test_set_is_used():
    factors = identity_factors(600)
    codes = factors.astype(np.float64)
    test = dict(test_representation=codes[400:], test_factors=factors[400:])
    result = dci(codes[:400], factors[:400], **test, n_estimators=5)
    assert (result["num_train"], result["num_test"]) == (400, 200)


@pytest.mark.parametrize(
    "codes, factors, message",
    [
        (np.zeros((60, 1)), np.zeros((60, 2), int), r"representation: DCI needs at least 2 latents .*shape \(60, 1\)"),
        (np.zeros((60, 3)), np.zeros((60, 1), int), r"factors: DCI needs at least 2 factors .*shape \(60, 1\)"),
    ],
    ids=["one-latent", "one-factor"],
)
def test_one_latent_or_one_factor_is_refused_before_fitting(codes, factors, message, monkeypatch):
    monkeypatch.setattr(dci_module, "gbt_importance", lambda *a, **k: pytest.fail("fitted before the check"))
    with pytest.raises(ValueError, match=message):
        dci(codes, factors)


def test_a_subset_of_one_factor_is_refused():
    factors = identity_factors(300)
    full = dci(factors.astype(np.float64), factors, n_estimators=2)
    with pytest.raises(ValueError, match=r"factor_indices=\[2\]: expected at least 2 factor indices in 0..3"):
        restrict_dci(full, [2])
    with pytest.raises(ValueError, match=r"factor_indices=\[0, 4\]"):
        restrict_dci(full, [0, 4])


def test_bad_input_is_a_one_line_error():
    factors = identity_factors(60)
    codes = factors.astype(np.float64)
    with pytest.raises(ValueError, match="importance_matrix: expected at least 2 codes"):
        dci_scores(np.ones((1, 3)))
    with pytest.raises(ValueError, match="importance_matrix: expected finite nonnegative"):
        dci_scores(-np.ones((3, 3)))
    with pytest.raises(ValueError, match="test_representation and test_factors: give both"):
        dci(codes, factors, test_representation=codes)
    with pytest.raises(ValueError, match="test_representation: 3 columns"):
        dci(codes, factors, test_representation=codes[:, :3], test_factors=factors)
    with pytest.raises(ValueError, match="factors: factor 0 is constant"):
        dci(codes, np.c_[np.zeros(60, int), factors[:, 1]])
