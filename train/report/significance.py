"""Paired differences between two settings run on the same seeds: a bootstrap confidence interval over
seeds (and over evaluation examples within a seed), and the verdict line a report prints.

Pure functions over numbers (NumPy and the standard library only): no files, no training.
"""

import math
import numbers
from collections.abc import Sequence
from statistics import NormalDist

import numpy as np

_BLOCK = 2**22  # resampled example indices drawn at once (32 MB of int64)
_T_GRID = 200_001  # points of the quadrature behind student_t_quantile
_LARGE_DOF = 1000  # from here on, student_t_quantile uses the expansion in 1/dof


def student_t_quantile(p: float, dof: int) -> float:
    r"""The quantile ``t_{p, dof}`` of Student's t distribution, for ``0.5 <= p < 1`` and ``dof >= 1``.

    With ``x = sqrt(dof) tan(u)`` the CDF is ``F(x) = 1/2 + c sqrt(dof) int_0^u cos(v)^(dof - 1) dv``,
    ``c = Gamma((dof + 1)/2) / (sqrt(dof pi) Gamma(dof/2))``: a smooth integrand on ``[0, pi/2)``,
    integrated by the trapezoid rule on a fine grid and inverted by interpolation (exact for dof 1,
    ``tan(pi (p - 1/2))``); from 1000 degrees of freedom on, the Cornish-Fisher expansion
    ``z + (z^3 + z)/(4 dof) + (5 z^5 + 16 z^3 + 3 z)/(96 dof^2)``.
    """
    if not 0.5 <= p < 1:
        raise ValueError(f"p={p!r}: expected a probability in [0.5, 1)")
    if isinstance(dof, bool) or not isinstance(dof, numbers.Integral) or dof < 1:
        raise ValueError(f"dof={dof!r}: expected an integer >= 1")
    if dof == 1:
        return math.tan(math.pi * (p - 0.5))
    if dof >= _LARGE_DOF:  # the density is too peaked for the grid: Cornish-Fisher's expansion in 1/dof
        z = NormalDist().inv_cdf(p)
        return z + (z**3 + z) / (4 * dof) + (5 * z**5 + 16 * z**3 + 3 * z) / (96 * dof**2)
    log_c = math.lgamma((dof + 1) / 2) - math.lgamma(dof / 2) - 0.5 * math.log(math.pi)
    u = np.linspace(0.0, math.pi / 2, _T_GRID)
    density = np.cos(u) ** (dof - 1)
    cumulative = np.concatenate([[0.0], np.cumsum(0.5 * (density[1:] + density[:-1]) * np.diff(u))])
    target = (p - 0.5) / math.exp(log_c)
    return float(math.sqrt(dof) * math.tan(np.interp(target, cumulative, u)))


