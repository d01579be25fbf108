"""Every registered KL against a Monte Carlo estimate of E_q[log q(z) - log p(z)]."""

import math

import pytest
import torch
from torch.distributions import LogNormal, kl_divergence

import infodropout.models  # noqa: F401  (registers the KLs)
from infodropout.guides.noise import MultiplicativeLogNormal
from infodropout.models.priors import LogUniform, MultivariateLogNormal

from common import assert_close

N_MC = 200_000


def _mc_kl(q, p, n=N_MC):
    """Monte Carlo mean and standard error of log q(z) - log p(z), z ~ q, per batch element."""
    z = q.rsample((n,))
    d = q.log_prob(z) - p.log_prob(z)
    return d.mean(0), d.std(0) / math.sqrt(n)


def test_loguniform_kl_differs_from_monte_carlo_by_a_constant_on_active_units():
    torch.manual_seed(0)
    base = torch.tensor([0.01, 0.3, 1.0, 4.0, 50.0, 0.2, 2.0], dtype=torch.float64)
    alpha = torch.tensor([0.001, 0.05, 0.2, 0.35, 0.5, 0.65, 0.701], dtype=torch.float64)
    q = MultiplicativeLogNormal(base, alpha, max_scale=0.701)
    p = LogUniform(q.batch_shape)
    analytic = kl_divergence(q, p)
    assert_close(analytic, -torch.log(alpha / 0.701))
    mc, se = _mc_kl(q, p)
    diff = analytic - mc
    # the difference is the same for every alpha and f: the improper prior's constant
    expected_constant = math.log(0.701) + 0.5 * math.log(2 * math.pi * math.e)
    assert (diff - expected_constant).abs().max() < 5 * se.max()
    assert diff.std() < 5 * se.max()


def test_loguniform_kl_is_zero_on_units_that_are_off():
    q = MultiplicativeLogNormal(torch.tensor([0.0, 0.0, 1.0]), torch.tensor([0.01, 0.5, 0.01]), max_scale=0.701)
    kl = kl_divergence(q, LogUniform(q.batch_shape))
    assert kl[0] == 0 and kl[1] == 0 and kl[2] > 4
    z = q.rsample()
    assert (q.log_prob(z)[:2] == 0).all() and (LogUniform(q.batch_shape).log_prob(z)[:2] == 0).all()


def test_loguniform_kl_without_a_stated_bound_is_minus_log_alpha():
    q = MultiplicativeLogNormal(torch.ones(3), torch.tensor([0.1, 0.5, 1.0]))
    assert_close(kl_divergence(q, LogUniform((3,))), -torch.log(torch.tensor([0.1, 0.5, 1.0])))


@pytest.mark.parametrize("mu, sigma", [(0.0, 1.0), (-1.5, 0.4), (2.0, 3.0)])
def test_lognormal_kl_against_monte_carlo(mu, sigma):
    torch.manual_seed(1)
    base = torch.tensor([0.05, 0.5, 1.0, 3.0, 20.0], dtype=torch.float64)
    alpha = torch.tensor([0.01, 0.2, 0.7, 1.0, 0.35], dtype=torch.float64)
    q = MultiplicativeLogNormal(base, alpha)
    p = LogNormal(torch.full((5,), mu, dtype=torch.float64), torch.full((5,), sigma, dtype=torch.float64))
    analytic = kl_divergence(q, p)
    mc, se = _mc_kl(q, p)
    assert ((analytic - mc).abs() < 5 * se + 1e-9).all(), (analytic, mc, se)
    # and it is torch's LogNormal || LogNormal KL where f > 0 (an equivalent formulation)
    assert_close(analytic, kl_divergence(LogNormal(torch.log(base), alpha), p))


def test_lognormal_kl_floors_log_f():
    q = MultiplicativeLogNormal(torch.tensor([0.0, 1e-6, 1e-4]), torch.full((3,), 0.3))
    p = LogNormal(torch.zeros(3), torch.ones(3))
    kl = kl_divergence(q, p)
    assert torch.isfinite(kl).all()
    assert_close(kl[0], kl[2]) and assert_close(kl[1], kl[2])


def _lower_tri(d, seed):
    g = torch.Generator().manual_seed(seed)
    a = torch.randn(d, d, generator=g, dtype=torch.float64)
    return torch.linalg.cholesky(a @ a.T + d * torch.eye(d, dtype=torch.float64)) * 0.4


