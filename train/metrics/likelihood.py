"""The importance-weighted estimate of log p(x) from log importance weights."""

import math

import numpy as np


def as_log_weights(log_weights, name: str = "log_weights") -> np.ndarray:
    """``log_weights`` as float64 ``(K, N)`` (K samples per example), no NaN or ``+inf`` (``-inf``, a zero
    weight, is allowed)."""
    array = np.asarray(log_weights)
    if array.ndim != 2:
        raise ValueError(f"{name}: expected a 2-d array (K samples, N examples), got shape {array.shape}")
    if not np.issubdtype(array.dtype, np.number):
        raise ValueError(f"{name}: expected numbers, got dtype {array.dtype}")
    array = array.astype(np.float64, copy=False)
    if array.shape[0] < 1 or array.shape[1] < 1:
        raise ValueError(f"{name}: expected at least one sample and one example, got shape {array.shape}")
    if np.isnan(array).any() or np.isposinf(array).any():
        raise ValueError(f"{name}: contains NaN or +inf")
    return array


def log_mean_exp(values: np.ndarray, axis: int = 0) -> np.ndarray:
    """``log(mean(exp(values)))`` along ``axis``, computed as ``max + log(mean(exp(values - max)))``;
    ``-inf`` where every value is ``-inf``."""
    peak = values.max(axis=axis, keepdims=True)
    safe = np.where(np.isfinite(peak), peak, 0.0)
    with np.errstate(divide="ignore"):
        out = np.log(np.exp(values - safe).mean(axis=axis, keepdims=True)) + safe
    return np.squeeze(out, axis=axis)


def iw_log_likelihood(log_weights) -> dict:
    r"""
    The importance-weighted estimate of ``log p(x)`` per example (Burda et al. 2016, the IWAE bound)::

        log p(x) ~= log 1/K sum_k w_k,    w_k = p(x | z_k) p(z_k) / q(z_k | x),   z_k ~ q(z | x)

    Its expectation is a lower bound on ``log p(x)`` that increases with K and tends to it; at K = 1 it
    is the ELBO. Computed stably as ``max_k log w_k + log mean_k exp(log w_k - max_k log w_k)``.

    :param log_weights: ``(K, N)`` log importance weights, samples along the first axis.
    :returns: ``log_likelihood (N,)``, ``mean`` (over examples), ``elbo (N,)`` (the mean of ``log w``
        over the samples, a Monte Carlo ELBO), ``elbo_mean``, ``ess (N,)`` (the effective sample size
        ``(sum w)^2 / sum w^2``, between 1 and K), ``num_samples`` (K), ``num_examples`` (N).
    """
    lw = as_log_weights(log_weights)
    ll = log_mean_exp(lw, axis=0)  # (N,)
    with np.errstate(invalid="ignore"):
        normalized = lw - ll[None] - math.log(lw.shape[0])  # log of w_k / sum w
        ess = 1.0 / np.exp(2 * normalized).sum(axis=0)
    ess = np.where(np.isfinite(ll), ess, 0.0)
    elbo = lw.mean(axis=0)
    return {
        "log_likelihood": ll,
        "mean": float(ll.mean()),
        "elbo": elbo,
        "elbo_mean": float(elbo.mean()),
        "ess": ess,
        "num_samples": lw.shape[0],
        "num_examples": lw.shape[1],
    }
