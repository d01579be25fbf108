import numpy as np
import pyro
import pyro.poutine as poutine
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from torch import nn

from infodropout.guides import (
    AllCNN32Encoder,
    AllCNN96Encoder,
    BinaryDropout,
    ConvVAEEncoder,
    GaussianDropout,
    GaussianLatent,
    InformationDropout,
    MLPEncoder,
    VAEEncoder,
    noisy_conv2d,
    noisy_linear,
    sampling,
)
from infodropout.guides.noise import MultiplicativeLogNormal

from common import assert_close


@settings(max_examples=40, deadline=None)
@given(
    logit_scale=st.floats(0.0, 1e4),
    alpha_min=st.floats(1e-4, 0.5),
    alpha_max=st.floats(0.51, 2.0),
    seed=st.integers(0, 2**16),
)
def test_alpha_stays_within_its_bounds(logit_scale, alpha_min, alpha_max, seed):
    torch.manual_seed(seed)
    layer = InformationDropout.linear(5, 7, alpha_min=alpha_min, alpha_max=alpha_max)
    h = logit_scale * torch.randn(16, 5)
    alpha = layer.alpha(h)  # float32: allow rounding of the bounds
    ulp = 4 * torch.finfo(alpha.dtype).eps
    assert (alpha >= alpha_min * (1 - ulp)).all() and (alpha <= (alpha_min + alpha_max) * (1 + ulp)).all()
    # and the guide distribution accepts it (validation on: scale <= max_scale is checked)
    MultiplicativeLogNormal(torch.ones_like(alpha), alpha, max_scale=layer.max_alpha, validate_args=True)


@pytest.mark.parametrize(
    "alpha_min, alpha_max", [(0.5, 0.3), (0.7, 0.001), (2.0, 2.0), (np.float32(0.1), np.float64(1.0))]
)
def test_every_positive_pair_of_alpha_bounds_is_a_range_from_alpha_min_of_width_alpha_max(alpha_min, alpha_max):
    """alpha_max is the range added to alpha_min, not an upper bound: alpha_min > alpha_max is fine."""
    torch.manual_seed(0)
    layer = InformationDropout.linear(5, 7, alpha_min=alpha_min, alpha_max=alpha_max)
    with torch.no_grad():
        layer.alpha_head.bias.fill_(-50.0)
        low = layer.alpha(torch.zeros(1, 5))  # sigmoid(-50) ~ 2e-22: alpha_min
        layer.alpha_head.bias.fill_(50.0)
        high = layer.alpha(torch.zeros(1, 5))  # sigmoid(50) = 1: alpha_min + alpha_max
    assert_close(low, torch.full((1, 7), float(alpha_min)))
    assert_close(high, torch.full((1, 7), float(alpha_min) + float(alpha_max)))
    assert layer.max_alpha == pytest.approx(float(alpha_min) + float(alpha_max))
    assert type(layer.alpha_min) is float and type(layer.alpha_max) is float


def test_training_mode_emits_a_latent_site_with_the_layer_event_dims():
    torch.manual_seed(0)
    dense = InformationDropout.linear(4, 6, name="zd")
    conv = InformationDropout.conv2d(3, 5, name="zc")
    trace = poutine.trace(lambda: (dense(torch.randn(2, 4)), conv(torch.randn(2, 3, 8, 8)))).get_trace()
    assert trace.nodes["zd"]["fn"].event_shape == (6,) and trace.nodes["zd"]["fn"].batch_shape == (2,)
    assert trace.nodes["zc"]["fn"].event_shape == (5, 4, 4) and trace.nodes["zc"]["fn"].batch_shape == (2,)
    assert trace.nodes["zd"]["fn"].base_dist.max_scale == pytest.approx(0.701)


def test_eval_mode_is_deterministic_and_equals_the_noise_free_activation():
    torch.manual_seed(0)
    layer = InformationDropout.linear(4, 6).eval()
    h = torch.randn(3, 4)
    out1, out2 = layer(h), layer(h)
    assert torch.equal(out1, out2)
    assert torch.equal(out1, torch.relu(layer.f_head(h)))
    with sampling(True):
        assert not torch.equal(layer(h), out1)
    layer.train()
    with sampling(False):
        assert torch.equal(layer(h), out1)


def test_units_that_are_off_stay_off():
    torch.manual_seed(0)
    layer = InformationDropout.linear(4, 64)
    h = torch.randn(32, 4)
    f = torch.relu(layer.f_head(h))
    z = layer(h)
    assert (f == 0).any()
    assert torch.equal(z == 0, f == 0)


