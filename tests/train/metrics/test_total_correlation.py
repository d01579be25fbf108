"""Total correlation of the aggregate posterior: closed forms for Gaussian codes, exact discrete answers for
finite data sets with narrow posteriors, a brute-force equivalence, and the minibatch estimators beside it."""

import importlib
import math

import numpy as np
import pytest
from scipy.special import logsumexp

from infodropout.train.metrics import total_correlation

tc_module = importlib.import_module("infodropout.train.metrics.total_correlation")  # the module, not the function


def gaussian_codes(dims: int, rho: float, s: float, informative: int, num_components: int, seed: int = 0):
    """The module's Gaussian codes of a known TC, with their covariance's closed form computed here again."""
    loc, scale, tc, _ = tc_module.gaussian_case(dims, (rho, s, informative), num_components, seed)
    i = np.arange(informative)
    a = np.zeros((dims, dims))
    a[:informative, :informative] = rho ** np.abs(i[:, None] - i[None])
    cov = a + np.diag(scale[0] ** 2)
    assert tc == pytest.approx(closed_form_tc(cov), rel=1e-12)
    return loc, scale, tc, cov


def closed_form_tc(cov: np.ndarray) -> float:
    return 0.5 * (np.log(np.diag(cov)).sum() - np.linalg.slogdet(cov)[1])


def factor_grid(dims: int, sizes=(3, 6, 10, 8, 8), seed: int = 0) -> np.ndarray:
    """A data set like dSprites (every combination of the factors' values, uniform), encoded as ``B f``
    with a 0/1 matrix ``B (D, F)``: latent d sums ``1 + d % 3`` random factors."""
    rng = np.random.default_rng(seed)
    factors = np.stack(np.meshgrid(*[np.arange(n) for n in sizes], indexing="ij"), -1).reshape(-1, len(sizes))
    mixing = np.zeros((dims, len(sizes)), dtype=np.int64)
    for d in range(dims):
        mixing[d, rng.choice(len(sizes), size=1 + d % 3, replace=False)] = 1
    return (factors @ mixing.T).astype(np.float64)


# (D, rho, s, informative dimensions, N_c, M): the smallest sizes within 10% over five seeds
OVERLAPPING = [
    (3, 0.9, 0.3, 3, 2_000, 2_000),
    (10, 0.9, 1.0, 10, 3_000, 3_000),
    (10, 0.8, 0.3, 5, 10_000, 2_000),
    (20, 0.9, 1.0, 20, 3_000, 2_000),
    (20, 0.8, 0.3, 5, 10_000, 2_000),
]


@pytest.mark.parametrize("dims, rho, s, informative, num_components, num_samples", OVERLAPPING)
def test_overlapping_gaussian_posteriors_match_the_closed_form(dims, rho, s, informative, num_components, num_samples):
    """Posteriors wide enough that ``log N_c`` exceeds the encoder's I(x; z) by about 4 nats: the finite
    mixture is close to its Gaussian limit; within 10% of the closed form, and the bounds bracket it."""
    loc, scale, expected, _ = gaussian_codes(dims, rho, s, informative, num_components)
    result = total_correlation(loc, scale, num_samples=num_samples, num_marginal_components=num_samples, seed=0)
    assert result["total_correlation"] == pytest.approx(expected, rel=0.10)
    assert result["standard_error"] < 0.04 * expected
    tolerance = 3 * max(result["total_correlation_lower_se"], result["total_correlation_upper_se"])
    assert result["total_correlation_lower"] - tolerance <= expected <= result["total_correlation_upper"] + tolerance
    assert result["num_components"] == num_components and result["num_samples"] == num_samples


@pytest.mark.parametrize("dims", [3, 10, 20])
def test_narrow_posteriors_on_a_whole_finite_data_set_are_exact(dims):
    """The hard case for a finite mixture, solved by passing the whole data set: narrow posteriors (scale
    0.05, values 1 apart) on a factor grid are separated peaks, whose TC is the discrete one."""
    loc = factor_grid(dims)
    expected = tc_module.discrete_total_correlation(loc)
    result = total_correlation(loc, np.full(loc.shape, 0.05), num_samples=1_000, num_marginal_components=2_000)
    assert result["total_correlation"] == pytest.approx(expected, rel=0.10)
    assert abs(result["total_correlation"] - expected) <= 4 * result["standard_error"]
    # separated peaks: the own component's share of q(z_m) is 1 / (the number of points at its place)
    _, where, count = np.unique(loc, axis=0, return_inverse=True, return_counts=True)
    assert result["own_component_share"] == pytest.approx(np.mean(1 / count[where.ravel()]), abs=0.02)


