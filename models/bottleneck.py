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
from dataclasses import dataclass

import pyro
import pyro.distributions as dist
import pyro.poutine as poutine
import torch
from pyro.poutine.messenger import Messenger
from torch import nn
from torch.distributions import constraints, kl_divergence

from infodropout.guides.layers import NoisyLayer, sampling

from . import kl as _kl  # noqa: F401  (registers the analytic KLs)
from .likelihoods import Likelihood, make_likelihood
from .priors import Prior, default_prior, make_prior

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
    """State that the model and the guide read alike: beta, the data size, the site layouts."""

    def __init__(self, beta, num_data, name, encoder):
        self.beta = beta
        self.num_data = num_data
        self.name = name
        self.register_params = True
        self.encoder = encoder  # not a submodule of the model: a plain reference
        self.layouts: dict[tuple, Layout] = {}
        self._indices: dict[tuple, torch.Tensor] = {}

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
        with noise forced on and the random number generator left untouched.
        """
        key = tuple(x.shape[1:])
        layout = self.layouts.get(key)
        if layout is None:
            layout = self.layouts[key] = _trace_layout(self.encoder, x[:1])
        return layout


def _trace_layout(encoder: nn.Module, x: torch.Tensor) -> Layout:
    modes = [(m, m.training) for m in encoder.modules()]
    devices = [x.device] if x.device.type == "cuda" else []
    try:
        encoder.eval()
        with torch.no_grad(), sampling(True), torch.random.fork_rng(devices=devices), poutine.block():
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
        if shared.register_params:
            pyro.module(f"{shared.name}.guide", self)
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

    def forward(self, x: torch.Tensor, y: torch.Tensor | None = None) -> torch.Tensor:
        shared = self._shared
        if shared.register_params:
            pyro.module(f"{shared.name}.model", self)
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
    :param bool reconstruct: the target is the input (``y`` defaults to ``x``).
    :param str name: prefix of the parameters in Pyro's param store.
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
        name: str = "ib",
    ):
        super().__init__()
        likelihood = make_likelihood(likelihood)
        self._shared = _Shared(_check_beta(beta), _check_num_data(num_data), name, encoder)
        layers = _name_latent_layers(encoder)
        shapes = {}
        if input_shape is not None:
            probe = torch.zeros((1, *input_shape), device=_device_of(encoder))
            layout = self._shared.layout(probe)
            shapes = dict(layout.sites)
        self.guide = BottleneckGuide(encoder, self._shared)
        self.model = BottleneckModel(_build_priors(priors, layers, shapes), head, likelihood, reconstruct, self._shared)

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

    def information(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        """KL(q(z_l | x) || p(z_l)) per example, in nats, for every latent site: ``{site: (B,)}``.

        Computed in the current train/eval mode with noise on; neither beta nor N/B scales it.
        """
        with poutine.block(), sampling(True):
            trace = poutine.trace(self.encoder).get_trace(x)
        batch = torch.Size((x.shape[0],))
        out = {}
        for name in self.latent_sites:
            site = trace.nodes.get(name)
            if site is not None:
                q = site["fn"]
                out[name] = kl_divergence(q, self.model.prior(name, batch, q.event_shape))
        return out


def _check_beta(beta):
    if isinstance(beta, torch.Tensor):
        if beta.dim() != 0:
            raise ValueError(f"beta: expected a number or a 0-dim tensor, got shape {tuple(beta.shape)}")
        if not bool(beta.detach() >= 0):  # once, where beta is set (a schedule updates it in place)
            raise ValueError(f"beta={beta.item()!r}: expected a number >= 0")
        return beta
    if not (isinstance(beta, (int, float)) and beta >= 0):
        raise ValueError(f"beta={beta!r}: expected a number >= 0")
    return float(beta)


def _check_num_data(num_data):
    if num_data is not None and not (isinstance(num_data, int) and num_data > 0):
        raise ValueError(f"num_data={num_data!r}: expected a positive integer or None")
    return num_data


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
            choice.check(site, layer, event_shape)
            built[site] = choice
        else:
            built[site] = make_prior(choice or default_prior(layer), site, layer, event_shape)
    return built
