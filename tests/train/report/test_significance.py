"""Paired bootstrap differences: known truths, coverage over replications, t quantiles and the verdict lines."""

import math

import numpy as np
import pytest

from infodropout.train.report.significance import paired_difference, seeds_needed, student_t_quantile, verdict_line

LABEL = "factorised − correlated, MIG at β 4"


@pytest.mark.parametrize(
    "p, dof, table",  # Student t tables, 4 decimals
    [(0.975, 1, 12.7062), (0.975, 2, 4.3027), (0.975, 3, 3.1824), (0.975, 9, 2.2622), (0.95, 4, 2.1318),
     (0.995, 30, 2.7500), (0.975, 17, 2.1098), (0.975, 1000, 1.9623), (0.975, 5000, 1.9604)],
)  # fmt: skip
def test_student_t_quantiles_match_the_tables(p, dof, table):
    assert student_t_quantile(p, dof) == pytest.approx(table, abs=6e-5)


def synthetic_runs(true_difference: float, num_seeds: int, seed: int, seed_sd: float = 0.1):
    """Two settings on the same seeds: a shared seed effect (cancels in the pairing), the true
    difference, and an independent per-seed deviation of the difference."""
    rng = np.random.default_rng(seed)
    shared = rng.normal(0.3, 0.2, num_seeds)
    b = shared
    a = shared + true_difference + rng.normal(0, seed_sd, num_seeds)
    return a, b


def test_a_clear_difference_excludes_zero_and_contains_the_truth():
    a, b = synthetic_runs(0.25, num_seeds=8, seed=1)
    result = paired_difference(a, b, seed=1)
    assert result["excludes_zero"] and result["low"] > 0
    assert result["low"] <= 0.25 <= result["high"]
    assert result["estimate"] == pytest.approx(np.mean(a - b))
    assert result["num_seeds"] == 8 and result["seeds_needed"] is None
    line = verdict_line(result, LABEL)
    assert line == f"{LABEL}: {result['estimate']:+.2f} [{result['low']:+.2f}, {result['high']:+.2f}]"


def test_equal_settings_span_zero():
    a, b = synthetic_runs(0.0, num_seeds=8, seed=2)
    result = paired_difference(a, b, seed=1)
    assert not result["excludes_zero"] and result["low"] < 0 < result["high"]
    line = verdict_line(result, LABEL)
    assert ": not distinguishable at this budget (the CI spans 0); about " in line
    assert line.endswith(f"about {result['seeds_needed']} seeds would resolve it")
    assert result["seeds_needed"] == seeds_needed(result["estimate"], result["std"])


def test_the_verdict_line_format():
    result = {"estimate": 0.05, "low": 0.01, "high": 0.09, "excludes_zero": True, "num_seeds": 3, "seeds_needed": None}
    assert verdict_line(result, LABEL) == "factorised − correlated, MIG at β 4: +0.05 [+0.01, +0.09]"
    spans = {**result, "estimate": 0.01, "low": -0.02, "high": 0.04, "excludes_zero": False, "seeds_needed": 23}
    assert verdict_line(spans, LABEL) == (
        "factorised − correlated, MIG at β 4: +0.01 [-0.02, +0.04]: not distinguishable at this budget "
        "(the CI spans 0); about 23 seeds would resolve it"
    )


def test_seeds_needed_has_the_t_tables_answer():
    """sd 1, difference 0.5, 95%: t_{.975,16} / sqrt(17) = 0.514 > 0.5 >= t_{.975,17} / sqrt(18) = 0.497."""
    assert seeds_needed(0.5, 1.0, 0.95) == 18
    assert seeds_needed(-0.5, 1.0, 0.95) == 18
    # the normal approximation (z sd / |d|)^2 = 384.1 is a lower bound, the t answer a few seeds above it
    assert 385 <= seeds_needed(0.1, 1.0, 0.95) <= 390
    d = 0.5 + math.sqrt(3 / 5) * np.array([-1.5, -0.5, 0.5, 1.5])  # mean 0.5, sd exactly 1, 4 seeds
    result = paired_difference(d, np.zeros(4), seed=0)
    assert result["std"] == pytest.approx(1.0) and not result["excludes_zero"]
    assert result["seeds_needed"] == 18
    assert verdict_line(result, LABEL).endswith("about 18 seeds would resolve it")


def test_a_zero_estimate_and_a_single_seed_are_handled():
    zero = paired_difference([0.1, -0.1, 0.0], [0.0, 0.0, 0.0], seed=0)
    assert zero["estimate"] == 0 and zero["seeds_needed"] is None and not zero["excludes_zero"]
    assert "the estimate is 0" in verdict_line(zero, LABEL)
    assert seeds_needed(0.0, 1.0) is None and seeds_needed(0.3, None) is None
    single = paired_difference([0.4], [0.3])
    assert math.isnan(single["low"]) and single["std"] is None and single["seeds_needed"] is None
    assert (
        verdict_line(single, LABEL)
        == f"{LABEL}: +0.10 (one seed and no per-example values: no interval; run more seeds)"
    )
    rng = np.random.default_rng(0)
    examples = paired_difference(
        [0.4], [0.3], per_example_a=[rng.normal(0.4, 1, 400)], per_example_b=[rng.normal(0.3, 1, 400)]
    )
    assert examples["method"].startswith("bootstrap over examples (one seed")
    assert 0.05 < examples["high"] - examples["low"] < 0.4  # about 2 * 1.96 * sqrt(2 / 400) = 0.28
    if not examples["excludes_zero"]:
        assert "one seed: run more" in verdict_line(examples, LABEL)


