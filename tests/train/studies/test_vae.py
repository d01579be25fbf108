"""The ``vae`` experiment: its grid, what its measurement computes against known answers, and the quick
study end to end through the command line."""

import json
import math

import numpy as np
import pytest
import torch
from torch.distributions import Normal, kl_divergence
from torch.nn import functional as F

from infodropout.models.zoo import build_network
from infodropout.train import evaluation as ev
from infodropout.train.cli import main
from infodropout.train.evaluation import log_importance_weights
from infodropout.train.report.figures import image_mosaic
from infodropout.train.studies import EXPERIMENTS, StudyOptions
from infodropout.train.studies import vae as exp
from tests.common import assert_close

PNG = b"\x89PNG\r\n\x1a\n"
SHAPE = (1, 4, 4)


def network(latent, z_dim=1, seed=0, spread=0.5):
    """A tiny VAE of the study's kind (softplus trunk, Bernoulli pixels), in float64, its weights spread
    away from their initial values so that the posterior is not the prior."""
    torch.manual_seed(seed)
    prior = "normal" if latent == "gaussian" else "log-normal"
    ib = build_network("vae", SHAPE, latent=latent, prior=prior, z_dim=z_dim, hidden=(8,)).double()
    with torch.no_grad():
        for p in ib.parameters():
            p.add_(spread * torch.randn_like(p))
    return ib


def binary_images(n=6, seed=0):
    return torch.bernoulli(
        torch.full((n, *SHAPE), 0.4, dtype=torch.float64), generator=torch.Generator().manual_seed(seed)
    )


def hidden(ib, x):
    return ib.encoder.hidden(x.flatten(1))  # (B, 8)


def log_px_given_z(ib, x, z):
    """``log p(x | z)`` of every image under every z: ``(M, N)`` for ``z (M, D)``, ``x (N, ...)``."""
    logits = ib.head(z).flatten(1)  # (M, P)
    pixels = x.flatten(1)  # (N, P)
    return -F.binary_cross_entropy_with_logits(
        logits[:, None].expand(-1, len(x), -1), pixels[None].expand(len(z), -1, -1), reduction="none"
    ).sum(-1)  # (M, N)


def quadrature(ib, x, latent, points=40001):
    """With one latent dimension, by quadrature on a grid ``u`` (``z`` itself, or ``log z`` for the
    log-normal latent): the exact ``log p(x) = log int p(u) p(x | z(u)) du`` and the exact ELBO
    ``E_q[log p(x | z)] - KL(q || p)``, both ``(N,)``."""
    with torch.no_grad():
        h = hidden(ib, x)
        layer = ib.encoder.latent
        if latent == "gaussian":
            prior = Normal(torch.zeros((), dtype=x.dtype), torch.ones((), dtype=x.dtype))
            q = Normal(layer.f_head(h)[:, 0], torch.exp(layer.scale_head(h))[:, 0])  # (N,)
        else:
            p = ib.model.priors[0]
            prior = Normal(p.loc, p.scale)
            f = F.softplus(layer.f_head(h))[:, 0]
            q = Normal(torch.log(f), layer.alpha(h)[:, 0])  # (N,) on log z
        u = torch.linspace(-14.0, 14.0, points, dtype=x.dtype)  # (M,)
        du = u[1] - u[0]
        z = (u if latent == "gaussian" else torch.exp(u))[:, None]  # (M, 1)
        log_lik = log_px_given_z(ib, x, z)  # (M, N)
        log_px = torch.logsumexp(log_lik + prior.log_prob(u)[:, None], 0) + torch.log(du)  # (N,)
        q_weights = torch.exp(q.log_prob(u[:, None])) * du  # (M, N)
        elbo = (q_weights * log_lik).sum(0) - kl_divergence(q, prior)  # (N,)
    return log_px, elbo


# -- what the measurement computes -------------------------------------------------------------------


