"""A trained network on its test set: the task's measures (what ``Trainer.evaluate`` reports every epoch).

Both measures take the test batches ``(x, y, ...)`` and, for a run split over several processes, two
hooks: ``rows(batch) -> (batch, context)`` gives this process's rows of a batch and the context its
noise is drawn in, and ``reduce(tensor)`` sums a tensor of totals over the processes. Call them under
:func:`~.context.evaluating`.
"""

import contextlib
from collections.abc import Callable, Iterable

import pyro
import torch

from infodropout.guides.layers import sampling
from infodropout.models.priors import KL_CONVENTIONS
from infodropout.train.elbo import MeanFieldELBO

Rows = Callable[[tuple], tuple[tuple, contextlib.AbstractContextManager]]


def _whole(batch: tuple) -> tuple[tuple, contextlib.AbstractContextManager]:
    return batch, contextlib.nullcontext()


def _same(tensor: torch.Tensor) -> torch.Tensor:
    return tensor


def classifier_measures(
    ib,
    batches: Iterable,
    *,
    kl_convention: str = "exact",
    eval_samples: int = 0,
    rows: Rows | None = None,
    reduce: Callable[[torch.Tensor], torch.Tensor] | None = None,
) -> dict:
    r"""
    The test measures of a classifier, per example::

        test_error = 100 * mean[argmax p(y | f(x)) != y]     (the noise off: z = f(x), its median)
        test_nll   = mean[-log p(y | f(x))]
        test_kl[l] = mean[KL(q(z_l | x) || p(z_l))]          (nats; one draw of the noise)

    ``test_kl`` is the information per latent layer under ``kl_convention``; with log-uniform priors
    ``test_kl_exact`` and ``test_kl_authors`` give it under both conventions, from the same draw of the
    noise (layers with other priors have the same value in both). With ``eval_samples`` > 0,
    ``test_error_averaged`` is the error of the prediction averaged over that many draws of the noise.
    """
    rows, reduce = rows or _whole, reduce or _same
    sites = ib.latent_sites
    conventions = KL_CONVENTIONS if ib.loguniform_sites else (kl_convention,)
    device = next(ib.parameters()).device
    totals = torch.zeros(3 + len(conventions) * len(sites), device=device)  # examples, errors, nll, kls
    averaged = torch.zeros((), device=device)
    for batch in batches:
        (x, y, *_), noise = rows(batch)
        with noise:
            probs = ib.predict(x)  # (B, K), noise off
            info = ib.information_by_convention(x, conventions)  # one noise draw, every convention
            parts = [
                torch.full((), float(len(y)), device=device),
                (probs.argmax(-1) != y).sum().float(),
                -probs.gather(-1, y[:, None]).clamp_min(1e-30).log().sum(),
            ]
            parts += [info[c][s].sum() for c in conventions for s in sites]
            totals += torch.stack(parts)
            if eval_samples:
                averaged += (ib.predict(x, eval_samples).argmax(-1) != y).sum()
    values = reduce(totals).tolist()
    averaged = reduce(averaged)
    n = max(values[0], 1.0)
    kl = {c: {s: values[3 + i * len(sites) + j] / n for j, s in enumerate(sites)} for i, c in enumerate(conventions)}
    out = {
        "test_error": 100 * values[1] / n,
        "test_nll": values[2] / n,
        "test_kl": kl[kl_convention],
        "kl_convention": kl_convention,
    }
    if ib.loguniform_sites:
        out.update({f"test_kl_{c}": kl[c] for c in conventions})
    if eval_samples:
        out["test_error_averaged"] = 100 * averaged.item() / n
    return out


def reconstruction_measures(
    ib,
    batches: Iterable,
    *,
    kl_convention: str = "exact",
    rows: Rows | None = None,
    reduce: Callable[[torch.Tensor], torch.Tensor] | None = None,
) -> dict:
    r"""
    The test measures of a reconstruction model, per example, with the noise on and beta = 1::

        test_nll   = mean[-log p(x | z)],   z ~ q(z | x)       (one draw)
        test_kl[l] = mean[KL(q(z_l | x) || p(z_l))]
        test_elbo  = -(test_nll + sum_l test_kl[l])

    the ELBO's parts as :class:`~infodropout.train.elbo.MeanFieldELBO` takes them (analytic KLs).
    """
    rows, reduce = rows or _whole, reduce or _same
    sites = ib.latent_sites
    elbo = MeanFieldELBO()
    device = next(ib.parameters()).device
    totals = torch.zeros(2 + len(sites), device=device)  # examples, nll, kl per site
    with sampling(True):
        for batch in batches:
            (x, *_), noise = rows(batch)
            with noise:
                if len(x) == 0:  # no rows of this batch here: draw its noise all the same (equal random states)
                    with pyro.poutine.block():
                        ib.encoder(x)
                    continue
                terms = elbo.terms(ib.model, ib.guide, x)
                parts = [torch.full((), float(len(x)), device=device), terms.nll]
                totals += torch.stack(parts + [terms.kl[s] for s in sites]).float()
    values = reduce(totals).tolist()
    n = max(values[0], 1.0)
    kl = {s: v / n for s, v in zip(sites, values[2:], strict=True)}
    nll = values[1] / n
    return {"test_elbo": -(nll + sum(kl.values())), "test_nll": nll, "test_kl": kl, "kl_convention": kl_convention}


def task_measures(ib, batches: Iterable, **options) -> dict:
    """:func:`reconstruction_measures` for a reconstruction model, else :func:`classifier_measures`."""
    if ib.model.reconstruct:
        options.pop("eval_samples", None)
        return reconstruction_measures(ib, batches, **options)
    return classifier_measures(ib, batches, **options)
