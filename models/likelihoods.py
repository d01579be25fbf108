"""Task likelihoods p(y | head(z)): the observed site of the model."""

import math

import pyro.distributions as dist
import torch
from torch import nn

#: Likelihood names, as configs and the command line use them.
LIKELIHOODS = ("categorical", "bernoulli", "gaussian")


class Likelihood(nn.Module):
    """Maps the head's output to the distribution of the target, with batch shape ``(B,)``."""

    name = "likelihood"

    def forward(self, params: torch.Tensor):
        raise NotImplementedError

    def mean(self, params: torch.Tensor) -> torch.Tensor:
        """The mean of the target given the head's output (class probabilities for a classifier)."""
        return self.forward(params).mean


class CategoricalLikelihood(Likelihood):
    """``y ~ Categorical(logits=head(z))``: classification, ``-log p(y|z)`` is the cross-entropy."""

    name = "categorical"

    def forward(self, logits):
        return dist.Categorical(logits=logits)  # batch (B,)

    def mean(self, logits):
        return logits.softmax(-1)


class BernoulliLikelihood(Likelihood):
    """``y ~ Bernoulli(logits=head(z))`` per pixel: reconstruction of images with values in [0, 1].

    Grey values are accepted as targets (the binary cross-entropy of VAEs on MNIST), so the support
    is not checked.
    """

    name = "bernoulli"

    def forward(self, logits):
        return dist.Bernoulli(logits=logits, validate_args=False).to_event(logits.dim() - 1)

    def mean(self, logits):
        return logits.sigmoid()


class GaussianLikelihood(Likelihood):
    """``y ~ Normal(head(z), scale)`` per element; ``scale`` fixed, or learned when None.

    :param float scale: a fixed observation noise, or None to learn one (initialised to 1).
    """

    name = "gaussian"

    def __init__(self, scale: float | None = None):
        super().__init__()
        if scale is None:
            self.log_scale = nn.Parameter(torch.zeros(()))
        else:
            if not scale > 0:
                raise ValueError(f"scale={scale}: expected a positive observation noise")
            self.register_buffer("log_scale", torch.tensor(math.log(scale)))

    def forward(self, loc):
        return dist.Normal(loc, self.log_scale.exp().expand(loc.shape)).to_event(loc.dim() - 1)

    def mean(self, loc):
        return loc


def make_likelihood(name: str | Likelihood, **options) -> Likelihood:
    """The likelihood called ``name`` (one of :data:`LIKELIHOODS`), or ``name`` itself if a module."""
    if isinstance(name, Likelihood):
        return name
    if name == "categorical":
        return CategoricalLikelihood(**options)
    if name == "bernoulli":
        return BernoulliLikelihood(**options)
    if name == "gaussian":
        return GaussianLikelihood(**options)
    raise ValueError(f"likelihood={name!r}: expected one of {LIKELIHOODS}")
