"""The metric registry: names the command line validates, each metric's headline key, JSON results."""

import json

import numpy as np
import pytest

from infodropout.train.metrics import FAST, FULL, METRICS, SETTINGS, check_metrics, get_metric, get_settings, jsonable


def test_unknown_metric_names_list_the_valid_ones():
    with pytest.raises(ValueError, match=r"metrics: unknown 'migg'; expected some of \('mig', 'factor-vae'") as info:
        check_metrics("mig,migg")
    assert "\n" not in str(info.value)
    assert check_metrics(" mig, dci ,mig") == ("mig", "dci")
    with pytest.raises(ValueError, match="metrics: none given"):
        check_metrics("")
    assert get_metric("sap").name == "sap"


def _inputs(needs, rng):
    factors = rng.integers(0, 3, size=(300, 2))
    codes = factors + 0.1 * rng.normal(size=(300, 2))
    if needs == "factors":
        return (codes, factors), {}
    if needs == "representation":
        return (codes,), {}
    if needs == "posterior":
        return (codes, np.full(codes.shape, 0.5), codes + 0.5 * rng.normal(size=codes.shape), 1000), {}
    if needs == "kl":
        return (np.abs(codes),), {}
    return (rng.normal(size=(50, 4)),), {}


@pytest.mark.parametrize("name", sorted(METRICS))
def test_every_metric_returns_its_headline_score_and_is_json_ready(name):
    metric = METRICS[name]
    args, kwargs = _inputs(metric.needs, np.random.default_rng(0))
    if name == "factor-vae":
        kwargs = dict(num_train=200, num_eval=100, num_variance=300)
    if name == "dci":
        kwargs = dict(n_estimators=5)
    result = metric.function(*args, **kwargs)
    assert np.isscalar(result[metric.score])
    json.dumps(jsonable(result), allow_nan=False)


def test_jsonable_converts_arrays_and_non_finite_numbers():
    value = {"a": np.arange(3), "b": np.float32(1.5), "c": float("nan"), 1: np.bool_(True), "d": (np.int64(2),)}
    assert jsonable(value) == {"a": [0, 1, 2], "b": 1.5, "c": None, "1": True, "d": [2]}


def test_fast_settings_are_the_full_ones_smaller():
    assert SETTINGS == {"full": FULL, "fast": FAST}
    assert (FULL.num_points, FULL.num_bins, FULL.factor_vae_batch_size) == (10_000, 20, 64)
    assert (FULL.factor_vae_num_train, FULL.factor_vae_num_eval) == (10_000, 5_000)
    assert (FULL.factor_vae_prune_threshold, FULL.sap_c, FULL.active_threshold) == (0.05, 0.01, 0.01)
    assert (FAST.num_points, FAST.factor_vae_num_train, FAST.factor_vae_num_eval) == (2_000, 500, 250)
    for field, value in FULL.to_dict().items():
        assert getattr(FAST, field) <= value, field
    assert FULL.pool_size == 15_000 and FAST.pool_size == 3_000
    assert get_settings("fast") is FAST and get_settings(None) is FULL and get_settings(FAST) is FAST


def test_bad_settings_are_one_line_errors():
    with pytest.raises(ValueError, match=r"settings='quick': expected a MetricSettings or one of \('full', 'fast'\)"):
        get_settings("quick")
    with pytest.raises(ValueError, match="MetricSettings.num_bins=-1"):
        FULL.replace(num_bins=-1)
    with pytest.raises(ValueError, match="MetricSettings.num_points=1: expected at least 2"):
        FULL.replace(num_points=1)
