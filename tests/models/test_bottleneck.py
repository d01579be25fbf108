"""The Pyro ELBO of an InformationBottleneck is the Information Bottleneck loss, and a VAE's ELBO."""

import inspect
import math

import numpy as np
import pyro
import pyro.distributions as dist
import pyro.poutine as poutine
import pytest
import torch
from pyro.infer import SVI, Predictive, Trace_ELBO, TraceMeanField_ELBO
from pyro.poutine.util import site_is_subsample
from torch import nn
from torch.distributions import kl_divergence
from torch.nn import functional as F

from infodropout.guides import MLPEncoder, VAEEncoder, noisy_linear, sampling
from infodropout.models import REPRESENTATION, InformationBottleneck, LinearHead, MLPDecoder

from common import assert_close

B, D_IN, K = 16, 20, 5


def _data(seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(B, D_IN, generator=g, dtype=torch.float64), torch.randint(0, K, (B,), generator=g)


def _classifier(beta, num_data, activation="relu", priors=None, hidden=(12, 8)):
    torch.manual_seed(0)
    enc = MLPEncoder(D_IN, hidden, "information", activation=activation)
    ib = InformationBottleneck(
        enc, LinearHead(hidden[-1], K), "categorical", priors, beta, num_data, input_shape=(D_IN,)
    )
    return ib.double()


def _handwritten_ib_loss(ib, x, y, beta, num_data):
    """Cross-entropy + beta * KL, summed over the batch and scaled by N / B, written out by hand."""
    h, kl = x, 0.0
    for layer in ib.encoder.layers:
        f = layer._act(layer.f_head(h))
        alpha = layer.alpha_min + layer.alpha_max * torch.sigmoid(layer.alpha_head(h))
        h = f * torch.exp(alpha * torch.randn(f.shape, dtype=f.dtype))
        if layer.activation == "relu":  # log-uniform prior
            kl = kl + torch.where(f > 0, -torch.log(alpha / (layer.alpha_min + layer.alpha_max)), 0.0).sum()
        else:  # learned log-normal prior
            prior = ib.model.priors[ib.model.site_names.index(layer.name)]
            m, s, mu, sigma = torch.log(f.clamp_min(1e-4)), alpha, prior.loc, prior.scale
            kl = kl + (torch.log(sigma / s) + (s**2 + (m - mu) ** 2) / (2 * sigma**2) - 0.5).sum()
    ce = F.cross_entropy(ib.head(h), y, reduction="sum")
    scale = 1.0 if num_data is None else num_data / x.shape[0]
    return scale * (ce + beta * kl)


@pytest.mark.parametrize("activation", ["relu", "softplus"])
@pytest.mark.parametrize("beta", [0.0, 1e-3, 0.5, 3.0])
@pytest.mark.parametrize("num_data", [None, B, 50 * B])
def test_elbo_is_the_handwritten_information_bottleneck_loss(activation, beta, num_data):
    ib = _classifier(beta, num_data, activation)
    x, y = _data()
    torch.manual_seed(7)
    loss = TraceMeanField_ELBO().differentiable_loss(ib.model, ib.guide, x, y)
    torch.manual_seed(7)
    expected = _handwritten_ib_loss(ib, x, y, beta, num_data)
    assert_close(loss, expected, rtol=1e-10, atol=1e-10)
    # and the gradients agree, parameter by parameter
    params = [p for p in ib.parameters() if p.requires_grad]
    g_pyro = torch.autograd.grad(loss, params, allow_unused=True)
    g_hand = torch.autograd.grad(expected, params, allow_unused=True)
    for p, a, b in zip(params, g_pyro, g_hand, strict=True):
        a = torch.zeros_like(p) if a is None else a
        b = torch.zeros_like(p) if b is None else b
        assert_close(a, b, rtol=1e-8, atol=1e-10)


def test_elbo_with_factorised_and_correlated_priors_is_loss_plus_their_kl():
    x, y = _data()
    for priors in ("factorised", "correlated", {"z1": "correlated", "z2": "log-normal"}):
        ib = _classifier(0.3, None, "softplus", priors)
        torch.manual_seed(3)
        loss = TraceMeanField_ELBO().differentiable_loss(ib.model, ib.guide, x, y)
        torch.manual_seed(3)
        z = ib.encoder(x)
        torch.manual_seed(3)  # the same noise: layer 2's KL depends on layer 1's noisy output
        info = sum(v.sum() for v in ib.information(x).values())
        expected = F.cross_entropy(ib.head(z), y, reduction="sum") + 0.3 * info
        assert_close(loss, expected, rtol=1e-10, atol=1e-10)


def _rows_of(trace, rows):
    """A guide trace whose latent values are ``rows`` of the batch: replayed, each example keeps its noise."""
    out = poutine.Trace()
    for name, node in trace.nodes.items():
        if node["type"] == "sample" and not node["is_observed"] and not site_is_subsample(node):
            out.add_node(name, **{**node, "value": node["value"][rows]})
    return out


def test_minibatch_scaling_is_an_unbiased_estimate_of_the_full_data_loss():
    """Half batches scaled by N/B average exactly to the full-data loss when every example keeps its noise.

    The noise of the full batch is drawn once and each half replays its own rows of it: then the mean
    of the two minibatch estimates is the full loss (cross-entropy and KL, learned priors included),
    so over a uniformly drawn minibatch the estimate is unbiased.
    """
    ib = _classifier(0.1, 2 * B, "softplus")
    x, y = torch.cat([_data(0)[0], _data(1)[0]]), torch.cat([_data(0)[1], _data(1)[1]])
    elbo = TraceMeanField_ELBO()
    torch.manual_seed(0)
    halves = [
        elbo.differentiable_loss(ib.model, ib.guide, x[i * B : (i + 1) * B], y[i * B : (i + 1) * B]) for i in (0, 1)
    ]
    ib.num_data = None
    torch.manual_seed(0)
    full = elbo.differentiable_loss(ib.model, ib.guide, x, y)
    # the noise draws differ in order, so compare each half to the corresponding slice of the full loss
    torch.manual_seed(0)
    halves_unscaled = [
        elbo.differentiable_loss(ib.model, ib.guide, x[i * B : (i + 1) * B], y[i * B : (i + 1) * B]) for i in (0, 1)
    ]
    assert_close(halves[0], 2 * halves_unscaled[0], rtol=1e-12, atol=0)
    assert_close(halves[1], 2 * halves_unscaled[1], rtol=1e-12, atol=0)
    assert_close(0.5 * (halves[0] + halves[1]), halves_unscaled[0] + halves_unscaled[1], rtol=1e-12, atol=0)
    assert torch.isfinite(full)
    # the same noise per example: the full batch's draw, replayed row by row into each half
    guide_trace = poutine.trace(ib.guide).get_trace(x, y)
    full = elbo.differentiable_loss(ib.model, poutine.replay(ib.guide, trace=guide_trace), x, y)
    ib.num_data = 2 * B
    estimates = []
    for rows in (slice(0, B), slice(B, 2 * B)):
        replayed = poutine.replay(ib.guide, trace=_rows_of(guide_trace, rows))
        estimates.append(elbo.differentiable_loss(ib.model, replayed, x[rows], y[rows]))
    assert_close(0.5 * (estimates[0] + estimates[1]), full, rtol=1e-12, atol=1e-12)
    assert not torch.isclose(estimates[0], estimates[1]), "the halves differ: only their mean is the full loss"
    # and the full loss is the hand-written one on those noise draws: cross-entropy + beta * closed-form KL
    ce = F.cross_entropy(ib.head(guide_trace.nodes["z2"]["value"]), y, reduction="sum")
    kl = 0.0
    h = x
    for layer in ib.encoder.layers:
        prior = ib.model.priors[ib.model.site_names.index(layer.name)]
        f, alpha = F.softplus(layer.f_head(h)), layer.alpha(h)
        m, mu, sigma = torch.log(f.clamp_min(1e-4)), prior.loc, prior.scale
        kl = kl + (torch.log(sigma / alpha) + (alpha**2 + (m - mu) ** 2) / (2 * sigma**2) - 0.5).sum()
        h = guide_trace.nodes[layer.name]["value"]
    assert_close(full, ce + 0.1 * kl, rtol=1e-10, atol=1e-10)


def test_beta_scales_the_noisy_sites_on_both_sides_and_nothing_else():
    ib = _classifier(0.25, 4 * B)
    x, y = _data()
    guide_trace = poutine.trace(ib.guide).get_trace(x, y)
    model_trace = poutine.trace(poutine.replay(ib.model, guide_trace)).get_trace(x, y)
    for site in ib.latent_sites:
        assert guide_trace.nodes[site]["scale"] == pytest.approx(0.25 * 4)
        assert model_trace.nodes[site]["scale"] == pytest.approx(0.25 * 4)
    assert model_trace.nodes["y"]["scale"] == pytest.approx(4)
    ib.beta = 2.0
    guide_trace = poutine.trace(ib.guide).get_trace(x, y)
    model_trace = poutine.trace(poutine.replay(ib.model, guide_trace)).get_trace(x, y)
    assert guide_trace.nodes["z1"]["scale"] == model_trace.nodes["z1"]["scale"] == pytest.approx(8)


@pytest.mark.parametrize("beta", [0.0, 0.5])
def test_a_tensor_beta_gives_the_loss_and_gradients_of_the_same_float_beta(beta):
    """A 0-dim tensor beta (what a warm-up updates in place inside a CUDA graph), validation on, 0 included."""
    ib = _classifier(beta, 4 * B)
    x, y = _data()
    params = [p for p in ib.parameters() if p.requires_grad]
    results = []
    for value in (beta, torch.tensor(beta, dtype=torch.float64)):
        ib.beta = value
        torch.manual_seed(5)
        loss = TraceMeanField_ELBO().differentiable_loss(ib.model, ib.guide, x, y)
        grads = torch.autograd.grad(loss, params, allow_unused=True)
        results.append((loss, [torch.zeros_like(p) if g is None else g for p, g in zip(params, grads, strict=True)]))
    (loss_f, grads_f), (loss_t, grads_t) = results
    assert_close(loss_t, loss_f, rtol=1e-12, atol=1e-12)
    for a, b in zip(grads_t, grads_f, strict=True):
        assert_close(a, b, rtol=1e-12, atol=1e-12)


def test_beta_cannot_be_given_to_one_side_only():
    ib = _classifier(0.5, None)
    for side in (ib.model, ib.guide):
        assert list(inspect.signature(side.forward).parameters) == ["x", "y"]
    assert not hasattr(ib.model, "beta") and not hasattr(ib.guide, "beta")
    for bad in (-1.0, float("nan"), "1", torch.ones(2), torch.tensor(-0.5), torch.tensor(float("nan"))):
        with pytest.raises(ValueError, match="beta"):
            ib.beta = bad


def test_stock_svi_trains_it():
    ib = _classifier(1e-2, 200).float()
    x, y = _data()
    x = x.float()
    svi = SVI(ib.model, ib.guide, pyro.optim.Adam({"lr": 1e-2}), TraceMeanField_ELBO())
    losses = [svi.step(x, y) for _ in range(60)]
    assert sum(losses[-10:]) < 0.5 * sum(losses[:10])
    store = pyro.get_param_store()
    assert any(name.startswith("ib.guide$$$encoder.layers.0.alpha_head") for name in store.keys())
    assert any(name.startswith("ib.model$$$head") for name in store.keys())


def test_elbo_module_trains_it_with_a_torch_optimiser():
    ib = _classifier(1e-2, 200, "softplus").float()
    x, y = _data()
    x = x.float()
    loss_fn = TraceMeanField_ELBO()(ib.model, ib.guide)
    params = set(loss_fn.parameters())
    assert all(p in params for p in ib.parameters()), "encoder, head and prior parameters are all trained"
    optim = torch.optim.Adam(loss_fn.parameters(), lr=1e-2)
    losses = []
    for _ in range(60):
        optim.zero_grad()
        loss = loss_fn(x, y)
        loss.backward()
        optim.step()
        losses.append(loss.item())
    assert sum(losses[-10:]) < 0.5 * sum(losses[:10])


def test_dropout_baselines_run_through_the_same_model_with_no_information_cost():
    x, y = _data()
    for kind in ("binary", "gaussian", "none"):
        torch.manual_seed(0)
        enc = nn.Sequential(noisy_linear(kind, D_IN, 12), noisy_linear(kind, 12, 8))
        ib = InformationBottleneck(enc, LinearHead(8, K), beta=5.0).double()
        assert ib.latent_sites == ()
        torch.manual_seed(1)
        loss = TraceMeanField_ELBO().differentiable_loss(ib.model, ib.guide, x, y)
        torch.manual_seed(1)
        expected = F.cross_entropy(ib.head(enc(x)), y, reduction="sum")
        assert_close(loss, expected, rtol=1e-12, atol=1e-12)
        trace = poutine.trace(ib.guide).get_trace(x, y)
        assert REPRESENTATION in trace.nodes


def test_deterministic_ops_after_the_last_noisy_layer_go_through_the_representation_site():
    torch.manual_seed(0)
    enc = nn.Sequential(MLPEncoder(D_IN, (6,)), nn.Unflatten(1, (2, 3)))
    ib = InformationBottleneck(enc, nn.Sequential(nn.Flatten(), nn.Linear(6, K)), beta=0.2).double()
    x, y = _data()
    torch.manual_seed(2)
    loss = TraceMeanField_ELBO().differentiable_loss(ib.model, ib.guide, x, y)
    torch.manual_seed(2)
    z = ib.encoder(x)
    info = ib.information(x)["z1"].sum()  # a first layer's KL does not depend on the noise
    assert_close(loss, F.cross_entropy(ib.head(z), y, reduction="sum") + 0.2 * info, rtol=1e-12, atol=1e-12)


def test_gaussian_vae_is_pyros_classic_vae():
    """Gaussian latent, standard normal prior, beta = 1, Bernoulli reconstruction: Pyro's VAE example."""
    torch.manual_seed(0)
    z_dim, hidden = 4, 30
    encoder = VAEEncoder(784, hidden, z_dim, latent="gaussian")
    decoder = MLPDecoder(z_dim, hidden, (1, 28, 28))
    ib = InformationBottleneck(encoder, decoder, "bernoulli", beta=1.0, reconstruct=True).double()
    x = torch.rand(8, 1, 28, 28, dtype=torch.float64)

    def classic_model(x):
        with pyro.plate("data", x.shape[0]):
            z = pyro.sample("latent", dist.Normal(x.new_zeros(z_dim), x.new_ones(z_dim)).to_event(1))
            probs = torch.sigmoid(decoder.net(z))
            pyro.sample("obs", dist.Bernoulli(probs, validate_args=False).to_event(1), obs=x.reshape(-1, 784))

    def classic_guide(x):
        with pyro.plate("data", x.shape[0]):
            h = F.softplus(encoder.hidden[0](x.reshape(-1, 784)))
            loc, scale = encoder.latent.f_head(h), torch.exp(encoder.latent.scale_head(h))
            pyro.sample("latent", dist.Normal(loc, scale).to_event(1))

    for elbo in (Trace_ELBO(), TraceMeanField_ELBO()):
        torch.manual_seed(11)
        ours = elbo.differentiable_loss(ib.model, ib.guide, x)
        torch.manual_seed(11)
        classic = elbo.differentiable_loss(classic_model, classic_guide, x)
        assert_close(ours, classic, rtol=1e-9, atol=1e-9)


def test_predictions_without_noise_are_deterministic_and_averaging_uses_noise():
    ib = _classifier(0.1, None).eval()
    x, _ = _data()
    p1, p2 = ib.predict(x), ib.predict(x)
    assert torch.equal(p1, p2)
    assert_close(p1.sum(-1), torch.ones(B, dtype=torch.float64))
    torch.manual_seed(0)
    noisy = ib.predict(x, num_samples=8)
    assert not torch.allclose(noisy, p1) and noisy.shape == p1.shape
    assert not ib.training, "predict leaves the mode as it found it"


def test_information_per_site_matches_the_closed_form():
    ib = _classifier(0.1, None)
    x, _ = _data()
    info = ib.information(x)
    layer = ib.encoder.layers[0]
    f = torch.relu(layer.f_head(x))
    expected = torch.where(f > 0, -torch.log(layer.alpha(x) / layer.max_alpha), 0.0).sum(-1)
    assert_close(info["z1"], expected)
    assert set(info) == {"z1", "z2"} and info["z2"].shape == (B,)


def test_model_alone_samples_from_proper_priors():
    ib = _classifier(0.1, None, "softplus")
    x, _ = _data()
    samples = Predictive(ib.model, num_samples=3)(x)
    assert samples["z1"].shape == (3, B, 12) and (samples["z1"] > 0).all()
    assert samples["y"].shape == (3, B)


def test_vectorised_particles_average_the_elbo():
    """With vectorised particles the loss is the mean over particles of cross-entropy + beta * KL, each
    particle's written out by hand on the noise Pyro drew (traced again from the same seed)."""
    ib = _classifier(0.1, None, "softplus")
    x, y = _data()
    particles = 4
    torch.manual_seed(0)
    loss = TraceMeanField_ELBO(num_particles=particles, vectorize_particles=True, max_plate_nesting=1).loss(
        ib.model, ib.guide, x, y
    )
    assert math.isfinite(loss)
    torch.manual_seed(0)
    with torch.no_grad(), pyro.plate("num_particles_vectorized", particles, dim=-2):
        trace = poutine.trace(ib.guide).get_trace(x, y)
    per_particle = []
    with torch.no_grad():
        for k in range(particles):
            h, kl = x, 0.0
            for layer in ib.encoder.layers:
                prior = ib.model.priors[ib.model.site_names.index(layer.name)]
                f, alpha = F.softplus(layer.f_head(h)), layer.alpha(h)
                m, mu, sigma = torch.log(f.clamp_min(1e-4)), prior.loc, prior.scale
                kl = kl + (torch.log(sigma / alpha) + (alpha**2 + (m - mu) ** 2) / (2 * sigma**2) - 0.5).sum()
                h = trace.nodes[layer.name]["value"][k]  # (B, width): particle k's noisy output
            per_particle.append(F.cross_entropy(ib.head(h), y, reduction="sum") + 0.1 * kl)
    per_particle = torch.stack(per_particle)
    assert per_particle.std() > 1e-3, "the particles drew different noise"
    assert loss == pytest.approx(per_particle.mean().item(), rel=1e-10)


def test_trace_elbo_is_an_unbiased_estimate_of_the_analytic_elbo():
    """Per particle, log q - log p at the sampled z (Trace_ELBO's KL) averages to the analytic KL."""
    ib = _classifier(1.0, None, "softplus")
    x, y = _data()
    n = 4000
    torch.manual_seed(0)
    with torch.no_grad(), pyro.plate("particles", n, dim=-2):
        guide_trace = poutine.trace(ib.guide).get_trace(x, y)
        model_trace = poutine.trace(poutine.replay(ib.model, guide_trace)).get_trace(x, y)
    diff = 0.0
    for site in ib.latent_sites:
        q, p, z = guide_trace.nodes[site]["fn"], model_trace.nodes[site]["fn"], guide_trace.nodes[site]["value"]
        diff = diff + (q.log_prob(z) - p.log_prob(z) - kl_divergence(q, p)).sum(-1)  # (n,)
    se = diff.std() / math.sqrt(n)
    assert diff.mean().abs() < 4 * se, (diff.mean(), se)


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"likelihood": "poisson"}, "likelihood='poisson'"),
        ({"priors": "laplace"}, "prior='laplace'"),
        ({"priors": {"z9": "log-normal"}}, "unknown site"),
        ({"num_data": 0}, "num_data"),
        ({"beta": -0.1}, "beta"),
    ],
)
def test_bad_arguments_raise_value_errors(kwargs, match):
    enc = MLPEncoder(D_IN, (4,))
    args = dict(encoder=enc, head=LinearHead(4, K))
    args.update(kwargs)
    with pytest.raises(ValueError, match=match):
        InformationBottleneck(**args)


