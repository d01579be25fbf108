"""The Mutual Information Gap (Chen et al. 2018), as disentanglement_lib computes it.

Each latent is discretised into equal-width histogram bins over its range; the discrete mutual
information of every (latent, factor) pair is then exact for the empirical joint distribution.
"""

import numpy as np

from ._validate import as_codes, as_factors, check_positive_int


def histogram_discretize(representation, num_bins: int = 20) -> np.ndarray:
    """Bin index ``0..num_bins - 1`` of every entry, ``num_bins`` equal-width bins per latent ``(N, D)``.

    The bins of latent d split ``[min_d, max_d]`` into ``num_bins`` equal parts (``np.histogram``'s
    edges; a constant latent falls into one bin), as disentanglement_lib's histogram discretizer.
    """
    return _discretize(as_codes(representation, min_points=1), check_positive_int(num_bins, "num_bins"))


def _discretize(codes: np.ndarray, num_bins: int) -> np.ndarray:
    out = np.empty(codes.shape, dtype=np.int64)
    for d in range(codes.shape[1]):
        edges = np.histogram_bin_edges(codes[:, d], num_bins)
        out[:, d] = np.digitize(codes[:, d], edges[:-1]) - 1  # the maximum goes to the last bin
    return out


def discrete_entropy(labels: np.ndarray) -> np.ndarray:
    """Entropy in nats of each column of nonnegative integer labels ``(N, K)`` -> ``(K,)``."""
    out = np.empty(labels.shape[1])
    for k in range(labels.shape[1]):
        p = np.bincount(labels[:, k]) / len(labels)
        p = p[p > 0]
        out[k] = -(p * np.log(p)).sum()
    return out


def discrete_mutual_info(codes: np.ndarray, labels: np.ndarray) -> np.ndarray:
    r"""Mutual information in nats between every column of ``codes (N, D)`` and of ``labels (N, K)``,
    both nonnegative integers, from their empirical joint distribution -> ``(D, K)``::

        I(c; y) = sum_{a, b} p(a, b) log(p(a, b) / (p(a) p(b)))

    (``sklearn.metrics.mutual_info_score``, which disentanglement_lib calls.)
    """
    n = len(codes)
    out = np.empty((codes.shape[1], labels.shape[1]))
    for d in range(codes.shape[1]):
        a = codes[:, d]
        na = int(a.max()) + 1
        for k in range(labels.shape[1]):
            b = labels[:, k]
            nb = int(b.max()) + 1
            joint = np.bincount(a * nb + b, minlength=na * nb).reshape(na, nb) / n  # (na, nb)
            pa, pb = joint.sum(1, keepdims=True), joint.sum(0, keepdims=True)
            nz = joint > 0
            out[d, k] = (joint[nz] * np.log(joint[nz] / (pa @ pb)[nz])).sum()
    return np.maximum(out, 0.0)  # rounding can leave -1e-17 for independent columns


def mutual_information_matrix(representation, factors, num_bins: int = 20) -> dict:
    """The factor-by-latent mutual information of histogram-discretised latents.

    :param representation: ``(N, D)`` codes (see :func:`mig` for which representation to pass).
    :param factors: ``(N, K)`` discrete factor classes.
    :param int num_bins: equal-width bins per latent.
    :returns: ``mutual_info (D, K)`` in nats, ``factor_entropy (K,)`` in nats, ``normalized (D, K)``
        (mutual information over the factor's entropy, in [0, 1]) and ``num_bins``.
    """
    codes = as_codes(representation)
    return _information(codes, as_factors(factors, len(codes)), check_positive_int(num_bins, "num_bins"))


def _information(codes: np.ndarray, labels: np.ndarray, num_bins: int) -> dict:
    m = discrete_mutual_info(_discretize(codes, num_bins), labels)  # (D, K)
    h = discrete_entropy(labels)  # (K,)
    return {"mutual_info": m, "factor_entropy": h, "normalized": m / h, "num_bins": num_bins}


def _mig(codes: np.ndarray, labels: np.ndarray, num_bins: int) -> dict:
    info = _information(codes, labels, num_bins)
    top = np.sort(info["mutual_info"], axis=0)[::-1]  # (D, K) descending per factor
    gap = (top[0] - top[1]) / info["factor_entropy"]  # (K,)
    return {"mig": float(gap.mean()), "mig_per_factor": gap, **info, "num_points": len(codes)}


def mig(representation, factors, *, num_bins: int = 20) -> dict:
    r"""
    The Mutual Information Gap (Chen et al. 2018, *Isolating Sources of Disentanglement in VAEs*),
    with disentanglement_lib's estimator (Locatello et al. 2019)::

        MIG = 1/K sum_k (I(c_{j_k}; y_k) - I(c_{l_k}; y_k)) / H(y_k)

    where ``c_d`` is latent d discretised into ``num_bins`` equal-width bins over its range, ``I`` the
    discrete mutual information in nats of the empirical joint distribution, ``H(y_k)`` the entropy of
    factor k, and ``j_k``, ``l_k`` the latents with the largest and second largest information about
    factor k. It is 1 when each factor is captured by exactly one latent, 0 when none is, or when two
    latents capture it equally (duplicated latents).

    Representation: any ``(N, D)`` codes with the noise off — disentanglement_lib uses the mean of a
    Gaussian encoder; for a multiplicative log-normal latent this project passes the location of
    ``log z`` by default. Histogram MIG is *not* invariant under monotone transforms of a latent
    (the bins are equal-width in the space given), which is why the choice is recorded. Factors:
    ``(N, K)`` discrete classes, none constant. Every row is used (disentanglement_lib: 10,000 points,
    :attr:`MetricSettings.num_points`); the plug-in mutual information is biased upwards by about
    ``(bins - 1)(classes - 1) / (2N)`` nats.

    :returns: ``mig`` (float), ``mig_per_factor (K,)``, ``mutual_info (D, K)``, ``normalized (D, K)``,
        ``factor_entropy (K,)``, ``num_bins``, ``num_points``.
    """
    codes = as_codes(representation, min_dims=2)
    return _mig(codes, as_factors(factors, len(codes)), check_positive_int(num_bins, "num_bins"))
