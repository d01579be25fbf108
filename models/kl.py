"""Every analytic KL divergence between the guide's noise and the priors, registered in one place, and
the one KL every caller takes: analytic where registered, Monte Carlo otherwise.

With these registered, :class:`pyro.infer.TraceMeanField_ELBO` charges each noisy site its exact KL
divergence, so that the ELBO is the Information Bottleneck Lagrangian. (Normal against Normal, for a
Gaussian latent with a normal prior, is registered by torch itself.) A prior of a user's own without a
registered KL still works everywhere: :func:`kl_or_estimate` (a site) and :func:`unit_kl` (its units)
fall back to Monte Carlo, for the ELBO, :meth:`~infodropout.models.InformationBottleneck.information`
and every measurement alike.
"""

import math

import torch
from torch.distributions import Independent, LogNormal, Normal, kl_divergence, register_kl

from infodropout.guides.noise import MultiplicativeLogNormal

from .priors import LogUniform, MultivariateLogNormal, check_kl_convention

_LOG_2PI_E = math.log(2 * math.pi) + 1.0
#: Draws of the Monte Carlo KL where no KL is registered for a pair and no sample is given.
KL_SAMPLES = 256


def kl_or_estimate(q, p, *, value=None, num_samples: int = KL_SAMPLES) -> tuple[torch.Tensor, bool]:
    r"""
    ``KL(q || p)``, and whether it is analytic. Where a KL is registered for the pair it is that;
    otherwise the Monte Carlo estimate::

        KL(q || p) ~= 1/S sum_s [log q(z_s) - log p(z_s)],     z_s ~ q

    at ``value`` (S = 1: the sample the guide drew, as ``TraceMeanField_ELBO`` does; unbiased), or over
    ``num_samples`` fresh draws (reparametrised where ``q`` allows) when no ``value`` is given.
    """
    try:
        return kl_divergence(q, p), True
    except NotImplementedError:
        if value is None:
            shape = torch.Size((num_samples,))
            value = q.rsample(shape) if q.has_rsample else q.sample(shape)
            return (q.log_prob(value) - p.log_prob(value)).mean(0), False
        return q.log_prob(value) - p.log_prob(value), False


def elementwise(d) -> tuple[object, int]:
    """The elementwise distribution under ``Independent`` wrappers, and how many event dims they add."""
    dims = 0
    while isinstance(d, Independent):
        dims += d.reinterpreted_batch_ndims
        d = d.base_dist
    return d, dims


def unit_kl(q, p, *, num_samples: int = KL_SAMPLES) -> tuple[torch.Tensor, bool]:
    r"""
    The KL divergence of every unit of a site, ``(B, *event)``, and whether it is analytic::

        kl[b, u] = KL(q(z_u | x_b) || p(z_u))

    with both sides' ``Independent`` wrappers removed: the prior must factorise over the units (its
    elementwise distribution broadcasts to the guide's), so that the site's KL is ``kl`` summed over
    the units. Monte Carlo over ``num_samples`` draws where no KL is registered (:func:`kl_or_estimate`).
    """
    q, _ = elementwise(q)
    p, _ = elementwise(p)
    try:
        torch.broadcast_shapes(p.batch_shape, q.batch_shape)
        factorised = len(p.batch_shape) <= len(q.batch_shape) and not p.event_shape
    except RuntimeError:
        factorised = False
    if not factorised:
        raise ValueError(
            f"a {type(p).__name__} prior of batch shape {tuple(p.batch_shape)} and event shape {tuple(p.event_shape)} "
            f"does not factorise over the guide's units {tuple(q.batch_shape)}: no KL per unit"
        )
    kl, analytic = kl_or_estimate(q, p, num_samples=num_samples)
    return kl.expand(torch.broadcast_shapes(kl.shape, q.batch_shape)), analytic


def loguniform_kl(q: MultiplicativeLogNormal, convention: str = "exact") -> torch.Tensor:
    r"""
    The information of each unit of ``q`` against the log-uniform prior, elementwise::

        exact:    KL = -log(alpha / max_alpha)  where base > 0,   0  where base == 0
        authors:  KL = -log(alpha / max_alpha)  for every unit

    ``KL(q || p) = E_q[log q(z) - log p(z)] = -H(Normal(0, alpha**2)) + const = -log alpha + const`` on
    an active unit; the constant of the improper prior is fixed so that the KL vanishes at the largest
    alpha the guide allows (``max_scale``; 1 when the guide does not state one). A unit that is off is a
    point mass at 0 under both q and p: its exact KL is 0, which the authors' code does not use.
    """
    kl = -torch.log(q.scale)
    if q.max_scale is not None:
        kl = kl + math.log(q.max_scale)
    if check_kl_convention(convention) == "exact":
        kl = torch.where(q.base > 0, kl, torch.zeros_like(kl))
    return kl


@register_kl(MultiplicativeLogNormal, LogUniform)
def _kl_multiplicative_lognormal_loguniform(q: MultiplicativeLogNormal, p: LogUniform) -> torch.Tensor:
    """:func:`loguniform_kl` under the prior's convention, broadcast to the prior's batch shape."""
    kl = loguniform_kl(q, p.convention)
    if kl.shape != p.batch_shape:
        kl = kl.expand(torch.broadcast_shapes(kl.shape, p.batch_shape))
    return kl


@register_kl(MultiplicativeLogNormal, LogNormal)
def _kl_multiplicative_lognormal_lognormal(q: MultiplicativeLogNormal, p: LogNormal) -> torch.Tensor:
    r"""
    Both sides are log-normal (the same ``exp`` transform of a Normal), so the KL is torch's KL of the
    Normals on ``log z``, with ``log f`` guarded by a floor::

        KL = log(sigma / alpha) + (alpha**2 + (log max(f, 1e-4) - mu)**2) / (2 sigma**2) - 1/2
    """
    return kl_divergence(Normal(q.log_base(), q.scale, validate_args=False), p.base_dist)


@register_kl(Independent, MultivariateLogNormal)
def _kl_independent_multivariate_lognormal(q: Independent, p: MultivariateLogNormal) -> torch.Tensor:
    r"""
    A vector of independent multiplicative log-normal units against a correlated log-normal prior:
    with ``m = log max(f, 1e-4)``, ``s = alpha`` and ``P`` the prior's precision on ``log z``::

        KL = -D/2 log(2 pi e) - sum_j log s_j - log N(m; loc, Sigma) + 1/2 sum_j P_jj s_j**2
    """
    base = q.base_dist
    if not (isinstance(base, MultiplicativeLogNormal) and q.reinterpreted_batch_ndims == 1):
        raise NotImplementedError
    m, s = base.log_base(), base.scale  # (..., D)
    mvn = p.base_dist
    precision_diag = mvn.precision_matrix.diagonal(dim1=-2, dim2=-1)  # (..., D)
    dim = m.shape[-1]
    return (
        -0.5 * dim * _LOG_2PI_E - torch.log(s).sum(-1) - mvn.log_prob(m) + 0.5 * (precision_diag * s.square()).sum(-1)
    )


__all__ = ["KL_SAMPLES", "elementwise", "kl_divergence", "kl_or_estimate", "loguniform_kl", "unit_kl"]
