"""The importance-weighted log-likelihood of a reconstruction model: log importance weights from the
model's and the guide's own Pyro densities, and what they estimate.

PSIS, its k-hat diagnostic and ArviZ's files are in :mod:`infodropout.train.metrics.psis`.
"""

import contextlib
import math
import re

import numpy as np
import pyro
import pyro.poutine as poutine
import torch
from pyro.poutine.util import site_is_subsample

from infodropout.guides.layers import sampling
from infodropout.models.kl import elementwise
from infodropout.models.priors import is_improper
from infodropout.train.metrics.likelihood import iw_log_likelihood

from .context import evaluating
from .sites import to_model


@contextlib.contextmanager
def _unscaled(ib):
    """``num_data`` set to None for the duration (no N / B scaling of the sites)."""
    before = ib.num_data
    ib.num_data = None
    try:
        yield
    finally:
        ib.num_data = before


def _improper_site(model_trace) -> str | None:
    """``"'SITE' is NAME"`` for the first latent site of a model trace whose prior is improper
    (:func:`is_improper`; NAME its distribution's class in words, e.g. ``log-uniform``), or None."""
    for name, site in model_trace.nodes.items():
        if site["type"] == "sample" and not site["is_observed"] and not site_is_subsample(site):
            if is_improper(site["fn"]):
                fn = elementwise(site["fn"])[0]
                return f"{name!r} is {re.sub(r'(?<!^)(?=[A-Z])', '-', type(fn).__name__).lower()}"
    return None


def _block_log_weights(ib, x: torch.Tensor, num_samples: int, chunk_size: int) -> np.ndarray:
    """Log weights ``(K, B)`` of one block of inputs, ``chunk_size // B`` samples of it per pass."""
    b = len(x)
    per_chunk = max(1, chunk_size // max(b, 1))
    out = []
    for start in range(0, num_samples, per_chunk):
        k = min(per_chunk, num_samples - start)
        xr = x.repeat(k, *([1] * (x.dim() - 1)))  # (k B, ...): sample-major
        guide_trace = poutine.trace(ib.guide).get_trace(xr)
        model_trace = poutine.trace(poutine.replay(ib.model, trace=guide_trace)).get_trace(xr)
        improper = _improper_site(model_trace)
        if improper is not None:
            raise ValueError(f"log importance weights: the prior at site {improper} (improper: log p(x) is undefined)")
        log_w = torch.zeros(k * b, dtype=torch.float64, device=x.device)
        for name, site in model_trace.nodes.items():
            if site["type"] != "sample" or site_is_subsample(site):
                continue
            log_w = log_w + site["fn"].log_prob(site["value"]).double()
            if not site["is_observed"]:
                guide_site = guide_trace.nodes[name]
                log_w = log_w - guide_site["fn"].log_prob(guide_site["value"]).double()
        out.append(log_w.reshape(k, b).cpu().numpy())
    return np.concatenate(out)


def log_importance_weights(
    ib,
    x: torch.Tensor,
    num_samples: int,
    *,
    batch_size: int | None = None,
    chunk_size: int = 1024,
    seed: int | None = None,
) -> np.ndarray:
    r"""
    Log importance weights ``(K, N)`` of a reconstruction model for the importance-weighted
    log-likelihood (Burda et al. 2016)::

        log w_k = log p(x | z_k) + sum_l log p(z_{l,k}) - sum_l log q(z_{l,k} | .),   z_k ~ q(z | x)

    from the model's and the guide's own Pyro densities: the guide is traced with the noise on (under
    :func:`evaluating`), the model replayed against it, and every sample site's ``log_prob`` summed per
    example, with no scaling (beta and N/B are training weights, not part of the model). The inputs go
    ``batch_size`` at a time (all at once for None), and the ``K`` samples of a block of ``B`` inputs
    ``chunk_size // B`` at a time (the block repeated), so that K = 1000 fits in memory. ``seed`` fixes
    the noise (None: the global generator): the block of inputs ``[i, i + batch_size)`` draws from
    ``seed + i``, so the weights of an input do not depend on how a run is interrupted and resumed.
    Under an improper prior (:func:`~infodropout.models.priors.is_improper`) ``log p(x)`` is undefined
    and asking for it is an error.
    """
    if not ib.model.reconstruct:
        raise ValueError("log importance weights: the network is a classifier; they need a reconstruction model")
    if isinstance(num_samples, bool) or not isinstance(num_samples, int) or num_samples < 1:
        raise ValueError(f"num_samples={num_samples!r}: expected a positive integer")
    x = to_model(ib, x)
    block = len(x) if batch_size is None else batch_size
    devices = [x.device] if x.device.type == "cuda" else []
    out = []
    with evaluating(ib), sampling(True), _unscaled(ib), pyro.validation_enabled(False):
        for start in range(0, len(x), max(block, 1)):
            with torch.random.fork_rng(devices=devices) if seed is not None else contextlib.nullcontext():
                if seed is not None:
                    torch.manual_seed(seed + start)
                out.append(_block_log_weights(ib, x[start : start + block], num_samples, chunk_size))
    return np.concatenate(out, axis=1)


def sample_counts(num_samples: int) -> list[int]:
    """The numbers of samples the IW estimate is reported at: 1, 10, 100, ... below ``num_samples``, and it."""
    counts = [10**i for i in range(int(math.log10(num_samples)) + 1) if 10**i < num_samples]
    return [*counts, num_samples]


def iw_by_samples(log_weights: np.ndarray) -> dict[str, float]:
    """``{k: mean over images of log 1/k sum_{j < k} w_j}`` for every k of :func:`sample_counts`: the IW
    estimate from the first k samples (k = 1: a Monte Carlo ELBO), which rises with k in expectation."""
    return {str(k): iw_log_likelihood(log_weights[:k])["mean"] for k in sample_counts(len(log_weights))}