def widen_the_guide(ib, latent, x):
    """Make the guide wider than the posterior (its weights then have light tails, k-hat < 0.5, and a few
    thousand samples pin ``log p(x)`` down): a Gaussian guide of scale 1.5 under the N(0, 1) prior; for the
    log-normal latent, alpha at its bound 0.701 and a prior on ``log z`` of scale 0.4 centred on the
    images' mean ``log f(x)``."""
    layer = ib.encoder.latent
    with torch.no_grad():
        if latent == "gaussian":
            layer.scale_head.weight.zero_()
            layer.scale_head.bias.fill_(math.log(1.5))
        else:
            layer.alpha_head.weight.zero_()
            layer.alpha_head.bias.fill_(10.0)
            prior = ib.model.priors[0]
            prior.log_scale.fill_(math.log(0.4))
            prior.loc.fill_(float(F.softplus(layer.f_head(hidden(ib, x))).log().mean()))


@pytest.mark.parametrize("latent", ["gaussian", "information"])
def test_the_iw_estimate_tends_to_the_exact_log_likelihood_and_its_one_sample_mean_is_the_elbo(latent):
    from infodropout.train.metrics.likelihood import iw_log_likelihood
    from infodropout.train.metrics.psis import psis_log_likelihood

    ib, x = network(latent, spread=0.3), binary_images()
    widen_the_guide(ib, latent, x)
    exact, elbo = quadrature(ib, x, latent)
    assert (elbo < exact - 0.4).all()  # the guide is not the posterior: a gap for the IW bound to close
    lw = log_importance_weights(ib, x, 2000, seed=0, batch_size=4, chunk_size=exp.IW_CHUNK)  # (K, N)
    assert lw.shape == (2000, 6) and (psis_log_likelihood(lw)["khat"] < 0.5).all()
    # the mean of log w over the samples: the Monte Carlo ELBO, unbiased
    se = lw.std(0) / math.sqrt(len(lw))  # (N,)
    assert (np.abs(lw.mean(0) - elbo.numpy()) < 5 * se).all()
    # the IW bound rises with k, and at k = 2000 it is log p(x)
    by_k = ev.iw_by_samples(lw)
    assert list(by_k) == ["1", "10", "100", "1000", "2000"]
    rising = [by_k[k] for k in ("1", "10", "100", "1000")]  # by far more than their Monte Carlo errors
    assert rising == sorted(rising)
    iw = iw_log_likelihood(lw)["log_likelihood"]  # (N,)
    assert by_k["2000"] == pytest.approx(iw.mean())
    assert np.abs(iw - exact.numpy()).max() < 0.04 and abs(by_k["2000"] - exact.mean().item()) < 0.01
    assert by_k["1"] < exact.mean().item() - 0.3


def test_the_log_weights_of_each_batch_of_images_are_drawn_from_the_seed_plus_its_start():
    ib, x = network("information", z_dim=3), binary_images(5)
    chunk = exp.IW_CHUNK
    lw = log_importance_weights(ib, x, 7, seed=11, batch_size=2, chunk_size=chunk)  # batches [0, 2), [2, 4), [4, 5)
    for start in (0, 2, 4):
        alone = log_importance_weights(ib, x[start : start + 2], 7, seed=11 + start)
        assert_close(torch.from_numpy(lw[:, start : start + 2]), torch.from_numpy(alone), rtol=1e-12)
    again = log_importance_weights(ib, x, 7, seed=11, batch_size=2, chunk_size=chunk)
    assert_close(torch.from_numpy(again), torch.from_numpy(lw))


@pytest.mark.parametrize(("k", "counts"), [(1, [1]), (10, [1, 10]), (25, [1, 10, 25]), (1000, [1, 10, 100, 1000])])
def test_the_iw_estimate_is_reported_at_powers_of_ten_and_at_k(k, counts):
    assert ev.sample_counts(k) == counts


def test_prior_samples_come_from_the_prior_and_are_decoded_to_pixel_means():
    ib = network("gaussian", z_dim=3)
    z, images = ev.prior_samples(ib, 20000, binary_images(1), seed=4)
    assert z.shape == (20000, 3) and images.shape == (20000, *SHAPE)
    assert_close(z.mean(0), torch.zeros(3), atol=0.03)  # se 0.007
    assert_close(z.std(0), torch.ones(3), atol=0.03)
    assert_close(images, torch.sigmoid(ib.head(z)).detach(), rtol=1e-12)
    assert torch.equal(ev.prior_samples(ib, 20000, binary_images(1), seed=4)[0], z)  # seeded

    ib = network("information", z_dim=3)
    prior = ib.model.priors[0]
    with torch.no_grad():
        prior.loc.fill_(0.3)
        prior.log_scale.fill_(math.log(0.6))
    z, images = ev.prior_samples(ib, 20000, binary_images(1), seed=4)
    assert (z > 0).all()
    assert_close(z.log().mean(0), torch.full((3,), 0.3, dtype=z.dtype), atol=0.02)  # se 0.004
    assert_close(z.log().std(0), torch.full((3,), 0.6, dtype=z.dtype), atol=0.02)
    assert_close(z.mean(0), torch.full((3,), math.exp(0.3 + 0.18), dtype=z.dtype), rtol=0.03)  # the log-normal mean
    assert_close(images, torch.sigmoid(ib.head(z)).detach(), rtol=1e-12)


