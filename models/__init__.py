"""p: what the model says. Priors on the representations (log-uniform, log-normal, factorised,
correlated) with their KLs against the guide's noise registered in :mod:`.kl`, task heads, decoders
and likelihoods, and their assembly with an encoder into a Pyro (model, guide) pair."""

from . import kl  # noqa: F401  (registers the analytic KL divergences)
from .bottleneck import REPRESENTATION, TARGET, InformationBottleneck, Layout
from .heads import AllCNNHead, ConvDecoder, LinearHead, MLPDecoder
from .likelihoods import (
    LIKELIHOODS,
    BernoulliLikelihood,
    CategoricalLikelihood,
    GaussianLikelihood,
    Likelihood,
    make_likelihood,
)
from .priors import (
    PRIORS,
    CorrelatedLogNormalPrior,
    FactorisedLogNormalPrior,
    LogNormalPrior,
    LogUniform,
    LogUniformPrior,
    MultivariateLogNormal,
    Prior,
    StandardNormalPrior,
    make_prior,
)

__all__ = [
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
    "make_likelihood",
    "make_prior",
]
