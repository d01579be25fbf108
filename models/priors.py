"""Priors p(z) on the representations: the distributions, the modules that own their parameters, and
the registry of prior names.

A prior module is called with the batch and event shape of its site and returns a distribution of
exactly that shape (the event dimensions reinterpreted), ready for ``pyro.sample`` in the model.
Its KL divergence against the guide's noise is registered in :mod:`infodropout.models.kl`; where none
is registered, the ELBO estimates it by Monte Carlo (``log q(z) - log p(z)`` at the sampled ``z``).

A prior is a plug-in: :func:`register_prior` names a factory ``factory(site, layer, event_shape)``
returning a :class:`Prior`; :func:`make_prior`, configs and the command line's ``--prior`` accept every
registered name (:data:`PRIORS` lists them, live).
"""

import math
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass

import pyro.distributions as dist
import torch
from pyro.distributions import TorchDistribution
from torch import nn
from torch.distributions import constraints, transform_to
from torch.distributions.transforms import ExpTransform
from torch.distributions.utils import vec_to_tril_matrix

from infodropout.guides.layers import GaussianLatent, InformationDropout, NoisyLayer

#: How the log-uniform prior charges a unit: ``"exact"`` (the KL divergence: nothing for a unit that is
#: off) or ``"authors"`` (the authors' code: ``-log(alpha / (alpha_min + alpha_max))`` for every unit).
KL_CONVENTIONS = ("exact", "authors")


def check_kl_convention(convention: str) -> str:
    """``convention`` if it is one of :data:`KL_CONVENTIONS`, else ``ValueError``."""
    if convention not in KL_CONVENTIONS:
        raise ValueError(f"kl_convention={convention!r}: expected one of {', '.join(KL_CONVENTIONS)}")
    return convention


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

    With ``convention="authors"`` the registered KL charges ``-log(alpha / max_alpha)`` to every unit,
    including the units that are off (where the exact KL is 0), as the authors' code does: use it to
    compare information figures with theirs. The density is the same under both conventions.

    :param str convention: one of :data:`KL_CONVENTIONS`.
    """

    arg_constraints = {}
    support = constraints.nonnegative
    #: It has no normalising constant (see :func:`is_improper`).
    improper = True

    def __init__(self, batch_shape=torch.Size(), event_shape=torch.Size(), convention="exact", validate_args=None):
        self.convention = check_kl_convention(convention)
        super().__init__(torch.Size(batch_shape), torch.Size(event_shape), validate_args=validate_args)

    def expand(self, batch_shape, _instance=None):
        new = self._get_checked_instance(LogUniform, _instance)
        new.convention = self.convention
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


def is_improper(distribution) -> bool:
    """Whether ``distribution`` (under any ``Independent`` or transform wrappers) has no normalising
    constant, so that ``log p(x)`` under a model with it as a prior is undefined. A distribution says so
    itself with a true ``improper`` attribute (:class:`LogUniform` does; give a plug-in prior's
    distribution one); Pyro's own ``ImproperUniform``, which cannot carry it, is improper too."""
    while distribution is not None:
        if getattr(distribution, "improper", False) or isinstance(distribution, dist.ImproperUniform):
            return True
        distribution = getattr(distribution, "base_dist", None)
    return False


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


def _require_information(prior: Prior, site: str, layer: NoisyLayer, positive: bool = False) -> None:
    """Refuse a layer that is not information dropout or, with ``positive``, one whose units can be off."""
    if not isinstance(layer, InformationDropout):
        raise ValueError(
            f"prior={prior.name!r} at site {site!r}: it is a prior on multiplicative log-normal noise, "
            f"but the layer is {type(layer).__name__}; accepted: {', '.join(priors_for(layer)) or 'none'}"
        )
    if positive and layer.activation != "softplus":
        raise ValueError(
            f"prior={prior.name!r} at site {site!r}: the layer's {layer.activation} units can be off (z = 0), "
            "whose KL against a prior without a point mass at 0 is infinite; use activation='softplus' with "
            f"this prior (as the authors do), or a prior accepted here: {', '.join(priors_for(layer))}"
        )


