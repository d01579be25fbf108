"""The README's own prior, as a plug-in file: log z ~ Laplace(loc, scale), no KL registered."""

import pyro.distributions as dist
import torch
from torch import nn

from infodropout.guides import InformationDropout
from infodropout.models import Prior, register_prior


class LogLaplacePrior(Prior):
    """log z ~ Laplace(loc, scale) for every unit; loc and scale learned per layer."""

    def __init__(self):
        super().__init__()
        self.loc = nn.Parameter(torch.zeros(()))
        self.log_scale = nn.Parameter(torch.zeros(()))

    def forward(self, batch_shape, event_shape):
        shape = batch_shape + event_shape
        log_z = dist.Laplace(self.loc.expand(shape), self.log_scale.exp().expand(shape))
        return dist.TransformedDistribution(log_z, dist.transforms.ExpTransform()).to_event(len(event_shape))


register_prior(
    "log-laplace",
    lambda site, layer, event_shape: LogLaplacePrior(),
    accepts=lambda layer: isinstance(layer, InformationDropout) and layer.activation == "softplus",
)
