"""Predictions averaged over the noise, BALD and the information per example, against direct computations."""

import numpy as np
import pytest
import torch

from infodropout.models.zoo import build_network
from infodropout.train.evaluation import dimension_kl, evaluating, latent_layer, scores
from infodropout.train.evaluation.information import unit_information
from infodropout.train.evaluation.sites import site_distribution
from infodropout.train.evaluation.uncertainty import (
    NOISE_OFF,
    TEMPERATURE,
    calibration,
    mc,
    ood_scores,
    out_of_distribution,
    predictive,
    split,
)


def _network(dropout: str = "information"):
    torch.manual_seed(0)
    return build_network("mlp", (1, 8, 8), 4, dropout=dropout, hidden=(12, 10), num_data=100)


def _batches(n: int = 30, size: int = 7):
    g = torch.Generator().manual_seed(1)
    x, y = torch.randn(n, 1, 8, 8, generator=g), torch.randint(0, 4, (n,), generator=g)
    return [(x[i : i + size], y[i : i + size]) for i in range(0, n, size)]


def test_predictions_are_the_running_means_of_the_draws_and_bald_their_mutual_information():
    ib, batches = _network(), _batches()
    torch.manual_seed(5)
    pred = predictive(ib, batches, samples=(1, 3))
    torch.manual_seed(5)  # the same draws, taken one by one
    draws, noise_off = [], []
    with evaluating(ib):
        for x, _ in batches:
            noise_off.append(ib.predict(x).double())
            draws.append(torch.stack([ib.predict(x, 1).double() for _ in range(3)]))
    draws = torch.cat(draws, 1).numpy()  # (3, N, K)
    assert np.allclose(pred.probs(NOISE_OFF), torch.cat(noise_off).numpy(), atol=1e-6)
    assert np.allclose(pred.mc[1], draws[0], atol=1e-6) and np.allclose(pred.mc[3], draws.mean(0), atol=1e-6)
    assert np.allclose(pred.bald[3], scores.mutual_information(draws), atol=1e-9)
    assert (pred.bald[3] > 0).all() and not np.allclose(pred.mc[3], pred.probs(NOISE_OFF))


def test_a_network_without_noise_averages_to_its_noise_off_prediction_with_no_bald_and_no_information():
    pred = predictive(_network("none"), _batches(), samples=(4,))
    assert np.allclose(pred.mc[4], pred.probs(NOISE_OFF)) and np.allclose(pred.bald[4], 0.0)
    assert pred.information == {} and "information" not in ood_scores(pred)


def test_the_information_per_example_is_the_sum_of_the_units_kl_with_the_noise_off_upstream():
    ib = _network()
    x = _batches()[0][0]
    pred = predictive(ib, [(x, torch.zeros(len(x), dtype=torch.long))], samples=(1,))
    with evaluating(ib):
        for site in ib.latent_sites:  # each site against its own road: dimension_kl of site_distribution
            _, layer = latent_layer(ib, site)
            _, joint, _, _ = dimension_kl(ib, site, site_distribution(ib, x, layer), "log-normal")
            assert np.allclose(pred.information[site], joint.numpy(), atol=1e-5)
        first = ib.information(x)["z1"]  # the first layer sees x itself: the noise upstream changes nothing
        assert np.allclose(pred.information["z1"], first.numpy(), atol=1e-5)
        authors = unit_information(ib, x, "authors")["z2"].sum(1)
        assert (authors >= torch.as_tensor(pred.information["z2"]) - 1e-6).all()  # the authors' charge every unit


def test_calibration_fits_the_temperature_on_the_held_out_examples_only():
    ib = _network()
    torch.manual_seed(0)
    pred = predictive(ib, _batches(40), samples=(2,))
    held, rest = split(40, 15, seed=0)
    assert len(np.intersect1d(held, rest)) == 0 and len(held) + len(rest) == 40
    out = calibration(pred, held, rest)
    assert out["fitted_temperature"] == pytest.approx(scores.fit_temperature(pred.log_probs[held], pred.labels[held]))
    tempered = scores.tempered(pred.log_probs[rest], out["fitted_temperature"])
    assert out[TEMPERATURE]["nll"] == pytest.approx(scores.negative_log_likelihood(tempered, pred.labels[rest]))
    assert out[mc(2)]["ece"] == pytest.approx(scores.expected_calibration_error(pred.mc[2][rest], pred.labels[rest]))
    with pytest.raises(ValueError, match="overlap"):
        calibration(pred, held, held)
    with pytest.raises(ValueError, match="held_out"):
        split(40, 40)


def test_detection_scores_every_score_of_the_in_distribution_against_each_set():
    ib = _network()
    inside = predictive(ib, _batches(), samples=(2,))
    far = [(10 * x, y) for x, y in _batches()]  # inputs far from the data
    found = out_of_distribution(inside, {"far": predictive(ib, far, samples=(2,))})
    assert set(found["far"]) == {"entropy-noise-off", "entropy-mc-2", "bald-mc-2", "information"}
    s_in, s_out = ood_scores(inside)["information"], ood_scores(predictive(ib, far, samples=(2,)))["information"]
    assert found["far"]["information"]["auroc"] == pytest.approx(scores.auroc(s_in, s_out))
    reference = predictive(ib, _batches(20, 5), samples=(2,))  # other in-distribution examples
    typical = ood_scores(inside, reference)["information-typicality"]
    logs = np.log(np.stack([reference.information[s] for s in ib.latent_sites], 1) + 1e-3)
    mine = np.log(np.stack([inside.information[s] for s in ib.latent_sites], 1) + 1e-3)
    assert np.allclose(typical, scores.mahalanobis(logs, mine))
    assert "information-typicality" in out_of_distribution(inside, {"far": inside}, reference)["far"]