def test_prior_shape_mismatch_is_reported():
    from infodropout.models import LogNormalPrior

    enc = MLPEncoder(D_IN, (4,))
    with pytest.raises(ValueError, match="site 'z1'.*does not broadcast"):
        InformationBottleneck(enc, LinearHead(4, K), priors={"z1": LogNormalPrior((5,))}, input_shape=(D_IN,))


def _stock_svi_losses(ib, x, y, steps=40):
    svi = SVI(ib.model, ib.guide, pyro.optim.Adam({"lr": 1e-2}), TraceMeanField_ELBO())
    return [svi.step(x, y) for _ in range(steps)]


def test_two_models_with_default_names_both_train_under_stock_svi():
    x, y = _data()
    x = x.float()
    first, second = _classifier(1e-2, 200).float(), _classifier(1e-2, 200).float()
    before = [p.detach().clone() for p in second.parameters()]
    for ib in (first, second):
        losses = _stock_svi_losses(ib, x, y)
        assert sum(losses[-10:]) < 0.5 * sum(losses[:10])
    assert (first.name, second.name) == ("ib", "ib_1")
    assert all(not torch.equal(a, b) for a, b in zip(before, second.parameters(), strict=True))
    store = pyro.get_param_store()
    for ib in (first, second):  # each model's store entries are its own tensors
        for path, param in ib.guide.named_parameters():
            assert store[f"{ib.name}.guide$$${path}"] is param


