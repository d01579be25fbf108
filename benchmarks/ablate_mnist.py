"""What moves information dropout's test error on the small MNIST network: one setting changed at a time.

    python benchmarks/ablate_mnist.py --out DIR [--width 64] [--seeds 3] [--epochs 20] [--jobs 1] [--threads 1]

The ``mnist-sizes`` study's information-dropout runs (three fully-connected layers of ``--width`` units,
ReLU, log-uniform prior, the ``mnist-mlp`` preset's Adam 1e-3 at batch 100 with the learning rate x0.1
at one and two thirds of the epochs) against each change below, over the same seeds; a study directory
like the experiments' (``results.json``, ``results.md``; ``--resume`` continues it):

- ``alpha_max`` 1.0 (the paper's 0.7 is the preset's; the authors use 1.0 on Cluttered MNIST);
- ``beta`` x10 and x0.1 (the preset's 3/60,000 per example carries the authors' CIFAR weight over);
- the authors' KL convention (every unit charged, off or on);
- three times the epochs (the schedule compressed less);
- softplus units with the learned log-normal prior (the paper's other pairing);
- beta warmed up over the first 5 epochs;
- binary dropout (p = 0.5), the baseline the paper compares with.
"""

import argparse
import sys
from pathlib import Path

from infodropout.train.config import resolve
from infodropout.train.files import write_json, write_text
from infodropout.train.report.tables import aggregate, format_mean_std, markdown_table, summarise
from infodropout.train.studies import RunSpec, Study, run_study
from infodropout.train.studies.common import scaled_milestones
from infodropout.train.studies.runner import describe_machine, machine

#: variant -> (what it changes, config overrides)
VARIANTS = {
    "preset": ("information dropout as mnist-sizes runs it", {}),
    "alpha_max=1": ("alpha_max 1.0", {"alpha_max": 1.0}),
    "beta x10": ("beta 3/6,000", {"beta": 3 / 6000}),
    "beta x0.1": ("beta 3/600,000", {"beta": 3 / 600000}),
    "authors' KL": ("the authors' KL convention", {"kl_convention": "authors"}),
    "epochs x3": ("three times the epochs", {"epochs_factor": 3}),
    "softplus, log-normal": (
        "softplus units, learned log-normal prior",
        {"activation": "softplus", "prior": "log-normal"},
    ),
    "beta warm-up": ("beta warmed up over 5 epochs", {"beta_warmup_epochs": 5}),
    "binary dropout": ("binary dropout p = 0.5", {"dropout": "binary", "p": 0.5}),
}


def build(width: int, seeds: int, epochs: int, num_train: int | None = None) -> Study:
    runs = []
    for variant, (_, changes) in VARIANTS.items():
        changes = dict(changes)
        e = epochs * changes.pop("epochs_factor", 1)
        size = {} if num_train is None else {"num_train": num_train, "num_test": max(100, num_train // 5)}
        for seed in range(seeds):
            config = resolve("mnist-mlp", overrides=dict(hidden=[width] * 3, epochs=e, milestones=scaled_milestones(e),
                                                         seed=seed, device="cpu", **size, **changes))  # fmt: skip
            runs.append(RunSpec(f"{variant.replace(' ', '_').replace('=', '')}-s{seed}", config, {"variant": variant}))
    settings = {"width": width, "epochs": epochs, "seeds": seeds, "num_train": num_train}
    return Study("ablate-mnist", runs, primary="test_error", description=__doc__.split("\n\n")[0], settings=settings)


def paired_differences(results) -> dict:
    """variant -> the summary (mean, std over seeds, values) of its test error minus the preset's at the same
    seed, over the seeds both finished."""
    by = {(r["labels"]["variant"], r["seed"]): r["values"]["test_error"] for r in results}
    out = {}
    for variant in VARIANTS:
        diffs = [by[variant, s] - by["preset", s] for v, s in by if v == variant and ("preset", s) in by]
        if diffs and variant != "preset":
            out[variant] = summarise(diffs)
    return out


def _signed(summary) -> str:
    if not summary:
        return "–"
    spread = "" if summary["std"] is None else f" ± {summary['std']:.2f}"
    return f"{summary['mean']:+.2f}{spread}"


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--out", type=Path, required=True)
    p.add_argument("--width", type=int, default=64)
    p.add_argument("--seeds", type=int, default=3)
    p.add_argument("--epochs", type=int, default=20)
    p.add_argument("--num-train", type=int, default=None, help="fewer training images (a smoke test)")
    p.add_argument("--jobs", type=int, default=1)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--resume", action="store_true")
    a = p.parse_args(argv)
    study = build(a.width, a.seeds, a.epochs, a.num_train)
    outcome = run_study(study, a.out, jobs=a.jobs, threads=a.threads, resume=a.resume, device="cpu")
    aggregated = aggregate(outcome.results)
    paired = paired_differences(outcome.results)
    record = {"settings": study.settings, "cells": aggregated, "paired": paired, "runs": outcome.results}
    write_json(Path(a.out) / "results.json", record)
    cells = {c["labels"]["variant"]: c for c in aggregated}
    rows = [[v, what, format_mean_std(cells[v]["metrics"].get("test_error"), 2) if v in cells else "–",
             _signed(paired.get(v)),
             format_mean_std(cells[v]["metrics"].get("kl_total"), 0) if v in cells else "–"]
            for v, (what, _) in VARIANTS.items()]  # fmt: skip
    header = ["variant", "change", "test error (%)", "minus the preset's, same seed", "information (nats/example)"]
    table = markdown_table(header, rows)
    milestones = ", ".join(map(str, scaled_milestones(a.epochs)))
    head = (
        f"# What moves the error at width {a.width}\n\n{a.seeds} seeds, {a.epochs} epochs (x3 for 'epochs x3'), lr "
        f"x0.1 after epochs {milestones or '(none)'}: the `mnist-mlp` preset's 120 epochs (lr x0.1 after 40, 80) "
        f"compressed; {'all' if a.num_train is None else a.num_train} training images; on "
        f"{describe_machine(machine())}, one thread per run."
    )
    text = f"{head}\n\n{table}\n"
    write_text(Path(a.out) / "results.md", text)
    print(text)
    return 0 if not outcome.failures else 1


if __name__ == "__main__":
    sys.exit(main())
