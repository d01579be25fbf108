"""FactorVAE score: disentanglement_lib's known answers, pruning, and the majority-vote classifier."""

import numpy as np
import pytest

from infodropout.train.metrics import factor_vae_score, majority_vote_accuracy, prune_dims
from infodropout.train.metrics.factor_vae import vote

SMALL = dict(batch_size=5, num_train=3000, num_eval=2000, num_variance=2500)  # disentanglement_lib's test sizes


def identity_factors(n: int, num_factors: int = 10, num_classes: int = 10, seed: int = 0) -> np.ndarray:
    """disentanglement_lib's dummy data: independent uniform factor classes, their own observations."""
    return np.random.default_rng(seed).integers(0, num_classes, size=(n, num_factors))


def test_identity_representation_scores_one():
    factors = identity_factors(5000)
    result = factor_vae_score(factors.astype(np.float64), factors, **SMALL)
    # fixing factor k leaves latent k with zero variance: every vote is right, but for the rare ties of
    # another latent whose 5 points happen to share a class too
    assert result["train_accuracy"] >= 0.99 and result["eval_accuracy"] >= 0.99
    assert result["num_active_dims"] == 10
    np.testing.assert_array_equal(result["classifier"], np.arange(10))


def test_monotone_transform_of_the_identity_still_scores_one():
    factors = identity_factors(5000)
    result = factor_vae_score(np.exp(factors / 3.0), factors, **SMALL)
    assert result["eval_accuracy"] >= 0.9


def test_constant_representation_scores_zero():
    factors = identity_factors(5000)
    result = factor_vae_score(np.zeros((5000, 10)), factors, **SMALL)
    assert result["train_accuracy"] == 0.0 and result["eval_accuracy"] == 0.0
    assert result["num_active_dims"] == 0


def test_noise_representation_scores_chance():
    factors = identity_factors(5000)
    noise = np.random.default_rng(1).normal(size=(5000, 10))
    result = factor_vae_score(noise, factors, **SMALL)
    assert result["eval_accuracy"] <= 0.2  # chance is 1/10


def test_collapsed_latents_are_pruned_and_never_voted_for():
    factors = identity_factors(5000, num_factors=3)
    rng = np.random.default_rng(3)
    codes = np.c_[factors, 0.01 * rng.normal(size=(5000, 2))]  # std 0.01 < 0.05
    result = factor_vae_score(codes, factors, **SMALL)
    np.testing.assert_array_equal(result["active_dims"], [True, True, True, False, False])
    assert result["num_active_dims"] == 3
    assert result["train_votes"][:, 3:].sum() == 0 and result["eval_votes"][:, 3:].sum() == 0
    assert result["eval_accuracy"] == 1.0


@pytest.mark.parametrize("threshold", [0.0, 0.05])
def test_a_constant_latent_never_wins_a_vote(threshold):
    """Its normalised variance would be 0 / 0 = NaN, which argmin picks: at threshold 0 it won every vote."""
    factors = identity_factors(5000, num_factors=3)
    codes = np.c_[factors.astype(np.float64), np.full(5000, 7.0)]  # the identity plus a constant
    result = factor_vae_score(codes, factors, prune_threshold=threshold, **SMALL)
    np.testing.assert_array_equal(result["active_dims"], [True, True, True, False])
    assert result["train_votes"][:, 3].sum() == 0 and result["eval_votes"][:, 3].sum() == 0
    assert result["eval_accuracy"] == 1.0


def test_prune_dims_keeps_positive_variances_at_the_threshold():
    np.testing.assert_array_equal(prune_dims(np.array([0.0, 1e-12, 0.0025, 1.0]), 0.0), [False, True, True, True])
    np.testing.assert_array_equal(prune_dims(np.array([0.0, 1e-12, 0.0025, 1.0]), 0.05), [False, False, True, True])
    with pytest.raises(ValueError, match="active: no active latent"):
        vote(np.ones(2), np.zeros(2), np.array([True, True]))


def test_votes_fix_one_class_of_the_factor():
    """A latent equal to a factor plus noise far smaller than a class step has tiny variance in every vote
    only if all of the vote's points share the class: the accuracy would drop otherwise."""
    factors = identity_factors(4000, num_factors=4, num_classes=40)  # classes of about 100 points
    rng = np.random.default_rng(4)
    codes = factors + 1e-3 * rng.normal(size=factors.shape)
    result = factor_vae_score(codes, factors, batch_size=64, num_train=500, num_eval=500, num_variance=4000)
    assert result["eval_accuracy"] == 1.0
    assert result["train_votes"].sum() == 500 and result["eval_votes"].sum() == 500


def test_majority_vote_accuracy_of_hand_built_votes():
    train = np.array([[10, 0, 0], [5, 5, 0]])  # latent 0 -> factor 0, latent 1 -> factor 1, latent 2 -> factor 0
    evaluation = np.array([[3, 1, 0], [2, 4, 0]])
    out = majority_vote_accuracy(train, evaluation)
    np.testing.assert_array_equal(out["classifier"], [0, 1, 0])
    assert out["train_accuracy"] == pytest.approx(15 / 20)
    assert out["eval_accuracy"] == pytest.approx(7 / 10)


def test_the_score_is_reproducible_from_its_seed():
    factors = identity_factors(2000, num_factors=3)
    codes = factors + np.random.default_rng(5).normal(size=factors.shape)
    a = factor_vae_score(codes, factors, num_train=300, num_eval=200, seed=7)
    b = factor_vae_score(codes, factors, num_train=300, num_eval=200, seed=7)
    np.testing.assert_array_equal(a["train_votes"], b["train_votes"])
    np.testing.assert_array_equal(a["eval_votes"], b["eval_votes"])


def test_bad_input_is_a_one_line_error():
    factors = identity_factors(100, num_factors=2)
    with pytest.raises(ValueError, match="factors: 100 rows for 99 points"):
        factor_vae_score(np.zeros((99, 3)), factors)
    with pytest.raises(ValueError, match="factors: factor 1 is constant"):
        factor_vae_score(np.zeros((100, 3)), np.c_[factors[:, 0], np.ones(100, int)])
    with pytest.raises(ValueError, match="batch_size=1"):
        factor_vae_score(np.zeros((100, 3)), factors, batch_size=1)
    with pytest.raises(ValueError, match="no class of factor 0 has 2 points"):
        factor_vae_score(np.eye(4), np.c_[np.arange(4), [0, 0, 1, 1]])