def test_a_default_name_is_claimed_again_after_the_store_is_cleared():
    x, y = _data()
    x = x.float()
    first = _classifier(1e-2, 200).float()
    _stock_svi_losses(first, x, y, steps=1)
    pyro.clear_param_store()
    second = _classifier(1e-2, 200).float()
    _stock_svi_losses(second, x, y, steps=1)  # takes "ib", free again
    before = [p.detach().clone() for p in first.parameters()]
    _stock_svi_losses(first, x, y, steps=3)
    assert (first.name, second.name) == ("ib_1", "ib")
    assert all(not torch.equal(a, b) for a, b in zip(before, first.parameters(), strict=True))


def test_an_explicit_name_held_by_another_model_is_an_error():
    x, y = _data()
    enc = MLPEncoder(D_IN, (4,))
    first = InformationBottleneck(enc, LinearHead(4, K), name="mine").double()
    _stock_svi_losses(first, x, y, steps=1)
    second = InformationBottleneck(MLPEncoder(D_IN, (4,)), LinearHead(4, K), name="mine").double()
    with pytest.raises(ValueError, match=r"name='mine'.*param store holds parameters of that name from another"):
        _stock_svi_losses(second, x, y, steps=1)
    with pytest.raises(ValueError, match=r"name='a\$\$\$b'"):
        InformationBottleneck(MLPEncoder(D_IN, (4,)), LinearHead(4, K), name="a$$$b")