def test_gradients_reach_the_alpha_head_through_the_noise():
    torch.manual_seed(0)
    layer = InformationDropout.linear(4, 6, activation="softplus")
    z = layer(torch.randn(8, 4))
    (z**2).sum().backward()
    g = layer.alpha_head.weight.grad
    assert g is not None and torch.isfinite(g).all() and g.abs().sum() > 0


def test_binary_dropout_drops_p_and_preserves_the_mean():
    torch.manual_seed(0)
    layer = BinaryDropout(nn.Identity(), p=0.3)
    h = torch.rand(200_000) + 0.5
    z = layer(h)
    assert abs((z == 0).float().mean().item() - 0.3) < 0.005
    assert_close(z.mean(), h.mean(), rtol=5e-3, atol=0)


def test_gaussian_dropout_moments():
    torch.manual_seed(0)
    layer = GaussianDropout(nn.Identity(), p=0.5)
    h = torch.full((400_000,), 2.0)
    z = layer(h)
    assert_close(z.mean(), torch.tensor(2.0), rtol=5e-3, atol=0)
    assert_close(z.var(), torch.tensor(4.0 * 0.5 / 0.5), rtol=1e-2, atol=0)


def test_gaussian_latent_is_loc_plus_scale_noise():
    torch.manual_seed(0)
    layer = GaussianLatent.linear(4, 3, scale_fn="exp", name="z")
    h = torch.randn(5, 4)
    q = layer.distribution(h)
    assert_close(q.loc, layer.f_head(h))
    assert_close(q.scale, torch.exp(layer.scale_head(h)))
    assert torch.equal(layer.eval()(h), layer.f_head(h))


@pytest.mark.parametrize("kind", ["information", "binary", "gaussian", "none"])
def test_noisy_factories_give_the_right_shapes(kind):
    torch.manual_seed(0)
    assert noisy_linear(kind, 5, 7)(torch.randn(2, 5)).shape == (2, 7)
    assert noisy_conv2d(kind, 3, 4)(torch.randn(2, 3, 8, 8)).shape == (2, 4, 4, 4)


@pytest.mark.parametrize(
    "encoder, x, shape",
    [
        (MLPEncoder(784, (32, 16)), torch.rand(2, 1, 28, 28), (2, 16)),
        (AllCNN32Encoder(width=0.1), torch.rand(2, 3, 32, 32), (2, 19, 8, 8)),
        (AllCNN96Encoder(width=0.25), torch.rand(2, 1, 96, 96), (2, 48, 6, 6)),
        (VAEEncoder(784, 40, 5), torch.rand(2, 1, 28, 28), (2, 5)),
        (VAEEncoder(784, 40, 5, latent="information"), torch.rand(2, 1, 28, 28), (2, 5)),
        (ConvVAEEncoder(z_dim=6), torch.rand(2, 1, 64, 64), (2, 6)),
    ],
)
def test_encoders_output_shapes_and_sites(encoder, x, shape):
    torch.manual_seed(0)
    trace = poutine.trace(encoder).get_trace(x)
    assert trace.nodes["_RETURN"]["value"].shape == shape
    latent = [n for n, s in trace.nodes.items() if s["type"] == "sample"]
    assert latent, "the encoder's noisy layers own sample sites"
    assert trace.nodes[latent[-1]]["value"] is trace.nodes["_RETURN"]["value"]


@pytest.mark.parametrize(
    "build, match",
    [
        (lambda: InformationDropout.linear(3, 3, alpha_min=0.0), "alpha_min"),
        (lambda: InformationDropout.linear(3, 3, alpha_max=-1.0), "alpha_max"),
        (lambda: InformationDropout.linear(3, 3, alpha_min=float("inf")), "alpha_min=inf: expected a finite"),
        (lambda: InformationDropout.linear(3, 3, alpha_max=float("nan")), "alpha_max=nan"),
        (lambda: InformationDropout.linear(3, 3, alpha_max=True), "alpha_max=True"),
        (lambda: InformationDropout.linear(3, 3, activation="tanh"), "activation"),
        (lambda: noisy_linear("spike", 3, 3), "dropout='spike'"),
        (lambda: BinaryDropout(nn.Identity(), p=1.0), "p=1.0"),
        (lambda: MLPEncoder(784, (10, 0)), "hidden"),
        (lambda: VAEEncoder(latent="laplace"), "latent"),
        (lambda: GaussianLatent.linear(2, 2, scale_fn="square"), "scale_fn"),
    ],
)
def test_bad_arguments_name_the_argument(build, match):
    with pytest.raises(ValueError, match=match):
        build()


def test_layers_sample_outside_inference_like_plain_modules():
    torch.manual_seed(0)
    pyro.clear_param_store()
    z = MLPEncoder(8, (4,))(torch.randn(3, 8))
    assert z.shape == (3, 4) and z.requires_grad
