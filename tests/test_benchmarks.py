"""The prepared GPU script of the priors study runs end to end at a smoke-test size on the CPU."""

import json
import math
import os
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def test_the_gpu_priors_script_benches_sizes_and_runs_the_study(tmp_path):
    out = tmp_path / "gpu"
    done = subprocess.run(
        [sys.executable, str(REPO / "benchmarks" / "gpu_priors.py"), "--out", str(out), "--device", "cpu", "--tiny"],
        capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    plan = json.loads((out / "plan.json").read_text())
    assert plan["runs"] == 2 and plan["seconds_per_step"] > 0
    bench = json.loads((out / "bench" / "bench.json").read_text())["models"]["dsprites-vae"]["priors"]
    assert bench["factorised"]["ratio_vs_handwritten"] > 0
    report = (out / "study" / "report.md").read_text()
    assert "## Verdicts" in report and "factorised − correlated, MIG at β 1" in report


def _occluded_trend():
    sys.path.insert(0, str(REPO / "benchmarks"))
    try:
        import occluded_trend
    finally:
        sys.path.pop(0)
    return occluded_trend


def _occluded_results(num_train, error, nuisance, beta=0.01):
    """An occluded study's results.json as the study writes it: cells at beta 0 and ``beta`` (seed values
    whose means are ``error`` and ``nuisance``) and a binary cell, which the trend ignores."""

    def summary(values):
        return {"mean": sum(values) / len(values), "n": len(values), "values": values}

    def cell(labels, e, v):
        metrics = {"test_error": summary([e - 0.5, e + 0.5]), "nuisance_accuracy": summary([v - 1, v + 1])}
        return {"labels": labels, "seeds": [0, 1], "metrics": metrics}

    pairs = zip((0.0, beta), error, nuisance, strict=True)
    cells = [cell({"method": "information", "beta": b}, e, v) for b, e, v in pairs]
    cells.append(cell({"method": "binary"}, 99.0, 99.0))
    settings = {"size": "cpu", "num_train": num_train, "width": 0.25, "epochs": 8, "betas": [0.0, beta]}
    return {"study": "occluded", "settings": settings, "cells": cells[::-1]}


def _write_study(path, results):
    path.mkdir()
    (path / "results.json").write_text(json.dumps(results))
    return path


def test_the_occluded_trend_finds_where_a_planted_margin_crosses_zero(tmp_path):
    """Margins planted on ``-6 + log10(n)`` (drop 2, rise 8 - log10 n) at 5,000, 10,000 and 20,000 images: the fit
    recovers the line and its crossing at 10^6 images, beyond CIFAR-10's 50,000, and the report says so."""
    trend = _occluded_trend()
    dirs = []
    for n in (20_000, 5000, 10_000):
        rise = 8 - math.log10(n)
        dirs.append(_write_study(tmp_path / f"s{n}", _occluded_results(n, (20.0, 20.0 + rise), (40.0, 38.0))))
    summary = trend.trend(dirs, tmp_path / "out")
    assert [p["num_train"] for p in summary["points"]] == [5000, 10_000, 20_000]
    for p in summary["points"]:
        assert math.isclose(p["margin"], -6 + math.log10(p["num_train"]), abs_tol=1e-9)
        assert math.isclose(p["drop"], 2.0) and p["seeds"] == 2
    fitted = summary["margin_fit"]
    assert math.isclose(fitted["intercept"], -6, abs_tol=1e-9)
    assert math.isclose(fitted["slope_per_decade"], 1, abs_tol=1e-9)
    assert math.isclose(summary["crossing"], 1e6, rel_tol=1e-6)
    text = (tmp_path / "out" / "results.md").read_text()
    assert "shows at none of the measured sizes" in text and "crosses 0 at about 1,000,000 images" in text
    assert "more than CIFAR-10's 50,000" in text
    assert (tmp_path / "out" / "figures" / "margin_vs_num_train.png").stat().st_size > 0


def test_the_occluded_trend_reads_a_shown_effect_and_a_falling_margin(tmp_path):
    trend = _occluded_trend()
    rising = [_write_study(tmp_path / f"r{n}", _occluded_results(n, (20.0, 20.5), (30.0 + m, 30.0)))
              for n, m in ((1000, 0.0), (100_000, 2.0))]  # fmt: skip
    summary = trend.trend(rising, tmp_path / "rising")
    assert math.isclose(summary["crossing"], 10**3.5, rel_tol=1e-6)  # margin -0.5 + 1.0 (log10 n - 3)
    assert "The effect shows (margin > 0) at 100,000 training images" in summary["text"]
    assert "within the measured sizes" in summary["text"]
    falling = [_write_study(tmp_path / f"f{n}", _occluded_results(n, (20.0, 21.0 + k), (30.0, 29.0)))
               for k, n in enumerate((1000, 10_000))]  # fmt: skip
    summary = trend.trend(falling, tmp_path / "falling")
    assert summary["crossing"] is None and "no training-set size shows the effect" in summary["text"]


def test_the_occluded_trend_names_what_it_cannot_read(tmp_path):
    script = REPO / "benchmarks" / "occluded_trend.py"
    good = _write_study(tmp_path / "good", _occluded_results(5000, (20.0, 21.0), (30.0, 29.0)))
    same = _write_study(tmp_path / "same", _occluded_results(5000, (20.0, 21.0), (30.0, 29.0)))
    other_beta = _write_study(tmp_path / "beta", _occluded_results(9000, (20.0, 21.0), (30.0, 29.0), beta=0.1))
    no_zero = _occluded_results(9000, (20.0, 21.0), (30.0, 29.0))
    no_zero["cells"] = [c for c in no_zero["cells"] if c["labels"].get("beta") != 0.0]
    (tmp_path / "broken").mkdir()
    (tmp_path / "broken" / "results.json").write_text("{")
    cases = {
        "missing": ([tmp_path / "nowhere", good], "results.json: not found"),
        "broken": ([tmp_path / "broken", good], "results.json: unreadable"),
        "one size": ([good, same], "at least two different num_train"),
        "other beta": ([good, other_beta], "differ in more than num_train"),
        "no beta 0": ([good, _write_study(tmp_path / "nozero", no_zero)], "needs information-dropout cells at beta 0"),
    }
    for name, (dirs, message) in cases.items():
        out = tmp_path / f"out-{name.replace(' ', '-')}"
        done = subprocess.run([sys.executable, str(script), *map(str, dirs), "--out", str(out)],
                              capture_output=True, text=True, timeout=120)  # fmt: skip
        assert done.returncode == 2 and message in done.stderr, (name, done.stderr)
        assert len(done.stderr.strip().splitlines()) == 1 and "Traceback" not in done.stderr, name
        assert not out.exists() or not any(out.iterdir()), name
    taken = tmp_path / "taken"
    taken.mkdir()
    (taken / "notes.txt").write_text("mine")
    done = subprocess.run([sys.executable, str(script), str(good), str(other_beta), "--out", str(taken)],
                          capture_output=True, text=True, timeout=120)  # fmt: skip
    assert done.returncode == 2 and "exists and is not empty" in done.stderr
    assert [p.name for p in taken.iterdir()] == ["notes.txt"] and (taken / "notes.txt").read_text() == "mine"


def test_the_mnist_ablation_runs_every_variant_and_pairs_each_with_the_preset_by_seed(tmp_path, data_dir):
    out = tmp_path / "ablate"
    args = ["--out", str(out), "--width", "8", "--seeds", "2", "--epochs", "1", "--num-train", "200"]
    done = subprocess.run([sys.executable, str(REPO / "benchmarks" / "ablate_mnist.py"), *args], capture_output=True,
                          text=True, timeout=600, env={**os.environ, "INFODROPOUT_DATA": str(data_dir)})  # fmt: skip
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    results = json.loads((out / "results.json").read_text())
    runs = {(r["labels"]["variant"], r["seed"]): r for r in results["runs"]}
    assert len(runs) == 9 * 2
    assert runs["epochs x3", 0]["values"]["epoch"] == 3 and runs["preset", 0]["values"]["epoch"] == 1
    assert runs["authors' KL", 1]["final"]["kl_convention"] == "authors"
    for variant, paired in results["paired"].items():
        expected = [
            runs[variant, s]["values"]["test_error"] - runs["preset", s]["values"]["test_error"] for s in (0, 1)
        ]
        assert paired["values"] == expected and math.isclose(paired["mean"], sum(expected) / 2)
    assert set(results["paired"]) == {v for v, _ in runs} - {"preset"}
    text = (out / "results.md").read_text()
    assert (
        "lr x0.1 after epochs (none)" in text
        and "120 epochs (lr x0.1 after 40, 80)" in text
        and " CPUs, torch " in text
    )
