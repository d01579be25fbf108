"""From a trained :class:`~infodropout.models.InformationBottleneck` to the arrays the metrics take.

The one place of the measurement layer that runs models (:mod:`infodropout.train.metrics` is pure
NumPy): the representation of a batch with the noise off (:func:`representation`, :func:`encode`), the
guide's posterior parameters where they are Gaussian (the inputs of the total correlation), the KL
divergence per latent dimension, the log importance weights of a reconstruction model
(:func:`log_importance_weights`), and the generator forms of the metrics for dSprites-like data
(:func:`sample_encoded`, :func:`factor_vae_fresh`, :func:`evaluate`): sample factors, render, encode
in batches, and call the pure cores.

A *dSprites-like* data set has ``factor_names``, ``factor_sizes``, ``sample_factors(n, generator)``,
``sample_fixed_factor(n, factor, value, generator)``, ``factors_to_index(classes)`` and
``render(index)`` (see :class:`~infodropout.train.data.dsprites.DSprites`).
"""

import contextlib
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass

import numpy as np
import pyro.poutine as poutine
import torch
from pyro.poutine.util import site_is_subsample
from torch import nn
from torch.distributions import Independent, Normal, kl_divergence

from infodropout.guides.layers import GaussianLatent, InformationDropout, NoisyLayer, sampling
from infodropout.guides.noise import LOG_BASE_FLOOR
from infodropout.models.priors import LogUniform, MultivariateLogNormal

from . import metrics as m
from .metrics.factor_vae import majority_vote_accuracy, prune_dims, vote

#: The latents the measurement layer understands, by the name results record.
LATENTS = ("log-normal", "gaussian")


def _log_location(q) -> torch.Tensor:
    return q.log_base(LOG_BASE_FLOOR)


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
#: What the posterior parameters are Gaussian in, per latent.
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
    raise ValueError(f"{type(layer).__name__}: not a latent the metrics understand; expected one of {LATENTS}")


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


def _parameters(module: nn.Module) -> torch.Tensor | None:
    return next(iter(module.parameters()), None)


def _device(ib) -> torch.device:
    p = _parameters(ib)
    return torch.device("cpu") if p is None else p.device


def _to_model(ib, x: torch.Tensor) -> torch.Tensor:
    p = _parameters(ib)
    if p is None:
        return x
    return x.to(device=p.device, dtype=p.dtype if x.is_floating_point() else x.dtype)


@contextlib.contextmanager
def evaluating(ib):
    """Evaluation mode (batch-norm running statistics), no gradients, no Pyro sites escaping; the
    train/eval mode of every module is restored afterwards."""
    modes = [(module, module.training) for module in ib.modules()]
    try:
        ib.eval()
        with torch.no_grad(), poutine.block():
            yield ib
    finally:
        for module, training in modes:
            module.training = training


def _site_distribution(ib, x: torch.Tensor, layer: NoisyLayer):
    """The guide's elementwise distribution at ``layer`` for the noise-free input of the layer."""
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


def _gaussian_parameters(q, latent: str) -> tuple[torch.Tensor, torch.Tensor]:
    if latent == "log-normal":
        return q.log_base(LOG_BASE_FLOOR), q.scale
    return q.loc, q.scale


def representation(ib, x: torch.Tensor, kind: str | None = None, site: str | None = None) -> torch.Tensor:
    """The representation ``(B, D)`` of a batch with the noise off, read as ``kind`` (see :data:`KINDS`;
    None: the latent's default, the location of ``log z`` for a log-normal latent and the posterior
    mean for a Gaussian one). Convolutional latents are flattened. The network is evaluated in
    evaluation mode, without gradients."""
    site, layer = latent_layer(ib, site)
    kind = resolve_kind(ib, kind, site)
    with evaluating(ib):
        q = _site_distribution(ib, _to_model(ib, x), layer)
        return KINDS[kind].of[latent_type(layer)](q).flatten(1)