class LogUniformPrior(Prior):
    """The improper log-uniform prior (the paper's prior for ReLU activations); no parameters.

    :param str convention: how its KL charges units that are off, one of :data:`KL_CONVENTIONS`.
    """

    name = "log-uniform"

    def __init__(self, convention: str = "exact"):
        super().__init__()
        self.convention = check_kl_convention(convention)

    def check(self, site, layer, event_shape):
        _require_information(self, site, layer)

    def forward(self, batch_shape, event_shape):
        event_shape = torch.Size(event_shape)
        return LogUniform(torch.Size(batch_shape) + event_shape, convention=self.convention).to_event(len(event_shape))

    def extra_repr(self) -> str:
        return f"convention={self.convention!r}"


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
        _require_information(self, site, layer, positive=True)

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

    ``L`` is ``transform_to(constraints.lower_cholesky)`` of a lower-triangular matrix filled from
    ``D (D + 1) / 2`` free parameters (``tril(A, -1) + diag(exp(diag(A)))``): every parameter is used.

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
            self.unconstrained_tril = nn.Parameter(torch.zeros(dim * (dim + 1) // 2))  # zeros: L = I
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
        _require_information(self, site, layer, positive=True)

    def scale_tril(self) -> torch.Tensor:
        """The Cholesky factor ``L`` of the covariance (full-covariance prior), ``(D, D)``."""
        return transform_to(constraints.lower_cholesky)(vec_to_tril_matrix(self.unconstrained_tril))

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


#: A prior factory: ``factory(site, layer, event_shape, **options) -> Prior``. ``event_shape`` is the
#: site's shape per example, or None where it is not known yet (no ``input_shape`` given).
PriorFactory = Callable[..., Prior]


@dataclass(frozen=True)
class _Entry:
    factory: PriorFactory
    accepts: Callable[[NoisyLayer], bool] | None


_REGISTRY: dict[str, _Entry] = {}


class _RegisteredNames(Sequence):
    """The registered prior names, in registration order: a live, read-only sequence."""

    def __getitem__(self, index):
        return tuple(_REGISTRY)[index]

    def __len__(self) -> int:
        return len(_REGISTRY)

    def __iter__(self) -> Iterator[str]:
        return iter(tuple(_REGISTRY))

    def __contains__(self, name) -> bool:
        return isinstance(name, str) and name in _REGISTRY

    def __eq__(self, other) -> bool:
        return isinstance(other, Sequence) and not isinstance(other, str) and tuple(self) == tuple(other)

    def __hash__(self) -> int:
        return hash(tuple(self))

    def __repr__(self) -> str:
        return repr(tuple(self))


#: Prior names, as configs and the command line use them: every name :func:`register_prior` has
#: registered (the built-ins first). A live view: it grows as priors are registered.
PRIORS = _RegisteredNames()


def register_prior(
    name: str,
    factory: PriorFactory,
    *,
    accepts: Callable[[NoisyLayer], bool] | None = None,
    replace: bool = False,
) -> PriorFactory:
    """Register ``factory`` under ``name``, so that :func:`make_prior`, configs and ``--prior`` accept it.

    ``factory(site, layer, event_shape, **options)`` returns the :class:`Prior` module for ``layer`` (a
    latent :class:`~infodropout.guides.layers.NoisyLayer`) at ``site``, whose units have the shape
    ``event_shape`` per example (None where it is not known). Its distribution's KL divergence against
    the guide's may be registered with ``torch.distributions.kl.register_kl``; otherwise the ELBO
    estimates it by Monte Carlo. ``accepts(layer)`` says which layers the prior serves (used to list
    the accepted priors in error messages; None: every latent layer); the prior's own
    :meth:`Prior.check` has the last word.

    :param bool replace: allow replacing a registered name (else registering it twice is an error).
    :returns: ``factory`` (so that it can be used as a decorator's result).
    """
    if not (isinstance(name, str) and name and not any(c.isspace() or c == "," for c in name)):
        raise ValueError(f"register_prior: name={name!r}: expected a non-empty name without spaces or commas")
    if not callable(factory):
        raise ValueError(f"register_prior({name!r}): factory={factory!r} is not callable")
    if name in _REGISTRY and not replace:
        raise ValueError(f"register_prior({name!r}): a prior of that name is registered; pass replace=True")
    _REGISTRY[name] = _Entry(factory, accepts)
    return factory


def unregister_prior(name: str) -> None:
    """Remove the prior registered as ``name`` (``ValueError`` if there is none)."""
    if name not in _REGISTRY:
        raise ValueError(f"unregister_prior({name!r}): no such prior; registered: {', '.join(PRIORS)}")
    del _REGISTRY[name]


def priors_for(layer: NoisyLayer) -> tuple[str, ...]:
    """The registered prior names that can serve ``layer``."""
    if not layer.is_latent:
        return ()
    return tuple(name for name, entry in _REGISTRY.items() if entry.accepts is None or entry.accepts(layer))


def default_prior(layer: NoisyLayer) -> str:
    """The paper's pairing: ReLU with log-uniform, softplus with log-normal; Gaussian with normal."""
    if isinstance(layer, GaussianLatent):
        return "normal"
    return "log-uniform" if layer.activation == "relu" else "log-normal"


def make_prior(name: str, site: str, layer: NoisyLayer, event_shape: torch.Size | None = None, **options) -> Prior:
    """Build the prior registered as ``name`` for ``layer`` at ``site``, checked against the layer.

    ``factorised`` and ``correlated`` size their parameters from ``event_shape`` (the site's units):
    one factor per unit of a dense layer or per channel of a convolutional one. ``options`` go to the
    factory.
    """
    entry = _REGISTRY.get(name) if isinstance(name, str) else None
    if entry is None:
        raise ValueError(f"prior={name!r} at site {site!r}: expected one of {', '.join(PRIORS)}")
    prior = entry.factory(site, layer, None if event_shape is None else torch.Size(event_shape), **options)
    if not isinstance(prior, Prior):
        raise ValueError(
            f"prior={name!r} at site {site!r}: its factory returned {type(prior).__name__}, expected a Prior module"
        )
    prior.name = name
    prior.check(site, layer, event_shape)  # the prior's own, most specific, reasons first
    if not (entry.accepts(layer) if entry.accepts is not None else layer.is_latent):
        raise ValueError(
            f"prior={name!r} at site {site!r}: does not serve a {_describe(layer)} layer; "
            f"accepted there: {', '.join(priors_for(layer)) or 'none'}"
        )
    check_prior(prior, site, layer, event_shape)
    return prior


def _describe(layer: NoisyLayer) -> str:
    activation = getattr(layer, "activation", None)
    return f"{activation} {type(layer).__name__}" if activation else type(layer).__name__


def check_prior(prior: Prior, site: str, layer: NoisyLayer, event_shape: torch.Size | None) -> None:
    """Raise ``ValueError`` (one line) if ``prior`` cannot serve ``layer`` at ``site``: its own
    :meth:`Prior.check`, then, where the site's ``event_shape`` is known, the shape of its distribution
    for one example (batch shape ``(1,)``, event shape ``event_shape``)."""
    prior.check(site, layer, event_shape)
    if event_shape is None:
        return
    event_shape = torch.Size(event_shape)
    with torch.no_grad():
        p = prior(torch.Size((1,)), event_shape)
    if p.batch_shape != (1,) or p.event_shape != event_shape:
        raise ValueError(
            f"prior={prior.name!r} at site {site!r}: its distribution has batch shape {tuple(p.batch_shape)} "
            f"and event shape {tuple(p.event_shape)} for one example, but the latent has event shape "
            f"{tuple(event_shape)} (batch shape (1,)): reinterpret the units as the event (.to_event)"
        )


def _units(site: str, name: str, event_shape: torch.Size | None) -> torch.Size:
    if event_shape is None:
        raise ValueError(
            f"prior={name!r} at site {site!r} learns one factor per unit: give input_shape= so the units can be counted"
        )
    return event_shape


def _dense_units(site: str, name: str, event_shape: torch.Size | None) -> int:
    event_shape = _units(site, name, event_shape)
    if len(event_shape) != 1:
        raise ValueError(f"prior={name!r} at site {site!r}: needs a dense layer (units (D,)), got {tuple(event_shape)}")
    return event_shape[0]


def _is_information(layer: NoisyLayer) -> bool:
    return isinstance(layer, InformationDropout)


def _is_positive_information(layer: NoisyLayer) -> bool:
    return isinstance(layer, InformationDropout) and layer.activation == "softplus"


def _log_uniform(site, layer, event_shape, convention: str = "exact") -> Prior:
    return LogUniformPrior(convention)


def _log_normal(site, layer, event_shape, **options) -> Prior:
    return LogNormalPrior(**options)


def _factorised(site, layer, event_shape, **options) -> Prior:
    event_shape = _units(site, "factorised", event_shape)
    units = event_shape if len(event_shape) == 1 else (event_shape[0],) + (1,) * (len(event_shape) - 1)
    return FactorisedLogNormalPrior(shape=units, **options)


def _correlated(site, layer, event_shape, rank: int | None = None) -> Prior:
    return CorrelatedLogNormalPrior(_dense_units(site, "correlated", event_shape), rank=rank)


#: The rank of the low-rank part of ``correlated-low-rank`` (capped at the number of units).
LOW_RANK = 2


def _correlated_low_rank(site, layer, event_shape, rank: int = LOW_RANK) -> Prior:
    dim = _dense_units(site, "correlated-low-rank", event_shape)
    return CorrelatedLogNormalPrior(dim, rank=min(rank, dim))


def _normal(site, layer, event_shape) -> Prior:
    return StandardNormalPrior()


register_prior("log-uniform", _log_uniform, accepts=_is_information)
register_prior("log-normal", _log_normal, accepts=_is_positive_information)
register_prior("factorised", _factorised, accepts=_is_positive_information)
register_prior("correlated", _correlated, accepts=_is_positive_information)
register_prior("correlated-low-rank", _correlated_low_rank, accepts=_is_positive_information)
register_prior("normal", _normal, accepts=lambda layer: isinstance(layer, GaussianLatent))
