"""The total correlation of the aggregate posterior of a Gaussian encoder: the exact density of the mixture
over the given posteriors, and beta-TCVAE's minibatch estimators beside it for comparison."""

import math

import numpy as np
from threadpoolctl import threadpool_limits

from ._validate import as_codes, check_positive_int, rng_of

_HALF_LOG_2PI = 0.5 * math.log(2 * math.pi)
_BLOCK_ELEMENTS = 2**21  # float64 entries of one block of the marginals: 16 MB
_SAFE_EXPONENT = 650.0  # |log| of a sum of exponentials beyond which it is computed again, exactly
_JOINT_BLOCK = (256, 1024)  # samples x components of one block of the joint densities: 2 MB

#: Evaluation samples M by default.
DEFAULT_NUM_SAMPLES = 10_000
#: Components K of each one-dimensional marginal by default (the samples' own, then random others).
DEFAULT_NUM_MARGINAL_COMPONENTS = 10_000


def total_correlation(
    loc,
    scale,
    sample=None,
    num_data: int | None = None,
    *,
    num_samples: int | None = DEFAULT_NUM_SAMPLES,
    num_marginal_components: int | None = DEFAULT_NUM_MARGINAL_COMPONENTS,
    chunk_size: int | None = None,
    seed=0,
) -> dict:
    r"""
    The total correlation of the aggregate posterior of a Gaussian encoder (Watanabe's total
    correlation; Chen et al. 2018, *Isolating Sources of Disentanglement in VAEs*, Sec. 4.1)::

        q(z) = 1/N_c sum_n Normal(z; loc_n, diag(scale_n**2))        the mixture of the N_c components
        TC   = KL(q(z) || prod_d q(z_d)) = E_{q(z)}[log q(z) - sum_d log q(z_d)]
             = sum_d I(n; z_d) - I(n; z)                             (the posteriors being factorised)

    **Estimator.** ``M`` samples ``z_m ~ q(z | x_{n_m})`` at components ``n_m`` chosen uniformly (so
    ``z_m ~ q(z)``). At each, ``log q(z_m)`` is computed exactly against all N_c components (a chunked
    log-sum-exp in float64; the quadratic forms of a block by one matrix product), and each
    ``log q(z_md)`` against the sample's own component and the others among ``K`` components ``S``
    (stratified)::

        q(z_md) ~= 1/N_c q(z_md | x_{n_m}) + (N_c - 1)/N_c * mean_{j in S, j != n_m} q(z_md | x_j)

    unbiased for every K and exact when S holds all components (``K >= N_c`` or None). ``S`` is the
    samples' own components (a uniform subset when ``M <= N_c``), then uniformly chosen others up to K
    (or the first K of the own ones when ``K < M``); the log of the stratified estimate raises the TC
    by about ``1/(2K)`` per mode a marginal resolves, per dimension. The estimate is ``mean_m t_m``,
    ``t_m = log q(z_m) - sum_d log q(z_md)``, with standard error ``std(t) / sqrt(M)``.

    **What it estimates.** Given the posteriors of the whole data set (dSprites: all 737,280 images,
    the data distribution being uniform over them) ``q`` is the aggregate posterior itself and the
    estimate is exact up to the Monte Carlo error and the marginals' small bias, however narrow the
    posteriors. Given N_c components drawn from a larger data set (or from a continuous distribution
    of codes) it is the TC of *their* mixture, which is larger than the population's: the mixture's
    ``I(n; z)`` is at most ``log N_c``, so once the encoder's ``I(x; z)`` nears ``log N_c``
    (posteriors narrow against the spread of their means in several dimensions at once) each sample
    sees little but its own component and the TC comes out too large, by up to ``I(x; z) - log N_c``.
    Then only more components help. Two diagnostics: ``own_component_share`` (the own component's
    mean share of ``q(z_m)``; near 1 the mixture is a set of isolated points) and the bounds below.

    **Bounds** on the TC of the population the components are an i.i.d. sample of, in expectation
    (Poole et al. 2019, *On Variational Bounds of Mutual Information*: with the own component and
    K - 1 others, InfoNCE's ``E log[q(z|x_own) / (1/K sum_all q(z|x_j))]`` is a lower bound on the
    mutual information and the leave-one-out ``E log[q(z|x_own) / (1/(K-1) sum_others q(z|x_j))]`` an
    upper bound)::

        total_correlation_lower = sum_d I_NCE(n; z_d) - I_LOO(n; z)
        total_correlation_upper = sum_d I_LOO(n; z_d) - I_NCE(n; z)

    The upper bound is close to the estimate; the gap to the lower bound shows how far the finite
    mixture may be from the population's TC (with the whole data set as components the estimate is
    exact and the bounds are not needed).

    **Cost.** ``O(M N_c D)`` for the joint (a matrix product and ``M N_c`` exponentials) and
    ``O(M K D)`` for the marginals; memory a few blocks (``chunk_size`` rows of the marginals). The
    matrix products run on one BLAS thread: its blocks are small, and threads only contend.

    **beta-TCVAE's minibatch estimators**, beside it for comparison (keys ``tc_mss``, ``tc_mws``, the
    headline of this function's earlier version), with the ``M`` samples' own posteriors as the
    minibatch and ``N`` = ``num_data``::

        MWS:  q(z_m) ~= 1/M sum_j q(z_m | x_{n_j})
        MSS:  q(z_m) ~= 1/N q(z_m | x_{n_m}) + (N - 1) / (N (M - 1)) sum_{j != m} q(z_m | x_{n_j})

    (the same per dimension). Chen et al.'s paper (App. C) intends, for a batch of the sample's own
    point and M - 1 others, the weight 1/N for the own posterior, ``(N - M + 1)/(N (M - 1))`` for one
    of the others and ``1/(M - 1)`` for the rest: an unbiased estimate of ``q(z_m)``. Their released
    code (rtqichen/beta-tcvae, ``_log_importance_weight_matrix``) writes these weights into the flat
    view of the ``(M, M)`` matrix with a stride of M (the batch size) instead of ``M + 1``, so they
    land in columns, not on the diagonal: every row gives column 0 the weight 1/N and column 1 the
    stratum weight (row ``M - 2`` the stratum weight in both, its weights summing to more than 1), so
    sample 0 weighs its own posterior 1/N as intended, sample 1 by the stratum weight and every other
    sample by ``1/(M - 1)``, while the first point of the batch gets 1/N in every row (pull request #1
    of that repository points out the stride). Their
    MWS subtracts ``log(N M)``, which adds ``(D - 1) log N`` to the TC; here MWS is the plain mixture
    of the batch. Both are biased estimates of a data set's TC (MWS over-weights the own posterior
    when ``M << N``; MSS takes the log of a noisy sum, biased low) and approach it only as the batch
    approaches the data set.

    For a multiplicative log-normal latent pass ``log z ~ Normal(log f(x), alpha(x)**2)``: the total
    correlation and the mutual informations are invariant under the elementwise bijection ``log``; the
    entropies are those of ``log z``. Every estimate is exactly invariant under an affine map of each
    dimension (each dimension is standardised first).

    :param loc: ``(N_c, D)`` posterior means of the components (where the posterior is Gaussian).
    :param scale: ``(N_c, D)`` posterior standard deviations, positive.
    :param sample: ``(N_c, D)`` one sample of each posterior, or None to draw the samples: ``M``
        components uniformly (without replacement when ``M <= N_c``), each with a fresh sample.
    :param int num_data: the size N of the data set the components come from (default ``N_c``); used by
        MSS only.
    :param int num_samples: ``M``, the evaluation samples (with ``sample``: a random subset of its rows,
        all when None or ``>= N_c``; without: None means ``min(N_c, 10,000)``).
    :param int num_marginal_components: ``K``, the components of each 1-D marginal (None: all).
    :param int chunk_size: samples per block of the marginals (memory ``chunk_size * K * D`` float64);
        None: about 16 MB.
    :param seed: of the choice of samples, components and noise.
    :returns: ``total_correlation`` (nats) and its ``standard_error``, ``estimator`` (``"mixture"``),
        ``total_correlation_lower``/``_upper`` and their ``_se``, ``entropy`` (``-E log q(z)``),
        ``marginal_entropy (D,)``, ``mutual_info`` (``I(n; z) = E[log q(z|x) - log q(z)]``, at most
        ``log num_components``), ``mutual_info_per_dim (D,)``, ``own_component_share``,
        ``num_components`` (N_c), ``num_marginal_components`` (K), ``num_samples`` (M), ``num_data``
        (N), ``num_points`` (= N_c); and for ``e`` in ``mss``, ``mws``: ``tc_e``, ``tc_e_se``,
        ``entropy_e``, ``marginal_entropy_e (D,)``, ``mutual_info_e``, ``mutual_info_per_dim_e (D,)``.
    """
    loc = as_codes(loc, "loc")
    scale = as_codes(scale, "scale")
    if scale.shape != loc.shape:
        raise ValueError(f"scale: shape {scale.shape} differs from loc's {loc.shape}")
    if not (scale > 0).all():
        raise ValueError("scale: expected positive standard deviations")
    num_components = len(loc)
    if sample is not None:
        sample = as_codes(sample, "sample")
        if sample.shape != loc.shape:
            raise ValueError(f"sample: shape {sample.shape} differs from loc's {loc.shape}")
    num_data = num_components if num_data is None else check_positive_int(num_data, "num_data")
    if num_data < num_components:
        raise ValueError(f"num_data={num_data}: smaller than the {num_components} components")
    if num_samples is not None:
        num_samples = check_positive_int(num_samples, "num_samples", 2)
    if num_marginal_components is not None:
        num_marginal_components = check_positive_int(num_marginal_components, "num_marginal_components")
    if chunk_size is not None:
        chunk_size = check_positive_int(chunk_size, "chunk_size")
    rng = rng_of(seed)

    if sample is not None:
        m = num_components if num_samples is None else min(num_samples, num_components)
        own = rng.permutation(num_components)[:m]
        z = sample[own]
    else:
        m = min(num_components, DEFAULT_NUM_SAMPLES) if num_samples is None else num_samples
        own = rng.choice(num_components, size=m, replace=m > num_components)
        z = loc[own] + scale[own] * rng.standard_normal((m, loc.shape[1]))
    # the marginals' components: all; or the samples' own components (a uniform subset, which then
    # serves as the minibatch too) and as many others as K asks for
    k = num_components if num_marginal_components is None else min(num_marginal_components, num_components)
    if k == num_components:
        subset, position, batch = np.arange(num_components), own, 0
    elif k >= m:  # own components distinct, since m <= k < N_c
        others = np.setdiff1d(np.arange(num_components), own, assume_unique=True)
        subset, position, batch = np.concatenate([own, rng.choice(others, k - m, replace=False)]), np.arange(m), m
    else:
        subset, position, batch = own[:k], np.where(np.arange(m) < k, np.arange(m), -1), 0
    with threadpool_limits(limits=1, user_api="blas"):  # small products: threads only contend
        return _total_correlation(loc, scale, z, own, subset, position, batch, num_data, chunk_size)


