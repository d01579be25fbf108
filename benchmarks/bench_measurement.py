"""What the priors study's final measurement costs, part by part, against the training it follows.

    python benchmarks/bench_measurement.py RUN_DIR [--settings full,fast,study] [--steps 30000] [--threads 1]

RUN_DIR is a finished ``compare-priors`` run (its network is loaded, nothing in it is written). For each
metric setting: the seconds of every part of :func:`infodropout.train.evaluation.collect` (encoding the
pool, the aggregate posterior's points, the log importance weights, the traversals) and of every metric
computed from the record, and their sum as a share of ``--steps`` training steps at the run's measured
seconds per step. Also each measured number's statistical error where it has one (over images or samples).
"""

import argparse
import json
import sys
import time
from pathlib import Path

import torch
import xarray as xr

from infodropout.train.data import load_dsprites
from infodropout.train.evaluation import collect, factor_sets, metrics_of
from infodropout.train.metrics import DEFAULT_METRICS, get_metric
from infodropout.train.run import Trainer
from infodropout.train.studies.priors import METRIC_SETTINGS, ONCE, READINGS


def measure(trainer, settings, likelihood: bool = True) -> tuple[dict, dict]:
    data = load_dsprites(trainer.config.data_dir, trainer.device)
    sets = factor_sets(data.factor_names)
    groups, seconds = collect(trainer.ib, data, DEFAULT_METRICS, settings, sets=sets, likelihood=likelihood,
                              traversals=True, also=READINGS)  # fmt: skip
    tree = xr.DataTree.from_dict({f"/{name}": ds for name, ds in groups.items()})
    results, metric_seconds = metrics_of(tree, DEFAULT_METRICS, settings, sets)
    seconds.update({f"metric {k}": v for k, v in metric_seconds.items()})
    others = [n for n in DEFAULT_METRICS if get_metric(n).needs in ("factors", "representation") and n not in ONCE]
    for reading in READINGS[1:]:  # the study measures the representation on its other reading too
        seconds.update(
            {f"metric {k} ({reading})": v for k, v in metrics_of(tree, others, settings, sets, reading)[1].items()}
        )
    errors = {"total_correlation_se": results["total-correlation"]["standard_error"]}
    if "likelihood" in groups:
        ll = groups["likelihood"]["log_likelihood"].values
        errors["log_likelihood_se_over_images"] = float(ll.std(ddof=1) / len(ll) ** 0.5)
    errors["kl_sum_se"] = float((results["kl-per-dim"]["kl_per_dim_se"] ** 2).sum() ** 0.5)
    return seconds, errors


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("run_dir", type=Path)
    p.add_argument("--settings", default="full,fast", help="names of metric settings, comma-separated")
    p.add_argument("--steps", type=int, default=30_000, help="the training the measurement is compared with")
    p.add_argument("--threads", type=int, default=1)
    a = p.parse_args(argv)
    torch.set_num_threads(a.threads)
    trainer = Trainer.from_run_dir(a.run_dir, log=lambda s: None, show_progress=False, own=False)
    history = trainer.history
    step_seconds = sum(r["seconds"] for r in history) / max(1, trainer.global_step)
    out = {"run": str(a.run_dir), "seconds_per_step": step_seconds, "steps": a.steps, "settings": {}}
    for name in a.settings.split(","):
        start = time.perf_counter()
        seconds, errors = measure(trainer, METRIC_SETTINGS[name])
        total = time.perf_counter() - start
        share = total / (a.steps * step_seconds)
        out["settings"][name] = {"seconds": seconds, "total": total, "share_of_training": share, "errors": errors}
        print(f"\n{name}: {total:.0f} s in all, {share:.1%} of {a.steps:,} steps at {step_seconds * 1000:.0f} ms")
        for part, s in sorted(seconds.items(), key=lambda kv: -kv[1]):
            print(f"  {part:<32} {s:8.1f} s")
        print("  errors: " + ", ".join(f"{k} {v:.3g}" for k, v in errors.items()))
    print(json.dumps(out, indent=1, default=float))
    return 0


if __name__ == "__main__":
    sys.exit(main())
