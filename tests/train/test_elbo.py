"""MeanFieldELBO is TraceMeanField_ELBO: the same value and gradients, its parts kept apart."""

import math

import pyro
import pyro.distributions as dist
import pytest
import torch
from pyro.infer import TraceMeanField_ELBO
from torch.distributions import kl_divergence

from infodropout.models import Prior, register_prior, unregister_prior
from infodropout.models.zoo import build_network
from infodropout.train.bench import handwritten_loss
from infodropout.train.elbo import MeanFieldELBO
from infodropout.train.engine import training_context

from common import assert_close


@pytest.mark.parametrize(
    "arch, shape, options",
    [
        ("mlp", (1, 8, 8), dict(hidden=(16, 12), activation="relu")),
        ("mlp", (1, 8, 8), dict(hidden=(16, 12), activation="softplus", prior="factorised")),
        ("mlp", (1, 8, 8), dict(hidden=(16,), dropout="binary")),
        ("allcnn32", (3, 16, 16), dict(width=0.05)),
        ("vae", (1, 8, 8), dict(hidden=(20,), z_dim=3, latent="gaussian")),
        ("vae", (1, 8, 8), dict(hidden=(20,), z_dim=3, latent="information", prior="correlated")),
    ],
)
def test_mean_field_elbo_equals_pyros(arch, shape, options):
    torch.manual_seed(0)
    ib = build_network(arch, shape, 4, beta=0.3, num_data=100, **options).double()
    x = torch.rand(6, *shape, dtype=torch.float64)
    y = None if arch == "vae" else torch.randint(0, 4, (6,))
    params = list(ib.parameters())
    torch.manual_seed(1)
    expected = TraceMeanField_ELBO().differentiable_loss(ib.model, ib.guide, x, y)
    g_expected = torch.autograd.grad(expected, params, allow_unused=True)
    torch.manual_seed(1)
    terms = MeanFieldELBO().terms(ib.model, ib.guide, x, y)
    g_terms = torch.autograd.grad(terms.loss, params, allow_unused=True)
    assert_close(terms.loss, expected, rtol=1e-12, atol=1e-10)
    for a, b in zip(g_terms, g_expected, strict=True):
        if a is None or b is None:
            assert a is None and b is None
        else:
            assert_close(a, b, rtol=1e-10, atol=1e-12)
    # the parts: loss = N/B * (nll + beta * sum of KLs)
    assert set(terms.kl) >= set(ib.latent_sites)
    recombined = 100 / 6 * (terms.nll + 0.3 * sum(terms.kl[s] for s in ib.latent_sites))
    assert_close(terms.loss, recombined, rtol=1e-12, atol=1e-10)


def test_it_trains_with_stock_svi_too():
    torch.manual_seed(0)
    ib = build_network("mlp", (1, 8, 8), 4, hidden=(8,), beta=0.1, num_data=50)
    x, y = torch.rand(10, 1, 8, 8), torch.randint(0, 4, (10,))
    svi = pyro.infer.SVI(ib.model, ib.guide, pyro.optim.Adam({"lr": 1e-2}), MeanFieldELBO())
    losses = [svi.step(x, y) for _ in range(30)]
    assert losses[-1] < losses[0]


def test_more_particles_are_refused():
    with pytest.raises(ValueError, match="num_particles"):
        MeanFieldELBO(num_particles=2)


@pytest.mark.parametrize("name, shape", [("mlp", (1, 28, 28)), ("allcnn32", (3, 32, 32))])
def test_the_benchmark_compares_the_same_computation(name, shape):
    """The hand-written step of the benchmark computes exactly the project's per-example loss."""
    from infodropout.train.bench import MODELS, NUM_DATA

    arch, _, _, options = MODELS[name]
    options = dict(options, hidden=(32, 24, 16)) if name == "mlp" else dict(width=0.1)
    torch.manual_seed(0)
    ib = build_network(arch, shape, 10, beta=3 / NUM_DATA, num_data=NUM_DATA, **options).double()
    x, y = torch.randn(4, *shape, dtype=torch.float64), torch.randint(0, 10, (4,))
    torch.manual_seed(5)
    with training_context(ib):
        ours = MeanFieldELBO().terms(ib.model, ib.guide, x, y).loss / NUM_DATA
    torch.manual_seed(5)
    hand = handwritten_loss(name, ib, x, y)
    assert_close(ours, hand, rtol=1e-10, atol=1e-12)


