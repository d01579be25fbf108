"""MeanFieldELBO is TraceMeanField_ELBO: the same value and gradients, its parts kept apart."""

import pyro
import pytest
import torch
from pyro.infer import TraceMeanField_ELBO

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