def test_numpy_scalars_are_accepted_for_beta_and_num_data():
    ib = InformationBottleneck(MLPEncoder(D_IN, (4,)), LinearHead(4, K), beta=np.float32(0.25), num_data=np.int64(64))
    assert (ib.beta, ib.num_data) == (0.25, 64) and type(ib.beta) is float and type(ib.num_data) is int
    ib.beta, ib.num_data = np.float64(2.0), np.int32(100)
    assert (ib.beta, ib.num_data) == (2.0, 100) and type(ib.num_data) is int
    for bad in (True, float("inf"), np.float32("nan"), torch.tensor(float("inf"))):
        with pytest.raises(ValueError, match="beta=.*expected a finite number >= 0"):
            ib.beta = bad
    for bad in (True, 2.0, np.float64(3.0), -1):
        with pytest.raises(ValueError, match="num_data"):
            ib.num_data = bad


@pytest.mark.parametrize(
    "input_shape, match",
    [
        ((D_IN + 1,), r"input_shape=\(21,\): the encoder cannot take one input of this shape \(mat1 and mat2"),
        (D_IN, r"input_shape=20: expected the shape of one input as a sequence of positive integers"),
        ((0, D_IN), r"input_shape=\(0, 20\): expected"),
        ("20", r"input_shape='20': expected"),
    ],
)
def test_an_input_shape_that_does_not_fit_the_encoder_is_a_one_line_error(input_shape, match):
    with pytest.raises(ValueError, match=match) as err:
        InformationBottleneck(MLPEncoder(D_IN, (4,)), LinearHead(4, K), input_shape=input_shape)
    assert "\n" not in str(err.value)


