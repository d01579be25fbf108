import pytest
import torch
from torch.distributions import MultivariateNormal

from infodropout.guides import GaussianLatent, InformationDropout, noisy_linear
from infodropout.models.priors import (
    CorrelatedLogNormalPrior,
    LogNormalPrior,
    LogUniform,
    LogUniformPrior,
    StandardNormalPrior,
    default_prior,
    make_prior,
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
    dense = make_prior("factorised", "z", InformationDropout.linear(2, 6), torch.Size((6,)))
    conv = make_prior("factorised", "z", InformationDropout.conv2d(2, 5), torch.Size((5, 4, 4)))
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
