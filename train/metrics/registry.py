"""The metrics by name (the names ``--metrics`` accepts): what each needs, how it computes from a run's
measured arrays, and results as JSON.

A metric is a pure function over arrays and a declaration of what it needs (a key of :data:`NEEDS`).
:func:`register_metric` adds one, as :func:`~infodropout.models.register_prior` adds a prior: a user's
metric is one function and one registration (in a ``--plugin`` file for the command line), and every
measurement and report takes it by name. The built-in metrics are registered below, in this module.
"""

import math
import types
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field

import numpy as np

from .active_units import active_units
from .dci import dci, restrict_dci
from .factor_vae import factor_vae_score, score_votes
from .kl_per_dim import kl_per_dimension, summarise_kl
from .likelihood import iw_log_likelihood
from .mig import mig
from .psis import psis_log_likelihood
from .sap import sap
from .settings import MetricSettings
from .total_correlation import total_correlation

#: What a metric is computed from: the arguments its function takes, in order.
NEEDS = {
    "factors": "representation (N, D) and factor classes (N, K)",
    "representation": "representation (N, D)",
    "posterior": "posterior loc, scale and a sample (M, D) in the space where q is Gaussian, and N",
    "kl": "per-example, per-dimension KL divergences (N, D)",
    "log_weights": "log importance weights (K, N) of a reconstruction model",
}


@dataclass(frozen=True)
class MetricInputs:
    """A run's measured arrays, as the metrics read them (see :mod:`infodropout.train.evaluation`).

    Per point of one pool of ``N`` encoded points: ``representation (N, D)``, ``factors (N, K)`` (factor
    classes), ``loc``, ``scale`` and ``sample`` ``(N, D)`` (the posterior where it is Gaussian, in
    ``posterior_space``), ``kl (N, D)`` and ``kl_joint (N,)`` (with ``kl_exact``, ``kl_analytic`` and the
    ``site``); ``factor_sets`` names column sets of ``factors``; ``log_weights (K, M)`` are the log
    importance weights of M images; ``total_correlation`` is that of the aggregate posterior measured
    over many more points than the pool (a :func:`total_correlation` result); ``num_data`` is the size of
    the data set the pool is drawn from; ``votes`` the FactorVAE votes of fresh observations per factor
    set, where they were drawn. Absent arrays are None.
    """

    representation: np.ndarray | None = None
    factors: np.ndarray | None = None
    factor_sets: Mapping[str, list[int]] = field(default_factory=dict)
    loc: np.ndarray | None = None
    scale: np.ndarray | None = None
    sample: np.ndarray | None = None
    posterior_space: str | None = None
    kl: np.ndarray | None = None
    kl_joint: np.ndarray | None = None
    kl_exact: bool | None = None
    kl_analytic: bool | None = None
    site: str | None = None
    log_weights: np.ndarray | None = None
    total_correlation: Mapping | None = None
    num_data: int | None = None
    votes: Mapping[str, dict] | None = None
    seed: int = 0

    def arguments(self, needs: str, num_points: int, columns: list[int] | None = None) -> tuple:
        """The positional arguments of a metric function that needs ``needs``: the first ``num_points``
        points (all of the log weights), and of the factors the ``columns`` (all for None)."""
        first = slice(0, num_points)
        if needs == "factors":
            factors = self.factors[first] if columns is None else self.factors[first][:, columns]
            return self.representation[first], factors
        if needs == "representation":
            return (self.representation[first],)
        if needs == "posterior":
            return self.loc[first], self.scale[first], self.sample[first], self.num_data
        if needs == "kl":
            return (self.kl[first],)
        if needs == "log_weights":
            return (self.log_weights,)
        raise ValueError(f"needs={needs!r}: expected one of {tuple(NEEDS)}")


#: ``compute(metric, inputs, settings) -> result``: a metric from a run's arrays (``{set: result}`` for a
#: metric over factor sets).
Compute = Callable[["Metric", MetricInputs, MetricSettings], dict]


@dataclass(frozen=True)
class Metric:
    """A metric: its pure function, what it needs (a key of :data:`NEEDS`), its headline score (the key
    of the result that tables and figures show), whether it is computed per factor set, whether higher
    is better, a one-line summary, and how it computes from a run's arrays (None: its function on the
    first ``settings.num_points`` points, per factor set where it is computed so)."""

    name: str
    function: Callable[..., dict]
    needs: str
    score: str
    per_factor_set: bool
    higher_is_better: bool
    summary: str
    compute: Compute | None = None

    def evaluate(self, inputs: MetricInputs, settings: MetricSettings) -> dict:
        """The metric on ``inputs``: a result, or ``{set: result}`` for a metric over factor sets."""
        if self.compute is not None:
            return self.compute(self, inputs, settings)
        if self.per_factor_set:
            return {
                name: self.function(*inputs.arguments(self.needs, settings.num_points, cols))
                for name, cols in inputs.factor_sets.items()
            }
        return self.function(*inputs.arguments(self.needs, settings.num_points))


