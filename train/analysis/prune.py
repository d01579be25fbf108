"""``infodropout prune RUN_DIR --out DIR [--keep N1,N2,N3 ...]``: a trained fully-connected classifier
made smaller by removing the units whose information stays near zero over the training set.

Every unit's information is measured over the training images (noise off upstream) two ways: its KL
against the network's prior (``information``; exact convention:
:func:`~infodropout.train.evaluation.pruning.mean_unit_information`) and against a prior fitted to the
unit (``fitted``: :func:`~infodropout.train.evaluation.pruning.fitted_unit_information`, which has no
arbitrary zero). At each point of the curve (per-layer counts of units kept: ``--keep``, or by default
the units above each of :data:`THRESHOLDS` nats of ``information``) the units are ranked by either
information, by the norm of their incoming weights (magnitude pruning) and at random (mean over
``--random-seeds`` orders), the smaller deterministic network is cut out
(:class:`~infodropout.train.evaluation.pruning.PrunedMLP`) and tested. The networks pruned by information
are checked against the original with the pruned units zeroed, saved (``networks/*.pt``) and timed against
the unpruned network on the test set. Written to
``DIR``: ``prune.json``, ``prune.md``, ``measurements.nc`` (every unit's information and weight norm),
``networks/`` and ``figures/``.
"""

import json
import math
import time
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
import torch
import xarray as xr

from infodropout.train.evaluation import evaluating, write_record
from infodropout.train.evaluation.pruning import (
    MEASURED,
    PrunedMLP,
    check_mlp,
    counts_above,
    fitted_information_and_noise,
    incoming_norm,
    keep_masks,
    masked,
    mean_unit_information,
    noisy_layers,
    test_error,
    unit_scores,
)
from infodropout.train.evaluation.uncertainty import check_classifier
from infodropout.train.files import atomic_write, buffer_of, write_json, write_text
from infodropout.train.report import diagnostics
from infodropout.train.report.tables import markdown_table

from .runs import load_finished, new_output, standardised_like

#: The default points of the curve: the units whose mean information exceeds each threshold (nats).
THRESHOLDS = (1e-3, 3e-3, 1e-2, 3e-2, 0.1, 0.3, 1.0, 3.0)
#: Random orders averaged at each point.
RANDOM_SEEDS = 3
#: Passes over the test set timed per network (the fastest counts).
TIMING_REPEATS = 5
#: Bayesian Compression (Louizos et al. 2017) on LeNet-300-100: units kept and test error (%).
REFERENCE = ((278, 98, 13), 1.8)
#: The issue's targets on the 3x1024 MLP: at most these units per layer, this error (%), this much above
#: the unpruned network (points).
TARGET_UNITS, TARGET_ERROR, TARGET_GAP = (300, 100, 50), 1.8, 0.1
QUICK_THRESHOLDS = (1e-2, 0.1)


def parse_keep(text: str) -> list[int]:
    """``"300,100,50"`` -> ``[300, 100, 50]`` (the units each layer keeps)."""
    try:
        counts = [int(v) for v in text.split(",") if v.strip()]
    except ValueError:
        raise ValueError(f"--keep {text}: expected units per layer, integers separated by commas") from None
    if not counts:
        raise ValueError(f"--keep {text!r}: expected units per layer, e.g. 300,100,50")
    return counts


def _timed(forward, batches, repeats: int) -> float:
    """The fastest of ``repeats`` passes of ``forward`` over ``batches`` (seconds)."""
    inputs = [x for x, *_ in batches]
    best = math.inf
    with torch.no_grad():
        for _ in range(repeats):
            start = time.perf_counter()
            for x in inputs:
                forward(x)
            best = min(best, time.perf_counter() - start)
    return best


