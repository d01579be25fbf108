import pytest
import torch
from torch import nn
from torch.distributions import MultivariateNormal

from infodropout.guides import GaussianLatent, InformationDropout, noisy_linear
from infodropout.models.priors import (
    PRIORS,
    CorrelatedLogNormalPrior,
    LogNormalPrior,
    LogUniform,
    LogUniformPrior,
    Prior,
    StandardNormalPrior,
    default_prior,
    make_prior,
    priors_for,
    register_prior,
    unregister_prior,
)

from common import assert_close


def test_loguniform_log_prob_and_improperness():
    p = LogUniform((3,))
    z = torch.tensor([0.5, 2.0, 0.0])
    assert_close(p.log_prob(z), torch.tensor([-torch.log(torch.tensor(0.5)), -torch.log(torch.tensor(2.0)), 0.0]))
    assert p.expand((4, 3)).batch_shape == (4, 3)
    with pytest.raises(NotImplementedError, match="improper"):
        p.sample()
    with pytest.raises(ValueError):
        LogUniform((1,), validate_args=True).log_prob(torch.tensor([-1.0]))


def test_prior_modules_return_distributions_of_the_site_shape():
    batch, event = torch.Size((5,)), torch.Size((3, 4, 4))
    for prior in (LogUniformPrior(), LogNormalPrior(), LogNormalPrior((3, 1, 1)), StandardNormalPrior()):
        p = prior(batch, event)
        assert p.batch_shape == batch and p.event_shape == event, type(prior)
    p = CorrelatedLogNormalPrior(6)(batch, torch.Size((6,)))
    assert p.batch_shape == batch and p.event_shape == (6,)


def test_lognormal_prior_initialises_like_the_paper_and_samples_are_lognormal():
    prior = LogNormalPrior()
    assert prior.loc.item() == 0 and prior.scale.item() == 1
    torch.manual_seed(0)
    z = prior(torch.Size((200_000,)), torch.Size(())).sample()
    assert (z > 0).all()
    assert abs(z.log().mean().item()) < 0.01 and abs(z.log().std().item() - 1) < 0.01


@pytest.mark.parametrize("rank", [None, 2])
def test_multivariate_lognormal_is_mvn_on_log_z(rank):
    torch.manual_seed(0)
    prior = CorrelatedLogNormalPrior(4, rank=rank)
    with torch.no_grad():
        for prm in prior.parameters():
            prm.add_(0.3 * torch.randn_like(prm))
    p = prior(torch.Size((2,)), torch.Size((4,)))
    z = p.sample()
    mvn = MultivariateNormal(prior.loc, covariance_matrix=prior.covariance())
    assert_close(p.log_prob(z), mvn.log_prob(z.log()) - z.log().sum(-1), rtol=1e-4, atol=1e-4)
    assert torch.linalg.eigvalsh(prior.covariance()).min() > 0


def test_full_covariance_starts_at_the_identity():
    prior = CorrelatedLogNormalPrior(3)
    assert_close(prior.covariance(), torch.eye(3))


def test_defaults_pair_relu_with_loguniform_and_softplus_with_lognormal():
    assert default_prior(InformationDropout.linear(2, 2, activation="relu")) == "log-uniform"
    assert default_prior(InformationDropout.linear(2, 2, activation="softplus")) == "log-normal"
    assert default_prior(GaussianLatent.linear(2, 2)) == "normal"


def test_factorised_prior_has_one_factor_per_unit_or_channel():
    dense = make_prior("factorised", "z", InformationDropout.linear(2, 6, activation="softplus"), torch.Size((6,)))
    conv = make_prior("factorised", "z", InformationDropout.conv2d(2, 5, activation="softplus"), torch.Size((5, 4, 4)))
    assert dense.loc.shape == (6,) and conv.loc.shape == (5, 1, 1)


@pytest.mark.parametrize(
    "name, layer, shape, match",
    [
        ("gamma", InformationDropout.linear(2, 3), (3,), "prior='gamma' at site 'z'"),
        ("normal", InformationDropout.linear(2, 3), (3,), "accepted"),
        ("log-uniform", GaussianLatent.linear(2, 3), (3,), "accepted"),
        ("factorised", InformationDropout.linear(2, 3), None, "input_shape"),
        ("correlated", InformationDropout.conv2d(2, 3), (3, 4, 4), "dense layer"),
        ("log-normal", noisy_linear("binary", 2, 3), (3,), "BinaryDropout"),
    ],
)
def test_bad_prior_choices_raise_naming_the_site(name, layer, shape, match):
    with pytest.raises(ValueError, match=match):
        make_prior(name, "z", layer, None if shape is None else torch.Size(shape))


def test_prior_shape_must_match_its_layer():
    with pytest.raises(ValueError, match="does not broadcast"):
        LogNormalPrior((4,)).check("z", InformationDropout.linear(2, 3), torch.Size((3,)))
    with pytest.raises(ValueError, match="does not match"):
        CorrelatedLogNormalPrior(4).check("z", InformationDropout.linear(2, 3), torch.Size((3,)))


def test_the_full_covariance_cholesky_factor_is_torchs_lower_cholesky_transform_with_no_unused_parameters():
    torch.manual_seed(0)
    d = 4
    prior = CorrelatedLogNormalPrior(d)
    with torch.no_grad():
        prior.unconstrained_tril.normal_()
    a = torch.zeros(d, d)
    a[tuple(torch.tril_indices(d, d))] = prior.unconstrained_tril.detach()  # row by row, as vec_to_tril_matrix
    expected = torch.tril(a, -1) + torch.diag(torch.exp(torch.diagonal(a)))  # strictly lower part + exp diagonal
    assert_close(prior.scale_tril(), expected)
    assert sum(p.numel() for p in prior.parameters()) == d + d * (d + 1) // 2  # loc + the free entries of L
    z = prior(torch.Size((8,)), torch.Size((d,))).sample()
    prior(torch.Size((8,)), torch.Size((d,))).log_prob(z).sum().backward()
    for name, p in prior.named_parameters():
        assert (p.grad != 0).all(), f"{name}: every parameter is used"


