"""Noisy layers: modules whose output is a random representation, one family for every kind of noise.

Every layer here computes a noise-free activation ``f(h) = activation(f_head(h))`` and perturbs it.
The layers whose noise is *learned* (:class:`InformationDropout`, :class:`GaussianLatent`) make their
output a Pyro sample site of the guide, so that the model can put a prior on it and the ELBO charges
its KL divergence. The layers with *fixed* noise (:class:`BinaryDropout`, :class:`GaussianDropout`)
and :class:`Deterministic` draw plain PyTorch noise: they carry no information cost, and swapping
them in is how the dropout baselines run through the same code.

Noise is on in training mode and off in evaluation mode (the output is then ``f(h)``, the median of
the noise), unless :func:`sampling` forces it on, e.g. to average predictions over noise samples.
Every layer draws its per-example noise through :func:`~infodropout.guides.noise.draw_noise`, which a
caller may route (:func:`~infodropout.guides.noise.drawing`).
"""

import contextlib
import math
import numbers

import pyro
import pyro.distributions as dist
import torch
from torch import nn
from torch.nn import functional as F

from .noise import MultiplicativeLogNormal, Normal, current_drawer, draw_noise, fill_standard_normal

#: Kinds of noisy layer, by the name configs and the command line use.
KINDS = ("information", "binary", "gaussian", "none")
#: Activations of the noise-free branch f.
ACTIVATIONS = ("relu", "softplus")

_FORCE_SAMPLING: list[bool | None] = [None]


@contextlib.contextmanager
def sampling(enabled: bool = True):
    """Force noise on (or off) in every noisy layer, whatever its train/eval mode."""
    _FORCE_SAMPLING.append(bool(enabled))
    try:
        yield
    finally:
        _FORCE_SAMPLING.pop()


def dropout(x: torch.Tensor, p: float, training: bool) -> torch.Tensor:
    """Binary dropout, ``x * m / (1 - p)`` with ``m ~ Bernoulli(1 - p)`` per element: ``F.dropout`` itself,
    except inside :func:`~infodropout.guides.noise.drawing`, where the mask is drawn by
    ``Tensor.bernoulli_`` through the installed drawer."""
    if current_drawer() is None or not training or p == 0:
        return F.dropout(x, p, training=training)
    keep = draw_noise(lambda t: t.bernoulli_(1 - p), x.shape, 0, x.dtype, x.device)  # (B, ...) of 0s and 1s
    return x * keep / (1 - p)


def _layout(t: torch.Tensor) -> torch.memory_format:
    """``channels_last`` for a 4-d tensor stored so (and not also contiguous), else ``contiguous_format``."""
    if t.dim() == 4 and not t.is_contiguous() and t.is_contiguous(memory_format=torch.channels_last):
        return torch.channels_last
    return torch.contiguous_format


def _activation(name: str | None):
    if name is None:
        return _identity
    if name == "relu":
        return F.relu
    if name == "softplus":
        return F.softplus
    raise ValueError(f"activation={name!r}: expected one of {ACTIVATIONS}")


def _identity(x: torch.Tensor) -> torch.Tensor:
    return x


def _positive_number(name: str, value, what: str) -> float:
    """``float(value)`` for a finite positive real number (NumPy scalars included), else ``ValueError``."""
    if isinstance(value, bool) or not isinstance(value, numbers.Real) or not (math.isfinite(value) and value > 0):
        raise ValueError(f"{name}={value!r}: expected a finite positive number ({what})")
    return float(value)