def test_a_subset_of_a_finite_data_set_is_biased_up_and_its_bounds_say_so():
    """A tenth of the same grid: its mixture's I(n; z) is capped at log N_c, so the TC comes out too large;
    the lower bound falls far below, flagging that more components are needed."""
    loc = factor_grid(10)
    expected = tc_module.discrete_total_correlation(loc)
    rows = np.random.default_rng(1).choice(len(loc), size=len(loc) // 10, replace=False)
    scale = np.full(loc.shape, 0.05)
    result = total_correlation(loc[rows], scale[rows], num_data=len(loc), num_samples=1_000, seed=0)
    assert result["total_correlation"] > 1.1 * expected
    assert result["mutual_info"] == pytest.approx(math.log(len(rows)), abs=0.1)
    assert result["total_correlation_lower"] < expected < result["total_correlation_upper"]


def test_narrow_gaussian_posteriors_are_out_of_reach_of_a_finite_mixture():
    """Where the estimator stops being within 10%: narrow posteriors (scale 0.1 against spread 1) in 10
    correlated dimensions carry I(x; z) of 18 nats, far above log N_c; the estimate of the finite mixture
    is then several times the continuous limit's TC, its own-component share near 1, and only the bounds
    (lower far below, upper at the estimate) keep the truth in sight."""
    loc, scale, expected, cov = gaussian_codes(10, 0.9, 0.1, 10, 5_000)
    info = 0.5 * (np.linalg.slogdet(cov)[1] - 2 * np.log(scale[0]).sum())
    assert info > math.log(5_000) + 5
    result = total_correlation(loc, scale, num_samples=1_000, seed=0)
    assert result["total_correlation"] > 2 * expected
    assert result["own_component_share"] > 0.9
    assert result["total_correlation_lower"] < expected < result["total_correlation_upper"]


def brute_force(loc, scale, z, own, num_data):
    """Every estimate from the full ``(M, N_c, D)`` table of log-densities, by ``logsumexp``."""
    m, n_c = len(z), len(loc)
    log_d = -0.5 * ((z[:, None] - loc[None]) / scale[None]) ** 2 - np.log(scale[None]) - 0.5 * math.log(2 * math.pi)
    log_j = log_d.sum(axis=2)  # (M, N_c)
    rows = np.arange(m)
    self_j, self_d = log_j[rows, own], log_d[rows, own]
    others = np.ones((m, n_c), bool)
    others[rows, own] = False
    log_q, log_q_d = logsumexp(log_j, axis=1) - math.log(n_c), logsumexp(log_d, axis=1) - math.log(n_c)
    loo = logsumexp(np.where(others, log_j, -np.inf), axis=1) - math.log(n_c - 1)
    loo_d = logsumexp(np.where(others[:, :, None], log_d, -np.inf), axis=1) - math.log(n_c - 1)
    batch_j, batch_d = log_j[:, own], log_d[:, own]  # the samples' own components as the minibatch
    mws, mws_d = logsumexp(batch_j, axis=1) - math.log(m), logsumexp(batch_d, axis=1) - math.log(m)
    off = ~np.eye(m, dtype=bool)
    w = math.log((num_data - 1) / (num_data * (m - 1)))
    mss = np.logaddexp(self_j - math.log(num_data), w + logsumexp(np.where(off, batch_j, -np.inf), axis=1))
    mss_d = np.logaddexp(
        self_d - math.log(num_data), w + logsumexp(np.where(off[:, :, None], batch_d, -np.inf), axis=1)
    )
    return {
        "total_correlation": np.mean(log_q - log_q_d.sum(1)),
        "total_correlation_lower": np.mean((self_d - log_q_d).sum(1) - (self_j - loo)),
        "total_correlation_upper": np.mean((self_d - loo_d).sum(1) - (self_j - log_q)),
        "mutual_info": np.mean(self_j - log_q),
        "entropy": -np.mean(log_q),
        "tc_mws": np.mean(mws - mws_d.sum(1)),
        "tc_mss": np.mean(mss - mss_d.sum(1)),
    }


@pytest.mark.parametrize("dims, s", [(3, 0.5), (4, 0.02)], ids=["overlapping", "narrow"])
def test_every_estimate_equals_a_brute_force_computation(dims, s):
    """All components in the marginals (K = None): the blocked matrix-product log-sum-exp, the stratified
    marginals, the bounds and the minibatch estimators equal a direct ``logsumexp`` over the full table."""
    rng = np.random.default_rng(5)
    loc = rng.normal(size=(300, dims)) * [1.0, 3.0, 0.2, 1.0][:dims] + 40.0
    scale = s * np.exp(rng.normal(0, 0.3, size=loc.shape))  # varying scales
    sample = loc + scale * rng.normal(size=loc.shape)
    result = total_correlation(
        loc, scale, sample, num_data=10**5, num_samples=200, num_marginal_components=None, seed=2
    )
    own = np.random.default_rng(2).permutation(300)[:200]  # the function's choice of rows, from the same seed
    expected = brute_force(loc, scale, sample[own], own, 10**5)
    for key, value in expected.items():
        assert result[key] == pytest.approx(value, rel=1e-9, abs=1e-9), key


def test_the_stratified_marginals_are_close_to_the_exact_ones():
    """K components per marginal (the samples' own ones) against all N_c: a small difference, shrinking with K."""
    loc, scale, _, _ = gaussian_codes(10, 0.8, 0.3, 5, 8_000)
    exact = total_correlation(loc, scale, num_samples=1_000, num_marginal_components=None, seed=0)
    for k, tolerance in ((1_000, 0.05), (4_000, 0.02)):
        part = total_correlation(loc, scale, num_samples=1_000, num_marginal_components=k, seed=0)
        assert part["num_marginal_components"] == k
        assert part["total_correlation"] == pytest.approx(exact["total_correlation"], abs=tolerance)


def test_the_joint_sums_survive_under_and_overflow():
    """The per-sample shift of the fast pass is the own component's log-density: components 1,000 nats
    below it (or above it) are summed again with a running maximum, exactly."""
    loc = np.array([[0.0, 0.0], [1.0, 0.0], [0.0, 30.0]])
    scale = np.array([[0.02, 0.02], [0.02, 0.02], [1e-3, 1e-3]])
    z = np.array([[0.0, 0.0], [0.0, 30.0]])
    own = np.array([0, 1])  # the second sample sits on component 2's narrow peak, far above its own density
    log_d = -0.5 * ((z[:, None] - loc[None]) / scale[None]) ** 2 - np.log(scale[None]) - 0.5 * math.log(2 * math.pi)
    log_j = log_d.sum(axis=2)
    expected = [logsumexp(log_j[0, [1, 2]]), logsumexp(log_j[1, [0, 2]])]
    self_j = log_j[[0, 1], own]
    assert max(abs(log_j[0, 1] - self_j[0]), abs(log_j[1, 2] - self_j[1])) > 700
    got = tc_module._joint_log_sum_others(z, own, loc, scale, self_j)
    np.testing.assert_allclose(got, expected, rtol=1e-7)  # the expanded quadratic forms cancel: 30^2 / 1e-6
    marginal, batch, count = tc_module._marginal_log_sum_others(z, own, loc, scale, 2, None)
    np.testing.assert_allclose(marginal, [logsumexp(np.delete(log_d[i], own[i], axis=0), axis=0) for i in (0, 1)])
    np.testing.assert_allclose(batch, [logsumexp(np.delete(log_d[i, :2], own[i], axis=0), axis=0) for i in (0, 1)])
    np.testing.assert_array_equal(count, [2, 2])


def test_independent_dimensions_have_zero_total_correlation():
    loc, scale, expected, _ = gaussian_codes(3, 0.0, 0.5, 3, 4_000)
    assert expected == pytest.approx(0.0)
    result = total_correlation(loc, scale, num_samples=4_000, seed=0)
    for key in ("total_correlation", "tc_mss", "tc_mws"):
        assert abs(result[key]) <= 0.05, key


def test_entropies_and_mutual_information_match_the_closed_form():
    loc, scale, _, cov = gaussian_codes(3, 0.8, 0.5, 3, 4_000, seed=1)
    result = total_correlation(loc, scale, num_samples=4_000, seed=1)
    entropy = 0.5 * np.linalg.slogdet(2 * math.pi * math.e * cov)[1]
    marginal = 0.5 * np.log(2 * math.pi * math.e * np.diag(cov))
    conditional = 0.5 * np.log(2 * math.pi * math.e * 0.5**2)  # H(z_d | x), per dimension
    assert result["entropy"] == pytest.approx(entropy, abs=0.05)
    np.testing.assert_allclose(result["marginal_entropy"], marginal, atol=0.05)
    assert result["mutual_info"] == pytest.approx(entropy - 3 * conditional, abs=0.05)
    np.testing.assert_allclose(result["mutual_info_per_dim"], marginal - conditional, atol=0.05)
    # TC = sum_d H(z_d) - H(z) for each estimator, by construction of the estimates
    assert result["total_correlation"] == pytest.approx(result["marginal_entropy"].sum() - result["entropy"])
    for e in ("mss", "mws"):
        assert result[f"tc_{e}"] == pytest.approx(result[f"marginal_entropy_{e}"].sum() - result[f"entropy_{e}"])


def test_with_the_whole_data_set_every_estimator_agrees():
    """M = N_c = N: MSS's weights are 1/N for every posterior, MWS's too, and so are the mixture's."""
    loc, scale, _, _ = gaussian_codes(3, 0.8, 0.5, 3, 500)
    sample = loc + scale * np.random.default_rng(0).normal(size=loc.shape)
    a = total_correlation(loc, scale, sample, num_samples=None, num_marginal_components=None)
    assert a["tc_mss"] == pytest.approx(a["tc_mws"], abs=1e-12)
    assert a["total_correlation"] == pytest.approx(a["tc_mws"], abs=1e-12)
    np.testing.assert_allclose(a["marginal_entropy_mss"], a["marginal_entropy"], atol=1e-12)


def test_invariant_under_an_affine_map_of_each_dimension():
    """TC is invariant under elementwise bijections (such as log for a log-normal latent): exactly so for
    every estimate under an affine map; marginal entropies move by log |a_d|."""
    loc, scale, _, _ = gaussian_codes(3, 0.8, 0.5, 3, 800)
    z = loc + scale * np.random.default_rng(1).normal(size=loc.shape)
    a, b = np.array([2.0, -0.1, 30.0]), np.array([1.0, 5.0, -3.0])
    sizes = dict(num_samples=500, num_marginal_components=300, num_data=10**5)
    base = total_correlation(loc, scale, z, **sizes)
    moved = total_correlation(a * loc + b, abs(a) * scale, a * z + b, **sizes)
    for key in ("total_correlation", "total_correlation_lower", "total_correlation_upper", "tc_mss", "tc_mws"):
        assert moved[key] == pytest.approx(base[key], abs=1e-9), key
    np.testing.assert_allclose(moved["marginal_entropy"], base["marginal_entropy"] + np.log(abs(a)), atol=1e-9)


def test_blocks_do_not_change_the_estimate_and_drawn_samples_agree():
    loc, scale, expected, _ = gaussian_codes(3, 0.9, 0.3, 3, 2_000)
    sample = loc + scale * np.random.default_rng(3).normal(size=loc.shape)
    whole = total_correlation(loc, scale, sample, num_samples=600, num_marginal_components=900, seed=1)
    blocked = total_correlation(loc, scale, sample, num_samples=600, num_marginal_components=900, chunk_size=7, seed=1)
    assert blocked["total_correlation"] == pytest.approx(whole["total_correlation"], abs=1e-12)
    assert whole["num_samples"] == 600 and whole["num_marginal_components"] == 900
    drawn = total_correlation(loc, scale, num_samples=6_000, seed=4)  # more samples than components: with replacement
    assert drawn["num_samples"] == 6_000
    assert drawn["total_correlation"] == pytest.approx(expected, rel=0.10)


def test_isolated_points_give_the_discrete_total_correlation():
    """Posteriors far narrower than their spacing, every value distinct per dimension: each density is the
    sample's own, weighted 1/N_c (the mixture, MWS with M = N_c) or 1/N (MSS): TC = (D - 1) log of that."""
    rng = np.random.default_rng(4)
    loc = np.stack([rng.permutation(200) for _ in range(4)], axis=1).astype(np.float64)  # spacing 1 per dimension
    scale = np.full(loc.shape, 1e-3)
    result = total_correlation(loc, scale, loc + scale * rng.normal(size=loc.shape), num_data=10**6, num_samples=None)
    assert result["total_correlation"] == pytest.approx(3 * math.log(200), rel=1e-6)
    assert result["tc_mss"] == pytest.approx(3 * math.log(10**6), rel=1e-6)
    assert result["tc_mws"] == pytest.approx(3 * math.log(200), rel=1e-6)
    assert math.isfinite(result["total_correlation_lower"]) and math.isfinite(result["total_correlation_upper"])


def test_bad_input_is_a_one_line_error():
    loc = np.zeros((10, 2))
    with pytest.raises(ValueError, match="scale: shape"):
        total_correlation(loc, np.ones((10, 3)))
    with pytest.raises(ValueError, match="scale: expected positive"):
        total_correlation(loc, np.zeros((10, 2)))
    with pytest.raises(ValueError, match="num_data=5: smaller than the 10 components"):
        total_correlation(loc, np.ones((10, 2)), loc, 5)
    with pytest.raises(ValueError, match="sample: contains NaN"):
        total_correlation(loc, np.ones((10, 2)), np.full((10, 2), np.nan))
    with pytest.raises(ValueError, match="sample: shape"):
        total_correlation(loc, np.ones((10, 2)), np.zeros((9, 2)))
    with pytest.raises(ValueError, match="num_samples=1"):
        total_correlation(loc, np.ones((10, 2)), num_samples=1)
    with pytest.raises(ValueError, match="num_marginal_components=0"):
        total_correlation(loc, np.ones((10, 2)), num_marginal_components=0)
