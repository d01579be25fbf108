"""Measuring a trained network: one road from a network to the arrays metrics and reports read.

One room per concern, each used by every caller (the training loop, the studies, a user's own code):

- :mod:`.context`: :func:`evaluating`, the evaluation context (eval mode, no gradients, no Pyro sites
  escaping, batch-norm statistics re-estimated without noise where asked);
- :mod:`.sites`: the latent sites of a network, their noisy layers and the guide's distribution there;
- :mod:`.encoding`: encoding a data set into representations (:data:`KINDS`: ``log-location``,
  ``median``, ``mean``) and the guide's posterior (:func:`encode`, :func:`representation`);
- :mod:`.information`: the KL divergence per latent dimension (:func:`dimension_kl`) and per position
  (:func:`information_maps`), closed form where registered and Monte Carlo otherwise, for any prior;
- :mod:`.likelihood`: importance-weighted log weights of a reconstruction model
  (:func:`log_importance_weights`); PSIS is :mod:`infodropout.train.metrics.psis`;
- :mod:`.task`: a classifier's test error and information per layer under both KL conventions, a
  reconstruction model's test ELBO (:func:`classifier_measures`, :func:`reconstruction_measures`);
- :mod:`.generative`: prior samples, reconstructions, latent traversals;
- :mod:`.factors`: what the disentanglement metrics need of data with known factors (factor sets,
  encoded points with their classes, fresh FactorVAE votes); :mod:`.disentanglement`: the record they
  read and the metrics computed from it (:func:`evaluate`);
- :mod:`.probe`: a linear probe on frozen features;
- :mod:`.uncertainty`: a classifier's predictions over draws of its noise, BALD and the information per
  example (:func:`~.uncertainty.predictive`), their calibration and out-of-distribution scores;
- :mod:`.pruning`: the information of every unit over a data set, rankings, and the smaller network
  cut out of a fully-connected classifier (:class:`~.pruning.PrunedMLP`);
- :mod:`.scores`: NLL, Brier score, ECE, AUROC, FPR at 95% TPR, BALD, temperature scaling (pure NumPy);
- :mod:`.record`: the one measured record per run (``measurements.nc``, named dimensions), written
  atomically; metrics and reports read it.
"""

from .context import evaluating
from .disentanglement import collect, evaluate, metrics_of
from .encoding import (
    DEFAULT_KINDS,
    KINDS,
    Encoding,
    RepresentationKind,
    encode,
    kl_divergences,
    representation,
    resolve_kind,
)
from .factors import factor_sets, factor_vae_fresh, fresh_votes, sample_encoded
from .generative import latent_traversals, prior_samples, reconstructions
from .information import dimension_kl, information_maps, latent_distributions, unit_information
from .likelihood import iw_by_samples, log_importance_weights, sample_counts
from .probe import features, linear_probe
from .record import RECORD, inputs_from_record, read_record, write_record
from .sites import LATENTS, POSTERIOR_SPACE, latent_layer, latent_type, site_distribution
from .task import classifier_measures, reconstruction_measures

__all__ = [
    "DEFAULT_KINDS",
    "KINDS",
    "LATENTS",
    "POSTERIOR_SPACE",
    "RECORD",
    "Encoding",
    "RepresentationKind",
    "classifier_measures",
    "collect",
    "dimension_kl",
    "encode",
    "evaluate",
    "evaluating",
    "factor_sets",
    "factor_vae_fresh",
    "features",
    "fresh_votes",
    "information_maps",
    "latent_distributions",
    "inputs_from_record",
    "iw_by_samples",
    "kl_divergences",
    "latent_layer",
    "latent_traversals",
    "latent_type",
    "linear_probe",
    "log_importance_weights",
    "metrics_of",
    "prior_samples",
    "read_record",
    "reconstruction_measures",
    "reconstructions",
    "representation",
    "resolve_kind",
    "sample_counts",
    "sample_encoded",
    "site_distribution",
    "unit_information",
    "write_record",
]