class NoisyLayer(nn.Module):
    """Base class: ``f = activation(f_head(h))`` followed by noise.

    :param nn.Module f_head: computes the pre-activation of f (a Linear, a Conv2d, a Sequential ...).
    :param str activation: ``"relu"``, ``"softplus"``, or None for none (a linear f).
    :param str name: the Pyro site name of the output, for layers that own one (assigned from the
        module path by :class:`~infodropout.models.InformationBottleneck` when left None).
    :param int event_dim: how many trailing dimensions of the output make one representation
        (1 for dense, 3 for convolutional layers); None: all but the first.
    """

    #: Whether the output is a latent variable of the guide (a Pyro sample site with a prior).
    is_latent = False

    def __init__(
        self, f_head: nn.Module, activation: str | None = "relu", name: str | None = None, event_dim: int | None = None
    ):
        super().__init__()
        if event_dim is not None and not (isinstance(event_dim, int) and event_dim >= 0):
            raise ValueError(f"event_dim={event_dim!r}: expected None or an integer >= 0")
        self.f_head = f_head
        self.activation = activation
        self._act = _activation(activation)
        self.name = name
        self.event_dim = event_dim

    def _site(self, q):
        """``pyro.sample(name, q)`` with the layer's event dimensions reinterpreted."""
        event_dim = len(q.batch_shape) - 1 if self.event_dim is None else self.event_dim
        return pyro.sample(self.name or "z", q.to_event(event_dim))

    @property
    def noisy(self) -> bool:
        """Whether this call samples noise: in training mode, unless :func:`sampling` overrides it."""
        forced = _FORCE_SAMPLING[-1]
        return self.training if forced is None else forced

    def extra_repr(self) -> str:
        return f"activation={self.activation!r}, name={self.name!r}"


class InformationDropout(NoisyLayer):
    r"""
    Information Dropout (Achille & Soatto, 2018): multiplicative log-normal noise whose scale is
    learned and depends on the input::

        z = f(h) * eps,    log eps ~ Normal(0, alpha(h)**2)
        f(h) = activation(f_head(h)),    alpha(h) = alpha_min + alpha_max * sigmoid(alpha_head(h))

    ``f_head`` and ``alpha_head`` are parallel heads with outputs of the same shape. In training
    mode the output is the Pyro sample site ``name`` with guide
    :class:`~infodropout.guides.noise.MultiplicativeLogNormal` (``event_dim`` trailing dimensions
    reinterpreted: 1 for dense, 3 for convolutional layers). With ``activation="relu"`` the natural
    prior is log-uniform (KL = -log alpha + c on active units); with ``"softplus"``, a log-normal prior.

    :param nn.Module f_head: pre-activation of f.
    :param nn.Module alpha_head: logits of alpha, same output shape as ``f_head``.
    :param str activation: ``"relu"`` or ``"softplus"``.
    :param float alpha_min: lower bound of alpha (> 0).
    :param float alpha_max: range of alpha (> 0); alpha never exceeds ``alpha_min + alpha_max``.
    :param str name: Pyro site name.
    """

    is_latent = True

    def __init__(
        self,
        f_head: nn.Module,
        alpha_head: nn.Module,
        activation: str = "relu",
        alpha_min: float = 0.001,
        alpha_max: float = 0.7,
        name: str | None = None,
        event_dim: int | None = None,
    ):
        if activation not in ACTIVATIONS:
            raise ValueError(f"activation={activation!r}: expected one of {ACTIVATIONS} (f must be >= 0)")
        super().__init__(f_head, activation, name, event_dim)
        # alpha lies in [alpha_min, alpha_min + alpha_max]: any two positive numbers make a valid range
        self.alpha_min = _positive_number("alpha_min", alpha_min, "the smallest alpha")
        self.alpha_max = _positive_number("alpha_max", alpha_max, "the range of alpha, added to alpha_min")
        self.alpha_head = alpha_head

    @classmethod
    def linear(cls, in_features: int, out_features: int, **kwargs) -> "InformationDropout":
        """A dense layer: two parallel ``nn.Linear(in_features, out_features)`` heads."""
        kwargs.setdefault("event_dim", 1)
        return cls(nn.Linear(in_features, out_features), nn.Linear(in_features, out_features), **kwargs)

    @classmethod
    def conv2d(
        cls,
        in_channels: int,
        out_channels: int,
        kernel_size: int = 3,
        stride: int = 2,
        padding: int = 1,
        batch_norm: bool = False,
        **kwargs,
    ) -> "InformationDropout":
        """A convolutional layer: two parallel convs. With ``batch_norm`` the f head is conv + BatchNorm2d
        (the alpha head stays a plain conv with bias, as in the authors' code)."""
        if batch_norm:
            conv = nn.Conv2d(in_channels, out_channels, kernel_size, stride, padding, bias=False)
            f_head = nn.Sequential(conv, nn.BatchNorm2d(out_channels))
        else:
            f_head = nn.Conv2d(in_channels, out_channels, kernel_size, stride, padding)
        alpha_head = nn.Conv2d(in_channels, out_channels, kernel_size, stride, padding)
        kwargs.setdefault("event_dim", 3)
        return cls(f_head, alpha_head, **kwargs)

    @property
    def max_alpha(self) -> float:
        """The largest alpha the layer can produce, ``alpha_min + alpha_max``."""
        return self.alpha_min + self.alpha_max

    def alpha(self, h: torch.Tensor) -> torch.Tensor:
        """``alpha(h) = alpha_min + alpha_max * sigmoid(alpha_head(h))``."""
        return self.alpha_min + self.alpha_max * torch.sigmoid(self.alpha_head(h))

    def distribution(self, h: torch.Tensor) -> MultiplicativeLogNormal:
        """The guide distribution q(z | h), elementwise (no event dimensions)."""
        return MultiplicativeLogNormal(self._act(self.f_head(h)), self.alpha(h), max_scale=self.max_alpha)

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        if not self.noisy:
            return self._act(self.f_head(h))
        return self._site(self.distribution(h))

    def extra_repr(self) -> str:
        return f"{super().extra_repr()}, alpha_min={self.alpha_min}, alpha_max={self.alpha_max}"


