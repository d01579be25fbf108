"""The latent sites of a trained network: their noisy layers, the guide's distribution at each, and the
prior's.

A *latent site* is a noisy layer whose output the guide samples and the model puts a prior on
(:attr:`~infodropout.models.InformationBottleneck.latent_sites`). Two kinds are understood here, by the
name results record: ``"log-normal"`` (:class:`~infodropout.guides.InformationDropout`,
``q(z | h) = f(h) * LogNormal(0, alpha(h)**2)``) and ``"gaussian"``
(:class:`~infodropout.guides.GaussianLatent`, ``q(z | h) = Normal(loc(h), scale(h)**2)``).
"""

import torch
from torch import nn

from infodropout.guides.layers import GaussianLatent, InformationDropout, NoisyLayer, sampling
from infodropout.guides.noise import LOG_BASE_FLOOR

#: The latents the measurements understand, by the name results record.
LATENTS = ("log-normal", "gaussian")
#: What the guide's distribution is Gaussian in, per latent.
POSTERIOR_SPACE = {"log-normal": "log z", "gaussian": "z"}


def latent_layer(ib, site: str | None = None) -> tuple[str, NoisyLayer]:
    """The latent site (the last one by default: the bottleneck) and its noisy layer."""
    sites = tuple(ib.latent_sites)
    if not sites:
        raise ValueError("ib: the network has no latent site (its noisy layers carry no information cost)")
    site = sites[-1] if site is None else site
    if site not in sites:
        raise ValueError(f"site={site!r}: not a latent site of the network; expected one of {sites}")
    for module in ib.encoder.modules():
        if isinstance(module, NoisyLayer) and module.is_latent and module.name == site:
            return site, module
    raise ValueError(f"site={site!r}: no noisy layer of the encoder carries it")


def latent_type(layer: NoisyLayer) -> str:
    """``"log-normal"`` for information dropout, ``"gaussian"`` for a Gaussian latent."""
    if isinstance(layer, InformationDropout):
        return "log-normal"
    if isinstance(layer, GaussianLatent):
        return "gaussian"
    raise ValueError(f"{type(layer).__name__}: not a latent the measurements understand; expected one of {LATENTS}")


def model_device(ib: nn.Module) -> torch.device:
    """The device of the network's parameters (the CPU for a network without any)."""
    p = next(iter(ib.parameters()), None)
    return torch.device("cpu") if p is None else p.device


def to_model(ib: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """``x`` on the network's device, floating inputs in its parameters' dtype."""
    p = next(iter(ib.parameters()), None)
    if p is None:
        return x
    return x.to(device=p.device, dtype=p.dtype if x.is_floating_point() else x.dtype)


def site_distribution(ib, x: torch.Tensor, layer: NoisyLayer):
    """The guide's elementwise distribution at ``layer`` (no event dimensions) for the inputs ``x``
    ``(B, ...)``, with the noise off in every layer before it (their noise-free outputs feed it)."""
    captured = []
    handle = layer.register_forward_pre_hook(lambda module, args: captured.append(args[0]))
    try:
        with sampling(False):
            ib.encoder(x)
    finally:
        handle.remove()
    if len(captured) != 1:
        raise ValueError(f"site {layer.name!r}: its layer ran {len(captured)} times in one pass of the encoder")
    return layer.distribution(captured[0])


def gaussian_parameters(q, latent: str) -> tuple[torch.Tensor, torch.Tensor]:
    """``(loc, scale)`` of the guide's elementwise distribution in the space where it is Gaussian
    (:data:`POSTERIOR_SPACE`): ``(log max(f, 1e-4), alpha)`` for a log-normal latent (the floor of the
    KLs: a ReLU unit that is off sits at ``log 1e-4``), ``(loc, scale)`` for a Gaussian one."""
    if latent == "log-normal":
        return q.log_base(LOG_BASE_FLOOR), q.scale
    return q.loc, q.scale
