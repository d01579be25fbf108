"""``infodropout uncertainty RUN_DIR [RUN_DIR ...] --out DIR``: calibration and out-of-distribution
detection of trained classifiers, from their own noise, in one table.

For every run: the test predictions with the noise off, at the temperature fitted on a held-out part of
the test set (the post-hoc baseline), and averaged over T draws of the noise (T = 1, 10, 50: information
dropout's learned noise, or binary dropout's masks: MC dropout), scored on the rest of the test set (NLL,
Brier, ECE with 15 bins, error); and the detection of out-of-distribution sets by the predictive entropy,
BALD and, for a network with latent sites, the information its representation carries about each input
and its typicality (the Mahalanobis distance of the per-layer log-information from the held-out
in-distribution examples'); AUROC, FPR at 95% TPR, on the test examples not held out. Written to
``DIR``: ``uncertainty.json``, ``uncertainty.md``, ``measurements.nc`` (every example's predictions and
scores) and ``figures/`` (reliability diagrams, ROC curves).
"""

import json
import math
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path

import numpy as np
import torch
import xarray as xr

from infodropout.train import data as datalib
from infodropout.train.evaluation import scores, write_record
from infodropout.train.evaluation.uncertainty import (
    NOISE_OFF,
    SAMPLES,
    TEMPERATURE,
    Predictive,
    calibration,
    check_classifier,
    check_samples,
    mc,
    ood_scores,
    out_of_distribution,
    predictive,
    split,
)
from infodropout.train.files import write_json, write_text
from infodropout.train.report import diagnostics
from infodropout.train.report.tables import markdown_table

from .runs import load_finished, new_output, seeded, standardised_like

#: The out-of-distribution sets of each in-distribution data set by default.
DEFAULT_OOD = {"mnist": ("fashion-mnist",), "fashion-mnist": ("mnist",), "cifar10": ("noised", "occluded-cifar")}
#: What ``--ood`` takes: ``noised`` (the run's own test images with Gaussian noise) or a data set's test split.
OOD_SETS = ("noised", "mnist", "fashion-mnist", "cifar10", "occluded-cifar", "digits")
#: The standard deviation of the noise of ``noised``, in pixel units ([0, 1]).
NOISE_STD = 0.5
#: ``--quick``: fewer draws and examples (a smoke test).
QUICK_SAMPLES, QUICK_EXAMPLES = (1, 5), 200
#: The targets of the issue (MNIST MLP, width 1024).
ECE_TARGET, AUROC_TARGET = 0.01, 0.98


def ood_loader(name: str, trainer, *, limit: int | None, noise_std: float, seed: int, data_dir=None):
    """The out-of-distribution set ``name`` for the run of ``trainer``, standardised as its test images:
    ``noised`` is its own test images plus ``Normal(0, noise_std**2)`` per pixel (in [0, 1] units, clipped
    to [0, 1]); a data set's name is that set's test split. At most ``limit`` examples, drawn at random."""
    test = trainer.data.test
    if name == "noised":
        x, y = datalib.subset(test.x, test.y, limit, seed, sort=True)
        x = x.to(torch.float32) / 255.0 if x.dtype == torch.uint8 else x.to(torch.float32)
        generator = torch.Generator(device=x.device).manual_seed(seed)
        noise = torch.randn(x.shape, generator=generator, device=x.device, dtype=x.dtype)
        return standardised_like((x + noise_std * noise).clamp(0.0, 1.0), y, test)
    if name not in OOD_SETS:
        raise ValueError(f"--ood {name}: expected one of {', '.join(OOD_SETS)}")
    if name == trainer.config.dataset:
        raise ValueError(f"--ood {name}: the run's own data set is not out of distribution")
    options = {"n_train": 1, "n_test": limit} if name == "occluded-cifar" else {}
    ds = datalib.get_dataset(name, data_dir or trainer.config.data_dir, test.x.device, trainer.config.seed, **options)
    if tuple(ds.x_test.shape[1:]) != tuple(test.x.shape[1:]):
        raise ValueError(
            f"--ood {name}: its images are {tuple(ds.x_test.shape[1:])}, the run's "
            f"({trainer.config.dataset}) are {tuple(test.x.shape[1:])}"
        )
    return standardised_like(*datalib.subset(ds.x_test, ds.y_test, limit, seed, sort=True), test)