class GaussianLatent(NoisyLayer):
    r"""
    Additive Gaussian noise with a learned, input-dependent scale (the latent of a VAE, the
    bottleneck of the Deep Variational Information Bottleneck)::

        z = loc(h) + scale(h) * eps,    eps ~ Normal(0, 1),    scale(h) = softplus(scale_head(h)) + min_scale

    In training mode the output is the Pyro sample site ``name`` with a ``Normal(loc, scale)`` guide;
    its natural prior is a standard normal. ``loc`` is the linear output of ``f_head``.

    :param nn.Module loc_head: computes ``loc``.
    :param nn.Module scale_head: computes the pre-softplus scale, same output shape.
    :param float min_scale: a floor added to the scale (0 gives a plain softplus).
    :param str scale_fn: ``"softplus"`` (default) or ``"exp"`` (``scale = exp(scale_head(h))``).
    """

    is_latent = True

    def __init__(
        self,
        loc_head: nn.Module,
        scale_head: nn.Module,
        min_scale: float = 0.0,
        scale_fn: str = "softplus",
        name: str | None = None,
        event_dim: int | None = None,
    ):
        super().__init__(loc_head, None, name, event_dim)
        if scale_fn not in ("softplus", "exp"):
            raise ValueError(f"scale_fn={scale_fn!r}: expected one of ('softplus', 'exp')")
        if not min_scale >= 0:
            raise ValueError(f"min_scale={min_scale}: expected a nonnegative number")
        self.scale_head = scale_head
        self.min_scale = float(min_scale)
        self.scale_fn = scale_fn

    @classmethod
    def linear(cls, in_features: int, out_features: int, **kwargs) -> "GaussianLatent":
        """A dense latent: two parallel ``nn.Linear(in_features, out_features)`` heads."""
        kwargs.setdefault("event_dim", 1)
        return cls(nn.Linear(in_features, out_features), nn.Linear(in_features, out_features), **kwargs)

    def distribution(self, h: torch.Tensor) -> dist.Normal:
        raw = self.scale_head(h)
        scale = torch.exp(raw) if self.scale_fn == "exp" else F.softplus(raw)
        return Normal(self.f_head(h), scale + self.min_scale if self.min_scale else scale)

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        if not self.noisy:
            return self.f_head(h)
        return self._site(self.distribution(h))

    def extra_repr(self) -> str:
        return f"name={self.name!r}, min_scale={self.min_scale}, scale_fn={self.scale_fn!r}"


