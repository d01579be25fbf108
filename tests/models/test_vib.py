"""Deep VIB (``dropout="vib"``): deterministic layers, a Gaussian last layer, a N(0, 1) prior."""

import pyro
import pytest
import torch
from pyro.infer import TraceMeanField_ELBO
from torch.distributions import Normal, kl_divergence
from torch.nn import functional as F

from infodropout.guides import MLPEncoder
from infodropout.guides.layers import Deterministic, GaussianLatent
from infodropout.models.zoo import build_network

from common import assert_close

B, D_IN, K = 12, 20, 4


def _vib(beta=1e-2, num_data=120):
    torch.manual_seed(0)
    return build_network("mlp", (D_IN,), K, dropout="vib", hidden=(16, 8, 6), beta=beta, num_data=num_data).double()


def test_vib_is_deterministic_layers_and_a_gaussian_last_layer_with_a_standard_normal_prior():
    enc = MLPEncoder(D_IN, (16, 8, 6), dropout="vib")
    assert [type(layer) for layer in enc.layers] == [Deterministic, Deterministic, GaussianLatent]
    ib = _vib()
    assert ib.latent_sites == ("z3",) and ib.model.priors[0].name == "normal"


@pytest.mark.parametrize("beta", [0.0, 1e-3, 0.5])
def test_the_elbo_is_the_handwritten_vib_loss(beta):
    ib = _vib(beta)
    g = torch.Generator().manual_seed(1)
    x, y = torch.randn(B, D_IN, generator=g, dtype=torch.float64), torch.randint(0, K, (B,), generator=g)
    pyro.set_rng_seed(3)
    loss = TraceMeanField_ELBO().differentiable_loss(ib.model, ib.guide, x, y)
    pyro.set_rng_seed(3)
    h = x
    for layer in ib.encoder.layers[:-1]:
        h = F.relu(layer.f_head(h))
    last = ib.encoder.layers[-1]
    loc, scale = last.f_head(h), F.softplus(last.scale_head(h))
    z = loc + scale * torch.randn(loc.shape, dtype=loc.dtype)
    kl = 0.5 * (scale.square() + loc.square() - 1 - 2 * torch.log(scale)).sum()
    expected = ib.num_data / B * (F.cross_entropy(ib.head(z), y, reduction="sum") + beta * kl)
    assert_close(loss, expected, rtol=1e-10, atol=1e-10)


def test_information_is_the_closed_form_kl_and_prediction_uses_the_mean():
    ib = _vib()
    x = torch.randn(B, D_IN, dtype=torch.float64)
    h = x
    for layer in ib.encoder.layers[:-1]:
        h = F.relu(layer.f_head(h))
    last = ib.encoder.layers[-1]
    q = Normal(last.f_head(h), F.softplus(last.scale_head(h)))
    assert_close(ib.information(x)["z3"], kl_divergence(q, Normal(0.0, 1.0)).sum(-1), rtol=1e-10, atol=1e-12)
    ib.eval()
    assert_close(ib.predict(x), ib.head(q.loc).softmax(-1), rtol=1e-12, atol=1e-12)


def test_vib_is_only_a_fully_connected_kind():
    with pytest.raises(ValueError, match=r"dropout='vib': expected one of \('information', 'binary'"):
        build_network("allcnn32", (3, 32, 32), 10, dropout="vib")
