"""PNG figures with matplotlib's object API (``Figure`` and its Agg canvas: no pyplot, no display, no
global backend switched). Every function writes one file atomically and returns its path.
"""

from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np
from matplotlib.figure import Figure
from matplotlib.patches import Rectangle

from infodropout.train import files

#: One colour per series, in order (matplotlib's default cycle).
COLOURS = ("#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f")


def save(fig: Figure, path: Path, dpi: int = 110) -> Path:
    """Write ``fig`` to ``path`` (PNG), atomically."""
    return files.atomic_write(path, lambda f: fig.savefig(f, dpi=dpi, bbox_inches="tight", format="png"))


def _draw_series(ax, series: Mapping[str, Sequence[tuple[float, Mapping]]]) -> None:
    """Each series' means against x with a band of one standard deviation over seeds, and each seed's
    value as a dot (summaries from :func:`~infodropout.train.report.tables.summarise`)."""
    for i, (name, points) in enumerate(series.items()):
        points = [(x, s) for x, s in sorted(points, key=lambda p: p[0]) if s and s.get("mean") is not None]
        if not points:
            continue
        colour = COLOURS[i % len(COLOURS)]
        xs = np.array([x for x, _ in points], dtype=float)
        means = np.array([s["mean"] for _, s in points], dtype=float)
        stds = np.array([s["std"] or 0.0 for _, s in points], dtype=float)
        ax.plot(xs, means, marker="o", color=colour, label=name)
        ax.fill_between(xs, means - stds, means + stds, color=colour, alpha=0.15, linewidth=0)
        for x, s in points:
            ax.scatter([x] * len(s["values"]), s["values"], color=colour, s=8, alpha=0.5)
    ax.grid(alpha=0.3)
    if ax.get_legend_handles_labels()[0]:
        ax.legend(fontsize="small")


def finish_axes(ax, xlabel: str, ylabel: str, title: str | None = None, *, logx=False, logy=False) -> None:
    """Labels, log scales, a light grid, the legend where there are labelled lines, and the title."""
    if logx:
        ax.set_xscale("log")
    if logy:
        ax.set_yscale("log")
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.grid(alpha=0.3, which="both" if logx or logy else "major")
    if ax.get_legend_handles_labels()[0]:
        ax.legend(fontsize="small")
    if title:
        ax.set_title(title)


def line_plot(
    path: Path,
    series: Mapping[str, Sequence[tuple[float, Mapping]]],
    xlabel: str,
    ylabel: str,
    title: str | None = None,
    logx: bool = False,
    logy: bool = False,
) -> Path:
    """Each series' means against x with a band of one standard deviation over seeds, and each seed's
    value as a dot. ``series`` maps a name to ``[(x, summary), ...]`` with summaries from
    :func:`~infodropout.train.report.tables.summarise`."""
    fig = Figure(figsize=(5.5, 3.8))
    ax = fig.add_subplot()
    _draw_series(ax, series)
    finish_axes(ax, xlabel, ylabel, title, logx=logx, logy=logy)
    return save(fig, path)


def panels_plot(
    path: Path,
    panels: Mapping[str, Mapping[str, Sequence[tuple[float, Mapping]]]],
    xlabel: str,
    title: str | None = None,
) -> Path:
    """One panel per entry of ``panels`` (its title: the y label), each as :func:`line_plot` draws its series."""
    fig = Figure(figsize=(4.2 * len(panels), 3.6))
    axes = fig.subplots(1, len(panels), squeeze=False)[0]
    for ax, (ylabel, series) in zip(axes, panels.items(), strict=True):
        _draw_series(ax, series)
        ax.set_xlabel(xlabel)
        ax.set_ylabel(ylabel)
    if title:
        fig.suptitle(title)
    return save(fig, path)


def _as_images(images: np.ndarray) -> np.ndarray:
    """``(N, H, W)`` grey or ``(N, H, W, 3)`` colour in [0, 1] from ``(N, C, H, W)`` or ``(N, H, W)``."""
    images = np.asarray(images, dtype=float)
    if images.ndim == 4:
        images = images[:, 0] if images.shape[1] == 1 else np.moveaxis(images, 1, -1)
    if images.ndim not in (3, 4):
        raise ValueError(f"images: expected (N, C, H, W) or (N, H, W), got shape {images.shape}")
    return np.clip(images, 0.0, 1.0)