def test_deterministic_given_a_seed():
    a, b = synthetic_runs(0.1, num_seeds=8, seed=4)
    x, y = paired_difference(a, b, seed=7), paired_difference(a, b, seed=7)
    assert (x["low"], x["high"]) == (y["low"], y["high"])
    assert paired_difference(a, b, seed=8)["low"] != x["low"]


@pytest.mark.parametrize("num_seeds", [3, 10])
def test_seed_bootstrap_coverage(num_seeds):
    """200 replications of a study with a known difference: the 95% interval covers it in 90-99% of them
    (binomial sd of a 200-replication coverage near 0.95: 1.5 points). Without the widening for few
    seeds the percentile interval over 3 seeds covers far less (the mean of 3 draws of 3 values rarely
    leaves their range)."""
    covered, plain = 0, 0
    for rep in range(200):
        a, b = synthetic_runs(0.1, num_seeds, seed=100 + rep)
        r = paired_difference(a, b, num_resamples=1000, seed=rep)
        covered += r["low"] <= 0.1 <= r["high"]
        r = paired_difference(a, b, num_resamples=1000, widen=False, seed=rep)
        plain += r["low"] <= 0.1 <= r["high"]
    assert 0.90 <= covered / 200 <= 0.99
    if num_seeds == 3:
        assert plain / 200 <= 0.85


def test_two_level_bootstrap_coverage_and_example_noise():
    """Seed effects and per-example noise: each seed's metric is the mean of its 50 examples; the
    two-level interval covers the true difference in at least 90% of 200 replications, and is wider than
    the seeds-only one (it adds the examples' noise, which the seeds' spread already holds: conservative)."""
    covered, wider = 0, 0
    for rep in range(200):
        rng = np.random.default_rng(500 + rep)
        effect = rng.normal(0.1, 0.05, 3)  # the difference of each seed
        ex_b = [rng.normal(0.0, 0.3, 50) for _ in range(3)]
        ex_a = [e + d + rng.normal(0, 0.3, 50) for e, d in zip(ex_b, effect, strict=True)]  # paired examples
        a, b = [x.mean() for x in ex_a], [x.mean() for x in ex_b]
        r = paired_difference(a, b, per_example_a=ex_a, per_example_b=ex_b, num_resamples=1000, seed=rep)
        covered += r["low"] <= 0.1 <= r["high"]
        plain = paired_difference(a, b, num_resamples=1000, seed=rep)
        wider += (r["high"] - r["low"]) > (plain["high"] - plain["low"])
    assert r["method"].startswith("two-level bootstrap")
    assert covered / 200 >= 0.90
    assert wider / 200 >= 0.9


def test_unpaired_examples_are_resampled_apart():
    rng = np.random.default_rng(3)
    ex_a = [rng.normal(1.0, 1, n) for n in (300, 200, 250, 100)]
    ex_b = [rng.normal(0.0, 1, n) for n in (100, 150, 200, 300)]
    a, b = [x.mean() for x in ex_a], [x.mean() for x in ex_b]
    r = paired_difference(a, b, per_example_a=ex_a, per_example_b=ex_b, paired_examples=False, seed=0)
    assert r["excludes_zero"] and r["low"] <= 1.0 <= r["high"]
    with pytest.raises(ValueError, match=r"per_example_b\[0\]: 100 values for A's 300"):
        paired_difference(a, b, per_example_a=ex_a, per_example_b=ex_b)


def test_bad_input_is_a_one_line_error():
    with pytest.raises(ValueError, match="b: 2 seeds, a has 3"):
        paired_difference([1, 2, 3], [1, 2])
    with pytest.raises(ValueError, match="a: contains NaN"):
        paired_difference([1, np.nan], [1, 2])
    with pytest.raises(ValueError, match="confidence=1.5"):
        paired_difference([1, 2], [1, 2], confidence=1.5)
    with pytest.raises(ValueError, match="per_example_a and per_example_b: give both"):
        paired_difference([1, 2], [1, 2], per_example_a=[[1, 2], [3, 4]])
    with pytest.raises(ValueError, match=r"per_example_a: 1 arrays for 2 seeds"):
        paired_difference([1, 2], [1, 2], per_example_a=[[1, 2]], per_example_b=[[1, 2]])
    with pytest.raises(ValueError, match="dof=0"):
        student_t_quantile(0.975, 0)