class _LogLaplacePrior(Prior):
    """A plug-in prior with no registered KL: ``log z ~ Laplace(loc, scale)`` per unit."""

    def __init__(self, loc=0.3, scale=0.8):
        super().__init__()
        self.loc = torch.nn.Parameter(torch.tensor(loc, dtype=torch.float64))
        self.log_scale = torch.nn.Parameter(torch.tensor(math.log(scale), dtype=torch.float64))

    def forward(self, batch_shape, event_shape):
        shape = torch.Size(batch_shape) + torch.Size(event_shape)
        log_z = dist.Laplace(self.loc.expand(shape), self.log_scale.exp().expand(shape))
        return dist.TransformedDistribution(log_z, dist.transforms.ExpTransform()).to_event(len(event_shape))


def _kl_normal_laplace(m, s, mu, b):
    """KL(Normal(m, s^2) || Laplace(mu, b)) in closed form (the Jacobians of exp cancel on log z)::

    -1/2 log(2 pi e s^2) + log(2 b) + E|X - mu| / b,   E|X - mu| = s sqrt(2/pi) exp(-d^2 / 2s^2) + d erf(d / s sqrt 2)
    """
    d = m - mu
    mean_abs = s * math.sqrt(2 / math.pi) * torch.exp(-(d**2) / (2 * s**2)) + d * torch.erf(d / (s * math.sqrt(2)))
    return -0.5 * torch.log(2 * math.pi * math.e * s**2) + math.log(2 * b) + mean_abs / b


@pytest.fixture
def log_laplace():
    register_prior("log-laplace", lambda site, layer, event_shape: _LogLaplacePrior())
    yield "log-laplace"
    unregister_prior("log-laplace")


def test_a_plugin_prior_without_a_registered_kl_is_estimated_by_monte_carlo(log_laplace):
    """The ELBO's fallback ``log q(z) - log p(z)`` at the sampled z: its mean over many draws is the closed-form KL."""
    from infodropout.guides import MLPEncoder
    from infodropout.models import InformationBottleneck, LinearHead

    torch.manual_seed(0)
    enc = MLPEncoder(5, (6,), activation="softplus")
    ib = InformationBottleneck(enc, LinearHead(6, 3), priors=log_laplace, beta=0.5, input_shape=(5,)).double()
    x0 = torch.randn(4, 5, dtype=torch.float64)
    layer, prior = enc.layers[0], ib.model.priors[0]
    with torch.no_grad():
        m, s = torch.log(torch.nn.functional.softplus(layer.f_head(x0))), layer.alpha(x0)  # (4, 6)
        closed = _kl_normal_laplace(m, s, prior.loc, prior.log_scale.exp().item()).sum(-1)  # (4,)
    with pytest.raises(NotImplementedError):  # nothing registered: the fallback is what runs
        kl_divergence(layer.distribution(x0).to_event(1), prior(torch.Size((4,)), torch.Size((6,))))
    repeats = 5000
    x, y = x0.repeat(repeats, 1), torch.zeros(4 * repeats, dtype=torch.long)
    with torch.no_grad():
        per_example = ib.information(x).get("z1").reshape(repeats, 4)  # one draw each
        terms = MeanFieldELBO().terms(ib.model, ib.guide, x, y)
    mean, se = per_example.mean(0), per_example.std(0) / math.sqrt(repeats)
    assert ((mean - closed).abs() < 4 * se).all(), (mean, closed, se)
    total_se = se.square().sum().sqrt()  # of the sum over the 4 inputs
    assert (terms.kl["z1"] / repeats - closed.sum()).abs() < 4 * total_se
    assert_close(terms.loss, terms.nll + 0.5 * terms.kl["z1"], rtol=1e-12, atol=1e-9)
    # and the same prior trains under stock TraceMeanField_ELBO, whose fallback is the same estimate
    svi = pyro.infer.SVI(ib.model, ib.guide, pyro.optim.Adam({"lr": 1e-2}), TraceMeanField_ELBO())
    losses = [svi.step(x0, y[:4]) for _ in range(60)]
    assert sum(losses[-10:]) < sum(losses[:10])