def _total_correlation(loc, scale, z, own, subset, position, batch: int, num_data: int, chunk_size) -> dict:
    """The estimates from samples ``z`` of the components ``own``; the marginals over the components
    ``subset``, in which each sample's own is at ``position`` (-1: absent) and whose first ``batch``
    are the samples' own components (the minibatch; 0: computed apart)."""
    num_components, dims = loc.shape
    m = len(z)
    # standardise each dimension (an affine map: TC and mutual informations unchanged, entropies shift
    # by log sigma_d), so that the matrix-product expansion of the quadratic forms does not cancel
    centre = loc.mean(axis=0)
    spread = loc.std(axis=0) + scale.mean(axis=0)  # (D,) > 0
    loc, scale, z = (loc - centre) / spread, scale / spread, (z - centre) / spread
    log_spread = np.log(spread)

    self_d = _log_normal(z, loc[own], scale[own])  # (M, D) log q(z_md | x_{n_m})
    self_j = self_d.sum(axis=1)  # (M,)
    others_j = _joint_log_sum_others(z, own, loc, scale, self_j)  # (M,) log sum_{j != n_m} q(z_m | x_j)
    others_d, batch_d, count_d = _marginal_log_sum_others(z, position, loc[subset], scale[subset], batch, chunk_size)
    count_d = count_d[:, None]  # (M, 1) components of each sample's marginal besides its own
    if batch == 0:
        _, batch_d, _ = _marginal_log_sum_others(z, np.arange(m), loc[own], scale[own], m, chunk_size)

    log_q = _mix(self_j, others_j, num_components - 1, 1.0 / num_components)
    log_q_d = _mix(self_d, others_d, count_d, 1.0 / num_components)
    out = _summary(self_j, self_d, log_q, log_q_d, log_spread, "")
    out["own_component_share"] = float(np.exp(self_j - math.log(num_components) - log_q).mean())
    # the bounds: InfoNCE (own weight 1/K, a lower bound on I) and leave-one-out (an upper bound)
    nce_d = _mix(self_d, others_d, count_d, 1.0 / (count_d + 1))
    with np.errstate(divide="ignore", invalid="ignore"):
        loo = others_j - math.log(num_components - 1)
        loo_d = others_d - np.log(np.maximum(count_d, 1))
        lower = (self_d - nce_d).sum(axis=1) - (self_j - loo)
        upper = (self_d - loo_d).sum(axis=1) - (self_j - log_q)
    for name, terms in (("lower", lower), ("upper", upper)):
        out[f"total_correlation_{name}"] = float(terms.mean())
        out[f"total_correlation_{name}_se"] = _standard_error(terms)

    # beta-TCVAE's minibatch estimators, the batch being the samples' own posteriors
    batch_j = _joint_log_sum_others(z, np.arange(m), loc[own], scale[own], self_j)
    for name, own_weight in (("mss", 1.0 / num_data), ("mws", 1.0 / m)):
        log_q_e = _mix(self_j, batch_j, m - 1, own_weight)
        log_q_d_e = _mix(self_d, batch_d, m - 1, own_weight)
        summary = _summary(self_j, self_d, log_q_e, log_q_d_e, log_spread, f"_{name}")
        summary[f"tc_{name}"] = summary.pop(f"total_correlation_{name}")
        summary[f"tc_{name}_se"] = summary.pop(f"standard_error_{name}")
        out.update(summary)
    return {
        **out,
        "estimator": "mixture",
        "num_components": num_components,
        "num_marginal_components": len(subset),
        "num_samples": m,
        "num_data": num_data,
        "num_points": num_components,
    }


