"""What a reconstruction model generates: prior samples decoded, reconstructions, latent traversals."""

import contextlib

import numpy as np
import torch

from .context import evaluating
from .sites import latent_layer, latent_type, model_device


@contextlib.contextmanager
def seeded(seed: int, device: torch.device):
    """The global generators (the CPU's, and ``device``'s where it is a GPU) seeded with ``seed`` inside,
    restored outside."""
    devices = [device] if device.type == "cuda" else []
    with torch.random.fork_rng(devices=devices):
        torch.manual_seed(seed)
        yield


def prior_samples(ib, num_samples: int, like: torch.Tensor, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """``num_samples`` draws ``z ~ p(z)`` from the model's prior at the latent site (a learned one where
    it is learned), seeded, and their decoded images: the decoder's means ``E[x | z]``. ``like`` is one
    input or more, to find the latent's shape.

    :returns: ``z (S, D)`` and ``images (S, C, H, W)``.
    """
    site, _ = latent_layer(ib)
    device = model_device(ib)
    with evaluating(ib):
        event_shape = ib.representation(like[:1].to(device)).shape[1:]  # (D,)
        prior = ib.model.prior(site, torch.Size((num_samples,)), event_shape)
        with seeded(seed, device):
            z = prior.sample()  # (S, D)
        return z, ib.likelihood.mean(ib.head(z))  # (S, D), (S, C, H, W)


def reconstructions(ib, x: torch.Tensor) -> torch.Tensor:
    """The reconstructions of ``x`` with the noise off: the decoder's means at the noise-free
    representation, e.g. ``sigmoid(decoder(f(x)))`` for an information-dropout VAE (``f(x)`` is the median
    of its latent), ``sigmoid(decoder(loc(x)))`` for a Gaussian one. ``(B, C, H, W)``."""
    with evaluating(ib):
        return ib.predict(x.to(model_device(ib)))  # (B, C, H, W)


def latent_traversals(ib, x: torch.Tensor, order, num_values: int = 8) -> dict:
    """Decoded images of one latent moved at a time: from the representation of the first image of ``x``
    (noise off, in the decoder's input space: ``f(x)`` for the log-normal latent, the mean for a
    Gaussian), each latent in ``order`` is set to ``num_values`` quantiles (5% to 95%) of its values over
    the images ``x`` ``(P, C, H, W)``.

    :returns: ``images (D, V, H, W)`` (the decoder's means of the first channel, float16), ``order (D,)``,
        ``values (D, V)``, ``latent`` (its kind).
    """
    _, layer = latent_layer(ib)
    with evaluating(ib):
        z = ib.representation(x)  # (P, D): the decoder's input with the noise off
        quantiles = torch.quantile(z, torch.linspace(0.05, 0.95, num_values, device=z.device), dim=0).T  # (D, V)
        base = z[:1]  # (1, D)
        images = []
        for d in order:
            grid = base.repeat(num_values, 1)  # (V, D)
            grid[:, d] = quantiles[d]
            images.append(ib.likelihood.mean(ib.head(grid))[:, 0])  # (V, H, W)
    return {
        "images": torch.stack(images).float().cpu().numpy().astype(np.float16),
        "order": np.asarray(order),
        "values": quantiles[list(order)].cpu().numpy(),
        "latent": np.asarray(latent_type(layer)),
    }
