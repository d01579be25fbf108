"""Priors p(z) on the representations: the distributions and the modules that own their parameters.

A prior module is called with the batch and event shape of its site and returns a distribution of
exactly that shape (the event dimensions reinterpreted), ready for ``pyro.sample`` in the model.
Its KL divergence against the guide's noise is registered in :mod:`infodropout.models.kl`.
"""

import math

import pyro.distributions as dist
import torch
from pyro.distributions import TorchDistribution
from torch import nn
from torch.distributions import constraints
from torch.distributions.transforms import ExpTransform

from infodropout.guides.layers import GaussianLatent, InformationDropout, NoisyLayer

#: Prior names, as configs and the command line use them.
PRIORS = ("log-uniform", "log-normal", "factorised", "correlated", "normal")


class LogUniform(TorchDistribution):
    r"""
    The improper scale-invariant prior of Information Dropout with ReLU activations: a point mass at
    0 (where a unit is off) plus the log-uniform density on ``(0, inf)``::

        p(z) = delta_0(z) + 1 / z,        log p(z) = -log z  (z > 0),   log p(0) = 0

    It has no normalising constant and no samples. Against the guide's
    :class:`~infodropout.guides.noise.MultiplicativeLogNormal` its KL divergence is
    ``-log(alpha / max_alpha)`` on active units and 0 on inactive ones; the Monte Carlo estimate of
    ``E_q[log q - log p]`` differs from it, on active units, by the constant
    ``-log(max_alpha) - 0.5 * log(2 * pi * e)``.
    """

    arg_constraints = {}
    support = constraints.nonnegative

    def __init__(self, batch_shape=torch.Size(), event_shape=torch.Size(), validate_args=None):
        super().__init__(torch.Size(batch_shape), torch.Size(event_shape), validate_args=validate_args)

    def expand(self, batch_shape, _instance=None):
        new = self._get_checked_instance(LogUniform, _instance)
        super(LogUniform, new).__init__(torch.Size(batch_shape), self.event_shape, validate_args=False)
        new._validate_args = self._validate_args
        return new

    def log_prob(self, value):
        if self._validate_args:
            self._validate_sample(value)
        lp = -torch.log(torch.where(value > 0, value, torch.ones_like(value)))
        return lp.expand(torch.broadcast_shapes(lp.shape, self.batch_shape + self.event_shape))

    def sample(self, sample_shape=torch.Size()):
        raise NotImplementedError("LogUniform is improper and has no samples; run the model under a guide")


class MultivariateLogNormal(dist.TransformedDistribution):
    r"""
    A correlated prior on positive vectors: ``log z ~ MultivariateNormal(loc, Sigma)``, with
    ``Sigma`` given either as ``scale_tril`` (full covariance) or as ``cov_factor`` and ``cov_diag``
    (low rank plus diagonal, ``Sigma = W W^T + diag(d)``)::

        log p(z) = log N(log z; loc, Sigma) - sum_j log z_j
    """

    arg_constraints = {}
    support = constraints.independent(constraints.positive, 1)

    def __init__(self, loc, scale_tril=None, cov_factor=None, cov_diag=None, validate_args=None):
        if scale_tril is not None:
            base = dist.MultivariateNormal(loc, scale_tril=scale_tril, validate_args=validate_args)
        elif cov_factor is not None and cov_diag is not None:
            base = dist.LowRankMultivariateNormal(loc, cov_factor, cov_diag, validate_args=validate_args)
        else:
            raise ValueError("MultivariateLogNormal: give scale_tril, or cov_factor and cov_diag")
        super().__init__(base, ExpTransform(), validate_args=validate_args)

    def expand(self, batch_shape, _instance=None):
        new = self._get_checked_instance(MultivariateLogNormal, _instance)
        return super().expand(batch_shape, _instance=new)

    @property
    def loc(self):
        return self.base_dist.loc


class Prior(nn.Module):
    """A prior on one site: ``forward(batch_shape, event_shape)`` returns p(z) of exactly that shape."""

    name = "prior"

    def check(self, site: str, layer: NoisyLayer, event_shape: torch.Size | None) -> None:
        """Raise ``ValueError`` if this prior cannot serve ``layer`` at ``site`` (given its event shape)."""

    def forward(self, batch_shape: torch.Size, event_shape: torch.Size) -> TorchDistribution:
        raise NotImplementedError