def _standard_error(terms: np.ndarray) -> float:
    """``std(terms) / sqrt(M)``; infinite when a term is."""
    if not np.isfinite(terms).all():
        return math.inf
    return float(terms.std(ddof=1) / math.sqrt(len(terms)))


def _summary(self_j, self_d, log_q, log_q_d, log_spread, suffix: str) -> dict:
    """TC, its standard error, entropies and mutual informations from the log-densities of the
    standardised samples (entropies moved back by ``log spread``)."""
    terms = log_q - log_q_d.sum(axis=1)  # (M,)
    return {
        f"total_correlation{suffix}": float(terms.mean()),
        f"standard_error{suffix}": _standard_error(terms),
        f"entropy{suffix}": float(-log_q.mean() + log_spread.sum()),
        f"marginal_entropy{suffix}": -log_q_d.mean(axis=0) + log_spread,
        f"mutual_info{suffix}": float((self_j - log_q).mean()),
        f"mutual_info_per_dim{suffix}": (self_d - log_q_d).mean(axis=0),
    }


def _mix(self_term, log_others, num_others, own_weight):
    """``log(w q_self + (1 - w) mean_others q)`` from ``log q_self`` and ``log sum_others q``, stably
    (``w``, the own weight, a number or an array broadcasting with the terms)."""
    with np.errstate(divide="ignore"):
        others = np.log1p(-own_weight) + log_others - np.log(np.maximum(num_others, 1))
        return np.logaddexp(np.log(own_weight) + self_term, others)