@pytest.mark.parametrize("latent", ["gaussian", "information"])
def test_a_reconstruction_with_the_noise_off_is_the_decoders_mean_at_the_noise_free_latent(latent):
    ib, x = network(latent, z_dim=3), binary_images(5)
    ib.train()  # the noise would be on in training mode: reconstructions turn it off
    with torch.no_grad():
        h = hidden(ib, x)
        layer = ib.encoder.latent
        z = layer.f_head(h) if latent == "gaussian" else F.softplus(layer.f_head(h))  # loc(x), or f(x)
        expected = torch.sigmoid(ib.head(z))  # (5, 1, 4, 4)
    recon = ev.reconstructions(ib, x)
    assert_close(recon, expected, rtol=1e-12)
    assert torch.equal(ev.reconstructions(ib, x), recon) and ib.training  # deterministic; mode restored


def test_a_gaussian_dimension_whose_posterior_is_the_prior_carries_no_information():
    ib, x = network("gaussian", z_dim=3), binary_images(8)
    layer = ib.encoder.latent
    with torch.no_grad():  # dimension 1: loc 0 and scale exp(0) = 1 for every input, the N(0, 1) prior
        for head in (layer.f_head, layer.scale_head):
            head.weight[1].zero_()
            head.bias[1].zero_()
        h = hidden(ib, x)
        q = Normal(layer.f_head(h), torch.exp(layer.scale_head(h)))
        kl = kl_divergence(q, Normal(0.0, 1.0)).mean(0)  # (3,)
    summary = exp.latent_summary(ib, x)
    assert_close(torch.from_numpy(summary["kl_per_dim"]), kl, rtol=1e-10)
    assert summary["kl_per_dim"][1] == pytest.approx(0.0, abs=1e-12)
    assert summary["active_dims"] == 2 and summary["kl_total"] == pytest.approx(float(kl.sum()), rel=1e-10)
    assert "alpha_mean" not in summary and "prior_scale" not in summary


def test_the_information_latent_summary_reads_its_noise_scales_and_its_learned_prior():
    ib, x = network("information", z_dim=3), binary_images(8)
    layer, prior = ib.encoder.latent, ib.model.priors[0]
    with torch.no_grad():
        prior.loc.fill_(-0.2)
        prior.log_scale.fill_(math.log(0.5))
        layer.alpha_head.bias[0] = 60.0  # sigmoid = 1: alpha at its bound for every input
        layer.alpha_head.bias[2] = -60.0  # sigmoid = 0: alpha = alpha_min
        h = hidden(ib, x)
        alpha = layer.alpha(h)  # (8, 3)
        f = F.softplus(layer.f_head(h))
        kl = kl_divergence(Normal(f.log(), alpha), Normal(-0.2, 0.5)).mean(0)  # (3,)
    share_1 = float((torch.sigmoid(layer.alpha_head(h))[:, 1] > 0.99).double().mean())
    summary = exp.latent_summary(ib, x)
    assert summary["alpha_at_bound"] == pytest.approx((1.0 + share_1) / 3)
    assert summary["alpha_mean"] == pytest.approx(float(alpha.mean()), rel=1e-10)
    assert_close(torch.from_numpy(summary["kl_per_dim"]), kl, rtol=1e-10)
    assert summary["prior_loc"] == pytest.approx(-0.2) and summary["prior_scale"] == pytest.approx(0.5)


def test_the_paired_standard_error_is_that_of_the_mean_difference():
    assert exp.paired_se(np.array([3.0, 1.0, 3.0, 1.0]), np.array([2.0, 2.0, 2.0, 2.0])) == pytest.approx(0.5)