def paired_difference(
    a,
    b,
    *,
    per_example_a: Sequence | None = None,
    per_example_b: Sequence | None = None,
    paired_examples: bool = True,
    confidence: float = 0.95,
    num_resamples: int = 10_000,
    widen: bool = True,
    seed=0,
) -> dict:
    r"""
    The difference ``a - b`` of a metric between two settings run on the same seeds, with a bootstrap
    confidence interval.

    ``a[s]`` and ``b[s]`` are the metric of seed ``s`` under each setting (paired: the same seed, data
    and evaluation points), ``d_s = a[s] - b[s]`` and the estimate is ``mean_s d_s``. Each of
    ``num_resamples`` bootstrap replicates draws S seeds with replacement and averages their
    differences. When per-example values are given (``per_example_a[s]``: the values whose mean
    measures ``a[s]``, e.g. per-image log-likelihoods or the total correlation's per-point terms), the
    bootstrap has two levels: within each drawn seed the examples are drawn again with replacement, and
    the seed's difference moves by the change of their means (conservative: the seeds' spread already
    holds their evaluation noise, which this adds again)::

        d*_s = d_s + (mean(a*_s) - mean(a_s)) - (mean(b*_s) - mean(b_s))

    (with ``paired_examples``, A's and B's values of a seed belong to the same examples, which are
    drawn together: the difference of each example is resampled). This adds the evaluation noise of
    each seed to the spread of the seeds.

    The interval is the bootstrap's percentile interval widened about the estimate for the number of
    seeds (Hesterberg's expanded percentile interval, in scale form)::

        [est - k (est - q_lo), est + k (q_hi - est)],   k = t_{1 - alpha/2, S - 1} sqrt(S / (S - 1)) / z_{1 - alpha/2}

    with ``q`` the bootstrap distribution's ``alpha/2`` and ``1 - alpha/2`` quantiles: a bootstrap over
    S seeds sees the plug-in variance ``(S - 1)/S`` of the unbiased one and the normal instead of the
    t quantile, so that the plain percentile interval covers far less often than it claims for few
    seeds (``k`` is 9.2 for 2 seeds at 95%, 2.7 for 3, 1.2 for 10; 1 as S grows). With one seed there
    is no spread of seeds: with per-example values the interval is the examples' bootstrap alone
    (``k = 1``; the seed-to-seed variation is not in it), without them there is none (NaN).

    **Seeds needed.** With ``sd`` the standard deviation of the ``d_s`` (``ddof = 1``), the smallest
    ``n`` at which the t interval's half-width at that spread falls to the estimate's size::

        t_{1 - alpha/2, n - 1} * sd / sqrt(n) <= |estimate|

    At that n the interval of a difference equal to the estimate just reaches 0 (a coin flip whether
    a new study excludes it; about ``((z_{1-alpha/2} + z_{power}) sd / |estimate|)^2`` seeds give the
    probability ``power``). None when the interval already excludes 0, when the estimate is 0 (no
    number of seeds resolves a sign) or with a single seed (no spread measured).

    :param a: ``(S,)`` the metric under setting A, one value per seed.
    :param b: ``(S,)`` the same under setting B, in the same seed order.
    :param per_example_a: None, or S arrays of per-example values of A (one per seed); with
        ``per_example_b``.
    :param per_example_b: the same for B.
    :param bool paired_examples: A's and B's examples of a seed are the same (equal lengths).
    :param float confidence: of the interval, in (0, 1).
    :param int num_resamples: bootstrap replicates.
    :param bool widen: widen the percentile interval for the number of seeds (False: the plain
        percentile interval, which for few seeds covers less often than ``confidence``).
    :param seed: of the bootstrap (deterministic given it).
    :returns: ``estimate``, ``low``, ``high``, ``confidence``, ``num_seeds``, ``method``,
        ``excludes_zero``, ``seeds_needed`` (int or None), ``std`` (of the per-seed differences; None
        for one seed), ``differences (S,)`` (list), ``num_resamples``.
    """
    a, b = _per_seed(a, "a"), _per_seed(b, "b")
    if len(a) != len(b):
        raise ValueError(f"b: {len(b)} seeds, a has {len(a)}; the values must be paired by seed")
    if not (isinstance(confidence, numbers.Real) and 0 < confidence < 1):
        raise ValueError(f"confidence={confidence!r}: expected a number in (0, 1)")
    if isinstance(num_resamples, bool) or not isinstance(num_resamples, numbers.Integral) or num_resamples < 100:
        raise ValueError(f"num_resamples={num_resamples!r}: expected an integer >= 100")
    examples = _per_example(per_example_a, per_example_b, len(a), paired_examples)
    rng = np.random.default_rng(seed)
    differences = a - b
    num_seeds = len(differences)
    estimate = float(differences.mean())
    std = float(differences.std(ddof=1)) if num_seeds > 1 else None
    alpha = 1.0 - confidence
    out = {
        "estimate": estimate,
        "confidence": float(confidence),
        "num_seeds": num_seeds,
        "std": std,
        "differences": differences.tolist(),
        "num_resamples": int(num_resamples),
    }
    if num_seeds == 1 and examples is None:
        method = "none: one seed and no per-example values, so no spread to resample"
        return {
            **out,
            "low": math.nan,
            "high": math.nan,
            "excludes_zero": False,
            "seeds_needed": None,
            "method": method,
        }

    seeds = rng.integers(0, num_seeds, size=(num_resamples, num_seeds))  # (B, S)
    replicate = differences[seeds]
    if examples is not None:
        replicate = replicate + _example_noise(examples, seeds, rng)
    means = replicate.mean(axis=1)  # (B,)
    q_lo, q_hi = np.quantile(means, [alpha / 2, 1 - alpha / 2])
    z = NormalDist().inv_cdf(1 - alpha / 2)
    if num_seeds > 1 and widen:
        factor = student_t_quantile(1 - alpha / 2, num_seeds - 1) * math.sqrt(num_seeds / (num_seeds - 1)) / z
    else:
        factor = 1.0
    low, high = estimate - factor * (estimate - q_lo), estimate + factor * (q_hi - estimate)
    excludes = bool(low > 0 or high < 0)
    level = "two-level bootstrap (seeds, then examples within each)" if examples is not None else "bootstrap over seeds"
    if num_seeds == 1:
        level = "bootstrap over examples (one seed: the seed-to-seed variation is not in the interval)"
    if num_seeds > 1 and widen:
        method = f"{level}, percentile interval widened for {num_seeds} seeds (Student t, expanded percentile)"
    else:
        method = f"{level}, percentile interval"
    needed = None if excludes else seeds_needed(estimate, std, confidence)
    if needed is not None:
        needed = max(needed, num_seeds + 1)
    interval = {"low": float(low), "high": float(high), "excludes_zero": excludes, "seeds_needed": needed}
    return {**out, **interval, "method": method}


