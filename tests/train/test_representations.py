"""From a network to the metrics' arrays: representations, posteriors, KL per dimension, log importance
weights, and the generator forms of the metrics, checked against hand computations and known answers."""

import json
import math

import pyro.distributions as dist
import pytest
import torch
from torch.distributions import Normal, kl_divergence
from torch.distributions.transforms import ExpTransform
from torch.nn import functional as F

from infodropout.guides.layers import InformationDropout, sampling
from infodropout.models.priors import Prior
from infodropout.models.zoo import build_network
from infodropout.train import representations as r
from infodropout.train.data.dsprites import DSprites
from infodropout.train.elbo import MeanFieldELBO
from infodropout.train.metrics import FAST, jsonable

from common import assert_close


def vae(latent="information", prior=None, shape=(1, 4, 4), z_dim=3, seed=0):
    torch.manual_seed(seed)
    return build_network("vae", shape, latent=latent, prior=prior, z_dim=z_dim, hidden=(8,)).double()


def images(n=16, shape=(1, 4, 4), seed=0):
    return torch.rand((n, *shape), generator=torch.Generator().manual_seed(seed), dtype=torch.float64)


def by_hand(ib, x):
    """The latent's parameters written out: h = softplus(W x), then the layer's heads."""
    layer = ib.encoder.latent
    h = ib.encoder.hidden(x.flatten(1))
    if isinstance(layer, InformationDropout):
        return F.softplus(layer.f_head(h)), layer.alpha_min + layer.alpha_max * torch.sigmoid(layer.alpha_head(h))
    return layer.f_head(h), torch.exp(layer.scale_head(h))


def test_log_normal_representations_are_the_location_median_and_mean_of_the_guide():
    ib, x = vae(), images()
    f, alpha = by_hand(ib, x)
    with torch.no_grad():
        assert_close(r.representation(ib, x), torch.log(f.clamp_min(1e-4)), rtol=1e-12)
        assert_close(r.representation(ib, x, "median"), f, rtol=1e-12)
        assert_close(r.representation(ib, x, "mean"), f * torch.exp(alpha**2 / 2), rtol=1e-12)
        assert_close(r.representation(ib, x, "median"), ib.representation(x.flatten(1)), rtol=1e-12)  # noise off
    assert r.resolve_kind(ib) == "log-location"


def test_the_location_of_log_z_is_floored_like_the_kls():
    ib, x = vae(), images()
    with torch.no_grad():
        ib.encoder.latent.f_head.bias.fill_(-40.0)  # softplus(-40) ~ 4e-18, far below the 1e-4 floor
    assert_close(r.representation(ib, x), torch.full((16, 3), math.log(1e-4), dtype=torch.float64))


def test_gaussian_representations_are_the_posterior_mean():
    ib, x = vae("gaussian"), images()
    loc, _ = by_hand(ib, x)
    with torch.no_grad():
        for kind in (None, "mean", "median"):
            assert_close(r.representation(ib, x, kind), loc, rtol=1e-12)
    assert r.resolve_kind(ib) == "mean"
    with pytest.raises(ValueError, match="representation='log-location' needs a log-normal latent") as info:
        r.representation(ib, x, "log-location")
    assert "\n" not in str(info.value)
    with pytest.raises(ValueError, match=r"representation='location': expected one of \('log-location'"):
        r.representation(ib, x, "location")


def test_encoding_keeps_the_mode_and_records_the_representation():
    ib, x = vae(), images()
    ib.train()
    enc = r.encode(ib, x, kind="mean", batch_size=5)
    assert all(module.training for module in ib.modules())
    assert enc.record() == {"kind": "mean", "site": "z", "latent": "log-normal", "posterior_space": "log z"}
    assert enc.representation.shape == enc.loc.shape == enc.scale.shape == enc.sample.shape == (16, 3)


def test_posterior_parameters_are_gaussian_in_log_z_and_the_sample_is_drawn_from_them():
    ib, x = vae(), images(4)
    f, alpha = by_hand(ib, x)
    enc = r.encode(ib, x.repeat(500, 1, 1, 1), generator=torch.Generator().manual_seed(0))
    assert_close(torch.from_numpy(enc.loc[:4]), torch.log(f.clamp_min(1e-4)).detach(), rtol=1e-12)
    assert_close(torch.from_numpy(enc.scale[:4]), alpha.detach(), rtol=1e-12)
    u = (enc.sample - enc.loc) / enc.scale  # (2000, 3) standard normal
    assert abs(u.mean()) < 4 / math.sqrt(u.size) and abs(u.std() - 1) < 0.03
    batched = r.encode(ib, [(x[:3], None), (x[3:], None)], kl=False)  # an iterable of (x, y) batches
    assert_close(torch.from_numpy(batched.representation), torch.from_numpy(enc.representation[:4]))


