"""The total correlation of the aggregate posterior, by minibatch-weighted and -stratified sampling."""

import math

import numpy as np

from ._validate import as_codes, check_positive_int, rng_of

_HALF_LOG_2PI = 0.5 * math.log(2 * math.pi)
_BLOCK_ELEMENTS = 2**21  # float64 entries of one (chunk, D, M) block: 16 MB, cache-friendly


def _log_sums(z, loc_t, inv_scale_t, shift_t, self_index):
    """For samples ``z (c, D)``: the shifted log-densities under every pool posterior, summed.

    Returns, with ``L[i, j, d] = log N(z_id; loc_jd, scale_jd) - m_d`` (``m_d`` the largest
    log-normaliser of dimension d, so that ``exp(L) <= 1``): the self terms ``L[i, self(i), :] (c, D)``,
    ``sum_{j != self} exp(L[i, j, d]) (c, D)``, the joint ``J[i, j] = sum_d L[i, j, d]``'s self term
    ``(c,)``, its row maxima ``(c,)`` and ``sum_{j != self} exp(J[i, j] - max_j J[i, :]) (c,)``.
    """
    c = len(z)
    rows = np.arange(c)
    u = np.subtract(z[:, :, None], loc_t[None])  # (c, D, M)
    u *= inv_scale_t[None]
    np.square(u, out=u)
    u *= -0.5
    u += shift_t[None]  # L - m_d
    joint = u.sum(axis=1)  # (c, M)
    self_marginal = u[rows, :, self_index].copy()  # (c, D)
    np.exp(u, out=u)
    u[rows, :, self_index] = 0.0
    others_marginal = u.sum(axis=-1)  # (c, D)
    joint_self = joint[rows, self_index].copy()  # (c,)
    joint_max = joint.max(axis=1)  # (c,)
    joint -= joint_max[:, None]
    np.exp(joint, out=joint)
    joint[rows, self_index] = 0.0
    others_joint = joint.sum(axis=1)  # (c,)
    return self_marginal, others_marginal, joint_self, joint_max, others_joint


def _log_mixture(self_term, others, shift, self_weight, other_weight):
    """``log(self_weight * exp(self_term + shift) + other_weight * others * exp(shift))``, stably."""
    with np.errstate(divide="ignore"):
        return np.logaddexp(math.log(self_weight) + self_term, math.log(other_weight) + np.log(others)) + shift


