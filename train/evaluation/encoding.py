"""Encoding a data set: the representation a metric reads, and the guide's posterior at every point.

A log-normal latent ``z = f(x) * eps``, ``log eps ~ N(0, alpha(x)**2)``, has no single reading: the
*kinds* of :data:`KINDS` are the location of ``log z`` (``log-location``, the default), its median
``f(x)`` and its mean ``f(x) exp(alpha**2 / 2)``; a Gaussian latent reads as its mean. Every result
records the kind it measured.
"""

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

import numpy as np
import torch

from infodropout.train.metrics.kl_per_dim import summarise_kl

from .context import evaluating
from .information import dimension_kl
from .sites import POSTERIOR_SPACE, gaussian_parameters, latent_layer, latent_type, site_distribution, to_model


def _log_location(q) -> torch.Tensor:
    return gaussian_parameters(q, "log-normal")[0]


def _gaussian_location(q) -> torch.Tensor:
    return q.loc


@dataclass(frozen=True)
class RepresentationKind:
    """A way to read a latent with the noise off: a function of the guide's distribution per latent."""

    name: str
    summary: str
    of: dict  # latent name -> function of the elementwise guide distribution


#: Representation kinds by name (the choices of ``--representation``).
KINDS: dict[str, RepresentationKind] = {
    k.name: k
    for k in (
        RepresentationKind(
            "log-location",
            "the location of log z, log max(f(x), 1e-4) (log-normal latents only)",
            {"log-normal": _log_location},
        ),
        RepresentationKind(
            "median",
            "f(x) for a log-normal latent (its median); loc for a Gaussian",
            {"log-normal": lambda q: q.base, "gaussian": _gaussian_location},
        ),
        RepresentationKind(
            "mean",
            "f(x) exp(alpha^2 / 2) for a log-normal latent; loc for a Gaussian (the posterior mean)",
            {"log-normal": lambda q: q.mean, "gaussian": _gaussian_location},
        ),
    )
}
#: The default kind of each latent.
DEFAULT_KINDS = {"log-normal": "log-location", "gaussian": "mean"}


def resolve_kind(ib, kind: str | None = None, site: str | None = None) -> str:
    """The representation kind to use at ``site``: ``kind`` checked against the latent, or its default."""
    latent = latent_type(latent_layer(ib, site)[1])
    if kind is None:
        return DEFAULT_KINDS[latent]
    if kind not in KINDS:
        raise ValueError(f"representation={kind!r}: expected one of {tuple(KINDS)}")
    if latent not in KINDS[kind].of:
        valid = tuple(k for k, spec in KINDS.items() if latent in spec.of)
        raise ValueError(f"representation={kind!r} needs a log-normal latent; site is {latent}: use one of {valid}")
    return kind


def representation(ib, x: torch.Tensor, kind: str | None = None, site: str | None = None) -> torch.Tensor:
    """The representation ``(B, D)`` of a batch with the noise off, read as ``kind`` (see :data:`KINDS`;
    None: the latent's default, the location of ``log z`` for a log-normal latent and the posterior
    mean for a Gaussian one). Convolutional latents are flattened. Measured under :func:`evaluating`."""
    site, layer = latent_layer(ib, site)
    kind = resolve_kind(ib, kind, site)
    with evaluating(ib):
        q = site_distribution(ib, to_model(ib, x), layer)
        return KINDS[kind].of[latent_type(layer)](q).flatten(1)


@dataclass
class Encoding:
    """Encoded points: their representation and the guide's posterior there, as NumPy arrays.

    ``representation (N, D)`` is read as ``kind``; ``loc``, ``scale`` ``(N, D)`` are the posterior's
    parameters in ``space`` (``log z`` for a log-normal latent, ``z`` for a Gaussian), where it is
    ``Normal(loc, scale**2)`` elementwise (for a log-normal latent ``loc = log max(f(x), 1e-4)``, the floor
    of the KLs, so a ReLU unit that is off sits at ``log 1e-4``), and ``sample (N, D)`` one draw from it.
    ``kl (N, D)`` holds the KL divergence of each dimension against the prior and ``kl_joint (N,)`` the
    site's (:func:`~.information.dimension_kl`: ``kl_exact`` says whether ``kl`` are the terms of
    ``kl_joint`` or marginal KLs, ``kl_analytic`` whether they are analytic or Monte Carlo). The KL
    fields are None unless :func:`encode` was asked for them.
    """

    representation: np.ndarray
    loc: np.ndarray
    scale: np.ndarray
    sample: np.ndarray
    kind: str
    site: str
    latent: str
    kl: np.ndarray | None = None
    kl_joint: np.ndarray | None = None
    kl_exact: bool | None = None
    kl_analytic: bool | None = None
    readings: dict = field(default_factory=dict)  # other kinds read at the same points: kind -> (N, D)

    @property
    def space(self) -> str:
        return POSTERIOR_SPACE[self.latent]

    def __len__(self) -> int:
        return len(self.representation)

    def record(self) -> dict:
        """What every result records about the representation."""
        return {"kind": self.kind, "site": self.site, "latent": self.latent, "posterior_space": self.space}


