"""An encoder with noisy layers, priors and a task head, assembled into a Pyro (model, guide) pair.

The network is the guide; the model is the priors plus the task likelihood::

    guide(x, y):  z_1 ~ q(z_1 | x), ..., z_L ~ q(z_L | ...)          (the encoder, run once)
    model(x, y):  z_l ~ p(z_l) for every l;  y ~ p(y | head(z_L))

With the KLs of :mod:`infodropout.models.kl` registered, ``TraceMeanField_ELBO`` gives, per example,

    -ELBO = E_q[-log p(y | z_L)] + beta * sum_l KL(q(z_l | .) || p(z_l))

the Information Bottleneck Lagrangian (Achille & Soatto, Eq. 2); for a reconstruction task with
beta = 1 it is the negative ELBO of a VAE. Both sides read ``beta`` from the same place, and both run
in the same ``pyro.plate("data", num_data, subsample=...)``, so minibatches are scaled by N / B.
"""

import contextlib
import math
import numbers
from collections.abc import Sequence
from dataclasses import dataclass

import pyro
import pyro.distributions as dist
import pyro.poutine as poutine
import torch
from pyro.params.param_store import param_with_module_name
from pyro.poutine.messenger import Messenger
from torch import nn
from torch.distributions import constraints

from infodropout.guides.layers import NoisyLayer, sampling
from infodropout.guides.noise import drawing

from .kl import elementwise, kl_or_estimate, loguniform_kl
from .likelihoods import Likelihood, make_likelihood
from .priors import KL_CONVENTIONS, LogUniformPrior, Prior, check_kl_convention, check_prior, default_prior, make_prior

#: Name of the site that carries the representation to the model when it is not a latent site.
REPRESENTATION = "representation"
#: Name of the observed site.
TARGET = "y"
#: Name of the data plate.
DATA_PLATE = "data"


@dataclass(frozen=True)
class Layout:
    """What the guide emits for inputs of one shape: latent sites in order, and the representation.

    ``representation_shape`` is None when the encoder returns the value of its last latent site;
    otherwise the representation reaches the model through a site named :data:`REPRESENTATION`.
    """

    sites: tuple[tuple[str, torch.Size], ...]
    representation_shape: torch.Size | None


class _TensorScale(Messenger):
    """``poutine.scale`` by a 0-dim tensor beta, which may be 0 (a warm-up in a CUDA graph) and is checked
    to be >= 0 where it is set. Pyro's own messenger checks ``scale > 0`` on every call when validation
    is on: a host synchronisation, and an error at the start of a warm-up."""

    def __init__(self, scale: torch.Tensor):
        super().__init__()
        self.scale = scale

    def _process_message(self, msg) -> None:
        msg["scale"] = self.scale * msg["scale"]