@pytest.mark.parametrize("form", ["full", "low-rank"])
def test_correlated_lognormal_kl_against_monte_carlo(form):
    torch.manual_seed(2)
    d = 4
    base = torch.tensor([[0.3, 1.0, 2.0, 0.7], [1.5, 0.2, 0.9, 4.0]], dtype=torch.float64)  # (B, D)
    alpha = torch.tensor([[0.1, 0.4, 0.7, 0.25], [0.6, 0.05, 0.3, 0.5]], dtype=torch.float64)
    q = MultiplicativeLogNormal(base, alpha).to_event(1)
    loc = torch.tensor([0.1, -0.3, 0.5, 0.0], dtype=torch.float64)
    if form == "full":
        p = MultivariateLogNormal(loc, scale_tril=_lower_tri(d, 0)).expand((2,))
    else:
        g = torch.Generator().manual_seed(1)
        w = torch.randn(d, 2, generator=g, dtype=torch.float64) * 0.5
        p = MultivariateLogNormal(loc, cov_factor=w, cov_diag=torch.full((d,), 0.3, dtype=torch.float64)).expand((2,))
    analytic = kl_divergence(q, p)
    assert analytic.shape == (2,)
    mc, se = _mc_kl(q, p)
    assert ((analytic - mc).abs() < 5 * se).all(), (analytic, mc, se)


def test_correlated_kl_with_diagonal_covariance_equals_the_factorised_kl():
    torch.manual_seed(3)
    base, alpha = torch.rand(3, 5, dtype=torch.float64) + 0.1, torch.rand(3, 5, dtype=torch.float64) * 0.6 + 0.05
    loc, sd = torch.randn(5, dtype=torch.float64), torch.rand(5, dtype=torch.float64) + 0.5
    q = MultiplicativeLogNormal(base, alpha)
    correlated = kl_divergence(q.to_event(1), MultivariateLogNormal(loc, scale_tril=torch.diag(sd)).expand((3,)))
    factorised = kl_divergence(q, LogNormal(loc.expand(3, 5), sd.expand(3, 5))).sum(-1)
    assert_close(correlated, factorised)


def test_independent_sites_sum_the_unit_kls():
    q = MultiplicativeLogNormal(torch.rand(2, 3, 4) + 0.1, torch.full((2, 3, 4), 0.3), max_scale=0.701)
    p = LogUniform((2, 3, 4))
    assert_close(kl_divergence(q.to_event(2), p.to_event(2)), kl_divergence(q, p).sum((-2, -1)))


def test_the_authors_convention_charges_minus_log_alpha_over_the_cap_to_every_unit():
    """The authors' code: ``kl = -log(alpha / (max_alpha + 0.001))`` for every unit, including units that are off."""
    alpha_min, alpha_max = 0.001, 0.7
    base = torch.tensor([0.0, 0.0, 0.3, 2.0, 0.0, 5.0], dtype=torch.float64)
    alpha = torch.tensor([0.001, 0.2, 0.35, 0.5, 0.701, 0.05], dtype=torch.float64)
    q = MultiplicativeLogNormal(base, alpha, max_scale=alpha_min + alpha_max)
    theirs = -torch.log(alpha / (alpha_max + alpha_min))
    authors = kl_divergence(q, LogUniform(q.batch_shape, convention="authors"))
    exact = kl_divergence(q, LogUniform(q.batch_shape))
    assert_close(authors, theirs)
    assert_close(exact, torch.where(base > 0, theirs, 0.0))
    assert (authors[base == 0] > 0).any(), "units that are off are charged only by the authors' convention"
    with pytest.raises(ValueError, match="kl_convention='tf'"):
        LogUniform((2,), convention="tf")
    assert LogUniform((2,), convention="authors").expand((3, 2)).convention == "authors"


def test_lognormal_kl_is_the_closed_form_of_the_normals_on_log_z():
    torch.manual_seed(4)
    base = torch.rand(50, dtype=torch.float64) * 3
    base[:5] = 0.0  # floored at 1e-4
    alpha = torch.rand(50, dtype=torch.float64) * 0.7 + 0.001
    mu, sigma = torch.randn(50, dtype=torch.float64), torch.rand(50, dtype=torch.float64) + 0.2
    q = MultiplicativeLogNormal(base, alpha)
    m = torch.log(base.clamp_min(1e-4))
    closed = torch.log(sigma / alpha) + (alpha**2 + (m - mu) ** 2) / (2 * sigma**2) - 0.5
    assert_close(kl_divergence(q, LogNormal(mu, sigma)), closed, rtol=1e-12, atol=1e-12)