def _require_information(prior: Prior, site: str, layer: NoisyLayer) -> None:
    if not isinstance(layer, InformationDropout):
        raise ValueError(
            f"prior={prior.name!r} at site {site!r}: it is a prior on multiplicative log-normal noise, "
            f"but the layer is {type(layer).__name__}; accepted: {priors_for(layer)}"
        )


class LogUniformPrior(Prior):
    """The improper log-uniform prior (the paper's prior for ReLU activations); no parameters."""

    name = "log-uniform"

    def check(self, site, layer, event_shape):
        _require_information(self, site, layer)

    def forward(self, batch_shape, event_shape):
        event_shape = torch.Size(event_shape)
        return LogUniform(torch.Size(batch_shape) + event_shape).to_event(len(event_shape))


class LogNormalPrior(Prior):
    r"""
    A learned log-normal prior, ``log z ~ Normal(loc, scale**2)`` independently for every unit, with
    parameters of shape ``shape`` broadcast over the units: ``()`` gives the paper's per-layer prior
    (``loc`` and ``scale`` learned per layer, initialised to 0 and 1); a shape equal to the layer's
    units (``(D,)`` dense, ``(C, 1, 1)`` convolutional) gives the factorised prior with one learned
    factor per unit (per channel).

    :param shape: shape of ``loc`` and ``scale``; must broadcast to the site's event shape.
    :param float loc: initial ``loc``.
    :param float scale: initial ``scale`` (> 0); parameterised as ``exp(log_scale)``.
    :param bool learn: learn the parameters (else they are fixed buffers).
    """

    name = "log-normal"

    def __init__(self, shape=(), loc: float = 0.0, scale: float = 1.0, learn: bool = True):
        super().__init__()
        if not scale > 0:
            raise ValueError(f"scale={scale}: expected a positive number")
        self.shape = torch.Size(shape)
        loc_t = torch.full(self.shape, float(loc))
        log_scale_t = torch.full(self.shape, math.log(scale))
        if learn:
            self.loc = nn.Parameter(loc_t)
            self.log_scale = nn.Parameter(log_scale_t)
        else:
            self.register_buffer("loc", loc_t)
            self.register_buffer("log_scale", log_scale_t)

    @property
    def scale(self) -> torch.Tensor:
        return self.log_scale.exp()

    def check(self, site, layer, event_shape):
        _require_information(self, site, layer)
        if event_shape is not None and not _broadcasts_to(self.shape, event_shape):
            raise ValueError(
                f"prior={self.name!r} at site {site!r}: parameter shape {tuple(self.shape)} does not "
                f"broadcast to the layer's units {tuple(event_shape)}"
            )

    def forward(self, batch_shape, event_shape):
        shape = torch.Size(batch_shape) + torch.Size(event_shape)
        p = dist.LogNormal(self.loc.expand(shape), self.scale.expand(shape))
        return p.to_event(len(event_shape))

    def extra_repr(self) -> str:
        return f"shape={tuple(self.shape)}"


def _broadcasts_to(shape: torch.Size, target: torch.Size) -> bool:
    if len(shape) > len(target):
        return False
    return all(s in (1, t) for s, t in zip(reversed(shape), reversed(target), strict=False))


class FactorisedLogNormalPrior(LogNormalPrior):
    """The factorised prior ``p(z) = prod_j p_j(z_j)`` with one learned log-normal factor per unit."""

    name = "factorised"