class _Shared:
    """State that the model and the guide read alike: beta, the data size, the site layouts, the name."""

    def __init__(self, beta, num_data, name, encoder):
        self.beta = beta
        self.num_data = num_data
        self.name = name  # None: a default name, claimed at the first registration
        self.explicit_name = name is not None
        self.register_params = True
        self.encoder = encoder  # not a submodule of the model: a plain reference
        self.layers: dict[str, NoisyLayer] = {}  # the latent layers, by site
        self.layouts: dict[tuple, Layout] = {}
        self.on_new_layout = None  # called with each newly traced layout (the model checks its priors)
        self._indices: dict[tuple, torch.Tensor] = {}

    def check_batch(self, x: torch.Tensor) -> None:
        """One-line errors for a batch the ELBO cannot take: no examples, more examples than ``num_data``."""
        if not isinstance(x, torch.Tensor) or x.dim() == 0:
            raise ValueError(f"x: expected a batch tensor (B, ...), got {type(x).__name__} {getattr(x, 'shape', '')}")
        batch = x.shape[0]
        if batch == 0:
            raise ValueError("x: a batch of 0 examples; the ELBO needs at least one")
        if self.num_data is not None and batch > self.num_data:
            raise ValueError(
                f"num_data={self.num_data} is smaller than the batch of {batch} examples: num_data is the "
                "training-set size N (each term is scaled by N / B)"
            )

    def check_noise(self) -> None:
        """The guide's sites exist only with the noise on: say so where a latent layer has it off."""
        for site, layer in self.layers.items():
            if not layer.noisy:
                raise ValueError(
                    f"the guide's layer {site!r} has its noise off (evaluation mode): the ELBO needs the noise on; "
                    "call ib.train() or run it under infodropout.guides.sampling(True)"
                )

    def register(self, side: str, module: nn.Module) -> None:
        """``pyro.module(f"{name}.{side}", module)`` under a name whose param-store entries are this model's.

        A default name is the first of ``ib``, ``ib_1``, ``ib_2``, ... that no other model holds in
        Pyro's param store (claimed again if the store was cleared and another model took it); an
        explicit name held by another model is an error, not a silent sharing of parameters.
        """
        if self.name is None or (not self.explicit_name and self._held_by_another(side, module)):
            self.name = _free_name()
        elif self._held_by_another(side, module):
            raise ValueError(
                f"InformationBottleneck(name={self.name!r}): Pyro's param store holds parameters of that name from "
                "another model; give each model its own name= (or call pyro.clear_param_store())"
            )
        pyro.module(f"{self.name}.{side}", module)

    def _held_by_another(self, side: str, module: nn.Module) -> bool:
        store = pyro.get_param_store()
        prefix = f"{self.name}.{side}"
        for param_name, param in module.named_parameters():
            full = param_with_module_name(prefix, param_name)
            if param.requires_grad and full in store and store[full]._cdata != param._cdata:
                return True
        return False

    def plate(self, batch_size: int, device: torch.device):
        """``pyro.plate("data", N, subsample=...)``: scales every term by N / B (none if N is None)."""
        key = (batch_size, device)
        indices = self._indices.get(key)
        if indices is None:
            indices = self._indices[key] = torch.arange(batch_size, device=device)
        size = batch_size if self.num_data is None else self.num_data
        return pyro.plate(DATA_PLATE, size, subsample=indices, device=device)

    def kl_scale(self):
        """``poutine.scale(beta)`` around the noisy sites (``poutine.mask(False)`` when beta is 0)."""
        beta = self.beta
        if isinstance(beta, torch.Tensor):
            return _TensorScale(beta)
        if beta > 0:
            return poutine.scale(scale=beta)
        return poutine.mask(mask=False)

    def layout(self, x: torch.Tensor) -> Layout:
        """The layout for inputs shaped like ``x``: found by tracing the encoder once, then cached.

        The trace runs on ``x[:1]`` without gradients, in evaluation mode (no batch-norm updates)
        with noise forced on and drawn plainly (for that one row, whatever
        :func:`~infodropout.guides.noise.drawing` installed) and the random number generator left untouched.
        """
        key = tuple(x.shape[1:])
        layout = self.layouts.get(key)
        if layout is None:
            layout = _trace_layout(self.encoder, x[:1])
            if self.on_new_layout is not None:
                self.on_new_layout(layout)
            self.layouts[key] = layout
        return layout


def _free_name(base: str = "ib") -> str:
    """The first of ``base``, ``base_1``, ``base_2``, ... with no entry in Pyro's param store."""
    keys = tuple(pyro.get_param_store().keys())
    for i in range(len(keys) + 1):
        name = base if i == 0 else f"{base}_{i}"
        if not any(k.startswith((f"{name}.guide$$$", f"{name}.model$$$")) for k in keys):
            return name
    raise AssertionError("unreachable: fewer names are taken than there are keys")


