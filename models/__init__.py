"""p: what the model says. Priors on the representations (log-uniform, log-normal, factorised,
correlated) with their KLs against the guide's noise registered in :mod:`.kl`, task heads, decoders
and likelihoods, and their assembly with an encoder into a Pyro (model, guide) pair."""

from . import kl  # noqa: F401  (registers the analytic KL divergences)
from .bottleneck import REPRESENTATION, TARGET, InformationBottleneck, Layout
from .heads import AllCNNHead, ConvDecoder, LinearHead, MLPDecoder
from .kl import loguniform_kl
from .likelihoods import (
    LIKELIHOODS,
    BernoulliLikelihood,
    CategoricalLikelihood,
    GaussianLikelihood,
    Likelihood,
    make_likelihood,
)
from .priors import (
    KL_CONVENTIONS,
    PRIORS,
    CorrelatedLogNormalPrior,
    FactorisedLogNormalPrior,
    LogNormalPrior,
    LogUniform,
    LogUniformPrior,
    MultivariateLogNormal,
    Prior,
    StandardNormalPrior,
    is_improper,
    make_prior,
    priors_for,
    register_prior,
    unregister_prior,
)

__all__ = [
    "KL_CONVENTIONS",
    "LIKELIHOODS",
    "PRIORS",
    "REPRESENTATION",
    "TARGET",
    "AllCNNHead",
    "BernoulliLikelihood",
    "CategoricalLikelihood",
    "ConvDecoder",
    "CorrelatedLogNormalPrior",
    "FactorisedLogNormalPrior",
    "GaussianLikelihood",
    "InformationBottleneck",
    "Layout",
    "LinearHead",
    "Likelihood",
    "LogNormalPrior",
    "LogUniform",
    "LogUniformPrior",
    "MLPDecoder",
    "MultivariateLogNormal",
    "Prior",
    "StandardNormalPrior",
    "loguniform_kl",
    "make_likelihood",
    "is_improper",
    "make_prior",
    "priors_for",
    "register_prior",
    "unregister_prior",
]