def prune(
    run_dir: Path,
    out: Path,
    *,
    keep: Sequence[Sequence[int]] | None = None,
    thresholds: Sequence[float] | None = None,
    random_seeds: int = RANDOM_SEEDS,
    timing_repeats: int = TIMING_REPEATS,
    data_dir: str | None = None,
    quick: bool = False,
    log: Callable[[str], None] = print,
) -> dict:
    """Prune the finished classifier in ``run_dir`` at every point of ``keep`` (per-layer counts; default: the
    units above each of ``thresholds`` nats of information) and write ``out`` (new)."""
    trainer = load_finished(run_dir, data_dir)
    check_classifier(trainer.ib, str(run_dir))
    ib = trainer.ib
    check_mlp(ib, str(run_dir))
    layers = noisy_layers(ib)
    widths = [len(incoming_norm(layer)) for layer in layers.values()]
    points = [list(k) for k in keep or []]
    for counts in points:
        try:
            keep_masks({name: torch.zeros(w) for name, w in zip(layers, widths, strict=True)}, counts)
        except ValueError as err:
            raise ValueError(f"--keep {','.join(map(str, counts))}: {err} (the layers: {widths})") from None
    if not (isinstance(random_seeds, int) and random_seeds >= 1):
        raise ValueError(f"--random-seeds {random_seeds!r}: expected an integer >= 1")
    has_information = set(layers) <= set(ib.latent_sites)
    if not points and not has_information:
        raise ValueError(
            f"{run_dir}: its layers carry no information cost ({trainer.config.dropout} dropout): give the units "
            "to keep with --keep N1,N2,... (pruned by magnitude and at random)"
        )
    with new_output(out) as out:
        test, train = (standardised_like(d.x, d.y, d) for d in (trainer.data.test, trainer.data.train))
        information, measured = None, {}
        if has_information:
            log(f"prune: the information of every unit over {len(trainer.data.train.x):,} training images")
            information = mean_unit_information(ib, train)
            fitted, occupancy = fitted_information_and_noise(ib, train)
            measured = {"information": information, "fitted": fitted}
        else:
            occupancy = {}
        if not points:
            chosen = thresholds or (QUICK_THRESHOLDS if quick else THRESHOLDS)
            points = [counts_above(information, t) for t in chosen]
        points = sorted({tuple(p) for p in points}, key=lambda p: (sum(p), p))
        rankings = [*measured, "magnitude", "random"]
        stats = {} if test.mean is None else {"mean": test.mean.flatten().tolist(), "std": test.std.flatten().tolist()}

        def full(x):
            return ib.head(ib.representation(x))

        with evaluating(ib):
            unpruned = test_error(full, test)
            full_seconds = _timed(full, test, timing_repeats)
        log(f"prune: unpruned {widths}: test error {unpruned:.2f}%")
        curve = []
        for counts in points:
            point = {"units": list(counts), "total": sum(counts), "errors": {}}
            for ranking in rankings:
                seeds = range(random_seeds) if ranking == "random" else [0]
                errors = []
                for seed in seeds:
                    masks = keep_masks(unit_scores(ib, ranking, measured.get(ranking), seed), list(counts))
                    net = PrunedMLP.from_network(ib, masks, **stats).eval()
                    errors.append(test_error(net, test))
                    if ranking in MEASURED:
                        checked = _check_and_save(ib, net, masks, test, out, ranking, counts, timing_repeats)
                        point.setdefault("networks", {})[ranking] = checked
                point["errors"][ranking] = float(np.mean(errors))
                if ranking == "random":
                    point["random_errors"] = errors
            log(f"prune: keep {list(counts)}: " + ", ".join(f"{r} {e:.2f}%" for r, e in point["errors"].items()))
            curve.append(point)
        results = {
            "command": "prune",
            "run_dir": str(Path(run_dir).resolve()),
            "dataset": trainer.config.dataset,
            "dropout": trainer.config.dropout,
            "layers": list(layers),
            "widths": widths,
            "unpruned": {"test_error": unpruned, "seconds": full_seconds, "threads": torch.get_num_threads()},
            "rankings": rankings,
            "random_seeds": random_seeds,
            "curve": curve,
            "settings": {
                "keep": [list(k) for k in keep or []],
                "thresholds": list(thresholds or []),
                "quick": quick,
                "timing_repeats": timing_repeats,
            },  # fmt: skip
        }
        if occupancy:
            results["noise"] = occupancy
        for ranking, values in measured.items():
            results[ranking] = {name: {"total": float(v.sum()), "above_0.01": int((v > 0.01).sum())}
                                for name, v in values.items()}  # fmt: skip
        results["targets"] = targets(results)
        write_record(out, {"units": _units_dataset(ib, layers, measured)}, {"command": "prune"})
        results["figures"] = _figures(results, measured, out)
        write_json(out / "prune.json", json.loads(json.dumps(results)))
        write_text(out / "prune.md", render(results))
    log(f"prune: wrote {out / 'prune.md'}")
    return results