def _labels(run_dirs: Sequence[Path]) -> list[str]:
    """A name per run: its directory's name, numbered where two share one."""
    names = [Path(r).resolve().name or "run" for r in run_dirs]
    return [f"{n}-{i + 1}" if names.count(n) > 1 else n for i, n in enumerate(names)]


def uncertainty(
    run_dirs: Sequence[Path],
    out: Path,
    *,
    samples: Sequence[int] | None = None,
    ood: Sequence[str] | None = None,
    held_out: int | None = None,
    num_examples: int | None = None,
    noise_std: float = NOISE_STD,
    seed: int = 0,
    data_dir: str | None = None,
    quick: bool = False,
    log: Callable[[str], None] = print,
) -> dict:
    """Measure every run of ``run_dirs`` (finished classifiers of one data set) and write ``out`` (new).

    :param samples: draws of the noise to average over (default 1, 10, 50; ``quick``: 1, 5).
    :param ood: the out-of-distribution sets (default: :data:`DEFAULT_OOD` of the data set, else ``noised``).
    :param held_out: test examples the temperature is fitted on (default: half the test set); the
        calibration is scored on the others.
    :param num_examples: at most this many test and OOD examples, drawn at random with ``seed`` (default: all;
        ``quick``: 200).
    :param noise_std: the noise of the ``noised`` set, in pixel units.
    :param seed: the examples kept, the split of the test set, the noise of ``noised`` and the draws of the
        networks' noise.
    """
    if not run_dirs:
        raise ValueError("give at least one run directory")
    samples = check_samples(samples or (QUICK_SAMPLES if quick else SAMPLES))
    if num_examples is None and quick:
        num_examples = QUICK_EXAMPLES
    if num_examples is not None and (isinstance(num_examples, bool) or not isinstance(num_examples, int)
                                     or num_examples < 2):  # fmt: skip
        raise ValueError(f"--num-examples {num_examples!r}: expected an integer >= 2")
    if not (math.isfinite(noise_std) and noise_std > 0):
        raise ValueError(f"--noise-std {noise_std!r}: expected a positive number (pixel units)")
    trainers = [load_finished(r, data_dir) for r in run_dirs]
    for r, trainer in zip(run_dirs, trainers, strict=True):
        check_classifier(trainer.ib, str(r))
    datasets = sorted({t.config.dataset for t in trainers})
    if len(datasets) > 1:
        raise ValueError(f"runs of several data sets ({', '.join(datasets)}): compare runs of one data set")
    dataset = datasets[0]
    ood = list(dict.fromkeys(ood or DEFAULT_OOD.get(dataset, ("noised",))))
    with new_output(out) as out:
        results = {
            "command": "uncertainty",
            "dataset": dataset,
            "settings": {
                "samples": list(samples),
                "ood": ood,
                "noise_std": noise_std,
                "seed": seed,
                "ece_bins": scores.ECE_BINS,
                "num_examples": num_examples,
                "quick": quick,
            },  # fmt: skip
            "runs": {},
        }
        groups: dict[str, xr.Dataset] = {}
        for label, run_dir, trainer in zip(_labels(run_dirs), run_dirs, trainers, strict=True):
            log(f"uncertainty: {label} ({trainer.config.dropout} dropout): test set and {', '.join(ood)}")
            with trainer.as_tested():
                results["runs"][label], run_groups = _measure(
                    trainer, ood, samples, held_out, num_examples, noise_std, seed, data_dir
                )
            results["runs"][label]["run_dir"] = str(Path(run_dir).resolve())
            groups.update({f"{label}/{name}": ds for name, ds in run_groups.items()})
        results["targets"] = targets(results)
        write_record(out, groups, {"command": "uncertainty", "dataset": dataset})
        results["figures"] = _figures(results, groups, out)
        write_json(out / "uncertainty.json", json.loads(json.dumps(results)))
        write_text(out / "uncertainty.md", render(results))
    log(f"uncertainty: wrote {out / 'uncertainty.md'}")
    return results