def batches(x, batch_size: int) -> Iterable[torch.Tensor]:
    """The inputs of ``x`` (a tensor ``(N, ...)``, or an iterable of batches or of ``(x, y, ...)`` tuples)
    in batches of at most ``batch_size``."""
    if isinstance(x, torch.Tensor):
        for start in range(0, len(x), batch_size):
            yield x[start : start + batch_size]
    else:
        for batch in x:
            yield batch[0] if isinstance(batch, (tuple, list)) else batch


def encode(
    ib,
    x,
    *,
    kind: str | None = None,
    site: str | None = None,
    batch_size: int = 500,
    generator: torch.Generator | None = None,
    kl: bool = False,
    also: Sequence[str] = (),
) -> Encoding:
    """Encode ``x`` (see :func:`batches`) in batches: the :class:`Encoding` of its points (representation
    as ``kind``, posterior parameters, one posterior sample drawn with ``generator``, with ``kl`` the KL
    per dimension, and the other kinds of ``also`` that the latent has, read at the same points), measured
    under :func:`evaluating`."""
    site, layer = latent_layer(ib, site)
    kind = resolve_kind(ib, kind, site)
    latent = latent_type(layer)
    read = KINDS[kind].of[latent]
    others = [k for k in dict.fromkeys(also) if k != kind and k in KINDS and latent in KINDS[k].of]
    parts: dict[str, list] = {"rep": [], "loc": [], "scale": [], "sample": [], "kl": [], "joint": []}
    parts.update({f"reading:{k}": [] for k in others})
    exact = analytic = None
    with evaluating(ib):
        for batch in batches(x, batch_size):
            q = site_distribution(ib, to_model(ib, batch), layer)
            loc, scale = gaussian_parameters(q, latent)
            eps = torch.randn(loc.shape, generator=generator, device=loc.device, dtype=loc.dtype)
            for key, value in (("rep", read(q)), ("loc", loc), ("scale", scale), ("sample", loc + scale * eps)):
                parts[key].append(value.flatten(1).double().cpu().numpy())
            for other in others:
                parts[f"reading:{other}"].append(KINDS[other].of[latent](q).flatten(1).double().cpu().numpy())
            if kl:
                per_dim, joint, exact, analytic = dimension_kl(ib, site, q, latent)
                parts["kl"].append(per_dim.flatten(1).double().cpu().numpy())
                parts["joint"].append(joint.double().cpu().numpy())
    if not parts["rep"]:
        raise ValueError("x: no points to encode")
    cat = {key: np.concatenate(value) if value else None for key, value in parts.items()}
    arrays = (cat["rep"], cat["loc"], cat["scale"], cat["sample"])
    readings = {k: cat[f"reading:{k}"] for k in others}
    return Encoding(*arrays, kind, site, latent, cat["kl"], cat["joint"], exact, analytic, readings)


def kl_divergences(ib, x, *, site: str | None = None, batch_size: int = 500) -> dict:
    r"""
    The KL divergence of the guide against the prior at ``site``, per example and per latent dimension
    (:func:`~.information.dimension_kl`), with their summary.

    :returns: ``kl (N, D)``, ``kl_joint (N,)``, and the keys of :func:`~infodropout.train.metrics.summarise_kl`:
        ``kl_per_dim (D,)``, ``kl_per_dim_se``, ``kl_sum``, ``order``, ``exact``, ``analytic``,
        ``kl_total`` (the mean KL of the site), ``site``.
    """
    enc = encode(ib, x, site=site, batch_size=batch_size, kl=True)
    out = summarise_kl(enc.kl, enc.kl_joint, exact=enc.kl_exact, analytic=enc.kl_analytic, site=enc.site)
    out.update(kl=enc.kl, kl_joint=enc.kl_joint)
    return out