class CorrelatedLogNormalPrior(Prior):
    r"""
    A learned correlated prior on the units of a dense layer: ``log z ~ MultivariateNormal(loc, Sigma)``.
    With ``rank=None`` the covariance is full, ``Sigma = L L^T`` with ``L`` lower triangular with a
    positive diagonal (initialised to the identity); with ``rank=r``, ``Sigma = W W^T + diag(d)``.
    Unlike a factorised prior it does not charge the total correlation of the representation.

    :param int dim: number of units.
    :param int rank: rank of the low-rank part, or None for a full covariance.
    """

    name = "correlated"

    def __init__(self, dim: int, rank: int | None = None):
        super().__init__()
        if not dim > 0:
            raise ValueError(f"dim={dim}: expected a positive number of units")
        if rank is not None and not 0 < rank <= dim:
            raise ValueError(f"rank={rank}: expected None or an integer in [1, {dim}]")
        self.dim, self.rank = int(dim), rank
        self.loc = nn.Parameter(torch.zeros(dim))
        if rank is None:
            self.tril = nn.Parameter(torch.zeros(dim, dim))
            self.log_diag = nn.Parameter(torch.zeros(dim))
        else:
            generator = torch.Generator().manual_seed(dim * 1009 + rank)
            self.cov_factor = nn.Parameter(0.1 * torch.randn(dim, rank, generator=generator))
            self.log_diag = nn.Parameter(torch.zeros(dim))

    def check(self, site, layer, event_shape):
        _require_information(self, site, layer)
        if event_shape is not None and tuple(event_shape) != (self.dim,):
            raise ValueError(
                f"prior={self.name!r} at site {site!r}: a correlated prior over {self.dim} units does not "
                f"match the layer's units {tuple(event_shape)} (it needs a dense layer of {self.dim} units)"
            )

    def scale_tril(self) -> torch.Tensor:
        """The Cholesky factor of the covariance (full-covariance prior)."""
        return torch.tril(self.tril, -1) + torch.diag_embed(self.log_diag.exp())

    def covariance(self) -> torch.Tensor:
        if self.rank is None:
            L = self.scale_tril()
            return L @ L.T
        return self.cov_factor @ self.cov_factor.T + torch.diag_embed(self.log_diag.exp())

    def forward(self, batch_shape, event_shape):
        batch_shape = torch.Size(batch_shape)
        if self.rank is None:
            p = MultivariateLogNormal(self.loc, scale_tril=self.scale_tril())
        else:
            p = MultivariateLogNormal(self.loc, cov_factor=self.cov_factor, cov_diag=self.log_diag.exp())
        return p.expand(batch_shape)

    def extra_repr(self) -> str:
        return f"dim={self.dim}, rank={self.rank}"


class StandardNormalPrior(Prior):
    """``z ~ Normal(0, 1)`` independently for every unit: the prior of a VAE's Gaussian latent."""

    name = "normal"

    def __init__(self):
        super().__init__()
        self.register_buffer("zero", torch.zeros(()), persistent=False)
        self.register_buffer("one", torch.ones(()), persistent=False)

    def check(self, site, layer, event_shape):
        if not isinstance(layer, GaussianLatent):
            raise ValueError(
                f"prior='normal' at site {site!r}: it is a prior on an additive Gaussian latent, "
                f"but the layer is {type(layer).__name__}; accepted: {priors_for(layer)}"
            )

    def forward(self, batch_shape, event_shape):
        shape = torch.Size(batch_shape) + torch.Size(event_shape)
        return dist.Normal(self.zero.expand(shape), self.one.expand(shape)).to_event(len(event_shape))


def priors_for(layer: NoisyLayer) -> tuple[str, ...]:
    """The prior names that can serve ``layer``."""
    if isinstance(layer, InformationDropout):
        return ("log-uniform", "log-normal", "factorised", "correlated")
    if isinstance(layer, GaussianLatent):
        return ("normal",)
    return ()


def default_prior(layer: NoisyLayer) -> str:
    """The paper's pairing: ReLU with log-uniform, softplus with log-normal; Gaussian with normal."""
    if isinstance(layer, GaussianLatent):
        return "normal"
    return "log-uniform" if layer.activation == "relu" else "log-normal"


def make_prior(name: str, site: str, layer: NoisyLayer, event_shape: torch.Size | None = None, **options) -> Prior:
    """Build the prior called ``name`` for ``layer`` at ``site``, checked against the layer.

    ``factorised`` and ``correlated`` size their parameters from ``event_shape`` (the site's units):
    one factor per unit of a dense layer or per channel of a convolutional one.
    """
    if name not in PRIORS:
        raise ValueError(f"prior={name!r} at site {site!r}: expected one of {PRIORS}")
    if name in ("factorised", "correlated") and event_shape is None:
        raise ValueError(
            f"prior={name!r} at site {site!r} learns one factor per unit: give input_shape= so the units can be counted"
        )
    if name == "log-uniform":
        prior = LogUniformPrior()
    elif name == "log-normal":
        prior = LogNormalPrior(**options)
    elif name == "factorised":
        units = event_shape if len(event_shape) == 1 else (event_shape[0],) + (1,) * (len(event_shape) - 1)
        prior = FactorisedLogNormalPrior(shape=units, **options)
    elif name == "correlated":
        if len(event_shape) != 1:
            raise ValueError(
                f"prior='correlated' at site {site!r}: needs a dense layer (units (D,)), got {tuple(event_shape)}"
            )
        prior = CorrelatedLogNormalPrior(event_shape[0], **options)
    else:
        prior = StandardNormalPrior(**options)
    prior.check(site, layer, event_shape)
    return prior
