"""Aggregation over seeds and Markdown tables: pure functions over run results (dicts), no files.

A run result carries ``labels`` (its cell of a grid, e.g. ``{"width": 64, "dropout": "binary"}``), its
``seed`` and ``values``, a flat mapping from metric names to numbers (nested results are flattened with
dots: ``test_kl.z1``). Runs with equal labels are the seeds of one cell; a cell's metric is summarised as
its mean, the sample standard deviation over seeds (``ddof = 1``; None for a single seed) and the
seeds' values in seed order.
"""

import json
import math
from collections.abc import Iterable, Mapping, Sequence


def flatten(values: Mapping, prefix: str = "") -> dict[str, float]:
    """The numbers in a nested mapping, keyed by dotted paths (``{"kl": {"z1": 2.0}} -> {"kl.z1": 2.0}``).

    Booleans, strings, lists and None are left out; ints become floats.
    """
    out: dict[str, float] = {}
    for key, value in values.items():
        name = f"{prefix}{key}"
        if isinstance(value, Mapping):
            out.update(flatten(value, name + "."))
        elif isinstance(value, (int, float)) and not isinstance(value, bool):
            out[name] = float(value)
    return out


def summarise(values: Sequence[float]) -> dict:
    """``{"mean", "std", "n", "values"}`` of the seeds' values (std with ``ddof = 1``; None when n < 2).

    Non-finite values are kept in ``values`` and make the mean and std NaN.
    """
    values = [float(v) for v in values]
    n = len(values)
    if n == 0:
        return {"mean": None, "std": None, "n": 0, "values": []}
    mean = math.fsum(values) / n
    std = math.sqrt(math.fsum((v - mean) ** 2 for v in values) / (n - 1)) if n > 1 else None
    return {"mean": mean, "std": std, "n": n, "values": values}


def _cell_key(labels: Mapping) -> str:
    return json.dumps(labels, sort_keys=True, default=str)


def aggregate(runs: Iterable[Mapping], metrics: Sequence[str] | None = None) -> list[dict]:
    """Group runs by their labels (cells, in order of first appearance) and summarise each metric.

    :param runs: run results with ``labels``, ``seed``, ``name`` and ``values`` (flat numbers).
    :param metrics: the metric names to summarise (None: every name any run of the cell has).
    :returns: one dict per cell: ``labels``, ``seeds``, ``runs`` (names) and ``metrics``
        (``{name: summarise(...)}``; a metric a run lacks is left out of that run's values).
    """
    cells: dict[str, dict] = {}
    for run in sorted(runs, key=lambda r: r["seed"]):
        key = _cell_key(run["labels"])
        cell = cells.setdefault(key, {"labels": dict(run["labels"]), "seeds": [], "runs": [], "_values": []})
        cell["seeds"].append(run["seed"])
        cell["runs"].append(run["name"])
        cell["_values"].append(run["values"])
    out = []
    for cell in cells.values():
        rows = cell.pop("_values")
        names = metrics if metrics is not None else sorted({k for row in rows for k in row})
        cell["metrics"] = {name: summarise([row[name] for row in rows if name in row]) for name in names}
        out.append(cell)
    return out


def series(cells: Iterable[Mapping], by: str, x: str, metric: str) -> dict[str, list[tuple[float, dict]]]:
    """The cells' summaries of ``metric`` as one series per value of the label ``by``, against the label
    ``x``: ``{by value: [(x value, summary), ...]}`` (the input of ``figures.line_plot``); cells without
    the metric are left out."""
    out: dict[str, list[tuple[float, dict]]] = {}
    for cell in cells:
        if metric in cell["metrics"]:
            out.setdefault(str(cell["labels"][by]), []).append((cell["labels"][x], cell["metrics"][metric]))
    return out


def format_mean_std(summary: Mapping | None, digits: int = 2, scale: float = 1.0) -> str:
    """``"1.23 ± 0.05"`` (or ``"1.23"`` for one seed, ``"–"`` when missing), values times ``scale``."""
    if not summary or summary.get("mean") is None:
        return "–"
    mean = summary["mean"] * scale
    if summary.get("std") is None:
        return f"{mean:.{digits}f}"
    return f"{mean:.{digits}f} ± {summary['std'] * scale:.{digits}f}"


def markdown_table(header: Sequence[str], rows: Iterable[Sequence[object]]) -> str:
    """A GitHub Markdown table; cells are converted with ``str`` and ``|`` is escaped."""

    def cell(value) -> str:
        return str(value).replace("|", "\\|")

    lines = ["| " + " | ".join(cell(h) for h in header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    lines += ["| " + " | ".join(cell(v) for v in row) + " |" for row in rows]
    return "\n".join(lines)