_REGISTRY: dict[str, Metric] = {}
#: Every registered metric by name, in registration order (a live, read-only view of the registry).
METRICS: Mapping[str, Metric] = types.MappingProxyType(_REGISTRY)


def register_metric(
    name: str,
    function: Callable[..., dict],
    *,
    needs: str,
    score: str,
    per_factor_set: bool | None = None,
    higher_is_better: bool = True,
    summary: str | None = None,
    compute: Compute | None = None,
    replace: bool = False,
) -> Callable[..., dict]:
    """Register ``function`` as the metric ``name``, so that ``--metrics``, the measurements and the
    reports accept it.

    ``function(*arguments)`` takes the arrays ``needs`` names (see :data:`NEEDS`: e.g. ``"factors"`` ->
    ``(representation (N, D), factors (N, K))``) and returns a dict whose ``score`` key is the headline
    number. ``per_factor_set`` (default: for metrics that need factors) computes it for every factor set
    a study reports. ``compute`` replaces the default way of calling it (see :class:`Metric`).

    :param bool replace: allow replacing a registered name (else registering it twice is an error).
    :returns: ``function``.
    """
    if not (isinstance(name, str) and name and not any(c.isspace() or c == "," for c in name)):
        raise ValueError(f"register_metric: name={name!r}: expected a non-empty name without spaces or commas")
    if not callable(function):
        raise ValueError(f"register_metric({name!r}): function={function!r} is not callable")
    if needs not in NEEDS:
        raise ValueError(f"register_metric({name!r}): needs={needs!r}: expected one of {tuple(NEEDS)}")
    if not (isinstance(score, str) and score):
        raise ValueError(f"register_metric({name!r}): score={score!r}: expected the key of the headline number")
    if name in _REGISTRY and not replace:
        raise ValueError(f"register_metric({name!r}): a metric of that name is registered; pass replace=True")
    if summary is None:
        summary = ((function.__doc__ or name).strip().splitlines() or [name])[0]
    per_factor_set = needs == "factors" if per_factor_set is None else bool(per_factor_set)
    _REGISTRY[name] = Metric(name, function, needs, score, per_factor_set, bool(higher_is_better), summary, compute)
    return function


def unregister_metric(name: str) -> None:
    """Remove the metric registered as ``name`` (``ValueError`` if there is none)."""
    if name not in _REGISTRY:
        raise ValueError(f"unregister_metric({name!r}): no such metric; registered: {', '.join(_REGISTRY)}")
    del _REGISTRY[name]


def check_metrics(names: str | Iterable[str]) -> tuple[str, ...]:
    """The metric names, checked against the registry (a comma-separated string or an iterable)."""
    if isinstance(names, str):
        names = [n.strip() for n in names.split(",") if n.strip()]
    names = tuple(names)
    unknown = [n for n in names if n not in _REGISTRY]
    if unknown:
        raise ValueError(f"metrics: unknown {', '.join(map(repr, unknown))}; expected some of {tuple(_REGISTRY)}")
    if not names:
        raise ValueError(f"metrics: none given; expected some of {tuple(_REGISTRY)}")
    return tuple(dict.fromkeys(names))


def get_metric(name: str) -> Metric:
    """The metric called ``name``; an unknown name lists the valid ones."""
    return _REGISTRY[check_metrics([name])[0]]


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


# -- the built-in metrics: how each computes from a run's arrays ---------------------------------------


def _splits(inputs: MetricInputs, num_train: int, num_test: int):
    """The first ``num_train`` points and the next ``num_test``: representations, then factor classes."""
    train, test = slice(0, num_train), slice(num_train, num_train + num_test)
    return inputs.representation[train], inputs.representation[test], inputs.factors[train], inputs.factors[test]


def _mig(metric: Metric, inputs: MetricInputs, s: MetricSettings) -> dict:
    codes, classes = inputs.arguments("factors", s.num_points)
    return {k: mig(codes, classes[:, cols], num_bins=s.num_bins) for k, cols in inputs.factor_sets.items()}


