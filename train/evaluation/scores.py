"""Scores of a predictive distribution and of an out-of-distribution detector: pure NumPy functions.

A predictive distribution is an array ``probs (N, K)`` of class probabilities (rows sum to 1) with the
labels ``y (N,)``; an out-of-distribution (OOD) score is a number per example, **higher meaning "more
likely out of distribution"**. The detection measures take the in-distribution examples as negatives and
the OOD examples as positives. Every function returns plain floats or arrays and reads no file.
"""

import math

import numpy as np
from scipy.optimize import minimize_scalar
from scipy.special import log_softmax
from scipy.stats import rankdata

#: Probabilities are floored here inside ``log`` (a confident wrong prediction costs at most ~69 nats).
PROB_FLOOR = 1e-30
#: The equal-width confidence bins of the expected calibration error (Guo et al. 2017).
ECE_BINS = 15
#: The share of OOD examples detected at which :func:`fpr_at_tpr` reads the false-positive rate.
TPR = 0.95
#: The range of temperatures :func:`fit_temperature` searches.
TEMPERATURE_RANGE = (0.05, 20.0)


def _check(probs, y) -> tuple[np.ndarray, np.ndarray]:
    probs, y = np.asarray(probs, dtype=np.float64), np.asarray(y)
    if probs.ndim != 2 or y.shape != probs.shape[:1] or not len(y):
        raise ValueError(f"probs {probs.shape} and y {y.shape}: expected (N, K) and (N,) with N >= 1")
    if y.min() < 0 or y.max() >= probs.shape[1]:
        raise ValueError(f"y: labels must lie in [0, {probs.shape[1]}), got [{y.min()}, {y.max()}]")
    return probs, y.astype(np.int64)


def negative_log_likelihood(probs, y) -> float:
    """``mean_i -log p_i[y_i]`` (nats; probabilities floored at :data:`PROB_FLOOR`)."""
    probs, y = _check(probs, y)
    return float(-np.log(np.maximum(probs[np.arange(len(y)), y], PROB_FLOOR)).mean())


def brier_score(probs, y) -> float:
    """``mean_i sum_k (p_ik - 1[y_i = k])**2`` (Brier 1950, the multi-class form; 0 to 2)."""
    probs, y = _check(probs, y)
    onehot = np.zeros_like(probs)
    onehot[np.arange(len(y)), y] = 1.0
    return float(np.square(probs - onehot).sum(1).mean())


def error_rate(probs, y) -> float:
    """``mean_i 1[argmax_k p_ik != y_i]`` (a fraction)."""
    probs, y = _check(probs, y)
    return float((probs.argmax(1) != y).mean())


def reliability(probs, y, bins: int = ECE_BINS) -> dict:
    r"""
    The reliability diagram's bins: the confidence ``c_i = max_k p_ik`` of every prediction falls in one of
    ``bins`` equal-width bins of ``[0, 1]`` (bin ``b`` is ``(b/M, (b+1)/M]``, the first also holds 0); per bin::

        count[b] = |B_b|,   confidence[b] = mean_{i in B_b} c_i,   accuracy[b] = mean_{i in B_b} 1[argmax p_i = y_i]

    (NaN for an empty bin), and ``edges (bins + 1,)``.
    """
    probs, y = _check(probs, y)
    if not (isinstance(bins, int) and bins >= 1):
        raise ValueError(f"bins={bins!r}: expected an integer >= 1")
    confidence = probs.max(1)
    correct = (probs.argmax(1) == y).astype(np.float64)
    which = np.clip(np.ceil(confidence * bins).astype(np.int64) - 1, 0, bins - 1)  # (N,) bin of each
    count = np.bincount(which, minlength=bins).astype(np.float64)
    with np.errstate(invalid="ignore", divide="ignore"):
        conf = np.bincount(which, confidence, bins) / count
        acc = np.bincount(which, correct, bins) / count
    return {"edges": np.linspace(0.0, 1.0, bins + 1), "count": count, "confidence": conf, "accuracy": acc}


def expected_calibration_error(probs, y, bins: int = ECE_BINS) -> float:
    """``ECE = sum_b |B_b| / N * |accuracy[b] - confidence[b]|`` over the :func:`reliability` bins (a fraction)."""
    r = reliability(probs, y, bins)
    used = r["count"] > 0
    weights = r["count"][used] / r["count"].sum()
    return float((weights * np.abs(r["accuracy"][used] - r["confidence"][used])).sum())


def entropy(probs) -> np.ndarray:
    """``H[p_i] = -sum_k p_ik log p_ik`` per row (nats; ``0 log 0 = 0``)."""
    probs = np.asarray(probs, dtype=np.float64)
    return -np.where(probs > 0, probs * np.log(np.where(probs > 0, probs, 1.0)), 0.0).sum(-1)


def mutual_information(sample_probs) -> np.ndarray:
    r"""
    BALD (Houlsby et al. 2011): the mutual information between the prediction and the noise, per example,
    from ``S`` draws ``sample_probs (S, N, K)``::

        I[y; eps | x] = H[mean_s p_s(x)] - mean_s H[p_s(x)]      (>= 0 by Jensen; 0 when every draw agrees)
    """
    sample_probs = np.asarray(sample_probs, dtype=np.float64)
    if sample_probs.ndim != 3:
        raise ValueError(f"sample_probs {sample_probs.shape}: expected (S, N, K)")
    return entropy(sample_probs.mean(0)) - entropy(sample_probs).mean(0)


