"""A metric of a user's own, defined and registered here alone, runs through ``compare-priors``."""

import json

import numpy as np

from infodropout.train.cli import main
from infodropout.train.metrics import register_metric, unregister_metric


def within_class_spread(representation, factors):
    """Mean over factors of the latents' average within-class standard deviation over their overall one."""
    overall = representation.std(axis=0) + 1e-12  # (D,)
    ratios = []
    for k in range(factors.shape[1]):
        per_class = [representation[factors[:, k] == c].std(axis=0) for c in np.unique(factors[:, k])]
        ratios.append(float(np.mean(np.mean(per_class, axis=0) / overall)))
    return {"spread": float(np.mean(ratios)), "per_factor": np.asarray(ratios)}


def test_a_metric_registered_in_a_test_file_reaches_results_and_the_report(tmp_path):
    register_metric("spread", within_class_spread, needs="factors", score="spread", higher_is_better=False)
    out = tmp_path / "priors"
    args = ["compare-priors", "--quick", "--device", "cpu", "--priors", "factorised", "--betas", "4", "--out", str(out)]
    try:
        assert main([*args, "--metrics", "mig,spread"]) == 0
    finally:
        unregister_metric("spread")
    run = json.loads((out / "results.json").read_text())["runs"][0]
    details = json.loads((out / "runs" / run["name"] / "disentanglement.json").read_text())["metrics"]["spread"]
    assert run["values"]["spread"] == details["all"]["spread"] and 0 < run["values"]["spread"] < 2
    assert (
        run["values"]["spread_no_shape"] == details["no-shape"]["spread"]
        and len(details["no-shape"]["per_factor"]) == 4
    )
    header = next(line for line in (out / "report.md").read_text().splitlines() if line.startswith("| prior"))
    assert "| spread |" in header