def _measure(trainer, ood, samples, held_out, num_examples, noise_std, seed, data_dir) -> tuple[dict, dict]:
    """The run's measures and record groups, taken on the network as the run tested it (the caller's
    :meth:`Trainer.as_tested`: batch-norm statistics re-estimated where its config says so)."""
    test = trainer.data.test
    seeded(seed)
    examples = datalib.subset(test.x, test.y, num_examples, seed, sort=True)
    inside = predictive(trainer.ib, standardised_like(*examples, test), samples)
    n = len(inside.labels)
    kept, evaluated = split(n, held_out if held_out is not None else n // 2, seed)
    measured = {
        "dropout": trainer.config.dropout,
        "network": {"arch": trainer.config.arch, "hidden": list(trainer.config.hidden)},
        "test_examples": n,
        "held_out_examples": len(kept),
        "calibration": calibration(inside, kept, evaluated),
        "ood": {},
    }
    outside: dict[str, Predictive] = {}
    for name in ood:
        seeded(seed)
        loader = ood_loader(name, trainer, limit=num_examples or n, noise_std=noise_std, seed=seed, data_dir=data_dir)
        outside[name] = predictive(trainer.ib, loader, samples)
    reference, scored = inside.subset(kept), inside.subset(evaluated)
    measured["ood"] = out_of_distribution(scored, outside, reference)
    measured["ood_examples"] = {name: len(p.labels) for name, p in outside.items()}
    groups = {"test": _dataset(inside, reference, kept)}
    groups.update({f"ood/{name}": _dataset(pred, reference) for name, pred in outside.items()})
    return measured, groups


def _dataset(pred: Predictive, reference: Predictive, held_out: np.ndarray | None = None) -> xr.Dataset:
    """The record's group of one data set's measurements: per example, the label, the noise-off
    log-probabilities, the averaged probabilities and BALD per number of draws, the information per site
    and every OOD score (and, for the test set, whether the example was held out for the temperature)."""
    variables = {
        "label": (("example",), pred.labels),
        "log_probs": (("example", "class"), pred.log_probs.astype(np.float32)),
        "mc_probs": (("draws", "example", "class"), np.stack([pred.mc[t] for t in pred.samples]).astype(np.float32)),
        "bald": (("draws", "example"), np.stack([pred.bald[t] for t in pred.samples])),
    }
    coords = {"draws": list(pred.samples)}
    if pred.information:
        variables["information"] = (("site", "example"), np.stack(list(pred.information.values())))
        coords["site"] = list(pred.information)
    for score, values in ood_scores(pred, reference).items():
        variables[f"score_{score.replace('-', '_')}"] = (("example",), values)
    if held_out is not None:
        mask = np.zeros(len(pred.labels), dtype=np.int8)
        mask[held_out] = 1
        variables["held_out"] = (("example",), mask)
    return xr.Dataset(variables, coords=coords)


def methods(samples: Sequence[int]) -> list[str]:
    return [NOISE_OFF, TEMPERATURE, *(mc(t) for t in samples)]


def _best_auroc(run: Mapping) -> tuple[float, str, str] | None:
    """The run's best AUROC over scores and OOD sets (the worst set per score: a score must detect every set)."""
    per_score: dict[str, tuple[float, str]] = {}
    for name, by_score in run["ood"].items():
        for score, measured in by_score.items():
            if score not in per_score or measured["auroc"] < per_score[score][0]:
                per_score[score] = (measured["auroc"], name)
    if not per_score:
        return None
    score, (value, name) = max(per_score.items(), key=lambda kv: kv[1][0])
    return value, score, name


def targets(results: Mapping) -> dict:
    """The issue's targets, where the runs allow them: per kind of dropout (mean over its runs), the ECE of
    the prediction averaged over T draws at every T, and the best OOD AUROC (its score's worst set)."""
    kinds: dict[str, list] = {}
    for label, run in results["runs"].items():
        kinds.setdefault(run["dropout"], []).append((label, run))
    out: dict = {"ece_by_draws": {}, "best_auroc": {}}
    for kind, runs in kinds.items():
        out["ece_by_draws"][kind] = {
            str(t): float(np.mean([run["calibration"][mc(t)]["ece"] for _, run in runs]))
            for t in results["settings"]["samples"]
        }
        best = [(_best_auroc(run), label) for label, run in runs]
        out["best_auroc"][kind] = [{"run": label, "auroc": b[0], "score": b[1], "worst_set": b[2]}
                                   for b, label in best if b is not None]  # fmt: skip
    info, binary = out["ece_by_draws"].get("information"), out["ece_by_draws"].get("binary")
    if info:
        out["information_mc_ece_at_most_1pct"] = {t: v <= ECE_TARGET for t, v in info.items()}
    if info and binary:
        out["information_mc_ece_at_most_binary"] = {t: info[t] <= binary[t] for t in info}
    return out


def render(results: Mapping) -> str:
    """``uncertainty.md``: the calibration and detection tables, and the targets."""
    s = results["settings"]
    lines = [
        f"# Uncertainty from the noise ({results['dataset']})",
        "",
        f"Draws of the noise: {', '.join(map(str, s['samples']))}; ECE over {s['ece_bins']} equal-width bins; the "
        "temperature (and the typicality of the information) is fitted on a held-out part of the test set and "
        "every figure is taken on the rest. Detection: the OOD examples are the positives, higher scores say "
        "'out of distribution'.",
        "",
        "## Calibration",
        "",
    ]
    rows = []
    for label, run in results["runs"].items():
        c = run["calibration"]
        for method in methods(s["samples"]):
            m = c[method]
            name = f"{method} (T* = {c['fitted_temperature']:.3f})" if method == TEMPERATURE else method
            rows.append([label, run["dropout"], name, f"{100 * m['error']:.2f}", f"{m['nll']:.4f}", f"{m['brier']:.4f}",
                         f"{100 * m['ece']:.2f}"])  # fmt: skip
    lines += [markdown_table(["run", "dropout", "prediction", "error (%)", "NLL", "Brier", "ECE (%)"], rows), ""]
    lines += ["## Out-of-distribution detection", ""]
    rows = []
    for label, run in results["runs"].items():
        for name, by_score in run["ood"].items():
            for score, m in by_score.items():
                rows.append([label, run["dropout"], name, score, f"{m['auroc']:.4f}", f"{100 * m['fpr95']:.2f}"])
    lines += [markdown_table(["run", "dropout", "OOD set", "score", "AUROC", "FPR at 95% TPR (%)"], rows), ""]
    t = results["targets"]
    lines += [
        "## Targets",
        "",
        "ECE of the prediction averaged over T draws (%, mean over the runs of each kind; target: information "
        f"dropout <= binary dropout at every T, and <= {100 * ECE_TARGET:g}%):",
        "",
    ]
    kinds = list(t["ece_by_draws"])
    rows = [[f"T = {d}", *(f"{100 * t['ece_by_draws'][k][str(d)]:.2f}" for k in kinds)] for d in s["samples"]]
    lines += [markdown_table(["draws", *kinds], rows), ""]
    lines += [
        f"Best OOD AUROC per run (over the scores; each score at its worst OOD set; target >= {AUROC_TARGET}):",
        "",
    ]
    rows = [[kind, b["run"], b["score"], b["worst_set"], f"{b['auroc']:.4f}"]
            for kind, best in t["best_auroc"].items() for b in best]  # fmt: skip
    lines += [markdown_table(["dropout", "run", "score", "worst set", "AUROC"], rows), ""]
    if results.get("figures"):
        lines += ["## Figures", ""] + [f"![{Path(f).stem}]({f})" for f in results["figures"]] + [""]
    return "\n".join(lines)


def _figures(results: Mapping, groups: Mapping[str, xr.Dataset], out: Path) -> list[str]:
    paths = []
    t = results["settings"]["samples"][-1]
    for label, run in results["runs"].items():
        c = run["calibration"]
        panels = {}
        for method in (NOISE_OFF, TEMPERATURE, mc(t)):
            name = f"temperature (T* = {c['fitted_temperature']:.2f})" if method == TEMPERATURE else method
            panels[name] = {**c[method]["reliability"], "ece": c[method]["ece"]}
        paths.append(diagnostics.reliability_diagrams(out / "figures" / f"reliability-{label}.png", panels,
                                                      f"{label} ({run['dropout']} dropout)"))  # fmt: skip
    for name in results["settings"]["ood"]:
        panels: dict[str, dict] = {}
        for label in results["runs"]:
            inside, outside = groups[f"{label}/test"], groups[f"{label}/ood/{name}"]
            scored = inside["held_out"].values == 0  # the examples the detection was measured on
            for var in inside.data_vars:
                if not var.startswith("score_"):
                    continue
                score = var[len("score_") :].replace("_", "-")
                fpr, tpr = scores.roc_curve(inside[var].values[scored], outside[var].values)
                area = results["runs"][label]["ood"][name][score]["auroc"]
                panels.setdefault(score, {})[label] = (fpr, tpr, area)
        paths.append(diagnostics.roc_curves(out / "figures" / f"roc-{name}.png", panels,
                                            f"{results['dataset']} against {name}"))  # fmt: skip
    return sorted(str(p.relative_to(out)) for p in paths)
