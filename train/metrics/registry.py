"""The metrics by name (the names ``--metrics`` accepts), what each needs, and results as JSON."""

import math
from collections.abc import Callable, Iterable
from dataclasses import dataclass

import numpy as np

from .active_units import active_units
from .dci import dci
from .factor_vae import factor_vae_score
from .kl_per_dim import kl_per_dimension
from .likelihood import iw_log_likelihood
from .mig import mig
from .sap import sap
from .total_correlation import total_correlation

#: What a metric is computed from.
NEEDS = {
    "factors": "representation (N, D) and factor classes (N, K)",
    "representation": "representation (N, D)",
    "posterior": "posterior loc, scale and a sample (M, D) in the space where q is Gaussian, and N",
    "kl": "per-example, per-dimension KL divergences (N, D)",
    "log_weights": "log importance weights (K, N) of a reconstruction model",
}


def _psis(log_weights, **kwargs):
    from .psis import psis_log_likelihood  # arviz is imported only when PSIS is asked for

    return psis_log_likelihood(log_weights, **kwargs)


@dataclass(frozen=True)
class Metric:
    """A metric: its pure function, what it needs (a key of :data:`NEEDS`), its headline score (the
    key of the result that tables and figures show), whether that score depends on the factors
    chosen, and whether higher is better."""

    name: str
    function: Callable[..., dict]
    needs: str
    score: str
    per_factor_set: bool
    higher_is_better: bool
    summary: str


def _metric(name, function, needs, score, per_factor_set, higher_is_better, summary) -> Metric:
    return Metric(name, function, needs, score, per_factor_set, higher_is_better, summary)


#: Every metric by name: ``needs`` says which inputs :mod:`infodropout.train.representations` prepares.
METRICS: dict[str, Metric] = {
    m.name: m
    for m in (
        _metric("mig", mig, "factors", "mig", True, True, "Mutual Information Gap (Chen et al. 2018), 20 bins"),
        _metric("factor-vae", factor_vae_score, "factors", "eval_accuracy", True, True, "FactorVAE score (Kim & Mnih)"),
        _metric("dci", dci, "factors", "disentanglement", True, True, "DCI (Eastwood & Williams 2018), boosted trees"),
        _metric("sap", sap, "factors", "sap", True, True, "SAP score (Kumar et al. 2018), a linear SVM per latent"),
        _metric("active-units", active_units, "representation", "num_active", False, True, "Burda et al. 2016"),
        _metric("total-correlation", total_correlation, "posterior", "total_correlation", False, False, "MSS, MWS"),
        _metric("kl-per-dim", kl_per_dimension, "kl", "kl_sum", False, False, "KL divergence per latent dimension"),
        _metric("log-likelihood", iw_log_likelihood, "log_weights", "mean", False, True, "IWAE estimate of log p(x)"),
        _metric("psis", _psis, "log_weights", "mean", False, True, "Pareto-smoothed log p(x) and k-hat"),
    )
}


def check_metrics(names: str | Iterable[str]) -> tuple[str, ...]:
    """The metric names, checked against :data:`METRICS` (a comma-separated string or an iterable)."""
    if isinstance(names, str):
        names = [n.strip() for n in names.split(",") if n.strip()]
    names = tuple(names)
    unknown = [n for n in names if n not in METRICS]
    if unknown:
        raise ValueError(f"metrics: unknown {', '.join(map(repr, unknown))}; expected some of {tuple(METRICS)}")
    if not names:
        raise ValueError(f"metrics: none given; expected some of {tuple(METRICS)}")
    return tuple(dict.fromkeys(names))


def get_metric(name: str) -> Metric:
    """The metric called ``name``; an unknown name lists the valid ones."""
    return METRICS[check_metrics([name])[0]]


def jsonable(value):
    """A metric result as JSON-ready Python: arrays to (nested) lists, NumPy scalars to numbers,
    non-finite floats to None (JSON has no NaN), dict keys to strings."""
    if isinstance(value, dict):
        return {str(k): jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [jsonable(v) for v in value]
    if isinstance(value, np.ndarray):
        return jsonable(value.tolist())
    if isinstance(value, (np.bool_, bool)):
        return bool(value)
    if isinstance(value, (np.integer, int)):
        return int(value)
    if isinstance(value, (np.floating, float)):
        return float(value) if math.isfinite(value) else None
    return value
