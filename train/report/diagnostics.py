"""Figures of what a trained network's noise tells after training: reliability diagrams and ROC curves
(``infodropout uncertainty``), the pruning curve and the information per unit (``infodropout prune``), and
the information plane (``infodropout info-plane``). Each writes one PNG atomically and returns its path."""

from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np
from matplotlib.figure import Figure

from .figures import COLOURS, finish_axes, save


def reliability_diagrams(path: Path, panels: Mapping[str, Mapping], title: str | None = None) -> Path:
    """One reliability diagram per entry of ``panels`` (``{title: {"edges", "count", "confidence",
    "accuracy", "ece"}}``): the accuracy of each confidence bin as a bar against the diagonal of a calibrated
    predictor, the gap to the bin's mean confidence in red, and the bin's share of the examples below."""
    fig = Figure(figsize=(3.2 * len(panels), 4.2), layout="constrained")
    axes = fig.subplots(2, len(panels), squeeze=False, gridspec_kw={"height_ratios": (3, 1)}, sharex=True)
    for c, (name, bins) in enumerate(panels.items()):
        edges = np.asarray(bins["edges"], dtype=float)
        width, left = np.diff(edges), edges[:-1]
        accuracy = np.array([np.nan if v is None else v for v in bins["accuracy"]], dtype=float)
        confidence = np.array([np.nan if v is None else v for v in bins["confidence"]], dtype=float)
        count = np.asarray(bins["count"], dtype=float)
        used = count > 0
        ax = axes[0, c]
        ax.bar(
            left[used], accuracy[used], width[used], align="edge", color=COLOURS[0], edgecolor="white", label="accuracy"
        )
        ax.bar(left[used], (confidence - accuracy)[used], width[used], bottom=accuracy[used], align="edge",
               color="#d62728", alpha=0.35, label="gap to confidence")  # fmt: skip
        ax.plot([0, 1], [0, 1], color="black", linestyle="--", linewidth=1)
        ax.set_xlim(0, 1)
        ax.set_ylim(0, 1)
        ax.set_title(f"{name}\nECE {100 * bins['ece']:.2f}%", fontsize="small")
        if c == 0:
            ax.set_ylabel("accuracy")
            ax.legend(fontsize="x-small", loc="upper left")
        share = axes[1, c]
        share.bar(left, count / max(count.sum(), 1), width, align="edge", color="grey")
        share.set_yscale("log")
        share.set_xlabel("confidence")
        if c == 0:
            share.set_ylabel("share")
    if title:
        fig.suptitle(title)
    return save(fig, path)


def roc_curves(path: Path, panels: Mapping[str, Mapping[str, tuple]], title: str | None = None) -> Path:
    """One panel per score (``{score: {series: (fpr, tpr, auroc)}}``): each series' ROC curve, its AUROC in the
    legend, the chance diagonal dotted."""
    fig = Figure(figsize=(3.4 * len(panels), 3.6), layout="constrained")
    axes = fig.subplots(1, len(panels), squeeze=False, sharey=True)[0]
    for c, (ax, (score, curves)) in enumerate(zip(axes, panels.items(), strict=True)):
        for i, (name, (fpr, tpr, area)) in enumerate(curves.items()):
            ax.plot(fpr, tpr, color=COLOURS[i % len(COLOURS)], label=f"{name} ({area:.3f})")
        ax.plot([0, 1], [0, 1], color="grey", linestyle=":", linewidth=1)
        ax.set_title(score, fontsize="small")
        ax.set_xlabel("false-positive rate (in distribution)")
        if c == 0:
            ax.set_ylabel("true-positive rate (OOD)")
        ax.legend(fontsize="x-small", loc="lower right")
    if title:
        fig.suptitle(title)
    return save(fig, path)