def test_a_mosaic_tiles_the_images_row_major_with_padding_between_them():
    images = np.stack([np.full((2, 3), v) for v in (0.0, 0.25, 1.0)])  # (3, 2, 3)
    mosaic = image_mosaic(images, 2, pad=1, fill=0.5)
    assert mosaic.shape == (2 * 3 - 1, 2 * 4 - 1)
    assert (mosaic[:2, :3] == 0.0).all() and (mosaic[:2, 4:] == 0.25).all() and (mosaic[3:, :3] == 1.0).all()
    assert (mosaic[2] == 0.5).all() and (mosaic[:, 3] == 0.5).all() and (mosaic[3:, 4:] == 0.5).all()  # pad, empty cell
    assert image_mosaic(np.full((1, 2, 2), 3.0), 4).max() == 1.0  # clipped to [0, 1]


def test_test_images_and_their_reconstructions_alternate_by_rows():
    images = np.arange(5.0)[:, None, None] * np.ones((5, 1, 1))  # (5, 1, 1): image i is i
    rows = exp.pairs_of_rows(images, images + 10, ncols=3, fill=-1.0)  # (2 blocks x 2 rows x 3, 1, 1)
    assert rows[:, 0, 0].tolist() == [0, 1, 2, 10, 11, 12, 3, 4, -1, 13, 14, -1]


# -- the grid ----------------------------------------------------------------------------------------


def test_the_grid_is_the_presets_vae_twice_on_binarised_mnist():
    study = exp.build(StudyOptions())
    assert EXPERIMENTS["vae"] is exp.EXPERIMENT
    assert [r.name for r in study.runs] == [f"{m}-s{s}" for m in ("gaussian", "information") for s in range(3)]
    for run in study.runs:
        c = run.config
        assert (c.preset, c.arch, c.hidden, c.z_dim, c.likelihood) == ("mnist-vae", "vae", [400], 50, "bernoulli")
        assert (c.epochs, c.batch_size, c.optimizer, c.lr, c.beta, c.binarize) == (100, 128, "adam", 1e-3, 1.0, True)
        assert (c.num_train, c.num_test) == (None, None)
        assert run.measure == exp.MEASURE and run.options == {
            "iw_samples": 1000,
            "iw_images": None,
            "save_weights": False,
        }
    by_model = {r.labels["model"]: r.config for r in study.runs}
    assert (by_model["gaussian"].latent, by_model["gaussian"].prior) == ("gaussian", "normal")
    info = by_model["information"]
    assert (info.latent, info.prior, info.alpha_max) == ("information", "log-normal", exp.ALPHA_MAX)
    assert study.settings["alpha_max"] == exp.ALPHA_MAX and study.settings["alpha_max_reason"] == exp.ALPHA_MAX_REASON
    assert study.settings["iw_samples"] == 1000 and study.settings["iw_images"] == "all"


def test_options_set_the_evaluation_and_an_axis_of_alpha_max():
    study = exp.build(
        StudyOptions(seeds=1, epochs=7, extra={"iw_images": 500, "iw_samples": 100, "alpha_max": [2, 0.7]})
    )
    assert [r.name for r in study.runs] == ["gaussian-s0", "information-a0.7-s0", "information-a2-s0"]
    assert [r.labels for r in study.runs] == [
        {"model": "gaussian"},
        {"model": "information", "alpha_max": 0.7},
        {"model": "information", "alpha_max": 2.0},
    ]
    assert {r.config.epochs for r in study.runs} == {7} and study.runs[2].config.alpha_max == 2.0
    assert study.runs[0].options == {"iw_samples": 100, "iw_images": 500, "save_weights": False}
    quick = exp.build(StudyOptions(quick=True))
    assert [r.name for r in quick.runs] == ["gaussian-s0", "information-s0"]
    c = quick.runs[0].config
    assert (c.hidden, c.z_dim, c.num_train, c.num_test, c.epochs) == ([16], 4, 256, 64, 1)
    assert quick.runs[0].options["iw_samples"] == exp.QUICK_IW_SAMPLES and quick.runs[0].options["save_weights"]


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        ({"k": 5}, r"vae: unknown option\(s\) \['k'\]; it takes iw_samples, iw_images, alpha_max, save_weights"),
        ({"iw_samples": 0}, r"vae: iw_samples=0: expected an integer >= 1"),
        ({"iw_images": 2.5}, r"vae: iw_images=2.5: expected an integer >= 1"),
        ({"alpha_max": [0.7, -1]}, r"vae: alpha_max=\[0.7, -1\]: expected a positive number or a list of them"),
    ],
)
def test_bad_options_are_one_line_errors(extra, message):
    with pytest.raises(ValueError, match=message) as info:
        exp.build(StudyOptions(extra=extra))
    assert "\n" not in str(info.value)


