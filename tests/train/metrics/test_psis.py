"""PSIS per image: small k-hat and the right log-mean for light tails, k-hat > 0.7 for heavy tails;
model comparison; InferenceData files that round-trip and are never overwritten silently."""

import math

import numpy as np
import pytest

from infodropout.train.metrics.psis import (
    compare_log_likelihoods,
    load_inference_data,
    psis_log_likelihood,
    read_results,
    save_inference_data,
    to_inference_data,
)


def test_light_tailed_weights_give_small_khat_and_the_right_log_mean():
    """log w ~ N(mu, 0.5^2): w is log-normal with every moment finite and E[w] = exp(mu + 0.125)."""
    rng = np.random.default_rng(0)
    mu = np.linspace(-300.0, 20.0, 40)
    lw = mu[None] + 0.5 * rng.normal(size=(4000, 40))  # (K, N)
    result = psis_log_likelihood(lw)
    assert np.all(result["khat"] < 0.5)
    assert result["share_khat_above"] == 0.0
    np.testing.assert_allclose(result["log_likelihood"], mu + 0.125, atol=0.03)
    np.testing.assert_allclose(result["log_likelihood"], result["raw_log_likelihood"], atol=0.01)


def test_heavy_tailed_weights_give_khat_above_the_threshold():
    """Pareto weights with tail index 1.2: shape k = 1 / 1.2 = 0.83, infinite variance."""
    rng = np.random.default_rng(1)
    lw = -np.log(rng.uniform(size=(4000, 30))) / 1.2
    result = psis_log_likelihood(lw)
    assert np.median(result["khat"]) == pytest.approx(1 / 1.2, abs=0.15)
    assert result["share_khat_above"] >= 0.8
    assert result["share_khat_above"] == pytest.approx(np.mean(result["khat"] > 0.7))


def test_the_exact_posterior_has_no_tail_to_fit():
    result = psis_log_likelihood(np.full((100, 3), -7.0))
    np.testing.assert_allclose(result["log_likelihood"], -7.0)


def test_comparison_against_the_best_model_with_paired_standard_errors():
    rng = np.random.default_rng(2)
    n = 2000
    base = rng.normal(-100.0, 10.0, size=n)
    noise = 0.3 * rng.normal(size=n)
    out = compare_log_likelihoods({"worse": base - 1.0 + noise, "best": {"log_likelihood": base}})
    assert out["best"] == "best" and out["order"] == ["best", "worse"]
    worse = out["models"]["worse"]
    assert worse["diff_mean"] == pytest.approx(-1.0, abs=3 * 0.3 / math.sqrt(n))
    assert worse["se_diff_mean"] == pytest.approx(0.3 / math.sqrt(n), rel=0.1)
    assert worse["diff_total"] == pytest.approx(n * worse["diff_mean"])
    assert worse["se_diff_total"] == pytest.approx(n * worse["se_diff_mean"])  # sqrt(N var d) = N sqrt(var d / N)
    assert worse["se_diff_total"] < 0.05 * worse["se_total"]  # paired: far below either model's own error
    assert out["models"]["best"]["diff_total"] == 0.0 and out["models"]["best"]["se_diff_total"] == 0.0
    with pytest.raises(ValueError, match="different numbers of images"):
        compare_log_likelihoods({"a": base, "b": base[:-1]})


def test_inference_data_round_trip(tmp_path):
    rng = np.random.default_rng(3)
    lw = rng.normal(size=(200, 12)) - 50.0
    path = save_inference_data(lw, tmp_path, "factorised", attrs={"model": "factorised", "beta": 4.0})
    assert path == tmp_path / "factorised.nc" and path.is_file()
    back = read_results(path)
    np.testing.assert_array_equal(back["log_weights"], lw)
    expected = psis_log_likelihood(lw)
    np.testing.assert_allclose(back["log_likelihood"], expected["log_likelihood"])
    np.testing.assert_allclose(back["khat"], expected["khat"])
    assert back["attrs"]["model"] == "factorised" and back["attrs"]["beta"] == 4.0
    assert back["attrs"]["num_samples"] == 200
    idata = load_inference_data(path)
    assert idata.sample_stats["log_weight"].dims == ("chain", "draw", "image")
    assert to_inference_data(lw).sample_stats["pareto_k"].shape == (12,)


def test_existing_files_are_never_overwritten_silently(tmp_path):
    lw = np.random.default_rng(4).normal(size=(50, 3))
    path = save_inference_data(lw, tmp_path)
    with pytest.raises(FileExistsError, match="exists; pass overwrite=True"):
        save_inference_data(lw + 1, tmp_path)
    np.testing.assert_array_equal(read_results(path)["log_weights"], lw)
    save_inference_data(lw + 1, tmp_path, overwrite=True)
    np.testing.assert_array_equal(read_results(path)["log_weights"], lw + 1)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["log_likelihood.nc"]  # no temporary file left


def test_bad_files_and_arguments_are_one_line_errors(tmp_path):
    lw = np.zeros((30, 2))
    with pytest.raises(FileNotFoundError, match="no such directory"):
        save_inference_data(lw, tmp_path / "missing")
    with pytest.raises(ValueError, match="name='a/b'"):
        save_inference_data(lw, tmp_path, "a/b")
    with pytest.raises(ValueError, match=r"attrs\['x'\]"):
        save_inference_data(lw, tmp_path, attrs={"x": [1, 2]})
    (tmp_path / "junk.nc").write_bytes(b"not netcdf")
    with pytest.raises(ValueError, match="junk.nc: not a readable netCDF InferenceData file"):
        read_results(tmp_path / "junk.nc")
    with pytest.raises(ValueError, match="zero weight"):
        psis_log_likelihood(np.array([[0.0, -np.inf]] * 30))
