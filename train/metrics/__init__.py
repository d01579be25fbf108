"""Metrics: pure functions over arrays (NumPy in, dicts out), each with known-answer tests.

Disentanglement metrics follow google-research/disentanglement_lib's definitions (Locatello et al.
2019), so that numbers are comparable with the literature: :func:`mig`, :func:`factor_vae_score`,
:func:`dci` (and :func:`dci_scores` of an importance matrix), :func:`sap`. Also :func:`active_units`,
the :func:`total_correlation` of the aggregate posterior (the exact density of its mixture),
:func:`kl_per_dimension`, and the importance-weighted log-likelihood :func:`iw_log_likelihood`. PSIS and
ArviZ files live in :mod:`.psis` (imported on its own: it is the only module that imports ArviZ).
:data:`METRICS` names them all (the names ``--metrics`` accepts); :func:`register_metric` adds one;
:class:`MetricInputs` are a run's measured arrays as metrics read them; :data:`FULL` and :data:`FAST`
are the settings. Nothing here runs a model: :mod:`infodropout.train.evaluation` does that.
"""

from .active_units import active_units
from .dci import dci, dci_scores, gbt_importance, restrict_dci
from .factor_vae import factor_vae_score, majority_vote_accuracy, prune_dims, score_votes
from .kl_per_dim import kl_per_dimension, summarise_kl
from .likelihood import iw_log_likelihood, log_mean_exp
from .mig import discrete_entropy, discrete_mutual_info, histogram_discretize, mig, mutual_information_matrix
from .registry import (
    DEFAULT_METRICS,
    METRICS,
    NEEDS,
    Metric,
    MetricInputs,
    check_metrics,
    get_metric,
    jsonable,
    register_metric,
    unregister_metric,
)
from .sap import sap
from .settings import FAST, FULL, SETTINGS, STUDY, MetricSettings, get_settings
from .total_correlation import total_correlation

__all__ = [
    "DEFAULT_METRICS",
    "FAST",
    "FULL",
    "METRICS",
    "NEEDS",
    "SETTINGS",
    "STUDY",
    "Metric",
    "MetricInputs",
    "MetricSettings",
    "active_units",
    "check_metrics",
    "dci",
    "dci_scores",
    "discrete_entropy",
    "discrete_mutual_info",
    "factor_vae_score",
    "gbt_importance",
    "get_metric",
    "get_settings",
    "histogram_discretize",
    "iw_log_likelihood",
    "jsonable",
    "kl_per_dimension",
    "log_mean_exp",
    "majority_vote_accuracy",
    "mig",
    "mutual_information_matrix",
    "prune_dims",
    "register_metric",
    "restrict_dci",
    "sap",
    "score_votes",
    "summarise_kl",
    "total_correlation",
    "unregister_metric",
]