def test_a_batch_the_elbo_cannot_take_is_a_one_line_error():
    ib = _classifier(0.1, 10)
    x, y = _data()  # 16 examples
    for elbo in (TraceMeanField_ELBO(), Trace_ELBO()):  # (Pyro's trace appends its shapes after our first line)
        with pytest.raises(ValueError) as err:
            elbo.loss(ib.model, ib.guide, x[:0], y[:0])
        assert str(err.value).splitlines()[0] == "x: a batch of 0 examples; the ELBO needs at least one"
        with pytest.raises(ValueError) as err:
            elbo.loss(ib.model, ib.guide, x, y)
        assert str(err.value).splitlines()[0].startswith("num_data=10 is smaller than the batch of 16 examples")
    ib.num_data = 16
    assert math.isfinite(TraceMeanField_ELBO().loss(ib.model, ib.guide, x, y))


@pytest.mark.parametrize("elbo", [TraceMeanField_ELBO(), Trace_ELBO()])
def test_the_elbo_in_evaluation_mode_says_it_needs_the_noise_on(elbo):
    ib = _classifier(0.1, None).eval()
    x, y = _data()
    with pytest.raises(ValueError, match=r"layer 'z1' has its noise off .*ib.train\(\) or .*sampling\(True\)"):
        elbo.loss(ib.model, ib.guide, x, y)
    with sampling(True):
        assert math.isfinite(elbo.loss(ib.model, ib.guide, x, y))
    assert math.isfinite(elbo.loss(ib.model, ib.guide.train(), x, y))


