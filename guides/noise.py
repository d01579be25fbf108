"""The guide's noise: multiplicative log-normal activations (Information Dropout), and how noise is
drawn when one batch is split over several processes.

Inside :func:`shard`, this process holds rows ``start .. start + B`` of a global batch of ``total``
rows (one rank of a data-parallel run): every draw of per-example noise is made for the whole global
batch from the global generator and this process keeps its own rows. Each process then uses exactly
the noise one process would use on those rows of the global batch, and every process draws the same
amount, so their random states stay equal. Outside it nothing changes.
"""

import contextlib
import math

import pyro.distributions as dist
import torch
from pyro.distributions import TorchDistribution
from torch.distributions import constraints
from torch.distributions.utils import broadcast_all

#: Floor on the noise-free activation inside ``log`` (the authors' guard, also used by the KLs).
LOG_BASE_FLOOR = 1e-4

_HALF_LOG_2PI = 0.5 * math.log(2 * math.pi)

_SHARD: list[tuple[int, int] | None] = [None]


@contextlib.contextmanager
def shard(start: int | None, total: int | None = None):
    """Draw noise for a global batch of ``total`` rows and keep this process's rows, from ``start`` on
    (as many as its batch has); ``shard(None)`` draws for the local batch alone again (e.g. a trace on
    one row inside a sharded block)."""
    if start is None:
        _SHARD.append(None)
    else:
        if not (isinstance(start, int) and isinstance(total, int) and 0 <= start <= total):
            raise ValueError(f"shard(start={start!r}, total={total!r}): expected integers with 0 <= start <= total")
        _SHARD.append((start, total))
    try:
        yield
    finally:
        _SHARD.pop()


def current_shard() -> tuple[int, int] | None:
    """``(start, total)`` inside :func:`shard`, else None."""
    return _SHARD[-1]


def draw_rows(fill, shape, row_dim: int, dtype, device, memory_format=torch.contiguous_format) -> torch.Tensor:
    """``fill(torch.empty(shape))`` (a draw in place, e.g. ``Tensor.normal_``) for this process's rows.

    Outside :func:`shard` that is the draw itself. Inside it, dimension ``row_dim`` of ``shape`` holds
    this process's ``B`` rows: the draw is made for the global ``total`` rows and rows
    ``start .. start + B`` are kept (a view of the global draw). ``memory_format`` is the layout the
    draw is made in (its elements are drawn in memory order).
    """
    rows = current_shard()
    if rows is None:
        return fill(torch.empty(shape, dtype=dtype, device=device, memory_format=memory_format))
    start, total = rows
    shape = torch.Size(shape)
    if len(shape) <= row_dim:
        raise ValueError(f"sharded noise of shape {tuple(shape)}: no batch dimension {row_dim} to shard")
    local = shape[row_dim]
    if start + local > total:
        raise ValueError(
            f"sharded noise: rows {start}..{start + local} of a global batch of {total} (shape {tuple(shape)})"
        )
    global_shape = shape[:row_dim] + (total,) + shape[row_dim + 1 :]
    drawn = fill(torch.empty(global_shape, dtype=dtype, device=device, memory_format=memory_format))
    return drawn.narrow(row_dim, start, local)


def fill_standard_normal(t: torch.Tensor) -> torch.Tensor:
    """``t`` filled in place with standard normal draws."""
    return t.normal_()


class Normal(dist.Normal):
    """Pyro's ``Normal`` whose reparametrised samples follow :func:`shard` (the same draws outside it)."""

    def rsample(self, sample_shape=torch.Size()):
        if current_shard() is None:
            return super().rsample(sample_shape)
        shape = self._extended_shape(sample_shape)
        eps = draw_rows(fill_standard_normal, shape, len(sample_shape), self.loc.dtype, self.loc.device)
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
        if current_shard() is None:
            eps = torch.randn(shape, dtype=self.base.dtype, device=self.base.device)
        else:  # this process's rows of the global batch's draw
            eps = draw_rows(fill_standard_normal, shape, len(sample_shape), self.base.dtype, self.base.device)
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
