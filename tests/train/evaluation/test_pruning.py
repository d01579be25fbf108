"""Pruning by information: the units' information, the rankings, and the smaller network against the masked
original."""

import io

import pytest
import torch
from torch.distributions import Normal, kl_divergence

from infodropout.models.kl import loguniform_kl
from infodropout.models.zoo import build_network
from infodropout.train.evaluation import evaluating
from infodropout.train.evaluation.information import latent_distributions
from infodropout.train.evaluation.pruning import (
    PrunedMLP,
    check_mlp,
    fitted_unit_information,
    incoming_norm,
    keep_masks,
    masked,
    mean_unit_information,
    noise_occupancy,
    unit_scores,
)


def _network(dropout: str = "information", hidden=(12, 10)):
    torch.manual_seed(0)
    return build_network("mlp", (1, 8, 8), 4, dropout=dropout, hidden=hidden, num_data=100)


def _batches(n: int = 40, size: int = 16):
    x = torch.randn(n, 1, 8, 8, generator=torch.Generator().manual_seed(1))
    return [(x[i : i + size], torch.zeros(len(x[i : i + size]), dtype=torch.long)) for i in range(0, n, size)]


def _logits(ib, x):
    with evaluating(ib):
        return ib.head(ib.representation(x))


def _kill(layer, units):
    """Units that are off for every input (zero incoming weights, a negative bias: ReLU(-1) = 0); the others
    on for these inputs (a large bias)."""
    with torch.no_grad():
        layer.f_head.bias += 20.0
        layer.f_head.weight[units] = 0.0
        layer.f_head.bias[units] = -1.0


def test_pruning_only_zero_information_units_leaves_the_outputs_unchanged():
    ib = _network()
    dead = {"z1": [0, 3, 7], "z2": [2, 9]}
    for layer in ib.encoder.layers:
        _kill(layer, dead[layer.name])
    information = mean_unit_information(ib, _batches())
    for name, units in dead.items():
        assert (information[name][units] == 0).all()  # off for every input: no information at all
        alive = [u for u in range(len(information[name])) if u not in units]
        assert (information[name][alive] > 0).all()
    counts = [12 - 3, 10 - 2]
    masks = keep_masks(unit_scores(ib, "information", information), counts)
    for name, units in dead.items():
        assert not masks[name][units].any()  # the information ranking keeps exactly the live units
    pruned = PrunedMLP.from_network(ib, masks)
    assert pruned.widths == [64, 9, 8]
    x = torch.cat([x for x, _ in _batches()])
    assert torch.allclose(pruned(x), _logits(ib, x), atol=1e-6)


def test_the_pruned_network_equals_the_original_with_the_pruned_units_zeroed():
    ib = _network(hidden=(12, 10, 6))
    masks = keep_masks(unit_scores(ib, "random", seed=3), [5, 4, 2])
    pruned = PrunedMLP.from_network(ib, masks)
    x = torch.cat([x for x, _ in _batches()])
    with masked(ib, masks):
        expected = _logits(ib, x)
    assert torch.allclose(pruned(x), expected, atol=1e-6)
    assert not torch.allclose(pruned(x), _logits(ib, x), atol=1e-3)  # the hooks are gone; pruning changed something


def test_the_mean_information_is_the_exact_log_uniform_kl_averaged_over_the_examples():
    ib = _network()
    x = torch.cat([x for x, _ in _batches()])
    with evaluating(ib):
        q = latent_distributions(ib, x)
    information = mean_unit_information(ib, _batches())
    for site in ib.latent_sites:
        assert torch.allclose(information[site], loguniform_kl(q[site], "exact").double().mean(0), atol=1e-6)


def test_magnitude_ranks_by_the_norm_of_the_incoming_weights_and_ties_keep_the_lower_index():
    ib = _network()
    layer = ib.encoder.layers[0]
    with torch.no_grad():
        layer.f_head.weight.zero_()
        layer.f_head.weight[4, :2] = torch.tensor([3.0, 4.0])  # norm 5
        layer.f_head.weight[1, 0] = 2.0
    assert incoming_norm(layer)[4] == pytest.approx(5.0)
    masks = keep_masks(unit_scores(ib, "magnitude"), [3, 1])
    assert torch.nonzero(masks["z1"]).flatten().tolist() == [0, 1, 4]  # 5, 2, then the first of the zeros


def test_bad_counts_and_rankings_are_one_line_errors():
    ib = _network()
    scores = unit_scores(ib, "magnitude")
    with pytest.raises(ValueError, match=r"keep 13 units: expected an integer in \[1, 12\]"):
        keep_masks(scores, [13, 1])
    with pytest.raises(ValueError, match="one count per layer"):
        keep_masks(scores, [3])
    with pytest.raises(ValueError, match="no latent site"):
        unit_scores(_network("binary"), "information", {})
    with pytest.raises(ValueError, match="ranking='size'"):
        unit_scores(ib, "size")
    vae = build_network("vae", (1, 8, 8), hidden=(8,), z_dim=2)
    with pytest.raises(ValueError, match="smaller fully-connected classifiers"):
        check_mlp(vae)