def _log_normal(z, loc, scale):
    """Elementwise ``log Normal(z; loc, scale)``."""
    u = (z - loc) / scale
    return -0.5 * u * u - np.log(scale) - _HALF_LOG_2PI


def _joint_log_sum_others(z, own, loc, scale, shift):
    """``log sum_{j != own_m} prod_d Normal(z_md; loc_jd, scale_jd)`` for every sample ``z (M, D)``
    against all components ``(N_c, D)``, with ``own (M,)`` the sample's own component (excluded).

    The log-densities minus a shift per sample (``shift (M,)``, e.g. the own component's
    log-density) come from one matrix product per block: ``[z**2, z, 1, -shift] (M, 2D + 2)`` by
    ``[-w/2, loc w, c, 1] (N_c, 2D + 2)`` with ``w = scale**-2`` and
    ``c = -sum_d (loc**2 w / 2 + log scale) - D log(2 pi) / 2``; their exponentials are summed. A
    sample whose sum under- or overflowed is computed again with a running maximum for the shift.
    """
    m, dims = z.shape
    num_components = len(loc)
    w = scale**-2.0
    offset = -0.5 * (loc * loc * w).sum(axis=1) - np.log(scale).sum(axis=1) - dims * _HALF_LOG_2PI  # (N_c,)
    ones = np.ones((num_components, 1))
    coefficients = np.concatenate([-0.5 * w, loc * w, offset[:, None], ones], axis=1)  # (N_c, 2D + 2)
    features = np.concatenate([z * z, z, np.ones((m, 1)), -shift[:, None]], axis=1)  # (M, 2D + 2)
    rows_per_block, cols = _JOINT_BLOCK
    buffer = np.empty((rows_per_block, cols))
    total = np.zeros(m)
    for r0 in range(0, m, rows_per_block):
        r1 = min(r0 + rows_per_block, m)
        row_index, mine_own = np.arange(r1 - r0), own[r0:r1]
        for c0 in range(0, num_components, cols):
            c1 = min(c0 + cols, num_components)
            block = np.matmul(features[r0:r1], coefficients[c0:c1].T, out=buffer[: r1 - r0, : c1 - c0])
            mine = (mine_own >= c0) & (mine_own < c1)
            block[row_index[mine], mine_own[mine] - c0] = -np.inf
            with np.errstate(over="ignore"):  # an overflowed sum is computed again below
                np.exp(block, out=block)
            total[r0:r1] += block.sum(axis=1)
    with np.errstate(divide="ignore"):
        log_total = np.log(total)
    redo = np.flatnonzero(~(np.abs(log_total) < _SAFE_EXPONENT))  # under- or overflow (or near it)
    out = log_total + shift
    if len(redo):
        features[redo, -1] = 0.0
        out[redo] = _joint_log_sum_exact(features[redo], own[redo], coefficients)
    return out


