import math

import pytest
import torch
from torch.distributions import LogNormal

from infodropout.guides.noise import MultiplicativeLogNormal

from common import assert_close

N_MC = 400_000


def _params():
    base = torch.tensor([0.0, 0.3, 1.0, 2.5, 0.0, 7.0], dtype=torch.float64)
    scale = torch.tensor([0.2, 0.05, 0.4, 0.7, 0.9, 1.3], dtype=torch.float64)
    return base, scale


def test_rsample_is_base_times_lognormal_noise():
    torch.manual_seed(0)
    base, scale = _params()
    z = MultiplicativeLogNormal(base, scale).rsample((N_MC,))  # (N, 6)
    on = base > 0
    assert (z[:, ~on] == 0).all(), "a unit that is off must stay exactly 0"
    log_eps = torch.log(z[:, on] / base[on])  # Normal(0, scale^2)
    se = scale[on] / math.sqrt(N_MC)
    assert (log_eps.mean(0).abs() < 5 * se).all()
    assert_close(log_eps.std(0), scale[on], rtol=1e-2, atol=0)


def test_rsample_reparameterised_gradients():
    torch.manual_seed(1)
    base = torch.tensor([0.5, 2.0], requires_grad=True)
    scale = torch.tensor([0.3, 0.6], requires_grad=True)
    torch.manual_seed(2)
    z = MultiplicativeLogNormal(base, scale).rsample()
    z.sum().backward()
    torch.manual_seed(2)
    eps = torch.randn(2)
    assert_close(base.grad, torch.exp(scale.detach() * eps))
    assert_close(scale.grad, base.detach() * eps * torch.exp(scale.detach() * eps))


def test_log_prob_matches_torch_lognormal_on_active_units():
    base, scale = _params()
    q = MultiplicativeLogNormal(base, scale)
    on = base > 0
    z = torch.tensor([0.0, 0.25, 1.7, 0.9, 0.0, 12.0], dtype=torch.float64)
    expected = LogNormal(torch.log(base[on]), scale[on]).log_prob(z[on])
    assert_close(q.log_prob(z)[on], expected)
    assert (q.log_prob(z)[~on] == 0).all(), "the point mass at 0 has log-probability 0"
    z_bad = z.clone()
    z_bad[0] = 0.5
    assert q.log_prob(z_bad)[0] == -math.inf


def test_moments_and_entropy_against_monte_carlo():
    torch.manual_seed(3)
    base, scale = _params()
    q = MultiplicativeLogNormal(base, scale)
    z = q.rsample((N_MC,))
    on = base > 0
    assert_close(z.mean(0), q.mean, rtol=2e-2, atol=1e-12)
    assert_close(z.var(0), q.variance, rtol=6e-2, atol=1e-12)
    lp = q.log_prob(z)
    assert_close(-lp[:, on].mean(0), q.entropy()[on], rtol=0, atol=1e-2)
    assert_close(q.entropy()[on], LogNormal(torch.log(base[on]), scale[on]).entropy())
    assert (q.entropy()[~on] == 0).all()
    assert_close(q.median, base)


def test_expand_and_shapes():
    q = MultiplicativeLogNormal(torch.ones(3), 0.5, max_scale=0.701)
    e = q.expand((4, 3))
    assert e.batch_shape == (4, 3) and e.max_scale == 0.701
    assert e.rsample((2,)).shape == (2, 4, 3)


@pytest.mark.parametrize(
    "base, scale, kwargs, match",
    [
        (torch.tensor([-1.0]), torch.tensor([0.5]), {}, "base"),
        (torch.tensor([1.0]), torch.tensor([0.0]), {}, "scale"),
        (torch.tensor([1.0]), torch.tensor([0.8]), {"max_scale": 0.701}, "max_scale"),
    ],
)
def test_invalid_parameters_raise(base, scale, kwargs, match):
    with pytest.raises(ValueError, match=match):
        MultiplicativeLogNormal(base, scale, validate_args=True, **kwargs)
