"""Every analytic KL divergence between the guide's noise and the priors, registered in one place.

With these registered, :class:`pyro.infer.TraceMeanField_ELBO` charges each noisy site its exact KL
divergence, so that the ELBO is the Information Bottleneck Lagrangian. (Normal against Normal, for a
Gaussian latent with a normal prior, is registered by torch itself.)
"""

import math

import torch
from torch.distributions import Independent, LogNormal, kl_divergence, register_kl

from infodropout.guides.noise import MultiplicativeLogNormal

from .priors import LogUniform, MultivariateLogNormal

_LOG_2PI_E = math.log(2 * math.pi) + 1.0


@register_kl(MultiplicativeLogNormal, LogUniform)
def _kl_multiplicative_lognormal_loguniform(q: MultiplicativeLogNormal, p: LogUniform) -> torch.Tensor:
    r"""
    ``KL = -log(alpha / max_alpha)`` on active units (base > 0), ``0`` on inactive ones::

        KL(q || p) = E_q[log q(z) - log p(z)] = -H(Normal(0, alpha**2)) + const = -log alpha + const

    The constant of the improper prior is fixed so that the KL vanishes at the largest alpha the
    guide allows (``max_scale``; 1 when the guide does not state one).
    """
    kl = -torch.log(q.scale)
    if q.max_scale is not None:
        kl = kl + math.log(q.max_scale)
    kl = torch.where(q.base > 0, kl, torch.zeros_like(kl))
    if kl.shape != p.batch_shape:
        kl = kl.expand(torch.broadcast_shapes(kl.shape, p.batch_shape))
    return kl


@register_kl(MultiplicativeLogNormal, LogNormal)
def _kl_multiplicative_lognormal_lognormal(q: MultiplicativeLogNormal, p: LogNormal) -> torch.Tensor:
    r"""
    Both sides are log-normal (the same ``exp`` transform of a Normal), so the KL is that of the
    Normals on ``log z``, with ``log f`` guarded by a floor::

        KL = log(sigma / alpha) + (alpha**2 + (log max(f, 1e-4) - mu)**2) / (2 sigma**2) - 1/2
    """
    var_ratio = (q.scale / p.scale).square()
    t = (q.log_base() - p.loc) / p.scale
    return 0.5 * (var_ratio + t.square() - 1 - torch.log(var_ratio))


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


__all__ = ["kl_divergence"]