def _joint_log_sum_exact(features, own, coefficients):
    """As :func:`_joint_log_sum_others` (``features`` without a shift), with a running maximum."""
    m = len(features)
    rows_per_block, cols = _JOINT_BLOCK
    out = np.empty(m)
    for r0 in range(0, m, rows_per_block):
        r1 = min(r0 + rows_per_block, m)
        row_index, mine_own = np.arange(r1 - r0), own[r0:r1]
        top = np.full(r1 - r0, -np.inf)  # running maximum
        total = np.zeros(r1 - r0)  # running sum of exp(. - top)
        for c0 in range(0, len(coefficients), cols):
            c1 = min(c0 + cols, len(coefficients))
            block = features[r0:r1] @ coefficients[c0:c1].T  # (R, C)
            mine = (mine_own >= c0) & (mine_own < c1)
            block[row_index[mine], mine_own[mine] - c0] = -np.inf
            new_top = np.maximum(top, block.max(axis=1))
            safe = np.where(np.isfinite(new_top), new_top, 0.0)
            total *= np.exp(np.where(np.isfinite(top), top - safe, -np.inf))
            block -= safe[:, None]
            np.exp(block, out=block)
            total += block.sum(axis=1)
            top = new_top
        with np.errstate(divide="ignore"):
            out[r0:r1] = np.log(total) + np.where(np.isfinite(top), top, 0.0)
    return out