def _factor_vae(metric: Metric, inputs: MetricInputs, s: MetricSettings) -> dict:
    if inputs.votes is not None:  # votes of fresh observations, drawn by the measurement
        return {k: score_votes(inputs.votes[k]) for k in inputs.factor_sets}
    out = {}
    for k, cols in inputs.factor_sets.items():
        result = factor_vae_score(
            inputs.representation,
            inputs.factors[:, cols],
            batch_size=s.factor_vae_batch_size,
            num_train=s.factor_vae_num_train,
            num_eval=s.factor_vae_num_eval,
            num_variance=min(s.factor_vae_num_variance, len(inputs.representation)),
            prune_threshold=s.factor_vae_prune_threshold,
            seed=inputs.seed,
        )
        out[k] = {**result, "mode": "pool"}
    return out


def _dci(metric: Metric, inputs: MetricInputs, s: MetricSettings) -> dict:
    """DCI's trees are fitted once, on every factor, and the result restricted to each factor set."""
    train_codes, test_codes, train_classes, test_classes = _splits(inputs, s.dci_num_train, s.dci_num_test)
    full = dci(
        train_codes,
        train_classes,
        test_representation=test_codes,
        test_factors=test_classes,
        n_estimators=s.dci_n_estimators,
        seed=inputs.seed,
    )
    every = list(range(inputs.factors.shape[1]))
    return {k: full if cols == every else restrict_dci(full, cols) for k, cols in inputs.factor_sets.items()}


def _sap(metric: Metric, inputs: MetricInputs, s: MetricSettings) -> dict:
    train_codes, test_codes, train_classes, test_classes = _splits(inputs, s.sap_num_train, s.sap_num_test)
    return {
        k: sap(
            train_codes,
            train_classes[:, cols],
            test_representation=test_codes,
            test_factors=test_classes[:, cols],
            c=s.sap_c,
            seed=inputs.seed,
        )
        for k, cols in inputs.factor_sets.items()
    }


def _active_units(metric: Metric, inputs: MetricInputs, s: MetricSettings) -> dict:
    return active_units(*inputs.arguments("representation", s.num_points), threshold=s.active_threshold)


def _total_correlation(metric: Metric, inputs: MetricInputs, s: MetricSettings) -> dict:
    """Measured over the many points of the record's aggregate posterior where it holds it, else over
    the pool's first ``num_points`` posteriors."""
    if inputs.total_correlation is not None:
        return dict(inputs.total_correlation)
    loc, scale, sample, num_data = inputs.arguments("posterior", s.num_points)
    result = total_correlation(loc, scale, sample, num_data, num_samples=s.tc_num_samples, seed=inputs.seed)
    return {**result, "posterior_space": inputs.posterior_space}


def _kl_per_dim(metric: Metric, inputs: MetricInputs, s: MetricSettings) -> dict:
    first = slice(0, s.num_points)
    return summarise_kl(
        inputs.kl[first], inputs.kl_joint[first], exact=inputs.kl_exact, analytic=inputs.kl_analytic, site=inputs.site
    )


def _with_images(metric: Metric, inputs: MetricInputs, s: MetricSettings) -> dict:
    return {**metric.function(inputs.log_weights), "num_images": inputs.log_weights.shape[1]}


register_metric("mig", mig, needs="factors", score="mig", summary="Mutual Information Gap (Chen et al. 2018), 20 bins",
                compute=_mig)  # fmt: skip
register_metric("factor-vae", factor_vae_score, needs="factors", score="eval_accuracy",
                summary="FactorVAE score (Kim & Mnih)", compute=_factor_vae)  # fmt: skip
register_metric("dci", dci, needs="factors", score="disentanglement",
                summary="DCI (Eastwood & Williams 2018), boosted trees", compute=_dci)  # fmt: skip
register_metric("sap", sap, needs="factors", score="sap",
                summary="SAP score (Kumar et al. 2018), a linear SVM per latent", compute=_sap)  # fmt: skip
register_metric("active-units", active_units, needs="representation", score="num_active",
                summary="Burda et al. 2016", compute=_active_units)  # fmt: skip
register_metric("total-correlation", total_correlation, needs="posterior", score="total_correlation",
                higher_is_better=False, summary="the aggregate posterior's mixture, exactly (MSS, MWS beside)",
                compute=_total_correlation)  # fmt: skip
register_metric("kl-per-dim", kl_per_dimension, needs="kl", score="kl_sum", higher_is_better=False,
                summary="KL divergence per latent dimension", compute=_kl_per_dim)  # fmt: skip
register_metric("log-likelihood", iw_log_likelihood, needs="log_weights", score="mean",
                summary="IWAE estimate of log p(x)", compute=_with_images)  # fmt: skip
register_metric("psis", psis_log_likelihood, needs="log_weights", score="mean",
                summary="Pareto-smoothed log p(x) and k-hat", compute=_with_images)  # fmt: skip

#: The metrics a measurement computes when none are named.
DEFAULT_METRICS = ("mig", "factor-vae", "dci", "sap", "active-units", "total-correlation", "kl-per-dim")
