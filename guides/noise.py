"""The guide's noise: multiplicative log-normal activations (Information Dropout), and the one place
every noisy layer draws its per-example noise from.

Every draw of per-example noise in :mod:`infodropout.guides` goes through :func:`draw_noise`. By default
that is the draw itself; inside :func:`drawing` it is a function the caller installs, which may draw
more and keep a part (e.g. one process of a data-parallel run drawing the global batch's noise and
keeping its rows: :func:`infodropout.train.distributed.shard`). The guides know only that the draw can
be routed, not why.
"""

import contextlib
import math
from collections.abc import Callable

import pyro.distributions as dist
import torch
from pyro.distributions import TorchDistribution
from torch.distributions import constraints
from torch.distributions.utils import broadcast_all

#: Floor on the noise-free activation inside ``log`` (the authors' guard, also used by the KLs).
LOG_BASE_FLOOR = 1e-4

_HALF_LOG_2PI = 0.5 * math.log(2 * math.pi)

#: ``draw(fill, shape, row_dim, dtype, device, memory_format) -> Tensor``: how per-example noise is drawn.
Drawer = Callable[..., torch.Tensor]
_DRAWERS: list[Drawer | None] = [None]


@contextlib.contextmanager
def drawing(draw: Drawer | None):
    """Route every draw of per-example noise through ``draw(fill, shape, row_dim, dtype, device,
    memory_format)``, which returns a tensor of ``shape`` (dimension ``row_dim`` holds the examples)
    filled by ``fill`` (an in-place draw such as ``Tensor.normal_``); ``drawing(None)`` draws plainly
    again inside (e.g. a trace of one example)."""
    _DRAWERS.append(draw)
    try:
        yield
    finally:
        _DRAWERS.pop()


def current_drawer() -> Drawer | None:
    """The function installed by the innermost :func:`drawing`, or None (plain draws)."""
    return _DRAWERS[-1]


def draw_noise(fill, shape, row_dim: int, dtype, device, memory_format=torch.contiguous_format) -> torch.Tensor:
    """``fill(torch.empty(shape))`` (an in-place draw, e.g. ``Tensor.normal_``; its elements are drawn in
    the memory order of ``memory_format``), through the drawer of :func:`drawing` where one is installed."""
    drawer = current_drawer()
    if drawer is None:
        return fill(torch.empty(shape, dtype=dtype, device=device, memory_format=memory_format))
    return drawer(fill, torch.Size(shape), row_dim, dtype, device, memory_format)


def fill_standard_normal(t: torch.Tensor) -> torch.Tensor:
    """``t`` filled in place with standard normal draws."""
    return t.normal_()


class Normal(dist.Normal):
    """Pyro's ``Normal`` whose reparametrised samples follow :func:`drawing` (the same draws outside it)."""

    def rsample(self, sample_shape=torch.Size()):
        if current_drawer() is None:
            return super().rsample(sample_shape)
        shape = self._extended_shape(sample_shape)
        eps = draw_noise(fill_standard_normal, shape, len(sample_shape), self.loc.dtype, self.loc.device)
        return self.loc + eps * self.scale


class MultiplicativeLogNormal(TorchDistribution):
    r"""
    A noise-free activation ``base`` = f(x) >= 0 multiplied by log-normal noise, elementwise::

        z = base * eps,        log eps ~ Normal(0, scale**2)

    Where ``base > 0`` this is ``LogNormal(log base, scale)``, whose median is ``base``. Where
    ``base == 0`` (a ReLU unit that is off) ``z`` is exactly 0: a point mass, which carries no
    information about the input. The density is taken with respect to Lebesgue measure on
    ``(0, inf)`` where ``base > 0`` and counting measure at 0 where ``base == 0``::

        log q(z) = log Normal(log z; log base, scale**2) - log z     (base > 0)
        log q(0) = 0                                                  (base == 0)

    In Information Dropout ``scale`` is the input-dependent ``alpha(x)``, bounded above by
    ``max_scale = alpha_min + alpha_max``. The bound fixes the otherwise arbitrary constant of the
    KL divergence against the improper log-uniform prior (zero at the bound); it does not change
    the distribution.

    :param torch.Tensor base: the noise-free activation f(x), nonnegative.
    :param torch.Tensor scale: the standard deviation of ``log eps`` (alpha), positive.
    :param float max_scale: the largest scale the guide can produce, or None.
    """

    arg_constraints = {"base": constraints.nonnegative, "scale": constraints.positive}
    support = constraints.nonnegative
    has_rsample = True

    def __init__(self, base, scale, max_scale=None, validate_args=None):
        self.base, self.scale = broadcast_all(base, scale)
        self.max_scale = None if max_scale is None else float(max_scale)
        super().__init__(self.base.shape, validate_args=validate_args)
        if self._validate_args and self.max_scale is not None:
            # alpha_min + alpha_max * sigmoid(.) may round a few ulps above the bound in low precision
            bound = self.max_scale * (1 + 4 * torch.finfo(self.scale.dtype).eps)
            if not bool((self.scale <= bound).all()):
                raise ValueError(f"MultiplicativeLogNormal: scale exceeds max_scale={self.max_scale}")

    def expand(self, batch_shape, _instance=None):
        new = self._get_checked_instance(MultiplicativeLogNormal, _instance)
        batch_shape = torch.Size(batch_shape)
        new.base = self.base.expand(batch_shape)
        new.scale = self.scale.expand(batch_shape)
        new.max_scale = self.max_scale
        super(MultiplicativeLogNormal, new).__init__(batch_shape, validate_args=False)
        new._validate_args = self._validate_args
        return new

    @property
    def mean(self):
        return self.base * torch.exp(0.5 * self.scale.square())

    @property
    def mode(self):
        return self.base * torch.exp(-self.scale.square())

    @property
    def median(self):
        return self.base

    @property
    def variance(self):
        s2 = self.scale.square()
        return self.base.square() * torch.expm1(s2) * torch.exp(s2)

    def log_base(self, floor=LOG_BASE_FLOOR):
        """``log max(base, floor)``: the location of ``log z``, guarded where the unit is off."""
        return torch.log(self.base.clamp_min(floor))

    def rsample(self, sample_shape=torch.Size()):
        shape = self._extended_shape(sample_shape)
        if current_drawer() is None:
            eps = torch.randn(shape, dtype=self.base.dtype, device=self.base.device)
        else:
            eps = draw_noise(fill_standard_normal, shape, len(sample_shape), self.base.dtype, self.base.device)
        return self.base * torch.exp(self.scale * eps)

    def log_prob(self, value):
        if self._validate_args:
            self._validate_sample(value)
        on = self.base > 0
        safe_base = torch.where(on, self.base, torch.ones_like(self.base))
        safe_value = torch.where(on & (value > 0), value, torch.ones_like(value))
        log_value = torch.log(safe_value)
        u = (log_value - torch.log(safe_base)) / self.scale
        lp = -0.5 * u.square() - torch.log(self.scale) - _HALF_LOG_2PI - log_value
        off_lp = torch.where(value == 0, torch.zeros_like(lp), torch.full_like(lp, -math.inf))
        on_lp = torch.where(value > 0, lp, torch.full_like(lp, -math.inf))
        return torch.where(on, on_lp, off_lp)

    def entropy(self):
        """Differential entropy where ``base > 0``; 0 for the point mass where ``base == 0``."""
        h = torch.log(self.base.clamp_min(torch.finfo(self.base.dtype).tiny))
        h = h + 0.5 + _HALF_LOG_2PI + torch.log(self.scale)
        return torch.where(self.base > 0, h, torch.zeros_like(h))
