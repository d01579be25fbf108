"""The information a trained network's latents carry: the KL divergence of the guide against the prior,
per layer, per latent dimension and per position.

Every KL here is :func:`infodropout.models.kl.kl_or_estimate` or :func:`~infodropout.models.kl.unit_kl`:
analytic where a KL is registered for the pair of distributions, Monte Carlo otherwise, so that a prior a
user registers (without a KL) works in every measure.
"""

import pyro.poutine as poutine
import torch
from torch.distributions import Independent, Normal, kl_divergence

from infodropout.guides.layers import sampling
from infodropout.guides.noise import LOG_BASE_FLOOR
from infodropout.models.kl import kl_or_estimate, loguniform_kl, unit_kl
from infodropout.models.priors import MultivariateLogNormal

from .sites import latent_layer


def dimension_kl(ib, site: str, q, latent: str) -> tuple[torch.Tensor, torch.Tensor, bool, bool]:
    r"""
    The KL divergence of the guide's elementwise distribution ``q`` ``(B, *event)`` at ``site`` against
    the site's prior, per dimension and for the site::

        kl[b, d] = KL(q(z_d | x_b) || p_d(z_d)),        kl_joint[b] = KL(q(z | x_b) || p(z))

    For a prior that factorises over the units (log-uniform, log-normal, factorised, standard normal)
    ``kl`` holds the terms of ``kl_joint``, exactly (``exact`` is True). For a correlated log-normal prior
    ``p(log z) = N(mu, Sigma)`` the dimensions do not separate: ``kl[b, d]`` is the KL against the prior's
    marginal ``N(mu_d, Sigma_dd)`` of ``log z_d`` (``exact`` is False). ``analytic`` is False where either
    was estimated by Monte Carlo (no KL registered for the prior).

    :returns: ``kl (B, *event)``, ``kl_joint (B,)``, ``exact``, ``analytic``.
    """
    event = q.batch_shape[1:]
    prior = ib.model.prior(site, q.batch_shape[:1], event)
    joint, analytic = kl_or_estimate(Independent(q, len(event)), prior)  # (B,)
    if isinstance(prior, MultivariateLogNormal) and latent == "log-normal":
        mvn = prior.base_dist  # Normal on log z with covariance Sigma: its marginals are Normal(loc_d, Sigma_dd)
        marginal = Normal(mvn.loc, mvn.variance.sqrt())
        return kl_divergence(Normal(q.log_base(LOG_BASE_FLOOR), q.scale), marginal), joint, False, analytic
    try:
        per_dim, analytic_d = unit_kl(q, prior)
    except ValueError:
        raise ValueError(
            f"site {site!r}: no per-dimension KL against a {type(prior).__name__} prior (not factorised)"
        ) from None
    return per_dim, joint, True, analytic and analytic_d


def information_maps(ib, x: torch.Tensor) -> dict[str, torch.Tensor]:
    """The information per position of every convolutional latent site: ``{site: (B, h, w)}``,
    ``m(i, j) = sum_c KL(q(z[c, i, j] | x) || p(z[c, i, j]))`` in nats, in the current train/eval mode with
    the noise on (as :meth:`~infodropout.models.InformationBottleneck.information`, whose value is ``m``
    summed over positions, for the same draw of the noise). Each unit's KL is :func:`unit_kl` (Monte
    Carlo for a prior without a registered KL)."""
    with poutine.block(), sampling(True):
        trace = poutine.trace(ib.encoder).get_trace(x)
    batch = torch.Size((x.shape[0],))
    maps = {}
    for site in ib.latent_sites:
        node = trace.nodes.get(site)
        if node is None:
            continue
        q = node["fn"]
        if len(q.event_shape) != 3:
            raise ValueError(
                f"site {site!r}: expected a convolutional layer (C, H, W), got event shape {tuple(q.event_shape)}"
            )
        try:
            kl, _ = unit_kl(q, ib.model.prior(site, batch, q.event_shape))  # (B, C, h, w)
        except ValueError as err:
            raise ValueError(f"site {site!r}: {err}") from None
        maps[site] = kl.sum(1)  # (B, h, w)
    return maps


def latent_distributions(ib, x: torch.Tensor) -> dict:
    """The guide's elementwise distribution at every latent site for the inputs ``x`` ``(B, ...)``, with
    the noise off in every layer (each layer reads the noise-free output of the one before): ``{site:
    q (B, *event)}``, from one pass of the encoder."""
    layers = {site: latent_layer(ib, site)[1] for site in ib.latent_sites}
    captured: dict[str, list] = {site: [] for site in layers}
    handles = [
        layer.register_forward_pre_hook(lambda module, args, site=site: captured[site].append(args[0]))
        for site, layer in layers.items()
    ]
    try:
        with poutine.block(), sampling(False):
            ib.encoder(x)
    finally:
        for handle in handles:
            handle.remove()
    for site, inputs in captured.items():
        if len(inputs) != 1:
            raise ValueError(f"site {site!r}: its layer ran {len(inputs)} times in one pass of the encoder")
    return {site: layer.distribution(captured[site][0]) for site, layer in layers.items()}


def unit_information(ib, x: torch.Tensor, kl_convention: str | None = None) -> dict[str, torch.Tensor]:
    r"""
    The information of every unit of every latent site about the input, with the noise off upstream::

        info_l[b, u] = KL(q(z_l,u | f_{l-1}(x_b)) || p(z_l,u))        ``{site: (B, *event)}``, nats

    where ``f_{l-1}(x)`` is the noise-free output of the layers before (:func:`latent_distributions`).
    Log-uniform sites take ``kl_convention`` (None: the network's; ``"exact"``: a ReLU unit that is off
    carries 0); other priors :func:`~infodropout.models.kl.unit_kl` (Monte Carlo where no KL is
    registered). A prior that does not factorise over the units (correlated) has no KL per unit: a
    one-line ``ValueError``.
    """
    convention = ib.kl_convention if kl_convention is None else kl_convention
    loguniform = set(ib.loguniform_sites)
    out = {}
    for site, q in latent_distributions(ib, x).items():
        if site in loguniform:
            out[site] = loguniform_kl(q, convention)
            continue
        try:
            out[site], _ = unit_kl(q, ib.model.prior(site, q.batch_shape[:1], q.batch_shape[1:]))
        except ValueError as err:
            raise ValueError(f"site {site!r}: {err}") from None
    return out