def total_correlation(
    loc, scale, sample, num_data: int, *, num_samples: int | None = None, chunk_size: int | None = None, seed=0
):
    r"""
    The total correlation of the aggregate posterior ``q(z) = 1/N sum_n q(z | x_n)`` of a Gaussian
    encoder (Chen et al. 2018, *Isolating Sources of Disentanglement in VAEs*, Sec. 4.1)::

        TC(z) = KL(q(z) || prod_d q(z_d)) = E_{q(z)}[log q(z) - sum_d log q(z_d)]

    from ``M`` encoded points ``x_1..x_M`` of a data set of size ``N``: their posteriors
    ``q(z | x_j) = Normal(loc_j, diag(scale_j**2))`` and one sample ``z_i ~ q(z | x_i)`` each. At each of
    ``num_samples`` samples ``z_i`` (all M by default) the densities ``q(z_i)`` and ``q(z_id)`` are
    estimated from the mixture over the M posteriors, in two ways::

        MWS:  q(z_i) ~= 1/M sum_j q(z_i | x_j)
        MSS:  q(z_i) ~= 1/N q(z_i | x_i) + (N - 1) / (N (M - 1)) sum_{j != i} q(z_i | x_j)

    (and the same per dimension for ``q(z_id)``). MSS, minibatch-stratified sampling, weighs the
    sample's own posterior by its true share 1/N and the M - 1 other points, a uniform sample of the
    rest of the data, equally: an unbiased estimate of ``q(z_i)`` for any M, exact for M = N.
    beta-TCVAE's code gives one of the others the weight ``(N - M + 1) / (N (M - 1))`` and the other
    M - 2 the weight ``1 / (M - 1)`` (the same total ``(N - 1) / N``, so the same expectation, with a
    larger variance). MWS, minibatch-weighted sampling, treats
    the M points as an i.i.d. sample of the data including the sample's own; Chen et al. subtract
    ``log(N M)`` instead of ``log M``, a bound that is loose by ``log N`` per density and so adds
    ``(D - 1) log N`` to the TC, harmless in a training loss but not in a measurement: it is not used
    here. Both estimates are biased (a log of an estimate) and agree as M grows; MWS over-weights the
    sample's own posterior when ``M << N``.

    For a multiplicative log-normal latent pass ``log z ~ Normal(log f(x), alpha(x)**2)``: the total
    correlation and the mutual informations are invariant under the elementwise bijection ``log``;
    the entropies are those of ``log z``.

    :param loc: ``(M, D)`` posterior means (in the space where the posterior is Gaussian).
    :param scale: ``(M, D)`` posterior standard deviations, positive.
    :param sample: ``(M, D)`` one sample of each posterior.
    :param int num_data: the data set size N >= M.
    :param int num_samples: samples at which the densities are estimated (a random subset; None: all).
    :param int chunk_size: samples per block (memory ``chunk_size * M * D`` float64); None: about 16 MB.
    :returns: for each estimator ``e`` in ``mss``, ``mws``: ``tc_e`` (nats) and its Monte Carlo
        standard error ``tc_e_se`` over the samples, ``entropy_e`` (``-E log q(z)``),
        ``marginal_entropy_e (D,)``, ``mutual_info_e`` (``I(x; z) = E[log q(z|x) - log q(z)]``, the
        index-code mutual information) and ``mutual_info_per_dim_e (D,)`` (``I(x; z_d)``); also
        ``total_correlation`` (= ``tc_mss``), ``num_samples``, ``num_points`` (M), ``num_data`` (N).
    """
    loc = as_codes(loc, "loc")
    scale = as_codes(scale, "scale")
    sample = as_codes(sample, "sample")
    for name, array in (("scale", scale), ("sample", sample)):
        if array.shape != loc.shape:
            raise ValueError(f"{name}: shape {array.shape} differs from loc's {loc.shape}")
    if not (scale > 0).all():
        raise ValueError("scale: expected positive standard deviations")
    m, dims = loc.shape
    num_data = check_positive_int(num_data, "num_data")
    if num_data < m:
        raise ValueError(f"num_data={num_data}: smaller than the {m} encoded points")
    if chunk_size is None:
        chunk_size = max(1, _BLOCK_ELEMENTS // (m * dims))
    chunk_size = check_positive_int(chunk_size, "chunk_size")
    if num_samples is None or num_samples >= m:
        index = np.arange(m)
    else:
        num_samples = check_positive_int(num_samples, "num_samples")
        index = np.sort(rng_of(seed).choice(m, size=num_samples, replace=False))
    return _total_correlation(loc, scale, sample, num_data, index, chunk_size)


def _total_correlation(loc, scale, sample, num_data: int, index: np.ndarray, chunk_size: int) -> dict:
    m, dims = loc.shape
    log_scale = np.log(scale)
    shift = (-log_scale).max(axis=0) - _HALF_LOG_2PI  # (D,) m_d >= every log-density of dimension d
    loc_t = np.ascontiguousarray(loc.T)  # (D, M)
    inv_scale_t = np.ascontiguousarray(1.0 / scale.T)
    shift_t = np.ascontiguousarray((-log_scale - _HALF_LOG_2PI - shift).T)  # (D, M) <= 0

    n_eval = len(index)
    log_q = {e: np.empty(n_eval) for e in ("mss", "mws")}  # log q(z_i)
    log_q_d = {e: np.empty((n_eval, dims)) for e in ("mss", "mws")}  # log q(z_id)
    log_cond = np.empty(n_eval)  # log q(z_i | x_i)
    log_cond_d = np.empty((n_eval, dims))
    weights = {"mss": (1.0 / num_data, (num_data - 1) / (num_data * (m - 1)) if m > 1 else 1.0), "mws": (1 / m, 1 / m)}
    for start in range(0, n_eval, chunk_size):
        rows = index[start : start + chunk_size]
        self_d, others_d, self_j, max_j, others_j = _log_sums(sample[rows], loc_t, inv_scale_t, shift_t, rows)
        block = slice(start, start + len(rows))
        log_cond_d[block] = self_d + shift
        log_cond[block] = self_j + shift.sum()
        for e, (w_self, w_other) in weights.items():
            log_q_d[e][block] = _log_mixture(self_d, others_d, shift, w_self, w_other)
            log_q[e][block] = _log_mixture(self_j - max_j, others_j, max_j + shift.sum(), w_self, w_other)

    out = {}
    for e in ("mss", "mws"):
        tc_terms = log_q[e] - log_q_d[e].sum(axis=1)  # (S,)
        out[f"tc_{e}"] = float(tc_terms.mean())
        out[f"tc_{e}_se"] = float(tc_terms.std(ddof=1) / math.sqrt(n_eval)) if n_eval > 1 else math.inf
        out[f"entropy_{e}"] = float(-log_q[e].mean())
        out[f"marginal_entropy_{e}"] = -log_q_d[e].mean(axis=0)
        out[f"mutual_info_{e}"] = float((log_cond - log_q[e]).mean())
        out[f"mutual_info_per_dim_{e}"] = (log_cond_d - log_q_d[e]).mean(axis=0)
    return {"total_correlation": out["tc_mss"], **out, "num_samples": n_eval, "num_points": m, "num_data": num_data}
