"""The measurement functions under their former module name (see :mod:`infodropout.train.evaluation`)."""

from .evaluation import (  # noqa: F401  (the names this module has always offered)
    DEFAULT_KINDS,
    KINDS,
    LATENTS,
    POSTERIOR_SPACE,
    Encoding,
    RepresentationKind,
    encode,
    evaluate,
    evaluating,
    factor_sets,
    factor_vae_fresh,
    kl_divergences,
    latent_layer,
    latent_type,
    log_importance_weights,
    representation,
    resolve_kind,
    sample_encoded,
)
from .metrics import DEFAULT_METRICS  # noqa: F401