def _check_and_save(ib, net, masks, test, out: Path, ranking: str, counts, repeats: int) -> dict:
    """The largest difference between the pruned network's logits and the masked original's on the test set;
    the pruned network saved; its pass over the test set timed."""
    gap = 0.0
    with evaluating(ib), masked(ib, masks), torch.no_grad():
        for x, *_ in test:
            gap = max(gap, float((net(x) - ib.head(ib.representation(x))).abs().max()))
    path = out / "networks" / f"{ranking}-{'-'.join(map(str, counts))}.pt"
    atomic_write(path, lambda f: f.write(buffer_of(lambda b: torch.save(net.to_file(), b))))
    return {"max_logit_difference": gap, "network": str(path.relative_to(out)), "seconds": _timed(net, test, repeats)}


def _units_dataset(ib, layers, measured) -> xr.Dataset:
    variables, coords = {}, {}
    for name, layer in layers.items():
        dim = f"unit_{name}"
        coords[dim] = np.arange(len(incoming_norm(layer)))
        variables[f"magnitude_{name}"] = ((dim,), incoming_norm(layer).numpy())
        for ranking, values in measured.items():
            variables[f"{ranking}_{name}"] = ((dim,), values[name].numpy())
    return xr.Dataset(variables, coords=coords)


def targets(results) -> dict:
    """Where the curve meets the issue's targets, per ranking by information: the smallest point within the
    error targets, whether it keeps at most :data:`TARGET_UNITS`, whether the ranking is at or below
    magnitude pruning at every point, and the speed-ups of its networks over the unpruned one."""
    unpruned = results["unpruned"]["test_error"]
    bound = min(TARGET_ERROR, unpruned + TARGET_GAP)
    out: dict = {"unpruned_error": unpruned, "error_bound": bound, "by_ranking": {}}
    for ranking in (r for r in results["rankings"] if r in MEASURED):
        good = [p for p in results["curve"] if p["errors"][ranking] <= bound + 1e-9]
        best = min(good, key=lambda p: p["total"], default=None)
        within = best is not None and len(best["units"]) == len(TARGET_UNITS)
        within = within and all(u <= t for u, t in zip(best["units"], TARGET_UNITS, strict=True))
        curve = results["curve"]
        found = {
            "smallest_within_bound": None
            if best is None
            else {"units": best["units"], "error": best["errors"][ranking]},
            "within_target_units": bool(within),
            "at_or_below_magnitude_everywhere": all(p["errors"][ranking] <= p["errors"]["magnitude"] for p in curve),
            "speedups": [results["unpruned"]["seconds"] / p["networks"][ranking]["seconds"] for p in curve],
        }
        out["by_ranking"][ranking] = found
    return out


def _percent(share: float | None) -> str:
    return "n/a" if share is None else f"{100 * share:.1f}"