def _trace_layout(encoder: nn.Module, x: torch.Tensor) -> Layout:
    modes = [(m, m.training) for m in encoder.modules()]
    devices = [x.device] if x.device.type == "cuda" else []
    try:
        encoder.eval()
        with torch.no_grad(), sampling(True), drawing(None), torch.random.fork_rng(devices=devices), poutine.block():
            trace = poutine.trace(encoder).get_trace(x)
    finally:
        for module, training in modes:
            module.training = training
    out = trace.nodes["_RETURN"]["value"]
    sites = tuple(
        (name, site["fn"].event_shape)
        for name, site in trace.nodes.items()
        if site["type"] == "sample" and not site["is_observed"]
    )
    if not isinstance(out, torch.Tensor):
        raise ValueError(f"the encoder returned {type(out).__name__}: expected one tensor, the representation")
    if sites and trace.nodes[sites[-1][0]]["value"] is out:
        return Layout(sites, None)
    return Layout(sites, out.shape[1:])


class BottleneckGuide(nn.Module):
    """q: the encoder, run once, with its noisy sites scaled by beta inside the data plate."""

    def __init__(self, encoder: nn.Module, shared: _Shared):
        super().__init__()
        self.encoder = encoder
        self._shared = shared

    def forward(self, x: torch.Tensor, y: torch.Tensor | None = None) -> torch.Tensor:
        shared = self._shared
        shared.check_batch(x)
        shared.check_noise()
        if shared.register_params:
            shared.register("guide", self)
        layout = shared.layout(x)
        with shared.plate(x.shape[0], x.device), shared.kl_scale():
            z = self.encoder(x)
            if layout.representation_shape is not None:
                z = pyro.sample(REPRESENTATION, dist.Delta(z, event_dim=z.dim() - 1))
        return z


class BottleneckModel(nn.Module):
    """p: a prior on every noisy site (scaled by beta) and the task likelihood on the head's output."""

    def __init__(self, priors: dict[str, Prior], head: nn.Module, likelihood: Likelihood, reconstruct: bool, shared):
        super().__init__()
        self.site_names = tuple(priors)
        self.priors = nn.ModuleList(priors.values())
        self.head = head
        self.likelihood = likelihood
        self.reconstruct = reconstruct
        self._shared = shared
        self._index = {name: i for i, name in enumerate(self.site_names)}

    def prior(self, site: str, batch_shape: torch.Size, event_shape: torch.Size):
        """p(z) at ``site`` with the given batch and event shapes."""
        return self.priors[self._index[site]](batch_shape, event_shape)

    def check_layout(self, layout: Layout) -> None:
        """Every prior against the event shape of its site in ``layout`` (one-line ``ValueError``)."""
        for site, event_shape in layout.sites:
            if site in self._index:
                check_prior(self.priors[self._index[site]], site, self._shared.layers[site], event_shape)

    def forward(self, x: torch.Tensor, y: torch.Tensor | None = None) -> torch.Tensor:
        shared = self._shared
        shared.check_batch(x)
        if shared.register_params:
            shared.register("model", self)
        if y is None and self.reconstruct:
            y = x
        layout = shared.layout(x)
        batch = torch.Size((x.shape[0],))
        with shared.plate(x.shape[0], x.device):
            with shared.kl_scale():
                z = None
                for name, event_shape in layout.sites:
                    z = pyro.sample(name, self.prior(name, batch, event_shape))
                if layout.representation_shape is not None:
                    flat = dist.ImproperUniform(constraints.real, batch, layout.representation_shape)
                    z = pyro.sample(REPRESENTATION, flat)
            return pyro.sample(TARGET, self.likelihood(self.head(z)), obs=y)