def test_a_saved_pruned_network_loads_back_with_weights_only():
    ib = _network()
    pruned = PrunedMLP.from_network(ib, keep_masks(unit_scores(ib, "magnitude"), [4, 3]), mean=[0.5], std=[0.25])
    buffer = io.BytesIO()
    torch.save(pruned.to_file(), buffer)
    buffer.seek(0)
    again = PrunedMLP.from_file(torch.load(buffer, weights_only=True))
    x = torch.randn(5, 1, 8, 8)
    assert torch.equal(again(x), pruned(x)) and again.mean == [0.5] and again.widths == [64, 4, 3]


def test_the_fitted_information_is_the_smallest_mean_kl_against_a_normal_prior_plus_the_on_off_entropy():
    ib = _network()
    batches = _batches(64, 16)
    fitted = fitted_unit_information(ib, batches)
    x = torch.cat([x for x, _ in batches])
    with evaluating(ib):
        q = latent_distributions(ib, x)["z2"]
    on = q.base > 0
    for u in range(q.base.shape[1]):
        p = on[:, u].double().mean()
        expected = -(torch.xlogy(p, p) + torch.xlogy(1 - p, 1 - p))  # H_b(p)
        if on[:, u].any():
            m, s = torch.log(q.base[on[:, u], u]).double(), q.scale[on[:, u], u].double()
            best = Normal(m.mean(), (m.var(unbiased=False) + s.square().mean()).sqrt())  # moment-matched
            kl = kl_divergence(Normal(m, s), best).mean()
            for other in (Normal(m.mean() + 0.1, best.scale), Normal(m.mean(), 1.2 * best.scale)):
                assert kl_divergence(Normal(m, s), other).mean() > kl  # it is the minimum
            expected = expected + p * kl
        assert fitted["z2"][u] == pytest.approx(float(expected), abs=1e-6)


def test_the_fitted_information_is_zero_for_units_that_are_always_off_or_constant():
    ib = _network()
    layer = ib.encoder.layers[0]
    with torch.no_grad():
        layer.f_head.weight[:3] = 0.0
        layer.f_head.bias[:2] = -1.0  # always off
        layer.f_head.bias[2] = 2.0  # always on, f = 2 for every input
        layer.alpha_head.weight[2] = 0.0  # and a constant noise scale
    fitted = fitted_unit_information(ib, _batches())
    assert torch.allclose(fitted["z1"][:3], torch.zeros(3, dtype=torch.float64), atol=1e-6)
    assert (fitted["z1"][3:] > 0).any()


def test_noise_occupancy_counts_units_on_at_the_cap_and_off_for_good():
    ib = _network()
    z1, z2 = ib.encoder.layers
    _kill(z1, [0, 3, 7])  # 3 of 12 off for every input, the others on
    with torch.no_grad():
        z1.alpha_head.bias.fill_(50.0)  # sigmoid = 1: alpha at the cap for every input
        z1.alpha_head.weight.zero_()
        z2.alpha_head.bias.fill_(-50.0)  # sigmoid = 0: alpha at alpha_min, far below the cap
        z2.alpha_head.weight.zero_()
    batches = _batches()
    occupancy = noise_occupancy(ib, batches)
    assert occupancy["z1"] == {"on": 9 / 12, "at_cap": 1.0, "never_on": 3 / 12}
    assert occupancy["z2"]["at_cap"] == 0.0
    x = torch.cat([b[0] for b in batches])  # z2's share on, computed apart: its input is z1's f with the noise off
    with evaluating(ib):
        f1 = torch.relu(z1.f_head(x.flatten(1)))
        on2 = torch.relu(z2.f_head(f1)) > 0
    assert occupancy["z2"]["on"] == pytest.approx(on2.double().mean().item(), abs=1e-12)
    assert occupancy["z2"]["never_on"] == pytest.approx(1 - on2.any(0).double().mean().item(), abs=1e-12)
    half = noise_occupancy(ib, batches, near=0.5)  # alpha at the cap is above half of it; alpha_min is not
    assert half["z1"]["at_cap"] == 1.0 and half["z2"]["at_cap"] == 0.0
    with pytest.raises(ValueError, match="near=0: expected a share of the cap"):
        noise_occupancy(ib, batches, near=0)
    with pytest.raises(ValueError, match="no examples"):
        noise_occupancy(ib, [])
    assert noise_occupancy(_network("vib"), batches) == {}  # Gaussian latents: no cap
    _kill(z2, list(range(10)))
    assert noise_occupancy(ib, batches)["z2"] == {"on": 0.0, "at_cap": None, "never_on": 1.0}  # none on