@pytest.mark.parametrize("prior", ["log-normal", "factorised"])
def test_kl_per_dimension_of_a_factorised_prior_sums_to_the_sites_kl(prior):
    ib, x = vae(prior=prior), images()
    out = r.kl_divergences(ib, x)
    assert out["exact"]
    with torch.no_grad():
        ib.eval()
        expected = ib.information(x.flatten(1))["z"]  # the KL the ELBO charges
    assert_close(torch.from_numpy(out["kl"].sum(1)), expected, rtol=1e-10)
    assert_close(torch.from_numpy(out["kl_joint"]), expected, rtol=1e-10)
    assert out["kl_sum"] == pytest.approx(out["kl_total"], rel=1e-10)


def test_kl_per_dimension_of_a_gaussian_latent_is_the_closed_form():
    ib, x = vae("gaussian"), images()
    loc, scale = by_hand(ib, x)
    expected = 0.5 * (scale**2 + loc**2 - 1 - torch.log(scale**2))
    out = r.kl_divergences(ib, x)
    assert_close(torch.from_numpy(out["kl"]), expected.detach(), rtol=1e-10)
    assert_close(torch.from_numpy(out["kl_per_dim"]), expected.mean(0).detach(), rtol=1e-10)


def test_kl_per_dimension_of_a_correlated_prior_is_the_marginal_kl():
    ib, x = vae(prior="correlated"), images()
    prior = ib.model.priors[0]
    generator = torch.Generator().manual_seed(1)
    with torch.no_grad():  # a prior with correlations and unequal variances
        for parameter in prior.parameters():
            parameter.add_(0.6 * torch.randn(parameter.shape, generator=generator, dtype=parameter.dtype))
    assert (prior.covariance() - torch.diag(prior.covariance().diagonal())).abs().max() > 0.1
    out = r.kl_divergences(ib, x)
    assert not out["exact"]
    f, alpha = by_hand(ib, x)
    cov = prior.covariance().detach()
    marginal = Normal(prior.loc.detach(), cov.diagonal().sqrt())
    expected = kl_divergence(Normal(torch.log(f.clamp_min(1e-4)).detach(), alpha.detach()), marginal)
    assert_close(torch.from_numpy(out["kl"]), expected, rtol=1e-10)
    # Monte Carlo: E_q[log q(log z_d) - log p_d(log z_d)] for one example
    q = Normal(torch.log(f[0]).detach(), alpha[0].detach())
    s = q.sample((200000,))
    mc = (q.log_prob(s) - marginal.log_prob(s)).mean(0)
    assert_close(mc, expected[0], atol=0.02, rtol=0)
    with torch.no_grad():
        ib.eval()
        joint = ib.information(x.flatten(1))["z"]
    assert_close(torch.from_numpy(out["kl_joint"]), joint, rtol=1e-10)


class PlainLogNormal(Prior):
    """``log z ~ N(0, 1)`` as a generic transformed distribution: no KL against the guide is registered."""

    name = "plain-log-normal"

    def forward(self, batch_shape, event_shape):
        shape = torch.Size(batch_shape) + torch.Size(event_shape)
        normal = dist.Normal(torch.zeros(shape, dtype=torch.float64), torch.ones(shape, dtype=torch.float64))
        return dist.TransformedDistribution(normal, [ExpTransform()]).to_event(len(event_shape))


def test_a_plug_in_prior_without_a_registered_kl_gets_monte_carlo_estimates():
    x = images(32)
    estimated = r.kl_divergences(vae(prior=PlainLogNormal()), x)
    analytic = r.kl_divergences(vae(prior="log-normal"), x)  # the same weights; the learned prior starts at N(0, 1)
    assert estimated["exact"] and not estimated["analytic"] and analytic["analytic"]
    tolerance = 5 * estimated["kl_per_dim_se"] + 0.02
    assert (abs(estimated["kl_per_dim"] - analytic["kl_per_dim"]) < tolerance).all()
    assert estimated["kl_total"] == pytest.approx(analytic["kl_total"], abs=0.1)