class InformationBottleneck(nn.Module):
    r"""
    An encoder whose noisy layers are Pyro latent variables, priors on them, and a task head, as a
    Pyro ``model`` and ``guide`` (both ``nn.Module``\ s taking ``(x, y=None)``)::

        ib = InformationBottleneck(encoder, head, "categorical", beta=1e-3, num_data=60000)
        svi = pyro.infer.SVI(ib.model, ib.guide, pyro.optim.Adam({"lr": 1e-3}), TraceMeanField_ELBO())
        svi.step(x_batch, y_batch)

    or, with plain PyTorch optimisers::

        loss_fn = TraceMeanField_ELBO()(ib.model, ib.guide)          # an nn.Module
        optim = torch.optim.Adam(loss_fn.parameters())

    ``-ELBO / num_data`` estimates the per-example loss ``E_q[-log p(y|z)] + beta * sum_l KL_l``.

    :param nn.Module encoder: maps ``x`` to the representation; contains the noisy layers. Latent
        layers without a ``name`` are named after their module path.
    :param nn.Module head: maps the representation to the likelihood's parameters (logits ...).
    :param likelihood: ``"categorical"``, ``"bernoulli"``, ``"gaussian"`` or a :class:`Likelihood`.
    :param priors: None (the paper's default for each layer), a prior name for every layer, or a dict
        from site name to a prior name or :class:`~infodropout.models.priors.Prior` module.
    :param float beta: weight of the KL term per example (Eq. 2's beta), >= 0.
    :param int num_data: the training set size N (minibatches are scaled by N / B), or None for
        no scaling (the loss of one batch).
    :param input_shape: shape of one input ``(C, H, W)``; needed by priors with one factor per unit.
        With it, the encoder is tried on one input and every prior checked against its site's shape.
    :param bool reconstruct: the target is the input (``y`` defaults to ``x``).
    :param str name: prefix of the parameters in Pyro's param store; None (default): ``ib``, or
        ``ib_1``, ``ib_2``, ... where another model already holds that name, so that several models
        train side by side under stock SVI.
    :param str kl_convention: how every log-uniform prior charges a unit that is off: ``"exact"`` (its
        KL divergence, 0) or ``"authors"`` (``-log(alpha / max_alpha)``, as the authors' code).
    """

    def __init__(
        self,
        encoder: nn.Module,
        head: nn.Module,
        likelihood: str | Likelihood = "categorical",
        priors=None,
        beta: float = 1.0,
        num_data: int | None = None,
        input_shape=None,
        reconstruct: bool = False,
        name: str | None = None,
        kl_convention: str = "exact",
    ):
        super().__init__()
        likelihood = make_likelihood(likelihood)
        kl_convention = check_kl_convention(kl_convention)
        self._shared = _Shared(_check_beta(beta), _check_num_data(num_data), _check_name(name), encoder)
        layers = self._shared.layers = _name_latent_layers(encoder)
        shapes = {}
        if input_shape is not None:
            input_shape = _check_input_shape(input_shape)
            probe = torch.zeros((1, *input_shape), device=_device_of(encoder))
            try:
                layout = self._shared.layout(probe)
            except RuntimeError as err:
                reason = str(err).strip().splitlines()[0][:200] if str(err).strip() else type(err).__name__
                raise ValueError(
                    f"input_shape={input_shape}: the encoder cannot take one input of this shape ({reason})"
                ) from None
            shapes = dict(layout.sites)
        self.guide = BottleneckGuide(encoder, self._shared)
        self.model = BottleneckModel(_build_priors(priors, layers, shapes), head, likelihood, reconstruct, self._shared)
        self._shared.on_new_layout = self.model.check_layout
        self.kl_convention = kl_convention

    @property
    def encoder(self) -> nn.Module:
        return self.guide.encoder

    @property
    def head(self) -> nn.Module:
        return self.model.head

    @property
    def likelihood(self) -> Likelihood:
        return self.model.likelihood

    @property
    def beta(self):
        """The KL weight per example; setting it changes the model and the guide together."""
        return self._shared.beta

    @beta.setter
    def beta(self, value):
        self._shared.beta = _check_beta(value)

    @property
    def num_data(self) -> int | None:
        return self._shared.num_data

    @num_data.setter
    def num_data(self, value):
        self._shared.num_data = _check_num_data(value)

    @property
    def latent_sites(self) -> tuple[str, ...]:
        """Names of the latent noisy sites (those with a prior)."""
        return self.model.site_names

    @property
    def name(self) -> str | None:
        """The prefix of this model's entries in Pyro's param store (None until first registered)."""
        return self._shared.name

    @property
    def kl_convention(self) -> str:
        """How the log-uniform priors charge units that are off (``"exact"`` or ``"authors"``); setting it
        sets every log-uniform prior of the bottleneck."""
        return self._kl_convention

    @kl_convention.setter
    def kl_convention(self, value: str) -> None:
        self._kl_convention = check_kl_convention(value)
        for prior in self.model.priors:
            if isinstance(prior, LogUniformPrior):
                prior.convention = value

    @property
    def loguniform_sites(self) -> tuple[str, ...]:
        """The latent sites whose prior is log-uniform (where the KL convention matters)."""
        pairs = zip(self.model.site_names, self.model.priors, strict=True)
        return tuple(site for site, prior in pairs if isinstance(prior, LogUniformPrior))

    @contextlib.contextmanager
    def unregistered(self):
        """Skip registering parameters in Pyro's param store (for training with ``torch.optim``)."""
        before = self._shared.register_params
        self._shared.register_params = False
        try:
            yield self
        finally:
            self._shared.register_params = before

    def representation(self, x: torch.Tensor, num_samples: int = 0) -> torch.Tensor:
        """The encoder's output with noise off (``num_samples=0``) or ``num_samples`` noisy copies."""
        with poutine.block():
            if num_samples == 0:
                with sampling(False):
                    return self.encoder(x)
            with sampling(True):
                return torch.stack([self.encoder(x) for _ in range(num_samples)])

    @torch.no_grad()
    def predict(self, x: torch.Tensor, num_samples: int = 0) -> torch.Tensor:
        """The mean of the target (class probabilities for a classifier) in the current mode.

        With ``num_samples=0`` the noise is off (z = f(x), the median); otherwise the prediction is
        averaged over ``num_samples`` draws of the noise.
        """
        with poutine.block():
            if num_samples == 0:
                return self.likelihood.mean(self.head(self.representation(x)))
            z = self.representation(x, num_samples)  # (S, B, ...)
            means = [self.likelihood.mean(self.head(zs)) for zs in z]
            return torch.stack(means).mean(0)

    def information(self, x: torch.Tensor, kl_convention: str | None = None) -> dict[str, torch.Tensor]:
        """KL(q(z_l | x) || p(z_l)) per example, in nats, for every latent site: ``{site: (B,)}``.

        Computed in the current train/eval mode with noise on; neither beta nor N/B scales it. The
        log-uniform priors charge units that are off under ``kl_convention`` (None: the bottleneck's
        own). Where no KL is registered for a prior, it is the one-sample Monte Carlo estimate
        ``log q(z) - log p(z)`` at the sampled ``z`` (unbiased; average over examples or draws).
        """
        convention = self.kl_convention if kl_convention is None else check_kl_convention(kl_convention)
        return self.information_by_convention(x, (convention,))[convention]

    def information_by_convention(
        self, x: torch.Tensor, conventions: Sequence[str] = KL_CONVENTIONS
    ) -> dict[str, dict[str, torch.Tensor]]:
        """:meth:`information` under each KL convention, from one draw of the noise:
        ``{convention: {site: (B,)}}``. Sites without a log-uniform prior have the same value under all."""
        conventions = tuple(check_kl_convention(c) for c in conventions)
        with poutine.block(), sampling(True):
            trace = poutine.trace(self.encoder).get_trace(x)
        batch = torch.Size((x.shape[0],))
        out: dict[str, dict[str, torch.Tensor]] = {c: {} for c in conventions}
        for name, prior in zip(self.model.site_names, self.model.priors, strict=True):
            site = trace.nodes.get(name)
            if site is None:
                continue
            q = site["fn"]
            if isinstance(prior, LogUniformPrior):  # every convention from the same draw of the noise
                base, event_dims = elementwise(q)
                for c in conventions:
                    kl = loguniform_kl(base, c)  # (B, *event)
                    out[c][name] = kl.sum(tuple(range(-event_dims, 0))) if event_dims else kl
                continue
            kl, _ = kl_or_estimate(q, prior(batch, q.event_shape), value=site["value"])
            for c in conventions:
                out[c][name] = kl
        return out