def _scores(inside, outside) -> tuple[np.ndarray, np.ndarray]:
    inside, outside = np.asarray(inside, dtype=np.float64).ravel(), np.asarray(outside, dtype=np.float64).ravel()
    if not len(inside) or not len(outside):
        raise ValueError(f"scores: {len(inside)} in-distribution and {len(outside)} OOD; expected at least one of each")
    if not (np.isfinite(inside).all() and np.isfinite(outside).all()):
        raise ValueError("scores: expected finite numbers")
    return inside, outside


def auroc(inside, outside) -> float:
    r"""
    The area under the ROC curve of detecting ``outside`` (positives) among ``inside`` (negatives) by the
    score, the Mann-Whitney statistic::

        AUROC = P(s_out > s_in) + 1/2 P(s_out = s_in)

    (1: every OOD example scores above every in-distribution one; 1/2: no better than chance).
    """
    inside, outside = _scores(inside, outside)
    ranks = rankdata(np.concatenate([outside, inside]))  # average ranks: ties count one half
    n_out, n_in = len(outside), len(inside)
    return float((ranks[:n_out].sum() - n_out * (n_out + 1) / 2) / (n_out * n_in))


def fpr_at_tpr(inside, outside, tpr: float = TPR) -> float:
    r"""
    The false-positive rate at the threshold that detects a share ``tpr`` of the OOD examples: with
    ``t`` the largest threshold such that ``P(s_out >= t) >= tpr``::

        FPR = P(s_in >= t)

    (0: the in-distribution examples are all below the threshold that catches 95% of the OOD ones).
    """
    inside, outside = _scores(inside, outside)
    if not 0 < tpr <= 1:
        raise ValueError(f"tpr={tpr!r}: expected a share in (0, 1]")
    k = math.ceil(tpr * len(outside) - 1e-9)  # OOD examples to catch
    threshold = np.sort(outside)[::-1][k - 1]
    return float((inside >= threshold).mean())


def detection(inside, outside) -> dict:
    """``{"auroc", "fpr95"}`` of a score (see :func:`auroc`, :func:`fpr_at_tpr`)."""
    return {"auroc": auroc(inside, outside), "fpr95": fpr_at_tpr(inside, outside)}


def tempered(log_probs, temperature: float) -> np.ndarray:
    """``softmax(log_probs / T)`` per row: the predictive distribution at temperature ``T`` (``log_probs``
    may be logits: both give the same distribution)."""
    return np.exp(log_softmax(np.asarray(log_probs, dtype=np.float64) / float(temperature), axis=-1))


def fit_temperature(log_probs, y, bounds: tuple[float, float] = TEMPERATURE_RANGE) -> float:
    r"""
    Temperature scaling (Guo et al. 2017): the one scalar ``T > 0`` that minimises the negative
    log-likelihood of held-out labels::

        T* = argmin_T mean_i -log softmax(l_i / T)[y_i]

    ``log_probs (N, K)`` are logits or log-probabilities. The objective is convex in ``1/T``, so its
    minimum over ``log T`` within ``bounds`` is found by a bounded Brent search.
    """
    log_probs, y = np.asarray(log_probs, dtype=np.float64), np.asarray(y)
    _check(np.zeros_like(log_probs), y)
    if not np.isfinite(log_probs).all():
        raise ValueError("log_probs: expected finite numbers (floor the probabilities before the log)")
    rows = np.arange(len(y))

    def nll(log_t: float) -> float:
        return float(-log_softmax(log_probs / math.exp(log_t), axis=-1)[rows, y].mean())

    low, high = (math.log(b) for b in bounds)
    found = minimize_scalar(nll, bounds=(low, high), method="bounded", options={"xatol": 1e-6})
    return float(math.exp(found.x))


def roc_curve(inside, outside) -> tuple[np.ndarray, np.ndarray]:
    """The ROC curve of detecting ``outside`` among ``inside``: ``(fpr, tpr)`` at every threshold
    ``t`` taken by a score (``P(s >= t)`` of each side), from (0, 0) to (1, 1)."""
    inside, outside = _scores(inside, outside)
    thresholds = np.unique(np.concatenate([inside, outside]))[::-1]  # descending
    sorted_in, sorted_out = np.sort(inside), np.sort(outside)
    fpr = 1.0 - np.searchsorted(sorted_in, thresholds, side="left") / len(inside)
    tpr = 1.0 - np.searchsorted(sorted_out, thresholds, side="left") / len(outside)
    return np.concatenate([[0.0], fpr]), np.concatenate([[0.0], tpr])


def mahalanobis(reference, x) -> np.ndarray:
    r"""
    The squared Mahalanobis distance of every row of ``x (M, D)`` from the rows of ``reference (N, D)``::

        d(x) = (x - mu)^T Sigma^+ (x - mu),     mu, Sigma: the mean and covariance (ddof 1) of ``reference``

    (``Sigma^+`` the pseudo-inverse, so that a constant coordinate counts for nothing): a typicality score,
    large where ``x`` is unlike the reference.
    """
    reference, x = (
        np.atleast_2d(np.asarray(reference, dtype=np.float64)),
        np.atleast_2d(np.asarray(x, dtype=np.float64)),
    )
    if reference.shape[0] < 2 or reference.shape[1] != x.shape[1]:
        raise ValueError(f"reference {reference.shape} and x {x.shape}: expected (N >= 2, D) and (M, D)")
    mu = reference.mean(0)
    precision = np.linalg.pinv(np.atleast_2d(np.cov(reference, rowvar=False)))
    centred = x - mu
    return np.einsum("md,de,me->m", centred, precision, centred)