@pytest.mark.parametrize("prior", ["log-normal", "factorised", "correlated", "correlated-low-rank"])
def test_a_relu_layer_refuses_priors_without_a_point_mass_at_zero(prior):
    """A ReLU unit that is off has an infinite KL against such a prior: refused, naming what is accepted."""
    with pytest.raises(ValueError, match=rf"prior='{prior}' at site 'z1': the layer's relu units can be off") as err:
        _classifier(0.1, None, "relu", prior)
    assert "accepted here: log-uniform" in str(err.value) and "\n" not in str(err.value)
    ib = _classifier(0.1, None, "softplus", prior)  # the authors' pairing: softplus with a log-normal family prior
    assert ib.latent_sites == ("z1", "z2")


def test_the_authors_kl_convention_charges_every_unit_as_their_code():
    """kl_convention="authors": ``-log(alpha / (alpha_min + alpha_max))`` summed over every unit, off or not
    (the authors' ``kl = -tf.log(alpha / (max_alpha + 0.001))``); the exact KL leaves out units that are off."""
    x, y = _data()
    exact, authors = _classifier(0.5, None), _classifier(0.5, None)
    authors.kl_convention = "authors"
    assert (exact.kl_convention, authors.kl_convention) == ("exact", "authors")
    layer = authors.encoder.layers[0]
    f, alpha = torch.relu(layer.f_head(x)), layer.alpha(x)
    assert (f == 0).any() and (f > 0).any()
    theirs = -torch.log(alpha / (layer.alpha_min + layer.alpha_max))  # every unit
    assert_close(authors.information(x)["z1"], theirs.sum(-1))
    assert_close(exact.information(x)["z1"], torch.where(f > 0, theirs, 0.0).sum(-1))
    assert_close(exact.information(x, kl_convention="authors")["z1"], theirs.sum(-1))
    # and the ELBO under the authors' convention is their loss: cross-entropy + beta * sum of -log(alpha / cap)
    torch.manual_seed(4)
    loss = TraceMeanField_ELBO().differentiable_loss(authors.model, authors.guide, x, y)
    torch.manual_seed(4)
    h, kl = x, 0.0
    for layer in authors.encoder.layers:
        f, alpha = torch.relu(layer.f_head(h)), layer.alpha(h)
        kl = kl - torch.log(alpha / (layer.alpha_min + layer.alpha_max)).sum()
        h = f * torch.exp(alpha * torch.randn(f.shape, dtype=f.dtype))
    assert_close(loss, F.cross_entropy(authors.head(h), y, reduction="sum") + 0.5 * kl, rtol=1e-10, atol=1e-10)
    with pytest.raises(ValueError, match="kl_convention='tf': expected one of exact, authors"):
        _classifier(0.5, None).kl_convention = "tf"


def test_information_under_both_conventions_comes_from_one_draw_of_the_noise():
    torch.manual_seed(0)
    ib = _classifier(0.1, None, priors={"z1": "log-uniform", "z2": "log-uniform"})
    x, _ = _data()
    layer = ib.encoder.layers[1]
    torch.manual_seed(9)
    both = ib.information_by_convention(x)
    torch.manual_seed(9)
    z1 = ib.encoder.layers[0](x)  # the first layer's noisy output, drawn as the call drew it
    f2, alpha2 = torch.relu(layer.f_head(z1)), layer.alpha(z1)
    charge = -torch.log(alpha2 / layer.max_alpha)
    assert_close(both["authors"]["z2"], charge.sum(-1))
    assert_close(both["exact"]["z2"], torch.where(f2 > 0, charge, 0.0).sum(-1))
    assert ib.loguniform_sites == ("z1", "z2")