def render(results) -> str:
    """``prune.md``: the curve and the targets."""
    u = results["unpruned"]
    measured = [r for r in results["rankings"] if r in MEASURED]
    lines = [
        f"# Pruning by information ({Path(results['run_dir']).name}, {results['dropout']} dropout)",
        "",
        f"Unpruned network: layers {results['widths']}, test error {u['test_error']:.2f}%. Errors are of the "
        f"pruned deterministic network on the test set; random: mean of {results['random_seeds']} orders. "
        "information: the KL against the network's prior; fitted: against a prior fitted to each unit. Speed-ups "
        "are of the fastest of repeated passes over the test set with the noise off "
        f"({u['threads']} torch thread(s)); logit differences against the original with the pruned units zeroed.",
        "",
    ]
    header = ["units kept", "total", *(f"{r} (%)" for r in results["rankings"])]
    header += [h for r in measured for h in (f"speed-up ({r})", f"max logit difference ({r})")]
    rows = []
    for p in results["curve"]:
        row = ["-".join(map(str, p["units"])), p["total"], *(f"{p['errors'][r]:.2f}" for r in results["rankings"])]
        for r in measured:
            n = p["networks"][r]
            row += [f"{u['seconds'] / n['seconds']:.1f}x", f"{n['max_logit_difference']:.1e}"]
        rows.append(row)
    lines += [markdown_table(header, rows), ""]
    t = results["targets"]
    if t["by_ranking"]:
        lines += ["## Targets", ""]
        for ranking, found in t["by_ranking"].items():
            best = found["smallest_within_bound"]
            where = "none" if best is None else f"{'-'.join(map(str, best['units']))} at {best['error']:.2f}%"
            lines += [
                f"- {ranking}: smallest network within {t['error_bound']:.2f}% error (<= {TARGET_ERROR}% and <= "
                f"unpruned + {TARGET_GAP} points): {where}; at most {'-'.join(map(str, TARGET_UNITS))} units: "
                f"{'yes' if found['within_target_units'] else 'no'}; at or below magnitude pruning at every "
                f"point: {'yes' if found['at_or_below_magnitude_everywhere'] else 'no'}",
            ]
        lines += [
            f"- reference: Bayesian Compression, LeNet-300-100 to {'-'.join(map(str, REFERENCE[0]))} at "
            f"{REFERENCE[1]}% error",
            "",
        ]
    if results.get("noise"):
        lines += [
            "## Where the noise sits (training images)",
            "",
            "Of the units that are on for an image, the share whose noise is within 1% of the cap (where the "
            "log-uniform prior's KL is 0 by its convention, although such a unit still passes its signal); the "
            "share of units off for every image (these carry nothing and prune without loss).",
            "",
            markdown_table(
                ["layer", "entries on (%)", "on and at the cap (%)", "units off for good (%)"],
                [
                    [site, f"{100 * o['on']:.1f}", _percent(o["at_cap"]), f"{100 * o['never_on']:.1f}"]
                    for site, o in results["noise"].items()
                ],
            ),
            "",
        ]
    if results.get("figures"):
        lines += ["## Figures", ""] + [f"![{Path(f).stem}]({f})" for f in results["figures"]] + [""]
    return "\n".join(lines)


def _figures(results, measured, out: Path) -> list[str]:
    curves = {r: [(p["total"], p["errors"][r]) for p in results["curve"]] for r in results["rankings"]}
    marks = [(sum(REFERENCE[0]), REFERENCE[1], "Bayesian Compression (LeNet-300-100)")]
    title = f"{results['dataset']}, {'-'.join(map(str, results['widths']))} MLP"
    unpruned = results["unpruned"]["test_error"]
    paths = [diagnostics.pruning_curve(out / "figures" / "pruning_curve.png", curves, unpruned, title, marks)]
    for ranking, values in measured.items():
        name = "unit_information.png" if ranking == "information" else f"unit_information_{ranking}.png"
        what = "KL against the prior" if ranking == "information" else "against a prior fitted to the unit"
        paths.append(diagnostics.unit_information(out / "figures" / name, {k: v.numpy() for k, v in values.items()},
                                                  title=f"information per unit, {what} (training set)"))  # fmt: skip
    return sorted(str(p.relative_to(out)) for p in paths)
