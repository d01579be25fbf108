"""A prior of a user's own without a registered KL works in every measure: the per-layer information of a
classifier and the information per position are its Monte Carlo KL, which must agree with the analytic KL
of the same prior registered by the project (the per-layer log-normal prior, written as a plug-in)."""

import pyro.distributions as dist
import pytest
import torch
from torch import nn
from torch.distributions.transforms import ExpTransform

from infodropout.models import Prior, register_prior, unregister_prior
from infodropout.models.zoo import build_network
from infodropout.train.evaluation import classifier_measures, evaluating, information_maps


class PlainLogNormal(Prior):
    """``log z ~ Normal(loc, scale)`` per layer, as a TransformedDistribution: no KL is registered for it."""

    def __init__(self):
        super().__init__()
        self.loc = nn.Parameter(torch.tensor(0.3))
        self.log_scale = nn.Parameter(torch.tensor(-0.2))

    def forward(self, batch_shape, event_shape):
        shape = batch_shape + event_shape
        log_z = dist.Normal(self.loc.expand(shape), self.log_scale.exp().expand(shape))
        return dist.TransformedDistribution(log_z, ExpTransform()).to_event(len(event_shape))


@pytest.fixture
def plain_log_normal():
    register_prior("plain-log-normal", lambda site, layer, event_shape: PlainLogNormal())
    yield "plain-log-normal"
    unregister_prior("plain-log-normal")


def twins(arch, shape, plugin, **options):
    """The same network twice: with the plug-in prior and with the registered log-normal prior (analytic
    KL), the prior's parameters equal."""
    torch.manual_seed(0)
    mc = build_network(arch, shape, 10, prior=plugin, activation="softplus", **options)
    torch.manual_seed(0)
    exact = build_network(arch, shape, 10, prior="log-normal", activation="softplus", **options)
    with torch.no_grad():
        for a, b in zip(mc.model.priors, exact.model.priors, strict=True):
            b.loc.fill_(float(a.loc)), b.log_scale.fill_(float(a.log_scale))
    return mc, exact


def test_a_classifiers_information_per_layer_under_a_plugin_prior_is_its_monte_carlo_kl(plain_log_normal):
    mc, exact = twins("mlp", (1, 8, 8), plain_log_normal, hidden=(32, 16))
    x = torch.rand(4000, 1, 8, 8, generator=torch.Generator().manual_seed(1))
    batches = [(x[i : i + 500], torch.zeros(500, dtype=torch.long)) for i in range(0, 4000, 500)]
    measured = {}
    for name, ib in (("mc", mc), ("exact", exact)):
        torch.manual_seed(2)  # the same noise for both
        with evaluating(ib):
            measured[name] = classifier_measures(ib, batches)["test_kl"]
    assert measured["mc"].keys() == {"z1", "z2"}
    for site, kl in measured["exact"].items():
        assert measured["mc"][site] == pytest.approx(kl, rel=0.03)  # one draw per example, 4000 examples


def test_information_per_position_under_a_plugin_prior_is_its_monte_carlo_kl(plain_log_normal):
    mc, exact = twins("allcnn96", (1, 96, 96), plain_log_normal, width=1 / 16)
    x = torch.randn(3, 1, 96, 96, generator=torch.Generator().manual_seed(1))
    maps = {}
    for name, ib in (("mc", mc), ("exact", exact)):
        torch.manual_seed(2)  # the same noise for both; the Monte Carlo draws come after it
        with evaluating(ib):
            maps[name] = information_maps(ib, x)
    for site, m in maps["exact"].items():
        assert maps["mc"][site].shape == m.shape
        total_mc, total = maps["mc"][site].sum((1, 2)), m.sum((1, 2))  # (B,): the layer's KL per image
        torch.testing.assert_close(total_mc, total, rtol=0.02, atol=0.0)