def _check_beta(beta):
    """A finite number >= 0 (NumPy scalars included) as a float, or a 0-dim tensor checked once."""
    if isinstance(beta, torch.Tensor):
        if beta.dim() != 0:
            raise ValueError(f"beta: expected a number or a 0-dim tensor, got shape {tuple(beta.shape)}")
        value = beta.detach()
        if not bool(torch.isfinite(value) & (value >= 0)):  # once, where beta is set (a schedule fills it in place)
            raise ValueError(f"beta={beta.item()!r}: expected a finite number >= 0")
        return beta
    if isinstance(beta, bool) or not isinstance(beta, numbers.Real) or not (math.isfinite(beta) and beta >= 0):
        raise ValueError(f"beta={beta!r}: expected a finite number >= 0")
    return float(beta)


def _check_num_data(num_data):
    """None, or a positive integer (NumPy integers included) as an int."""
    if num_data is None:
        return None
    if isinstance(num_data, bool) or not isinstance(num_data, numbers.Integral) or not num_data > 0:
        raise ValueError(f"num_data={num_data!r}: expected a positive integer or None")
    return int(num_data)


def _check_name(name):
    if name is not None and not (isinstance(name, str) and name and "$$$" not in name):
        raise ValueError(f"name={name!r}: expected None or a non-empty string without '$$$'")
    return name


