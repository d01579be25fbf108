"""At what size would ``occluded`` show the paper's effect? A trend over training-set sizes, measured.

    infodropout reproduce occluded --set num_train=N --grid beta=0.0,0.01 --out DIR_N   (for 2-3 sizes N)
    python benchmarks/occluded_trend.py DIR_N1 DIR_N2 [DIR_N3] --out DIR

The paper's claim on Occluded CIFAR is that a larger beta makes the representation keep less of the
nuisance (the occluding digit) at little cost to the task. ``occluded``'s target reads it from beta 0 to the
study's largest beta: the probe's nuisance accuracy falls by ``drop`` points while the task error rises by
``rise`` points, and the effect shows where ``margin = drop - rise > 0``.

For each study directory (the same study on ``num_train`` training images) this takes the information-dropout
cells at beta 0 and at the largest beta, their ``drop``, ``rise`` and ``margin`` (means over seeds), and fits
each against ``log10(num_train)`` by least squares (a straight line: with two sizes it passes through both).
Where the margin's line rises, the size at which it crosses 0 is the size the trend says would show the
effect; the report says when that is beyond the measured sizes (an extrapolation) or beyond CIFAR-10's 50,000
training images (then more data alone would not do it on this schedule and width). Writes
``DIR/results.md``, ``DIR/results.json`` and ``DIR/figures/margin_vs_num_train.png``.
"""

import argparse
import json
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np
from matplotlib.figure import Figure

from infodropout.train.files import write_json, write_text
from infodropout.train.report.figures import save
from infodropout.train.report.tables import markdown_table

#: CIFAR-10's training images: no size on the trend beyond this can be had by more data.
CIFAR_TRAIN = 50_000


def _mean(cell: Mapping, key: str, where: str) -> float:
    summary = cell.get("metrics", {}).get(key)
    if not summary or summary.get("mean") is None:
        raise ValueError(f"{where}: no {key} in the beta={cell['labels'].get('beta')} cell")
    return float(summary["mean"])


def point(results: Mapping, where: str) -> dict:
    """One study's size and its ``drop``, ``rise`` and ``margin`` (points of %), from beta 0 to its largest
    beta (information dropout)."""
    if results.get("study") != "occluded":
        raise ValueError(f"{where}: not an occluded study (study {results.get('study')!r})")
    settings = results.get("settings") or {}
    n = settings.get("num_train")
    if not isinstance(n, int) or n < 1:
        raise ValueError(f"{where}: its settings name no num_train (a study of the full training set?)")
    info = sorted(
        (c for c in results.get("cells", []) if c.get("labels", {}).get("method") == "information"),
        key=lambda c: c["labels"]["beta"],
    )
    if len(info) < 2 or info[0]["labels"]["beta"] != 0:
        raise ValueError(f"{where}: needs information-dropout cells at beta 0 and at a larger beta")
    low, high = info[0], info[-1]
    error = (_mean(low, "test_error", where), _mean(high, "test_error", where))
    nuisance = (_mean(low, "nuisance_accuracy", where), _mean(high, "nuisance_accuracy", where))
    drop, rise = nuisance[0] - nuisance[1], error[1] - error[0]
    return {
        "num_train": n,
        "beta": high["labels"]["beta"],
        "epochs": settings.get("epochs"),
        "width": settings.get("width"),
        "seeds": min(len(low.get("seeds", [])), len(high.get("seeds", []))) or None,
        "test_error": list(error),
        "nuisance_accuracy": list(nuisance),
        "drop": drop,
        "rise": rise,
        "margin": drop - rise,
    }


def fit(points: Sequence[Mapping], key: str) -> tuple[float, float]:
    """Least-squares ``key = a + b log10(num_train)``: ``(a, b)``."""
    x = np.log10([p["num_train"] for p in points])
    y = np.array([p[key] for p in points], dtype=float)
    b, a = np.polyfit(x, y, 1)
    return float(a), float(b)


def crossing(a: float, b: float) -> float | None:
    """The size at which a rising line ``a + b log10(n)`` reaches 0 (None where it does not rise)."""
    return 10 ** (-a / b) if b > 0 else None