# -- the quick study, end to end ---------------------------------------------------------------------


def _png(path):
    assert path.is_file() and path.read_bytes()[:8] == PNG, path


def test_reproduce_vae_quick_writes_the_tables_the_measurements_and_the_grids(tmp_path, data_dir, capsys):
    from infodropout.train.evaluation import read_record
    from infodropout.train.metrics.likelihood import iw_log_likelihood

    out = tmp_path / "vae"
    assert main(["reproduce", "vae", "--quick", "--device", "cpu", "--out", str(out), "--data-dir", str(data_dir)]) == 0
    results = json.loads((out / "results.json").read_text())
    cells = {c["labels"]["model"]: c for c in results["cells"]}
    assert set(cells) == {"gaussian", "information"}
    k = exp.QUICK_IW_SAMPLES
    for model, cell in cells.items():
        run = out / "runs" / f"{model}-s0"
        values = json.loads((run / "result.json").read_text())["values"]
        final = json.loads((run / "metrics.json").read_text())
        assert cell["metrics"]["test_elbo"]["values"] == [final["test_elbo"]] == [values["test_elbo"]]
        assert cell["metrics"]["iw_log_likelihood"]["values"] == [values["iw_log_likelihood"]]
        record = read_record(run)  # every log weight, in the run's record
        likelihood, latent, images = (record[g].to_dataset() for g in ("likelihood", "latent", "images"))
        log_weights = likelihood["log_weight"].values[0]
        assert log_weights.shape == (k, 64)
        iw = iw_log_likelihood(log_weights)
        assert values["iw_log_likelihood"] == pytest.approx(iw["mean"]) == values[f"iw_k.{k}"]
        assert values["iw_elbo"] == pytest.approx(iw["elbo_mean"]) and values["iw_k.1"] <= values[f"iw_k.{k}"]
        assert values["psis_log_likelihood"] == pytest.approx(likelihood["log_likelihood"].values.mean())
        assert (values["iw_num_images"], values["iw_num_samples"]) == (64, k)
        assert likelihood["raw_log_likelihood"].values.mean() == pytest.approx(values["iw_log_likelihood"])
        kl_per_dim = latent["kl_per_dim"].values
        assert kl_per_dim.shape == (4,) and (kl_per_dim > exp.ACTIVE_KL).sum() == values["latent.active_dims"]
        samples, shown, recon = (images[v].values for v in ("samples", "images", "reconstructions"))
        assert samples.shape == (exp.NUM_SAMPLES, 28, 28)
        assert shown.shape == recon.shape == (exp.NUM_RECONSTRUCTIONS, 28, 28)
        assert set(np.unique(shown)) <= {0.0, 1.0}  # the binarised test images
        assert ((recon > 0) & (recon < 1)).all()
        _png(out / "figures" / f"samples_{model}.png")
        _png(out / "figures" / f"reconstructions_{model}.png")
    assert (
        "latent.prior_scale" in cells["information"]["metrics"]
        and "latent.prior_scale" not in cells["gaussian"]["metrics"]
    )
    _png(out / "figures" / "iw_log_likelihood_vs_k.png")
    table = (out / "results.md").read_text()
    assert "| gaussian |" in table and "| information |" in table and "## Targets" in table
    assert "## Information-dropout VAE minus Gaussian VAE" in table
    diff = (
        cells["information"]["metrics"]["iw_log_likelihood"]["mean"]
        - cells["gaussian"]["metrics"]["iw_log_likelihood"]["mean"]
    )
    assert "| information | 0 |" in table and f"{diff:+.2f}" in table
    lines = capsys.readouterr().out.splitlines()
    assert sum(line.startswith("[") and "iw_log_likelihood" in line for line in lines) == 2