@dataclass
class Encoding:
    """Encoded points: their representation and the guide's posterior there, as NumPy arrays.

    ``representation (N, D)`` is read as ``kind``; ``loc``, ``scale`` ``(N, D)`` are the posterior's
    parameters in ``space`` (``log z`` for a log-normal latent, ``z`` for a Gaussian), where it is
    ``Normal(loc, scale**2)`` elementwise (for a log-normal latent ``loc = log max(f(x), 1e-4)``, the floor
    of the KLs, so a ReLU unit that is off sits at ``log 1e-4``), and ``sample (N, D)`` one draw from it.
    ``kl (N, D)`` holds the KL divergence of each dimension against the prior (exact for factorised
    priors; marginal for a correlated one, see :func:`kl_divergences`), ``kl_joint (N,)`` the site's KL;
    ``kl_analytic`` says whether they are analytic or Monte Carlo estimates (a plug-in prior without a
    registered KL). The KL fields are None unless :func:`encode` was asked for them.
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

    @property
    def space(self) -> str:
        return POSTERIOR_SPACE[self.latent]

    def __len__(self) -> int:
        return len(self.representation)

    def record(self) -> dict:
        """What every result records about the representation."""
        return {"kind": self.kind, "site": self.site, "latent": self.latent, "posterior_space": self.space}


def _batches(x, batch_size: int) -> Iterable[torch.Tensor]:
    if isinstance(x, torch.Tensor):
        for start in range(0, len(x), batch_size):
            yield x[start : start + batch_size]
    else:
        for batch in x:
            yield batch[0] if isinstance(batch, (tuple, list)) else batch


#: Samples of the Monte Carlo KL where no analytic KL is registered (a plug-in prior).
KL_SAMPLES = 256


def _kl(q, p) -> tuple[torch.Tensor, bool]:
    """``KL(q || p)``, analytic where registered, else ``E_q[log q(z) - log p(z)]`` over :data:`KL_SAMPLES`
    draws; and whether it was analytic."""
    try:
        return kl_divergence(q, p), True
    except NotImplementedError:
        z = q.rsample(torch.Size((KL_SAMPLES,))) if q.has_rsample else q.sample(torch.Size((KL_SAMPLES,)))
        return (q.log_prob(z) - p.log_prob(z)).mean(0), False


def _elementwise_kl(ib, site: str, q, latent: str) -> tuple[torch.Tensor, torch.Tensor, bool, bool]:
    """Per-dimension KL ``(B, ...)`` against the site's prior, the site's KL ``(B,)``, whether the
    per-dimension terms are exact (factorised prior) or marginal (correlated prior), and whether both
    are analytic (else Monte Carlo)."""
    batch, event = q.batch_shape[:1], q.batch_shape[1:]
    prior = ib.model.prior(site, batch, event)
    joint, analytic = _kl(Independent(q, len(event)), prior)  # (B,)
    if isinstance(prior, Independent) and prior.base_dist.batch_shape == q.batch_shape:
        per_dim, analytic_d = _kl(q, prior.base_dist)
        return per_dim, joint, True, analytic and analytic_d
    if isinstance(prior, MultivariateLogNormal) and latent == "log-normal":
        mvn = prior.base_dist  # Normal on log z with covariance Sigma: its marginals are Normal(loc_d, Sigma_dd)
        marginal = Normal(mvn.loc, mvn.variance.sqrt())
        return kl_divergence(Normal(q.log_base(LOG_BASE_FLOOR), q.scale), marginal), joint, False, analytic
    raise ValueError(f"site {site!r}: no per-dimension KL against a {type(prior).__name__} prior (not factorised)")


def encode(
    ib,
    x,
    *,
    kind: str | None = None,
    site: str | None = None,
    batch_size: int = 500,
    generator: torch.Generator | None = None,
    kl: bool = False,
) -> Encoding:
    """Encode ``x`` (a tensor ``(N, ...)`` or an iterable of batches, or of ``(x, y)`` pairs) in batches:
    the :class:`Encoding` of its points (representation as ``kind``, posterior parameters, one posterior
    sample drawn with ``generator``, and with ``kl`` the KL per dimension)."""
    site, layer = latent_layer(ib, site)
    kind = resolve_kind(ib, kind, site)
    latent = latent_type(layer)
    read = KINDS[kind].of[latent]
    parts: dict[str, list] = {"rep": [], "loc": [], "scale": [], "sample": [], "kl": [], "joint": []}
    exact = analytic = None
    with evaluating(ib):
        for batch in _batches(x, batch_size):
            q = _site_distribution(ib, _to_model(ib, batch), layer)
            loc, scale = _gaussian_parameters(q, latent)
            eps = torch.randn(loc.shape, generator=generator, device=loc.device, dtype=loc.dtype)
            for key, value in (("rep", read(q)), ("loc", loc), ("scale", scale), ("sample", loc + scale * eps)):
                parts[key].append(value.flatten(1).double().cpu().numpy())
            if kl:
                per_dim, joint, exact, analytic = _elementwise_kl(ib, site, q, latent)
                parts["kl"].append(per_dim.flatten(1).double().cpu().numpy())
                parts["joint"].append(joint.double().cpu().numpy())
    if not parts["rep"]:
        raise ValueError("x: no points to encode")
    cat = {key: np.concatenate(value) if value else None for key, value in parts.items()}
    return Encoding(
        cat["rep"],
        cat["loc"],
        cat["scale"],
        cat["sample"],
        kind,
        site,
        latent,
        cat["kl"],
        cat["joint"],
        exact,
        analytic,
    )


def kl_divergences(ib, x, *, site: str | None = None, batch_size: int = 500) -> dict:
    r"""
    The KL divergence of the guide against the prior at ``site``, per example and per latent dimension::

        kl[n, d] = KL(q(z_d | x_n) || p_d(z_d))

    For a factorised prior (log-uniform, log-normal, factorised, standard normal) these are the terms
    of the site's KL, exactly (``exact`` is True and ``kl.sum(1) == kl_joint``). For a correlated prior
    ``p(log z) = N(mu, Sigma)`` the dimensions do not separate; ``kl[n, d]`` is then the KL against the
    prior's marginal ``N(mu_d, Sigma_dd)`` of ``log z_d`` (``exact`` is False), and
    ``kl_sum - kl_total = E_q[log p(z) - sum_d log p_d(z_d)]`` (either sign). A prior without a
    registered KL (a plug-in) gets Monte Carlo estimates from :data:`KL_SAMPLES` draws (``analytic``
    is False).

    :returns: ``kl (N, D)``, ``kl_joint (N,)``, ``exact``, ``analytic`` and, from
        :func:`infodropout.train.metrics.kl_per_dimension`, ``kl_per_dim (D,)``, ``kl_per_dim_se``,
        ``kl_sum``, ``order``; also ``kl_total`` (the mean KL of the site), ``site``.
    """
    enc = encode(ib, x, site=site, batch_size=batch_size, kl=True)
    return summarise_kl(enc)


def summarise_kl(enc: Encoding) -> dict:
    """The KL-per-dimension result of an :class:`Encoding` computed with ``kl=True``."""
    if enc.kl is None:
        raise ValueError("encoding: computed without kl=True")
    out = m.kl_per_dimension(enc.kl)
    out.update(kl=enc.kl, kl_joint=enc.kl_joint, exact=bool(enc.kl_exact), analytic=bool(enc.kl_analytic))
    out.update(kl_total=float(enc.kl_joint.mean()), site=enc.site)
    return out


@contextlib.contextmanager
def _unscaled(ib):
    """``num_data`` set to None for the duration (no N / B scaling of the sites)."""
    before = ib.num_data
    ib.num_data = None
    try:
        yield
    finally:
        ib.num_data = before


def _improper_site(model_trace) -> str | None:
    """The first latent site of a model trace whose prior is log-uniform (improper), or None."""
    for name, site in model_trace.nodes.items():
        if site["type"] == "sample" and not site["is_observed"] and not site_is_subsample(site):
            fn = site["fn"]
            if isinstance(fn.base_dist if isinstance(fn, Independent) else fn, LogUniform):
                return name
    return None


def log_importance_weights(
    ib, x: torch.Tensor, num_samples: int, *, chunk_size: int = 1024, seed: int | None = None
) -> np.ndarray:
    r"""
    Log importance weights ``(K, B)`` of a reconstruction model for the importance-weighted
    log-likelihood::

        log w_k = log p(x | z_k) + sum_l log p(z_{l,k}) - sum_l log q(z_{l,k} | .),   z_k ~ q(z | x)

    from the model's and the guide's own Pyro densities: the guide is traced with the noise on (in
    evaluation mode), the model replayed against it, and every sample site's ``log_prob`` summed per
    example, with no scaling (beta and N/B are training weights, not part of the model). ``K``
    samples of each of the ``B`` inputs are drawn ``chunk_size // B`` at a time (the batch repeated),
    so that K = 1000 fits in memory. A log-uniform prior is improper: ``log p(x)`` is undefined and
    asking for it is an error. ``seed`` fixes the noise (None: the global generator).
    """
    if not ib.model.reconstruct:
        raise ValueError("log importance weights: the network is a classifier; they need a reconstruction model")
    if isinstance(num_samples, bool) or not isinstance(num_samples, int) or num_samples < 1:
        raise ValueError(f"num_samples={num_samples!r}: expected a positive integer")
    x = _to_model(ib, x)
    b = len(x)
    per_chunk = max(1, chunk_size // max(b, 1))
    out = []
    rng = torch.random.fork_rng(devices=[x.device] if x.device.type == "cuda" else []) if seed is not None else None
    with contextlib.ExitStack() as stack:
        if rng is not None:
            stack.enter_context(rng)
            torch.manual_seed(seed)
        stack.enter_context(evaluating(ib))
        stack.enter_context(ib.unregistered())
        stack.enter_context(sampling(True))
        stack.enter_context(_unscaled(ib))  # K B rows may exceed num_data, which only scales the ELBO
        for start in range(0, num_samples, per_chunk):
            k = min(per_chunk, num_samples - start)
            xr = x.repeat(k, *([1] * (x.dim() - 1)))  # (k B, ...): sample-major
            guide_trace = poutine.trace(ib.guide).get_trace(xr)
            model_trace = poutine.trace(poutine.replay(ib.model, trace=guide_trace)).get_trace(xr)
            improper = _improper_site(model_trace)
            if improper is not None:
                raise ValueError(f"log importance weights: the prior at site {improper!r} is log-uniform (improper)")
            log_w = torch.zeros(k * b, dtype=torch.float64, device=x.device)
            for name, site in model_trace.nodes.items():
                if site["type"] != "sample" or site_is_subsample(site):
                    continue
                log_w = log_w + site["fn"].log_prob(site["value"]).double()
                if not site["is_observed"]:
                    guide_site = guide_trace.nodes[name]
                    log_w = log_w - guide_site["fn"].log_prob(guide_site["value"]).double()
            out.append(log_w.reshape(k, b).cpu().numpy())
    return np.concatenate(out)


# ----------------------------------------------------------------------------------------------
# Generator forms: dSprites-like data in, metrics out


def _generator(data, seed: int) -> torch.Generator:
    return torch.Generator(device=getattr(data, "device", "cpu")).manual_seed(int(seed))


def _encode_classes(ib, data, classes: torch.Tensor, batch_size: int, **options) -> Encoding:
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
) -> tuple[Encoding, np.ndarray]:
    """``num_points`` factor combinations drawn uniformly (``data.sample_factors``), rendered and encoded
    in batches: their :class:`Encoding` and factor classes ``(N, K)``."""
    classes = data.sample_factors(int(num_points), generator)  # (N, K)
    noise = None
    if generator is not None:  # the posterior samples' noise, on the network's device, seeded from the data's
        seed = int(torch.randint(0, 2**62, (1,), generator=generator, device=generator.device))
        noise = torch.Generator(device=_device(ib)).manual_seed(seed)
    enc = _encode_classes(ib, data, classes, batch_size, kind=kind, site=site, generator=noise, kl=kl)
    return enc, classes.cpu().numpy()


def factor_sets(factor_names) -> dict[str, list[int]]:
    """The factor sets results report: ``all`` factors (dSprites' five, as disentanglement_lib) and,
    when there is a ``shape`` factor, ``no-shape`` (the four of beta-TCVAE's code)."""
    names = list(factor_names)
    sets = {"all": list(range(len(names)))}
    if "shape" in names and len(names) > 1:
        sets["no-shape"] = [i for i, n in enumerate(names) if n != "shape"]
    return sets


def factor_vae_fresh(
    ib,
    data,
    *,
    settings=None,
    factors: list[int] | None = None,
    kind: str | None = None,
    site: str | None = None,
    seed: int | None = None,
    batch_size: int = 256,
) -> dict:
    """The FactorVAE score as disentanglement_lib computes it, on fresh observations: global variances
    of ``factor_vae_num_variance`` rendered points, then for each vote a factor drawn uniformly from
    ``factors`` (all by default), ``factor_vae_batch_size`` fresh points sharing a class of it drawn
    uniformly (``data.sample_fixed_factor``), encoded, and the latent of least normalised variance
    (see :func:`infodropout.train.metrics.factor_vae_score`, whose pool form resamples encoded points).

    :returns: the keys of :func:`~infodropout.train.metrics.factor_vae_score`, and ``mode: "fresh"``.
    """
    s = m.get_settings(settings)
    generator = _generator(data, s.seed if seed is None else seed)
    chosen = list(range(len(data.factor_sizes))) if factors is None else list(factors)
    enc, _ = sample_encoded(
        ib, data, s.factor_vae_num_variance, kind=kind, site=site, generator=generator, batch_size=batch_size, kl=False
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
                codes = _encode_classes(ib, data, classes, batch_size, kind=kind, site=site, kl=False).representation
                for j, p in enumerate(picks):
                    block = codes[j * s.factor_vae_batch_size : (j + 1) * s.factor_vae_batch_size]
                    votes[split][p, vote(block.var(axis=0, ddof=1), global_var, active)] += 1
        scores = majority_vote_accuracy(votes["train"], votes["eval"])
    else:
        scores = {"classifier": np.zeros(dims, dtype=np.int64), "train_accuracy": 0.0, "eval_accuracy": 0.0}
    return {
        **scores,
        "num_active_dims": int(active.sum()),
        "active_dims": active,
        "global_variance": global_var,
        "num_points": len(enc),
        "train_votes": votes["train"],
        "eval_votes": votes["eval"],
        "mode": "fresh",
    }


#: The metrics :func:`evaluate` computes when none are named.
DEFAULT_METRICS = ("mig", "factor-vae", "dci", "sap", "active-units", "total-correlation", "kl-per-dim")


def evaluate(
    ib,
    data,
    *,
    metrics=None,
    settings=None,
    kind: str | None = None,
    site: str | None = None,
    sets: dict[str, list[int]] | None = None,
    factor_vae: str = "pool",
    seed: int | None = None,
    batch_size: int = 256,
    num_data: int | None = None,
    progress: Callable[[str], None] | None = None,
) -> dict:
    """Every metric of ``metrics`` (names of :data:`~infodropout.train.metrics.METRICS`; default
    :data:`DEFAULT_METRICS`) for a trained network on dSprites-like ``data``, with ``settings``
    (``"full"`` by default, or ``"fast"``).

    One pool of ``settings.pool_size`` points is sampled uniformly, rendered and encoded once; MIG,
    active units, the total correlation and the KL per dimension use its first ``num_points``; DCI and
    SAP train on its first ``*_num_train`` points and test on the next ``*_num_test``; the FactorVAE
    score resamples the whole pool (``factor_vae="pool"``) or renders fresh batches
    (``factor_vae="fresh"``, as disentanglement_lib). Metrics over factors are computed for each factor
    set of ``sets`` (default :func:`factor_sets`: ``all`` and ``no-shape``); DCI's trees are fitted once
    for all factors and restricted. The total correlation uses ``num_data`` (default ``len(data)``) as
    the data set size N. ``log-likelihood`` and ``psis`` use ``iw_num_images`` rendered images with
    ``iw_num_samples`` importance samples each.

    :returns: ``{"representation": Encoding.record(), "settings", "seed", "factor_names", "factor_sets":
        {set: [names]}, "num_points", "metrics": {name: result}, "seconds": {name: s}}`` where a metric over
        factors gives ``{set: result}``. Pass it through :func:`~infodropout.train.metrics.jsonable` for JSON.
    """
    s = m.get_settings(settings)
    names = m.check_metrics(metrics if metrics is not None else DEFAULT_METRICS)
    if factor_vae not in ("pool", "fresh"):
        raise ValueError(f"factor_vae={factor_vae!r}: expected 'pool' or 'fresh'")
    seed = s.seed if seed is None else int(seed)
    factor_names = list(data.factor_names)
    sets = factor_sets(factor_names) if sets is None else {str(k): list(v) for k, v in sets.items()}
    for set_name, cols in sets.items():
        if not cols or any(not 0 <= c < len(factor_names) for c in cols):
            raise ValueError(f"sets[{set_name!r}]={cols}: expected factor indices in 0..{len(factor_names) - 1}")
    say = progress or (lambda message: None)
    generator = _generator(data, seed)
    needs_pool = any(m.METRICS[n].needs in ("factors", "representation", "posterior", "kl") for n in names)
    over_factors = [n for n in names if m.METRICS[n].per_factor_set]
    pool_size = s.pool_size if over_factors else s.num_points
    out: dict = {"settings": s.to_dict(), "seed": seed, "factor_names": factor_names}
    out["factor_sets"] = {k: [factor_names[c] for c in v] for k, v in sets.items()}
    results: dict = {}
    seconds: dict = {}
    enc = classes = None
    if needs_pool:
        say(f"encoding {pool_size} points")
        start = time.perf_counter()
        enc, classes = sample_encoded(
            ib,
            data,
            pool_size,
            kind=kind,
            site=site,
            generator=generator,
            batch_size=batch_size,
            kl="kl-per-dim" in names,
        )
        out["representation"], out["num_points"] = enc.record(), len(enc)
        seconds["encoding"] = time.perf_counter() - start
    else:
        site_name, _ = latent_layer(ib, site)
        out["representation"] = {"kind": resolve_kind(ib, kind, site_name), "site": site_name}
    context = _Context(ib, data, enc, classes, sets, s, kind, site, seed, batch_size)
    context.factor_vae, context.num_data = factor_vae, len(data) if num_data is None else int(num_data)
    kind_used = out["representation"]["kind"]
    for name in names:
        say(f"computing {name}")
        start = time.perf_counter()
        result = _COMPUTE[name](context)
        for part in result.values() if m.METRICS[name].per_factor_set else (result,):
            part["representation"] = kind_used  # every result says which representation it measured
        results[name] = result
        seconds[name] = time.perf_counter() - start
    out["metrics"], out["seconds"] = results, seconds
    return out


@dataclass
class _Context:
    """What :func:`evaluate` hands each metric: the network, the data, the encoded pool and the settings."""

    ib: nn.Module
    data: object
    enc: Encoding | None
    classes: np.ndarray | None
    sets: dict
    s: m.MetricSettings
    kind: str | None
    site: str | None
    seed: int
    batch_size: int
    factor_vae: str = "pool"
    num_data: int = 0
    log_weights: np.ndarray | None = None

    @property
    def first(self) -> slice:
        return slice(0, self.s.num_points)

    def splits(self, num_train: int, num_test: int) -> tuple[slice, slice]:
        return slice(0, num_train), slice(num_train, num_train + num_test)


def _mig(c: _Context) -> dict:
    codes, classes = c.enc.representation[c.first], c.classes[c.first]
    return {k: m.mig(codes, classes[:, cols], num_bins=c.s.num_bins) for k, cols in c.sets.items()}


def _dci(c: _Context) -> dict:
    train, test = c.splits(c.s.dci_num_train, c.s.dci_num_test)
    codes, classes = c.enc.representation, c.classes
    full = m.dci(
        codes[train],
        classes[train],
        test_representation=codes[test],
        test_factors=classes[test],
        n_estimators=c.s.dci_n_estimators,
        seed=c.seed,
    )
    every = list(range(classes.shape[1]))
    return {k: full if cols == every else m.restrict_dci(full, cols) for k, cols in c.sets.items()}


def _sap(c: _Context) -> dict:
    train, test = c.splits(c.s.sap_num_train, c.s.sap_num_test)
    codes, classes = c.enc.representation, c.classes
    return {
        k: m.sap(
            codes[train],
            classes[train][:, cols],
            test_representation=codes[test],
            test_factors=classes[test][:, cols],
            c=c.s.sap_c,
            seed=c.seed,
        )
        for k, cols in c.sets.items()
    }


def _factor_vae_sets(c: _Context) -> dict:
    return {k: _factor_vae(c, cols) for k, cols in c.sets.items()}


def _active_units(c: _Context) -> dict:
    return m.active_units(c.enc.representation[c.first], threshold=c.s.active_threshold)


def _total_correlation(c: _Context) -> dict:
    e, first = c.enc, c.first
    result = m.total_correlation(
        e.loc[first], e.scale[first], e.sample[first], c.num_data, num_samples=c.s.tc_num_samples, seed=c.seed
    )
    return {**result, "posterior_space": e.space}


def _kl_per_dim(c: _Context) -> dict:
    e, first = c.enc, c.first
    result = summarise_kl(Encoding(**{**e.__dict__, "kl": e.kl[first], "kl_joint": e.kl_joint[first]}))
    del result["kl"], result["kl_joint"]  # per example (N, D): not for results
    return result


def _factor_vae(c: _Context, cols: list[int]) -> dict:
    s = c.s
    if c.factor_vae == "fresh":
        return factor_vae_fresh(
            c.ib, c.data, settings=s, factors=cols, kind=c.kind, site=c.site, seed=c.seed, batch_size=c.batch_size
        )
    result = m.factor_vae_score(
        c.enc.representation,
        c.classes[:, cols],
        batch_size=s.factor_vae_batch_size,
        num_train=s.factor_vae_num_train,
        num_eval=s.factor_vae_num_eval,
        num_variance=min(s.factor_vae_num_variance, len(c.enc)),
        prune_threshold=s.factor_vae_prune_threshold,
        seed=c.seed,
    )
    return {**result, "mode": "pool"}


def _iw_metric(c: _Context, name: str) -> dict:
    """``log-likelihood`` or ``psis`` of ``iw_num_images`` rendered images; the log weights are drawn once
    for both."""
    if c.log_weights is None:
        s = c.s
        generator = _generator(c.data, c.seed + 1)
        classes = c.data.sample_factors(s.iw_num_images, generator)
        per_batch = max(1, min(c.batch_size, 4096 // s.iw_num_samples))
        chunks = []
        for i in range(0, len(classes), per_batch):
            images = c.data.render(c.data.factors_to_index(classes[i : i + per_batch]))
            chunks.append(log_importance_weights(c.ib, images, s.iw_num_samples, seed=c.seed + i))
        c.log_weights = np.concatenate(chunks, axis=1)  # (K, N)
    return {**m.METRICS[name].function(c.log_weights), "num_images": c.log_weights.shape[1]}


_COMPUTE: dict[str, Callable[[_Context], dict]] = {
    "mig": _mig,
    "factor-vae": _factor_vae_sets,
    "dci": _dci,
    "sap": _sap,
    "active-units": _active_units,
    "total-correlation": _total_correlation,
    "kl-per-dim": _kl_per_dim,
    "log-likelihood": lambda c: _iw_metric(c, "log-likelihood"),
    "psis": lambda c: _iw_metric(c, "psis"),
}


__all__ = [
    "DEFAULT_KINDS",
    "DEFAULT_METRICS",
    "KINDS",
    "LATENTS",
    "POSTERIOR_SPACE",
    "Encoding",
    "RepresentationKind",
    "encode",
    "evaluate",
    "evaluating",
    "factor_sets",
    "factor_vae_fresh",
    "kl_divergences",
    "latent_layer",
    "latent_type",
    "log_importance_weights",
    "representation",
    "resolve_kind",
    "sample_encoded",
    "summarise_kl",
]