def seeds_needed(estimate: float, std: float | None, confidence: float = 0.95, limit: int = 10**7) -> int | None:
    """The smallest ``n >= 2`` with ``t_{1 - alpha/2, n - 1} std / sqrt(n) <= |estimate|`` (see
    :func:`paired_difference`); None when the estimate is 0, ``std`` is None (one seed) or more than
    ``limit`` seeds would be needed."""
    if std is None or not math.isfinite(std) or not math.isfinite(estimate) or estimate == 0:
        return None
    if std == 0:
        return 2
    p = 1 - (1 - confidence) / 2
    ratio = std / abs(estimate)
    n = max(2, math.ceil((NormalDist().inv_cdf(p) * ratio) ** 2))  # the normal approximation: a lower bound
    if n > limit:
        return None
    while student_t_quantile(p, n - 1) * ratio > math.sqrt(n):
        n += 1
    return n


def verdict_line(result: dict, label: str, digits: int = 2) -> str:
    """One line for a report: ``"<label>: +0.05 [+0.01, +0.09]"`` when the interval excludes 0, else
    ``"<label>: +0.01 [-0.02, +0.04]: not distinguishable at this budget (the CI spans 0); about 12
    seeds would resolve it"``. ``label`` names the difference, e.g.
    ``"factorised − correlated, MIG at β 4"``; ``result`` is :func:`paired_difference`'s."""
    est, low, high = result["estimate"], result["low"], result["high"]
    head = f"{label}: {est:+.{digits}f}"
    if not (math.isfinite(low) and math.isfinite(high)):
        return f"{head} (one seed and no per-example values: no interval; run more seeds)"
    line = f"{head} [{low:+.{digits}f}, {high:+.{digits}f}]"
    if result["excludes_zero"]:
        return line
    line += ": not distinguishable at this budget (the CI spans 0)"
    if result["num_seeds"] < 2:
        return line + "; one seed: run more to measure the spread between seeds"
    if est == 0:
        return line + "; the estimate is 0, so more seeds would narrow the CI about 0 rather than resolve a sign"
    needed = result["seeds_needed"]
    if needed is None:
        return line + "; more seeds than can be run would be needed to resolve it"
    return line + f"; about {needed} seeds would resolve it"


def _per_seed(values, name: str) -> np.ndarray:
    array = np.asarray(values, dtype=np.float64) if not isinstance(values, np.ndarray) else values.astype(np.float64)
    if array.ndim != 1 or len(array) == 0:
        raise ValueError(f"{name}: expected a 1-d sequence of per-seed values, got shape {array.shape}")
    if not np.isfinite(array).all():
        raise ValueError(f"{name}: contains NaN or infinite values")
    return array


def _per_example(per_a, per_b, num_seeds: int, paired: bool):
    """None, or per seed: ``(centred differences,)`` when paired, else ``(centred a, centred b)``."""
    if per_a is None and per_b is None:
        return None
    if per_a is None or per_b is None:
        raise ValueError("per_example_a and per_example_b: give both or neither")
    out = []
    for name, values in (("per_example_a", per_a), ("per_example_b", per_b)):
        if len(values) != num_seeds:
            raise ValueError(f"{name}: {len(values)} arrays for {num_seeds} seeds")
        arrays = []
        for s, v in enumerate(values):
            v = np.asarray(v, dtype=np.float64)
            if v.ndim != 1 or len(v) < 2 or not np.isfinite(v).all():
                raise ValueError(f"{name}[{s}]: expected at least 2 finite per-example values, got shape {v.shape}")
            arrays.append(v - v.mean())
        out.append(arrays)
    if paired:
        for s, (va, vb) in enumerate(zip(*out, strict=True)):
            if len(va) != len(vb):
                raise ValueError(
                    f"per_example_b[{s}]: {len(vb)} values for A's {len(va)}; paired examples need equal lengths"
                )
        return [(va - vb,) for va, vb in zip(*out, strict=True)]
    return list(zip(*out, strict=True))


def _example_noise(examples, seeds: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """For every slot of ``seeds (B, S)``: the change of the drawn seed's difference when its examples
    are drawn again with replacement (each slot independently)."""
    noise = np.zeros(seeds.size)
    for s, parts in enumerate(examples):
        slots = np.flatnonzero(seeds.ravel() == s)
        for sign, centred in zip((1.0, -1.0), parts, strict=False):
            n = len(centred)
            step = max(1, _BLOCK // n)
            for start in range(0, len(slots), step):
                block = slots[start : start + step]
                draws = centred[rng.integers(0, n, size=(len(block), n))].mean(axis=1)
                noise[block] += sign * draws
    return noise.reshape(seeds.shape)