def pruning_curve(
    path: Path,
    curves: Mapping[str, Sequence[tuple[float, float]]],
    unpruned: float,
    title: str | None = None,
    marks: Sequence[tuple[float, float, str]] = (),
) -> Path:
    """Test error against the units kept, one line per ranking (``{name: [(units, error), ...]}``), the
    unpruned network's error dashed, and labelled ``marks`` ``(units, error, text)`` (e.g. a reference)."""
    fig = Figure(figsize=(5.5, 3.8))
    ax = fig.add_subplot()
    for i, (name, points) in enumerate(curves.items()):
        points = sorted(points)
        ax.plot([p[0] for p in points], [p[1] for p in points], marker="o", color=COLOURS[i % len(COLOURS)], label=name)
    ax.axhline(unpruned, color="black", linestyle="--", linewidth=1, label="unpruned")
    for units, error, text in marks:
        ax.scatter([units], [error], marker="*", s=80, color="black", zorder=3)
        ax.annotate(text, (units, error), textcoords="offset points", xytext=(4, 4), fontsize="x-small")
    finish_axes(ax, "units kept (all layers)", "test error (%)", title, logx=True, logy=True)
    return save(fig, path)


def unit_information(path: Path, information: Mapping[str, np.ndarray], floor: float = 1e-6,
                     title: str | None = None) -> Path:  # fmt: skip
    """Every layer's units sorted by their mean information (nats, log scale; values below ``floor`` drawn
    at it): how many carry anything."""
    fig = Figure(figsize=(5.5, 3.8))
    ax = fig.add_subplot()
    for i, (name, values) in enumerate(information.items()):
        values = np.sort(np.asarray(values, dtype=float))[::-1]
        ax.plot(np.arange(1, len(values) + 1), np.maximum(values, floor), color=COLOURS[i % len(COLOURS)], label=name)
    finish_axes(ax, "units, by rank", "mean information (nats)", title, logx=True, logy=True)
    return save(fig, path)


def information_plane(
    path: Path,
    panels: Mapping[str, Mapping[str, Sequence[tuple[float, float, str]]]],
    xlabel: str,
    ylabel: str,
    title: str | None = None,
    fronts: Mapping[str, Sequence[tuple[float, float]]] | None = None,
    logx: bool = True,
) -> Path:
    """One panel per entry of ``panels`` (``{panel: {series: [(x, y, label), ...]}}``): each series' points
    in order, joined, the first hollow and the last filled, each labelled (a beta, an epoch) where the label
    is not empty; ``fronts`` (``{panel: [(x, y), ...]}``) drawn as a black step line (a Pareto front)."""
    fig = Figure(figsize=(4.2 * len(panels), 3.8), layout="constrained")
    axes = fig.subplots(1, len(panels), squeeze=False, sharey=True)[0]
    for c, (ax, (name, series)) in enumerate(zip(axes, panels.items(), strict=True)):
        for i, (label, points) in enumerate(series.items()):
            colour = COLOURS[i % len(COLOURS)]
            xs, ys = [p[0] for p in points], [p[1] for p in points]
            ax.plot(xs, ys, color=colour, marker=".", linewidth=1, label=label)
            ax.scatter(xs[:1], ys[:1], facecolors="none", edgecolors=colour, s=40)
            ax.scatter(xs[-1:], ys[-1:], color=colour, s=40)
            for x, y, text in points:
                if text:
                    ax.annotate(text, (x, y), textcoords="offset points", xytext=(3, 3), fontsize="xx-small")
        front = (fronts or {}).get(name)
        if front:
            front = sorted(front)
            ax.step([p[0] for p in front], [p[1] for p in front], where="post", color="black", linewidth=1,
                    linestyle="--", label="Pareto front")  # fmt: skip
        if logx:
            ax.set_xscale("symlog", linthresh=1e-2)
        ax.set_xlabel(xlabel)
        if c == 0:
            ax.set_ylabel(ylabel)
        ax.set_title(name, fontsize="small")
        ax.grid(alpha=0.3)
        ax.legend(fontsize="xx-small")
    if title:
        fig.suptitle(title)
    return save(fig, path)
