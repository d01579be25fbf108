"""The scores of predictive distributions and OOD detectors against known answers."""

import math

import numpy as np
import pytest
from sklearn.metrics import roc_auc_score

from infodropout.train.evaluation import scores


def _calibrated(n: int, k: int, rng, sharpen: float = 1.0):
    """Probabilities from a Dirichlet and labels drawn from them (``sharpen`` > 1: reported overconfident)."""
    probs = rng.dirichlet(np.full(k, 0.5), size=n)
    y = np.array([rng.choice(k, p=p) for p in probs])
    reported = probs**sharpen
    return reported / reported.sum(1, keepdims=True), y


def test_ece_of_a_calibrated_predictor_is_near_zero_and_of_an_overconfident_one_is_not():
    rng = np.random.default_rng(0)
    probs, y = _calibrated(40_000, 3, rng)
    assert scores.expected_calibration_error(probs, y) < 0.01
    sharp, y2 = _calibrated(40_000, 3, np.random.default_rng(0), sharpen=3.0)
    assert scores.expected_calibration_error(sharp, y2) > 0.05


def test_ece_and_the_reliability_bins_in_closed_form():
    # every prediction 0.9 confident, 6 of 10 right: one bin, |0.6 - 0.9| = 0.3
    probs = np.tile([0.9, 0.1], (10, 1))
    y = np.array([0] * 6 + [1] * 4)
    assert scores.expected_calibration_error(probs, y) == pytest.approx(0.3)
    bins = scores.reliability(probs, y)
    assert bins["count"].sum() == 10 and bins["count"][13] == 10  # 0.9 lies in (13/15, 14/15]
    assert bins["accuracy"][13] == pytest.approx(0.6) and bins["confidence"][13] == pytest.approx(0.9)
    assert np.isnan(bins["accuracy"][0]) and len(bins["edges"]) == scores.ECE_BINS + 1


def test_nll_brier_and_error_at_their_extremes():
    y = np.array([0, 2, 1])
    onehot = np.eye(3)[y]
    assert scores.negative_log_likelihood(onehot, y) == pytest.approx(0.0, abs=1e-12)
    assert scores.brier_score(onehot, y) == 0.0 and scores.error_rate(onehot, y) == 0.0
    uniform = np.full((3, 3), 1 / 3)
    assert scores.negative_log_likelihood(uniform, y) == pytest.approx(math.log(3))
    assert scores.brier_score(uniform, y) == pytest.approx(1 - 1 / 3)
    assert scores.brier_score(np.eye(3)[[1, 0, 0]], y) == pytest.approx(2.0)  # all wrong and certain
    with pytest.raises(ValueError, match="labels must lie"):
        scores.brier_score(uniform, np.array([0, 3, 1]))


def test_auroc_and_fpr_of_separable_reversed_and_equal_scores():
    inside, outside = np.arange(100.0), 100 + np.arange(50.0)
    assert scores.auroc(inside, outside) == 1.0 and scores.fpr_at_tpr(inside, outside) == 0.0
    assert scores.auroc(outside, inside) == 0.0 and scores.fpr_at_tpr(outside, inside) == 1.0
    assert scores.auroc(np.zeros(10), np.zeros(7)) == 0.5


def test_auroc_equals_sklearns_with_ties_and_fpr_equals_its_definition():
    rng = np.random.default_rng(1)
    inside, outside = rng.integers(0, 20, 300).astype(float), rng.integers(5, 25, 200).astype(float)
    labels = np.r_[np.zeros(300), np.ones(200)]
    assert scores.auroc(inside, outside) == pytest.approx(roc_auc_score(labels, np.r_[inside, outside]))
    # the largest threshold catching >= 95% of the OOD examples, and the in-distribution share above it
    thresholds = np.unique(np.r_[inside, outside])
    t = max(t for t in thresholds if (outside >= t).mean() >= 0.95)
    assert scores.fpr_at_tpr(inside, outside) == pytest.approx((inside >= t).mean())
    fpr, tpr = scores.roc_curve(inside, outside)
    assert np.trapezoid(tpr, fpr) == pytest.approx(scores.auroc(inside, outside))
    assert (fpr[0], tpr[0], fpr[-1], tpr[-1]) == (0.0, 0.0, 1.0, 1.0)


def test_bald_is_zero_when_the_draws_agree_and_log2_for_two_opposite_certain_draws():
    p = np.random.default_rng(2).dirichlet(np.ones(4), size=5)
    assert np.allclose(scores.mutual_information(np.stack([p, p, p])), 0.0)
    opposite = np.stack([np.tile([1.0, 0.0], (3, 1)), np.tile([0.0, 1.0], (3, 1))])
    assert np.allclose(scores.mutual_information(opposite), math.log(2))


def test_fit_temperature_recovers_the_temperature_labels_were_drawn_at():
    rng = np.random.default_rng(3)
    logits = rng.normal(0.0, 3.0, size=(40_000, 5))
    true_t = 2.5
    probs = scores.tempered(logits, true_t)
    y = (probs.cumsum(1) > rng.random((len(probs), 1))).argmax(1)  # y ~ softmax(logits / T)
    assert scores.fit_temperature(logits, y) == pytest.approx(true_t, rel=0.05)
    assert np.allclose(scores.tempered(np.log(probs), 1.0), probs)  # log-probabilities are logits too


def test_mahalanobis_equals_the_direct_formula_and_ignores_a_constant_coordinate():
    rng = np.random.default_rng(4)
    reference = rng.multivariate_normal([1.0, -2.0], [[2.0, 0.6], [0.6, 0.5]], size=500)
    x = rng.normal(size=(7, 2))
    mu, precision = reference.mean(0), np.linalg.inv(np.cov(reference, rowvar=False))
    expected = [(v - mu) @ precision @ (v - mu) for v in x]
    assert np.allclose(scores.mahalanobis(reference, x), expected)
    constant = np.c_[reference, np.full(len(reference), 3.0)]
    assert np.allclose(scores.mahalanobis(constant, np.c_[x, np.full(len(x), 3.0)]), expected, atol=1e-8)