def _marginal_log_sum_others(z, own_position, loc, scale, batch: int, chunk_size: int | None):
    """``log sum_{j != own} Normal(z_md; loc_jd, scale_jd)`` for every sample and dimension ``(M, D)``
    over the components ``(K, D)``, with ``own_position (M,)`` the sample's own component among them
    (-1 when absent); the same over the first ``batch`` components only ``(M, D)``; and the number of
    terms of each sample's whole sum ``(M,)``.

    With ``m_d`` the largest log-normaliser of dimension d, ``exp(L - m_d) <= 1``: no overflow; a sum
    whose every term (nearly) underflowed, ``e^-650`` below the narrowest component's peak, is computed
    again shifted by its own maximum.
    """
    m, dims = z.shape
    k = len(loc)
    log_scale = np.log(scale)
    shift = (-log_scale).max(axis=0) - _HALF_LOG_2PI  # (D,)
    loc_t = np.ascontiguousarray(loc.T)  # (D, K)
    inv_scale_t = np.ascontiguousarray(math.sqrt(0.5) / scale.T)
    shift_t = np.ascontiguousarray((-log_scale - _HALF_LOG_2PI - shift).T)  # (D, K) <= 0
    if chunk_size is None:
        chunk_size = max(1, _BLOCK_ELEMENTS // (k * dims))
    out, out_batch = np.empty((m, dims)), np.empty((m, dims))
    for r0 in range(0, m, chunk_size):
        rows = slice(r0, min(r0 + chunk_size, m))
        u = np.subtract(z[rows, :, None], loc_t[None])  # (R, D, K)
        u *= inv_scale_t[None]
        np.square(u, out=u)
        np.subtract(shift_t[None], u, out=u)  # log-density - m_d
        np.exp(u, out=u)
        pos = own_position[rows]
        mine = np.flatnonzero(pos >= 0)
        u[mine, :, pos[mine]] = 0.0
        head = u[:, :, :batch].sum(axis=-1)
        with np.errstate(divide="ignore"):
            out[rows] = np.log(head + u[:, :, batch:].sum(axis=-1))
            out_batch[rows] = np.log(head)
    count = k - (own_position >= 0)
    count_batch = np.minimum(batch, k) - ((own_position >= 0) & (own_position < batch))
    # sums that (nearly) underflowed, every other component far below the narrowest peak: the samples'
    # sums again, shifted by their own maxima
    redo = ~(out > -_SAFE_EXPONENT) & (count > 0)[:, None]
    redo |= ~(out_batch > -_SAFE_EXPONENT) & (count_batch > 0)[:, None]
    out += shift
    out_batch += shift
    rows = np.flatnonzero(redo.any(axis=1))
    for r0 in range(0, len(rows), chunk_size):
        i = rows[r0 : r0 + chunk_size]
        terms = -np.square((z[i, :, None] - loc_t[None]) * inv_scale_t[None]) - log_scale.T[None] - _HALF_LOG_2PI
        mine = np.flatnonzero(own_position[i] >= 0)
        terms[mine, :, own_position[i][mine]] = -np.inf
        out[i] = _log_sum_exp(terms)
        out_batch[i] = _log_sum_exp(terms[:, :, :batch])
    return out, out_batch, count


def _log_sum_exp(terms: np.ndarray) -> np.ndarray:
    """``log sum exp`` over the last axis, shifted by the maximum (-inf for an empty or all -inf sum)."""
    top = terms.max(axis=-1, initial=-np.inf)
    safe = np.where(np.isfinite(top), top, 0.0)
    with np.errstate(divide="ignore"):
        return np.log(np.exp(terms - safe[..., None]).sum(axis=-1)) + safe


#: Gaussian codes of a known total correlation (:func:`gaussian_case`), by name: (correlation rho of
#: neighbouring informative dimensions, their posterior scale, informative dimensions; None: all)
CASES = {
    "wide": (0.9, 1.0, None),
    "vae": (0.8, 0.3, 5),
    "medium": (0.9, 0.5, None),
    "narrow": (0.9, 0.1, None),
}


def gaussian_case(dims: int, case, num_components: int, seed: int = 0):
    """``(loc, scale, closed-form TC, closed-form I(x; z))`` of Gaussian codes of a known total correlation:
    posterior means ``loc_n ~ N(0, A)`` of ``num_components`` points (``A``: unit variances, correlation
    ``rho^|i-j|`` between the informative dimensions) and scales ``s`` (:data:`CASES`); as the number
    of components grows their mixture tends to ``S = N(0, A + diag s^2)``, whose TC is
    ``(sum_d log S_dd - log det S) / 2`` and ``I(x; z) = (log det S - sum_d log s_d^2) / 2``. ``case``: a
    name of :data:`CASES` or its ``(rho, s, informative)``."""
    rho, s, informative = CASES[case] if isinstance(case, str) else case
    informative = dims if informative is None else min(dims, informative)
    i = np.arange(informative)
    a = np.zeros((dims, dims))
    a[:informative, :informative] = rho ** np.abs(i[:, None] - i[None])
    scales = np.where(np.arange(dims) < informative, s, 1.0)
    rng = np.random.default_rng(seed)
    loc = np.zeros((num_components, dims))
    mixing = np.linalg.cholesky(a[:informative, :informative])
    loc[:, :informative] = rng.standard_normal((num_components, informative)) @ mixing.T
    scale = np.broadcast_to(scales, loc.shape).copy()
    cov = a + np.diag(scales**2)
    tc = 0.5 * (np.log(np.diag(cov)).sum() - np.linalg.slogdet(cov)[1])
    info = 0.5 * (np.linalg.slogdet(cov)[1] - 2 * np.log(scales).sum())
    return loc, scale, float(tc), float(info)


def discrete_total_correlation(points: np.ndarray) -> float:
    """``sum_d H(P_d) - H(P)`` of the empirical distribution of the rows of ``points``."""

    def entropy(counts):
        p = counts / counts.sum()
        return float(-(p * np.log(p)).sum())

    joint = entropy(np.unique(points, axis=0, return_counts=True)[1])
    return sum(entropy(np.unique(column, return_counts=True)[1]) for column in points.T) - joint