def test_log_weights_are_the_models_and_guides_densities():
    """K = 1 with a fixed seed, against the same draw written out by hand."""
    ib, x = vae(prior="log-normal"), images(5)
    lw = r.log_importance_weights(ib, x, 1, seed=3)
    torch.manual_seed(3)
    f, alpha = by_hand(ib, x)
    with torch.no_grad():
        z = f * torch.exp(alpha * torch.randn(f.shape, dtype=f.dtype))  # the guide's one draw
        prior = ib.model.priors[0]
        log_p_z = Normal(prior.loc, prior.scale).log_prob(torch.log(z)) - torch.log(z)
        log_q_z = Normal(torch.log(f), alpha).log_prob(torch.log(z)) - torch.log(z)
        logits = ib.head(z)
        log_px = -F.binary_cross_entropy_with_logits(logits, x, reduction="none").flatten(1).sum(1)
    expected = log_px + (log_p_z - log_q_z).sum(1)
    assert lw.shape == (1, 5)
    assert_close(torch.from_numpy(lw[0]), expected, rtol=1e-10)


def test_one_sample_is_the_elbo_per_example_in_expectation():
    ib, x = vae(prior="factorised"), images(6)
    lw = r.log_importance_weights(ib, x, 1500, seed=0)  # (K, B)
    torch.manual_seed(1)
    with torch.no_grad(), ib.unregistered(), sampling(True):
        ib.eval()
        reps = 300
        loss = MeanFieldELBO().terms(ib.model, ib.guide, x.repeat(reps, 1, 1, 1)).loss  # analytic KL, beta = 1
    elbo = -loss.item() / (reps * len(x))
    se = lw.mean(1).std() / math.sqrt(lw.shape[0])  # the per-sample batch mean's Monte Carlo error
    assert lw.mean() == pytest.approx(elbo, abs=5 * se + 0.02)


def test_the_iwae_bound_increases_with_the_number_of_samples():
    ib, x = vae(prior="log-normal"), images(16)
    lw = r.log_importance_weights(ib, x, 1000, seed=0, chunk_size=8192)
    from infodropout.train.metrics import iw_log_likelihood

    means = [iw_log_likelihood(lw[:k])["mean"] for k in (1, 10, 100, 1000)]
    assert means == sorted(means) and means[-1] - means[0] > 0.05


def test_log_weights_do_not_depend_on_beta_or_the_data_size():
    """beta and N / B weigh the ELBO's terms in training; the weights are those of the model itself,
    and K B rows may exceed num_data."""
    ib, x = vae(prior="log-normal"), images(5)
    plain = r.log_importance_weights(ib, x, 30, seed=2)
    ib.beta, ib.num_data = 4.0, 7
    assert_close(torch.from_numpy(r.log_importance_weights(ib, x, 30, seed=2)), torch.from_numpy(plain))
    assert ib.num_data == 7


def test_log_weights_refuse_improper_priors_and_classifiers():
    with pytest.raises(ValueError, match="prior at site 'z' is log-uniform") as info:
        r.log_importance_weights(vae(prior="log-uniform"), images(2), 4)
    assert "\n" not in str(info.value)
    mlp = build_network("mlp", (1, 4, 4), 3, hidden=(5,))
    with pytest.raises(ValueError, match="the network is a classifier"):
        r.log_importance_weights(mlp, images(2).float(), 4)


