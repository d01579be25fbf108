"""A mean-field ELBO for training loops: analytic KLs, no host synchronisation, its terms kept apart."""

from dataclasses import dataclass

import pyro.poutine as poutine
import torch
from pyro.distributions.util import scale_and_mask
from pyro.infer import TraceMeanField_ELBO
from pyro.poutine.util import site_is_subsample
from torch import nn

from infodropout.models.kl import kl_or_estimate


@dataclass
class ELBOTerms:
    """One evaluation of the ELBO, split into its parts (all tensors on the model's device).

    ``loss`` is ``-ELBO`` with every scale applied (beta, N/B): what to differentiate.
    ``nll`` is the unscaled negative log-likelihood summed over the batch, ``kl`` the unscaled KL
    divergence of each latent site summed over the batch.
    """

    loss: torch.Tensor
    nll: torch.Tensor
    kl: dict[str, torch.Tensor]


class MeanFieldELBO(TraceMeanField_ELBO):
    r"""
    ``TraceMeanField_ELBO`` as a training loop wants it, with the same value and gradients::

        -ELBO = sum_obs -scale * log p(y | z) + sum_latent scale * KL(q(z) || p(z))

    It skips what ``TraceMeanField_ELBO`` computes and does not use on the analytic path (the
    log-densities of every latent site, validation, a Python float of the loss), so one evaluation
    issues no host synchronisation and can be captured in a CUDA graph. Where no KL is registered it
    falls back, like ``TraceMeanField_ELBO``, to ``log q(z) - log p(z)`` at the sampled ``z``.
    Only ``num_particles=1`` without vectorisation is supported; use ``TraceMeanField_ELBO`` otherwise.
    """

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        if self.num_particles != 1 or self.vectorize_particles:
            raise ValueError("MeanFieldELBO: num_particles must be 1 (use TraceMeanField_ELBO for more)")

    def terms(self, model, guide, *args, **kwargs) -> ELBOTerms:
        """Run the guide, replay the model against it, and return the ELBO's parts."""
        guide_trace = poutine.trace(guide).get_trace(*args, **kwargs)
        model_trace = poutine.trace(poutine.replay(model, trace=guide_trace)).get_trace(*args, **kwargs)
        loss = 0.0
        nll = 0.0
        kls: dict[str, torch.Tensor] = {}
        for name, site in model_trace.nodes.items():
            if site["type"] != "sample" or site_is_subsample(site):
                continue
            if site["is_observed"]:
                log_p = site["fn"].log_prob(site["value"])
                loss = loss - scale_and_mask(log_p, site["scale"], site["mask"]).sum()
                nll = nll - log_p.sum()
                continue
            guide_site = guide_trace.nodes[name]
            q, p = guide_site["fn"], site["fn"]
            kl, _ = kl_or_estimate(q, p, value=guide_site["value"])
            loss = loss + scale_and_mask(kl, guide_site["scale"], guide_site["mask"]).sum()
            kls[name] = kl.sum()
        return ELBOTerms(torch.as_tensor(loss), torch.as_tensor(nll), kls)

    def differentiable_loss(self, model, guide, *args, **kwargs):
        return self.terms(model, guide, *args, **kwargs).loss

    def loss(self, model, guide, *args, **kwargs):
        with torch.no_grad():
            return self.differentiable_loss(model, guide, *args, **kwargs).item()

    def loss_and_grads(self, model, guide, *args, **kwargs):
        loss = self.differentiable_loss(model, guide, *args, **kwargs)
        loss.backward()
        return loss.item()


class ELBOModule(nn.Module):
    """``MeanFieldELBO().terms(ib.model, ib.guide, x, y)`` as the ``forward`` of a module that holds the
    bottleneck ``ib``: what ``DistributedDataParallel`` wraps, so that the backward pass of its ``loss``
    averages the gradients of every parameter of the model and the guide over the ranks.

    Only ``loss`` is differentiable; ``nll`` and ``kl`` are detached (they are reported, not trained on),
    so that what DDP finds in the output is what the backward pass reaches: with beta = 0 a learned
    prior's parameters are then seen to be unused.

    :param ib: an :class:`~infodropout.models.InformationBottleneck` (anything with ``model`` and ``guide``).
    :param elbo: the estimator (default: a new :class:`MeanFieldELBO`).
    """

    def __init__(self, ib: nn.Module, elbo: MeanFieldELBO | None = None):
        super().__init__()
        self.ib = ib
        self.elbo = MeanFieldELBO() if elbo is None else elbo

    def forward(self, x: torch.Tensor, y: torch.Tensor | None = None) -> ELBOTerms:
        terms = self.elbo.terms(self.ib.model, self.ib.guide, x, y)
        return ELBOTerms(terms.loss, terms.nll.detach(), {site: kl.detach() for site, kl in terms.kl.items()})