def _check_input_shape(input_shape) -> tuple[int, ...]:
    """The shape of one input as a tuple of positive ints (e.g. ``(1, 28, 28)``), else ``ValueError``."""
    ok = isinstance(input_shape, Sequence) and not isinstance(input_shape, str)
    ok = ok and all(isinstance(s, numbers.Integral) and not isinstance(s, bool) and s > 0 for s in input_shape)
    if not ok:
        raise ValueError(
            f"input_shape={input_shape!r}: expected the shape of one input as a sequence of positive integers, "
            "e.g. (1, 28, 28) or (784,)"
        )
    return tuple(int(s) for s in input_shape)


def _device_of(module: nn.Module) -> torch.device:
    for tensor in module.parameters():
        return tensor.device
    return torch.device("cpu")


def _name_latent_layers(encoder: nn.Module) -> dict[str, NoisyLayer]:
    layers: dict[str, NoisyLayer] = {}
    for path, module in encoder.named_modules():
        if isinstance(module, NoisyLayer) and module.is_latent:
            if module.name is None:
                module.name = path or "z"
            if module.name in layers or module.name in (REPRESENTATION, TARGET, DATA_PLATE):
                raise ValueError(f"encoder: site name {module.name!r} is used twice (at {path!r})")
            layers[module.name] = module
    return layers


def _build_priors(priors, layers: dict[str, NoisyLayer], shapes: dict) -> dict[str, Prior]:
    if priors is None or isinstance(priors, (str, Prior)):
        if isinstance(priors, Prior) and len(layers) != 1:
            raise ValueError(f"priors: one Prior module for {len(layers)} latent sites; give a dict {{site: prior}}")
        spec = {site: priors for site in layers}
    elif isinstance(priors, dict):
        unknown = set(priors) - set(layers)
        if unknown:
            raise ValueError(f"priors: unknown site(s) {sorted(unknown)}; the latent sites are {list(layers)}")
        spec = {site: priors.get(site) for site in layers}
    else:
        raise ValueError(f"priors={priors!r}: expected None, a prior name, a Prior or a dict {{site: prior}}")
    built = {}
    for site, layer in layers.items():
        choice = spec[site]
        event_shape = shapes.get(site)
        if isinstance(choice, Prior):
            check_prior(choice, site, layer, event_shape)
            built[site] = choice
        else:
            built[site] = make_prior(choice or default_prior(layer), site, layer, event_shape)
    return built