class FactorGrid:
    """A dSprites-like data set whose observation is its factor classes (disentanglement_lib's identity
    data): a network that passes them through monotonically has a perfectly disentangled representation."""

    factor_names = ("shape", "b", "c")

    def __init__(self, sizes=(3, 3, 3)):
        self.factor_sizes = tuple(sizes)
        self.device = torch.device("cpu")
        self.sizes = torch.tensor(sizes)
        self.strides = torch.tensor([math.prod(sizes[i + 1 :]) for i in range(len(sizes))])

    def __len__(self):
        return math.prod(self.factor_sizes)

    def sample_factors(self, n, generator=None):
        return (torch.rand(n, len(self.factor_sizes), generator=generator) * self.sizes).long()

    def sample_fixed_factor(self, n, factor, value=None, generator=None):
        classes = self.sample_factors(n, generator)
        if value is None:
            value = int(torch.randint(0, self.factor_sizes[factor], (1,), generator=generator))
        classes[:, factor] = value
        return classes

    def factors_to_index(self, classes):
        return (classes * self.strides).sum(-1)

    def render(self, index):
        return ((index[:, None] // self.strides) % self.sizes).float()  # (B, 3): the classes themselves


def pass_through(latent="gaussian"):
    """A VAE over 3 inputs whose latent is a monotone function of each input: softplus(x), or the
    location of log z of softplus(softplus(x))."""
    ib = build_network("vae", (3,), latent=latent, z_dim=3, hidden=(3,), likelihood="gaussian")
    with torch.no_grad():
        for linear in (ib.encoder.hidden[0], ib.encoder.latent.f_head):
            linear.weight.copy_(torch.eye(3))
            linear.bias.zero_()
        noise = ib.encoder.latent.scale_head if latent == "gaussian" else ib.encoder.latent.alpha_head
        noise.weight.zero_()
        noise.bias.fill_(-3.0)
    return ib


TINY = FAST.replace(
    num_points=600,
    factor_vae_num_train=300,
    factor_vae_num_eval=200,
    factor_vae_num_variance=600,
    dci_num_train=400,
    dci_num_test=200,
    dci_n_estimators=10,
    sap_num_train=400,
    sap_num_test=200,
    tc_num_samples=300,
)


@pytest.mark.parametrize("latent", ["gaussian", "information"])
def test_evaluate_on_identity_data_gives_the_known_answers(latent):
    data = FactorGrid()
    out = r.evaluate(pass_through(latent), data, settings=TINY, num_data=10**5)
    assert out["factor_sets"] == {"all": ["shape", "b", "c"], "no-shape": ["b", "c"]}
    assert out["representation"]["kind"] == ("mean" if latent == "gaussian" else "log-location")
    got = out["metrics"]
    for factors in ("all", "no-shape"):
        assert got["mig"][factors]["mig"] >= 0.9
        assert got["factor-vae"][factors]["eval_accuracy"] == 1.0
        assert got["dci"][factors]["disentanglement"] >= 0.9 and got["dci"][factors]["completeness"] >= 0.9
        # SAP's linear SVMs (C = 0.01) on one latent are scale-sensitive: only the best latent is known
        cols = out["factor_sets"][factors]
        best = got["sap"][factors]["score_matrix"].argmax(0)
        assert [["shape", "b", "c"][i] for i in best] == cols and got["sap"][factors]["sap"] > 0.2
    assert got["dci"]["no-shape"]["importance_matrix"].shape == (3, 2)
    assert got["active-units"]["num_active"] == 3
    # independent factors pass through independently: the total correlation is about 0
    assert abs(got["total-correlation"]["tc_mss"]) < 0.1
    assert got["kl-per-dim"]["kl_per_dim"].shape == (3,)
    assert (
        got["mig"]["no-shape"]["representation"]
        == got["total-correlation"]["representation"]
        == out["representation"]["kind"]
    )
    json.dumps(jsonable(out), allow_nan=False)


def test_factor_vae_on_fresh_batches_gives_the_known_answer():
    data = FactorGrid()
    out = r.factor_vae_fresh(pass_through(), data, settings=TINY, batch_size=2048)
    assert out["eval_accuracy"] == 1.0 and out["mode"] == "fresh"
    assert out["train_votes"].sum() == 300 and out["eval_votes"].sum() == 200
    partial = r.factor_vae_fresh(pass_through(), data, settings=TINY, factors=[1, 2], batch_size=2048)
    assert partial["train_votes"].shape == (2, 3) and partial["eval_accuracy"] == 1.0


def test_evaluate_runs_on_dsprites_with_an_untrained_conv_vae():
    torch.manual_seed(0)
    ib = build_network("conv-vae", (1, 64, 64), latent="information", prior="factorised", z_dim=4)
    small = TINY.replace(
        num_points=96,
        factor_vae_num_variance=96,
        dci_num_train=64,
        dci_num_test=32,
        sap_num_train=64,
        sap_num_test=32,
        factor_vae_num_train=20,
        factor_vae_num_eval=10,
        dci_n_estimators=2,
        tc_num_samples=96,
        iw_num_samples=4,
        iw_num_images=6,
    )
    names = ("mig", "factor-vae", "active-units", "total-correlation", "kl-per-dim", "log-likelihood", "psis")
    out = r.evaluate(ib, DSprites(), metrics=names, settings=small, batch_size=48)
    assert out["num_points"] == 96 and out["factor_names"] == list(DSprites.factor_names)
    assert out["metrics"]["total-correlation"]["num_data"] == 737_280
    assert out["metrics"]["log-likelihood"]["log_likelihood"].shape == (6,)
    iw, smoothed = out["metrics"]["log-likelihood"], out["metrics"]["psis"]  # the same log weights, drawn once
    assert_close(torch.from_numpy(smoothed["raw_log_likelihood"]), torch.from_numpy(iw["log_likelihood"]))
    assert set(out["seconds"]) == {"encoding", *names}
    with pytest.raises(ValueError, match="metrics: unknown 'migg'"):
        r.evaluate(ib, DSprites(), metrics=["migg"])
    with pytest.raises(ValueError, match="factor_vae='new'"):
        r.evaluate(ib, DSprites(), factor_vae="new")
