"""The KL divergence per latent dimension, averaged over the data."""

import math

import numpy as np

from ._validate import as_codes


def kl_per_dimension(kl) -> dict:
    r"""
    Summary of per-example, per-dimension KL divergences ``kl[n, d] = KL(q(z_d | x_n) || p_d(z_d))`` in
    nats (for a factorised prior these sum over d to the site's KL; for a correlated prior see
    :func:`infodropout.train.evaluation.dimension_kl`, which gives the marginal KLs)::

        kl_per_dim[d] = 1/N sum_n kl[n, d]

    :param kl: ``(N, D)`` nonnegative KL divergences.
    :returns: ``kl_per_dim (D,)``, ``kl_per_dim_se (D,)`` (standard errors over the N examples),
        ``kl_sum`` (the sum over dimensions of ``kl_per_dim``), ``order (D,)`` (dimensions by decreasing
        KL), ``num_points``.
    """
    values = as_codes(kl, "kl", min_points=1)
    if (values < -1e-9 * np.maximum(1.0, np.abs(values).max())).any():
        raise ValueError("kl: expected nonnegative KL divergences")
    mean = values.mean(axis=0)
    se = values.std(axis=0, ddof=1) / math.sqrt(len(values)) if len(values) > 1 else np.full(len(mean), math.inf)
    return {
        "kl_per_dim": mean,
        "kl_per_dim_se": se,
        "kl_sum": float(mean.sum()),
        "order": np.argsort(-mean, kind="stable"),
        "num_points": len(values),
    }


def summarise_kl(kl, kl_joint, *, exact: bool, analytic: bool, site: str) -> dict:
    """The KL-per-dimension result of per-example KLs ``kl (N, D)`` and the site's ``kl_joint (N,)``: the
    keys of :func:`kl_per_dimension`, ``exact`` (``kl`` are the terms of ``kl_joint``, not marginal KLs),
    ``analytic`` (not Monte Carlo estimates), ``kl_total`` (the mean KL of the site) and ``site``."""
    out = kl_per_dimension(kl)
    out.update(exact=bool(exact), analytic=bool(analytic), kl_total=float(np.mean(kl_joint)), site=site)
    return out
