"""What the disentanglement metrics need of a network on data with known factors: factor sets, encoded
points with their factor classes, and the fresh batches of the FactorVAE vote.

A *dSprites-like* data set has ``factor_names``, ``factor_sizes``, ``sample_factors(n, generator)``,
``sample_fixed_factor(n, factor, value, generator)``, ``factors_to_index(classes)``, ``render(index)``
and, for the log-likelihood, ``sample_indices(n, generator)`` (see
:class:`~infodropout.train.data.dsprites.DSprites`).
"""

import numpy as np
import torch

from infodropout.train.metrics.factor_vae import prune_dims, score_votes, vote
from infodropout.train.metrics.settings import MetricSettings, get_settings

from .encoding import Encoding, encode
from .sites import model_device


def data_generator(data, seed: int) -> torch.Generator:
    """A generator on the data set's device, seeded."""
    return torch.Generator(device=getattr(data, "device", "cpu")).manual_seed(int(seed))


def factor_sets(factor_names) -> dict[str, list[int]]:
    """The factor sets results report: ``all`` factors (dSprites' five, as disentanglement_lib) and,
    when there is a ``shape`` factor, ``no-shape`` (the four of beta-TCVAE's code)."""
    names = list(factor_names)
    sets = {"all": list(range(len(names)))}
    if "shape" in names and len(names) > 1:
        sets["no-shape"] = [i for i, n in enumerate(names) if n != "shape"]
    return sets


def encode_classes(ib, data, classes: torch.Tensor, batch_size: int, **options) -> Encoding:
    """The :class:`~.encoding.Encoding` of the images of factor classes ``(N, K)``, rendered in batches."""
    images = (
        data.render(data.factors_to_index(classes[i : i + batch_size])) for i in range(0, len(classes), batch_size)
    )
    return encode(ib, images, batch_size=batch_size, **options)


def sample_encoded(
    ib,
    data,
    num_points: int,
    *,
    kind: str | None = None,
    site: str | None = None,
    generator: torch.Generator | None = None,
    batch_size: int = 256,
    kl: bool = False,
    also: tuple[str, ...] = (),
) -> tuple[Encoding, np.ndarray]:
    """``num_points`` factor combinations drawn uniformly (``data.sample_factors``), rendered and encoded
    in batches: their :class:`~.encoding.Encoding` and factor classes ``(N, K)``."""
    classes = data.sample_factors(int(num_points), generator)  # (N, K)
    noise = None
    if generator is not None:  # the posterior samples' noise, on the network's device, seeded from the data's
        seed = int(torch.randint(0, 2**62, (1,), generator=generator, device=generator.device))
        noise = torch.Generator(device=model_device(ib)).manual_seed(seed)
    enc = encode_classes(ib, data, classes, batch_size, kind=kind, site=site, generator=noise, kl=kl, also=also)
    return enc, classes.cpu().numpy()


def fresh_votes(
    ib,
    data,
    settings: MetricSettings | str | None = None,
    *,
    factors: list[int] | None = None,
    kind: str | None = None,
    site: str | None = None,
    seed: int | None = None,
    batch_size: int = 256,
) -> dict:
    """The votes of the FactorVAE score as disentanglement_lib draws them, on fresh observations: global
    variances of ``factor_vae_num_variance`` rendered points, then for each vote a factor drawn uniformly
    from ``factors`` (all by default), ``factor_vae_batch_size`` fresh points sharing a class of it drawn
    uniformly (``data.sample_fixed_factor``), encoded, and the latent of least normalised variance
    (``settings``: a :class:`~infodropout.train.metrics.MetricSettings` or its name; None: ``full``).

    :returns: ``train_votes``, ``eval_votes`` ``(K, D)`` (row: the fixed factor, column: the latent that
        won), ``active_dims (D,)``, ``global_variance (D,)``, ``num_points``.
    """
    s = get_settings(settings)
    generator = data_generator(data, s.seed if seed is None else seed)
    chosen = list(range(len(data.factor_sizes))) if factors is None else list(factors)
    enc, _ = sample_encoded(
        ib, data, s.factor_vae_num_variance, kind=kind, site=site, generator=generator, batch_size=batch_size
    )
    global_var = enc.representation.var(axis=0, ddof=1)
    active = prune_dims(global_var, s.factor_vae_prune_threshold)
    dims = enc.representation.shape[1]
    votes = {"train": np.zeros((len(chosen), dims), dtype=np.int64), "eval": np.zeros((len(chosen), dims), np.int64)}
    if active.any():
        per_call = max(1, batch_size // s.factor_vae_batch_size)
        for split, total in (("train", s.factor_vae_num_train), ("eval", s.factor_vae_num_eval)):
            for start in range(0, total, per_call):
                n = min(per_call, total - start)
                picks = torch.randint(0, len(chosen), (n,), generator=generator, device=generator.device).tolist()
                classes = torch.cat(
                    [data.sample_fixed_factor(s.factor_vae_batch_size, chosen[p], None, generator) for p in picks]
                )
                codes = encode_classes(ib, data, classes, batch_size, kind=kind, site=site).representation
                for j, p in enumerate(picks):
                    block = codes[j * s.factor_vae_batch_size : (j + 1) * s.factor_vae_batch_size]
                    votes[split][p, vote(block.var(axis=0, ddof=1), global_var, active)] += 1
    return {
        "train_votes": votes["train"],
        "eval_votes": votes["eval"],
        "active_dims": active,
        "global_variance": global_var,
        "num_points": len(enc),
    }


def factor_vae_fresh(ib, data, settings: MetricSettings | str | None = None, **options) -> dict:
    """The FactorVAE score as disentanglement_lib computes it, on fresh observations: the votes of
    :func:`fresh_votes` (``options`` are its keywords) scored by
    :func:`~infodropout.train.metrics.score_votes` (the pool form,
    :func:`~infodropout.train.metrics.factor_vae_score`, resamples encoded points instead).

    :returns: the keys of :func:`~infodropout.train.metrics.factor_vae_score`, and ``mode: "fresh"``.
    """
    return score_votes(fresh_votes(ib, data, settings, **options))