def image_mosaic(images: np.ndarray, ncols: int, pad: int = 1, fill: float = 0.5) -> np.ndarray:
    """Grey images ``(N, H, W)`` in [0, 1] tiled row-major into one array of ``ceil(N / ncols)`` rows and
    ``ncols`` columns, ``pad`` pixels of ``fill`` between them (and in the cells left over):
    ``(R (H + pad) - pad, C (W + pad) - pad)``. One image drawn once is much faster than an axes per image."""
    images = np.clip(np.asarray(images, dtype=np.float64), 0.0, 1.0)  # (N, H, W)
    if images.ndim != 3 or not len(images) or ncols < 1:
        raise ValueError(f"images: expected (N, H, W) with N >= 1 and ncols >= 1, got {images.shape}, {ncols}")
    n, h, w = images.shape
    nrows = -(-n // ncols)
    out = np.full((nrows * (h + pad) - pad, ncols * (w + pad) - pad), float(fill))
    for i, image in enumerate(images):
        r, c = divmod(i, ncols)
        out[r * (h + pad) : r * (h + pad) + h, c * (w + pad) : c * (w + pad) + w] = image
    return out


def image_grid(
    path: Path,
    images: np.ndarray,
    ncols: int,
    title: str | None = None,
    row_labels: Sequence[str] | None = None,
) -> Path:
    """Grey images in [0, 1] (``(N, H, W)`` or ``(N, 1, H, W)``) laid out row-major in ``ncols`` columns as
    one :func:`image_mosaic` with white gaps, its rows labelled with ``row_labels``."""
    images = _as_images(images)
    if images.ndim != 3:
        raise ValueError(f"images: expected grey images (N, H, W), got shape {images.shape}")
    h = images.shape[1]
    mosaic = image_mosaic(images, ncols, pad=max(1, h // 16), fill=1.0)
    nrows = -(-len(images) // ncols)
    label_width, title_height = (0.8 if row_labels else 0.05), (0.4 if title else 0.05)  # inches
    width, height = 0.9 * ncols + label_width, 0.9 * nrows + title_height
    fig = Figure(figsize=(width, height))
    ax = fig.add_axes((label_width / width, 0.05 / height, 1 - (label_width + 0.05) / width,
                       1 - (title_height + 0.05) / height))  # fmt: skip
    ax.imshow(mosaic, cmap="gray", vmin=0, vmax=1, interpolation="nearest", aspect="auto")
    ax.set_xticks([])
    step = mosaic.shape[0] / nrows
    labels = list(row_labels or [])[:nrows]
    ax.set_yticks([r * step + (h - 1) / 2 for r in range(len(labels))], labels, fontsize="small")
    ax.tick_params(length=0)
    for spine in ax.spines.values():
        spine.set_visible(False)
    if title:
        fig.suptitle(title, y=1 - 0.05 / height, va="top")
    return save(fig, path)


def heat_maps(
    path: Path,
    images: np.ndarray,
    maps: Mapping[str, np.ndarray],
    boxes: np.ndarray | None = None,
    title: str | None = None,
) -> Path:
    """One row per sample: the input, then each map (``(N, h, w)``) stretched over the input's extent,
    each on its own colour scale; ``boxes`` ``(N, 4)`` as ``(top, left, height, width)`` are outlined."""
    images = _as_images(images)
    n, height, width = images.shape[0], images.shape[1], images.shape[2]
    names = list(maps)
    fig = Figure(figsize=(1.8 * (1 + len(names)), 1.8 * n))
    axes = fig.subplots(n, 1 + len(names), squeeze=False)
    extent = (0, width, height, 0)
    for r in range(n):
        panels = [("input", images[r], "gray")] + [(name, np.asarray(maps[name][r]), "viridis") for name in names]
        for c, (name, panel, cmap) in enumerate(panels):
            ax = axes[r, c]
            ax.imshow(panel, cmap=cmap, extent=extent, interpolation="nearest")
            if boxes is not None:
                top, left, h, w = (float(v) for v in boxes[r])
                ax.add_patch(_rectangle(left, top, w, h))
            ax.set_xticks([])
            ax.set_yticks([])
            if r == 0:
                ax.set_title(name, fontsize="small")
    if title:
        fig.suptitle(title)
    return save(fig, path)


def _rectangle(left, top, width, height):
    return Rectangle((left, top), width, height, fill=False, edgecolor="red", linewidth=1.0)


def matrix_plot(
    path: Path,
    matrix: np.ndarray,
    row_labels: Sequence[str],
    col_labels: Sequence[str],
    title: str | None = None,
    value_format: str = "{:.2f}",
) -> Path:
    """A matrix as a heat map with its values written in the cells (e.g. factor-by-latent MI)."""
    matrix = np.asarray(matrix, dtype=float)
    if matrix.shape != (len(row_labels), len(col_labels)):
        raise ValueError(f"matrix of shape {matrix.shape} for {len(row_labels)} x {len(col_labels)} labels")
    fig = Figure(figsize=(0.6 * len(col_labels) + 2, 0.5 * len(row_labels) + 1.2))
    ax = fig.add_subplot()
    im = ax.imshow(matrix, cmap="viridis", aspect="auto")
    ax.set_xticks(range(len(col_labels)), list(col_labels), rotation=45, ha="right", fontsize="small")
    ax.set_yticks(range(len(row_labels)), list(row_labels), fontsize="small")
    peak = np.nanmax(matrix) if matrix.size else 0.0
    for (i, j), value in np.ndenumerate(matrix):
        colour = "black" if peak and value > 0.6 * peak else "white"
        ax.text(j, i, value_format.format(value), ha="center", va="center", fontsize="x-small", color=colour)
    fig.colorbar(im, ax=ax)
    if title:
        ax.set_title(title)
    return save(fig, path)