class BinaryDropout(NoisyLayer):
    """Binary dropout after the activation: ``z = f(h) * m / (1 - p)``, ``m ~ Bernoulli(1 - p)``."""

    def __init__(self, f_head: nn.Module, p: float = 0.5, activation: str = "relu", name: str | None = None):
        super().__init__(f_head, activation, name)
        if not 0 <= p < 1:
            raise ValueError(f"p={p}: expected a drop probability in [0, 1)")
        self.p = float(p)

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        return dropout(self._act(self.f_head(h)), self.p, training=self.noisy)

    def extra_repr(self) -> str:
        return f"{super().extra_repr()}, p={self.p}"


class GaussianDropout(NoisyLayer):
    """Gaussian dropout (Srivastava et al. 2014): ``z = f(h) * eps``, ``eps ~ Normal(1, p / (1 - p))``.

    The noise has the mean and variance of binary dropout's rescaled mask, and a fixed scale.
    """

    def __init__(self, f_head: nn.Module, p: float = 0.5, activation: str = "relu", name: str | None = None):
        super().__init__(f_head, activation, name)
        if not 0 <= p < 1:
            raise ValueError(f"p={p}: expected a drop probability in [0, 1)")
        self.p = float(p)
        self.noise_std = math.sqrt(self.p / (1 - self.p))

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        f = self._act(self.f_head(h))
        if not self.noisy or self.p == 0:
            return f
        if current_drawer() is None:
            return f * (1 + self.noise_std * torch.randn_like(f))
        eps = draw_noise(fill_standard_normal, f.shape, 0, f.dtype, f.device, _layout(f))  # f's layout, as randn_like
        return f * (1 + self.noise_std * eps)

    def extra_repr(self) -> str:
        return f"{super().extra_repr()}, p={self.p}"


class Deterministic(NoisyLayer):
    """No noise: ``z = f(h)`` (the baseline without dropout)."""

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        return self._act(self.f_head(h))


def check_kind(kind: str) -> str:
    if kind not in KINDS:
        raise ValueError(f"dropout={kind!r}: expected one of {KINDS}")
    return kind


def noisy_linear(
    kind: str,
    in_features: int,
    out_features: int,
    activation: str = "relu",
    p: float = 0.5,
    alpha_min: float = 0.001,
    alpha_max: float = 0.7,
) -> NoisyLayer:
    """A dense noisy layer of the given ``kind`` (one of :data:`KINDS`)."""
    check_kind(kind)
    if kind == "information":
        return InformationDropout.linear(
            in_features, out_features, activation=activation, alpha_min=alpha_min, alpha_max=alpha_max
        )
    return _fixed_noise(kind, nn.Linear(in_features, out_features), p, activation)


def noisy_conv2d(
    kind: str,
    in_channels: int,
    out_channels: int,
    kernel_size: int = 3,
    stride: int = 2,
    padding: int = 1,
    batch_norm: bool = True,
    activation: str = "relu",
    p: float = 0.5,
    alpha_min: float = 0.001,
    alpha_max: float = 0.7,
) -> NoisyLayer:
    """A convolutional noisy layer of the given ``kind`` (one of :data:`KINDS`)."""
    check_kind(kind)
    if kind == "information":
        return InformationDropout.conv2d(
            in_channels,
            out_channels,
            kernel_size,
            stride,
            padding,
            batch_norm=batch_norm,
            activation=activation,
            alpha_min=alpha_min,
            alpha_max=alpha_max,
        )
    conv = nn.Conv2d(in_channels, out_channels, kernel_size, stride, padding, bias=not batch_norm)
    head = nn.Sequential(conv, nn.BatchNorm2d(out_channels)) if batch_norm else conv
    return _fixed_noise(kind, head, p, activation)


def _fixed_noise(kind: str, head: nn.Module, p: float, activation: str) -> NoisyLayer:
    """The layer of a kind without learned noise around ``head``."""
    if kind == "binary":
        return BinaryDropout(head, p, activation)
    if kind == "gaussian":
        return GaussianDropout(head, p, activation)
    return Deterministic(head, activation)