@pytest.mark.parametrize("units, rank", [(6, 2), (2, 2), (1, 1)])
def test_correlated_low_rank_is_a_rank_two_plus_diagonal_covariance_capped_at_the_units(units, rank):
    layer = InformationDropout.linear(3, units, activation="softplus")
    prior = make_prior("correlated-low-rank", "z", layer, torch.Size((units,)))
    assert (
        isinstance(prior, CorrelatedLogNormalPrior) and prior.rank == rank and prior.cov_factor.shape == (units, rank)
    )
    assert prior.name == "correlated-low-rank"
    assert_close(prior.covariance(), prior.cov_factor @ prior.cov_factor.T + torch.diag(prior.log_diag.exp()))
    full = make_prior("correlated", "z", layer, torch.Size((units,)))
    assert full.rank is None and full.name == "correlated"


def test_the_registry_lists_the_built_in_priors_and_every_name_it_accepts():
    assert tuple(PRIORS) == ("log-uniform", "log-normal", "factorised", "correlated", "correlated-low-rank", "normal")
    assert "correlated-low-rank" in PRIORS and "gamma" not in PRIORS and PRIORS == tuple(PRIORS)
    relu, softplus = InformationDropout.linear(2, 3), InformationDropout.linear(2, 3, activation="softplus")
    assert priors_for(relu) == ("log-uniform",)
    assert priors_for(softplus) == ("log-uniform", "log-normal", "factorised", "correlated", "correlated-low-rank")
    assert priors_for(GaussianLatent.linear(2, 3)) == ("normal",)
    with pytest.raises(
        ValueError, match="prior='gamma' at site 'z': expected one of log-uniform, log-normal, .*normal"
    ):
        make_prior("gamma", "z", relu)


class _ScaledLogUniform(Prior):
    """A test plug-in: the log-uniform prior under another name (its KL is the registered one)."""

    def forward(self, batch_shape, event_shape):
        return LogUniform(torch.Size(batch_shape) + torch.Size(event_shape)).to_event(len(event_shape))


@pytest.fixture
def plugin():
    """Register ``plug`` for the duration of a test."""
    register_prior("plug", lambda site, layer, event_shape: _ScaledLogUniform(), accepts=lambda l: l.is_latent)
    yield "plug"
    unregister_prior("plug")


def test_a_registered_prior_is_accepted_everywhere_by_name_and_unregistered_cleanly(plugin):
    assert plugin in PRIORS and PRIORS[-1] == plugin
    prior = make_prior(plugin, "z", InformationDropout.linear(2, 3), torch.Size((3,)))
    assert isinstance(prior, _ScaledLogUniform) and prior.name == plugin
    with pytest.raises(ValueError, match="register_prior\\('plug'\\): a prior of that name is registered"):
        register_prior(plugin, lambda site, layer, event_shape: _ScaledLogUniform())
    register_prior(plugin, lambda site, layer, event_shape: _ScaledLogUniform(), replace=True)
    for bad in ("", "a b", "x,y", 3):
        with pytest.raises(ValueError, match="register_prior"):
            register_prior(bad, lambda site, layer, event_shape: _ScaledLogUniform())
    with pytest.raises(ValueError, match="unregister_prior\\('nothing'\\): no such prior"):
        unregister_prior("nothing")


def test_a_plugin_that_does_not_return_a_prior_or_does_not_serve_the_layer_is_refused():
    register_prior("broken", lambda site, layer, event_shape: nn.Identity())
    register_prior("dense-only", lambda site, layer, event_shape: _ScaledLogUniform(), accepts=lambda l: False)
    try:
        with pytest.raises(ValueError, match="prior='broken' at site 'z': its factory returned Identity"):
            make_prior("broken", "z", InformationDropout.linear(2, 3))
        with pytest.raises(
            ValueError, match="prior='dense-only' at site 'z': does not serve a relu InformationDropout"
        ):
            make_prior("dense-only", "z", InformationDropout.linear(2, 3))
    finally:
        unregister_prior("broken")
        unregister_prior("dense-only")


class _WrongShapePrior(Prior):
    """A plug-in that forgets to reinterpret the units as the event."""

    def forward(self, batch_shape, event_shape):
        return LogUniform(torch.Size(batch_shape) + torch.Size(event_shape))


def test_a_prior_whose_event_shape_does_not_match_the_latent_is_refused_before_training():
    from infodropout.guides import MLPEncoder
    from infodropout.models import InformationBottleneck, LinearHead

    message = r"prior='wrong' at site 'z1': its distribution has batch shape \(1, 4\) and event shape \(\)"
    register_prior("wrong", lambda site, layer, event_shape: _WrongShapePrior())
    try:
        with pytest.raises(ValueError, match=message):  # with input_shape: at construction
            InformationBottleneck(MLPEncoder(5, (4,)), LinearHead(4, 2), priors="wrong", input_shape=(5,))
        ib = InformationBottleneck(MLPEncoder(5, (4,)), LinearHead(4, 2), priors="wrong")
        with pytest.raises(ValueError, match=message):  # without: at the first call, before any step
            ib.model(torch.randn(3, 5), torch.zeros(3, dtype=torch.long))
    finally:
        unregister_prior("wrong")