def conclusion(points: Sequence[Mapping], a: float, b: float) -> str:
    """What the margin's trend says, in one paragraph."""
    sizes = [p["num_train"] for p in points]
    shown = [p["num_train"] for p in points if p["margin"] > 0]
    if shown:
        head = f"The effect shows (margin > 0) at {', '.join(f'{n:,}' for n in shown)} training images. "
    else:
        head = "The effect shows at none of the measured sizes. "
    n0 = crossing(a, b)
    if n0 is None:
        return head + (
            f"The margin does not grow with the data (slope {b:+.2f} points per decade): on this trend no training-set "
            "size shows the effect at this width and schedule; the rest of the paper's setting (full width, 200 "
            "epochs) is what differs."
        )
    where = "within the measured sizes" if min(sizes) <= n0 <= max(sizes) else "an extrapolation beyond them"
    line = f"The margin grows by {b:.2f} points per decade of data and crosses 0 at about {n0:,.0f} images ({where}). "
    if n0 > CIFAR_TRAIN:
        line += (
            f"That is more than CIFAR-10's {CIFAR_TRAIN:,} training images: at this width and schedule more data alone "
            "would not show it; the paper's width and 200 epochs are the rest of its setting."
        )
    else:
        line += f"The full training set ({CIFAR_TRAIN:,}) is past that point on this trend."
    return head + line


def figure(path: Path, points: Sequence[Mapping], a: float, b: float) -> Path:
    fig = Figure(figsize=(5.5, 3.8))
    ax = fig.subplots()
    n = np.array([p["num_train"] for p in points], dtype=float)
    for key, style in (("margin", "o-"), ("drop", "s--"), ("rise", "^--")):
        ax.plot(n, [p[key] for p in points], style, label=key)
    grid = np.geomspace(min(n.min(), 1000), CIFAR_TRAIN, 50)
    ax.plot(grid, a + b * np.log10(grid), ":", color="grey", label="margin, fitted")
    ax.axhline(0, color="black", lw=0.6)
    ax.set_xscale("log")
    ax.set_xlabel("training images")
    ax.set_ylabel("points of %")
    ax.set_title(f"Occluded CIFAR: beta 0 -> {points[0]['beta']:g}")
    ax.grid(alpha=0.3)
    ax.legend(fontsize="x-small")
    return save(fig, path)


def read_results(study_dir: Path) -> dict:
    path = Path(study_dir) / "results.json"
    try:
        return json.loads(path.read_text())
    except FileNotFoundError:
        raise ValueError(f"{path}: not found (a finished occluded study directory is expected)") from None
    except (OSError, json.JSONDecodeError) as err:
        raise ValueError(f"{path}: unreadable ({err})") from None


def trend(study_dirs: Sequence[Path], out: Path) -> dict:
    points = sorted((point(read_results(d), str(d)) for d in study_dirs), key=lambda p: p["num_train"])
    if len({p["num_train"] for p in points}) < 2:
        raise ValueError("a trend needs studies of at least two different num_train")
    if len({p["beta"] for p in points}) > 1 or len({(p["epochs"], p["width"]) for p in points}) > 1:
        raise ValueError("the studies differ in more than num_train (their largest beta, epochs or width)")
    a, b = fit(points, "margin")
    summary = {"points": points, "margin_fit": {"intercept": a, "slope_per_decade": b}, "crossing": crossing(a, b)}
    out = Path(out)
    figure(out / "figures" / "margin_vs_num_train.png", points, a, b)
    rows = [
        [f"{p['num_train']:,}", *(f"{v:.2f}" for v in p["test_error"]), *(f"{v:.1f}" for v in p["nuisance_accuracy"]),
         f"{p['drop']:+.1f}", f"{p['rise']:+.2f}", f"{p['margin']:+.2f}"]
        for p in points
    ]  # fmt: skip
    beta = points[0]["beta"]
    header = ["training images", "error, beta 0 (%)", f"error, beta {beta:g} (%)", "nuisance acc., beta 0 (%)",
              f"nuisance acc., beta {beta:g} (%)", "drop", "rise", "margin"]  # fmt: skip
    text = "\n\n".join([
        "# Occluded CIFAR: the effect against the training-set size",
        f"Width {points[0]['width']}, {points[0]['epochs']} epochs, beta 0 and {beta:g}, information dropout; "
        "means over each study's seeds (drop: nuisance accuracy at beta 0 minus at the larger beta; rise: task "
        "error at the larger beta minus at beta 0; margin = drop - rise, the effect showing where it is > 0).",
        markdown_table(header, rows),
        f"Least squares: margin = {a:+.2f} {b:+.2f} log10(training images).",
        conclusion(points, a, b),
        "![margin against the training-set size](figures/margin_vs_num_train.png)",
    ]) + "\n"  # fmt: skip
    write_json(out / "results.json", summary)
    write_text(out / "results.md", text)
    return {**summary, "text": text}


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("studies", nargs="+", type=Path, help="occluded study directories, one per num_train")
    p.add_argument("--out", type=Path, required=True, help="a new directory for the trend (never overwritten)")
    a = p.parse_args(argv)
    if a.out.exists() and any(a.out.iterdir()):
        print(f"error: --out {a.out}: exists and is not empty (choose a new directory)", file=sys.stderr)
        return 2
    try:
        print(trend(a.studies, a.out)["text"])
    except ValueError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
