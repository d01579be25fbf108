"""``compare-priors``: which prior on the representation gives disentangled factors, on dSprites.

The paper (App. B, Prop. 3): with a factorised prior the KL term of the Information Bottleneck bounds
``I(x; z) + TC(z)``, the total correlation of the representation, and so promotes disentanglement; a
correlated prior removes the TC penalty. The study trains the information-dropout VAE (the ``dsprites-vae``
preset: the beta-VAE convolutional encoder and decoder, z = 10, a softplus f with multiplicative log-normal
noise, Bernoulli pixels) with each prior over beta and seeds, next to the Gaussian VAE (beta-VAE, prior
``normal``) as the reference, and measures each trained network with disentanglement_lib's metrics, the
total correlation of its aggregate posterior and its Pareto-smoothed importance-weighted log-likelihood.

Each run's measurements are in its directory: ``disentanglement.json`` (every metric on both factor sets:
dSprites' five factors ``all`` and the four without shape, ``no-shape``), ``log_likelihood.nc`` (ArviZ
InferenceData: log importance weights, PSIS log-likelihood and k-hat per image) and ``traversals.npz``.
"""

import json
import math
from dataclasses import dataclass, field
from itertools import islice
from pathlib import Path

import numpy as np
import torch
import xarray as xr

from infodropout.models.priors import PRIORS, is_improper
from infodropout.models.zoo import build_network
from infodropout.train.config import PRESETS
from infodropout.train.data import load_dsprites
from infodropout.train.data.dsprites import FACTOR_SIZES
from infodropout.train.evaluation import (
    collect,
    evaluating,
    factor_sets,
    metrics_of,
    read_record,
    reconstruction_measures,
    write_record,
)
from infodropout.train.evaluation.record import group
from infodropout.train.files import write_json
from infodropout.train.metrics import (
    DEFAULT_METRICS,
    FAST,
    FULL,
    STUDY,
    MetricSettings,
    check_metrics,
    get_metric,
    jsonable,
)
from infodropout.train.metrics.psis import compare_log_likelihoods
from infodropout.train.metrics.total_correlation import gaussian_case, total_correlation
from infodropout.train.report import figures
from infodropout.train.report.significance import paired_difference, verdict_line
from infodropout.train.report.tables import format_mean_std, markdown_table, series, summarise

from .common import first_runs, run_record
from .experiment import Column, Experiment, StudyOptions
from .runner import RunSpec, Study

#: The priors the study compares by default: log-normal factorised, correlated (full and low-rank), and
#: the Gaussian VAE's N(0, 1) (beta-VAE) as the reference.
DEFAULT_PRIORS = ("factorised", "correlated", "correlated-low-rank", "normal")
#: Priors of the Gaussian latent (every other registered prior is a prior on the log-normal latent).
GAUSSIAN_PRIORS = ("normal",)
DEFAULT_BETAS = (1.0, 2.0, 4.0, 8.0)
DEFAULT_STEPS = 300_000  # the literature's order (disentanglement_lib: 300k steps at batch 64)
#: The metric settings ``--metric-settings`` takes, and the study's default (about a tenth of a 30,000-step run).
METRIC_SETTINGS = {"study": STUDY, "full": FULL, "fast": FAST}
DEFAULT_SETTINGS = "study"


@dataclass(frozen=True)
class Protocol:
    """A named set of ``compare-priors`` options (``--protocol NAME``), chosen by measurement on a machine.

    :param description: what it runs, where, in how long, and what it was chosen to resolve.
    :param options: option (the command's argument name) -> value; an option given on the command line wins.
    """

    description: str
    options: dict = field(default_factory=dict)


#: The named protocols. ``cpu-2h``: the question the study exists for (does the factorised prior give a more
#: disentangled representation than the correlated one?) on 2 CPU cores in under two hours. Measured for it
#: (6,000-step calibration runs and their learning curves): Adam's 5e-4 beats 1e-3 on MIG (0.049 vs 0.023-0.031),
#: beta 4 beats 16 (MIG ~0.01: too few active units), batch 64 (the literature's) keeps the step count; three
#: seeds are the fewest a paired bootstrap interval is worth having on; bf16 with channels-last convolutions
#: trains 1.8x the steps of fp32 per CPU-hour on a CPU with bf16 arithmetic (two one-thread runs at once, which
#: use both cores best: 82,000 steps an hour against 46,000). Each run trains two epochs of dSprites (23,040
#: steps at batch 64) and is measured at the study's metric settings.
PROTOCOL_CPU_STEPS = 2 * math.prod(FACTOR_SIZES) // 64
PROTOCOLS = {
    "cpu-2h": Protocol(
        "factorised vs correlated, beta 4, 3 seeds, 23,040 steps each (two epochs; lr 5e-4, batch 64, bf16 "
        "channels-last where the CPU has bf16), 2 runs at once on 1 thread each: under two hours on 2 "
        "CPU cores (the README has the measured time)",
        dict(
            priors=["factorised", "correlated"],
            betas=[4.0],
            seeds=3,
            steps=PROTOCOL_CPU_STEPS,
            lr=5e-4,
            batch_size=64,
            precision="bf16",
            channels_last=True,
            jobs=2,
            threads=1,
        ),
    ),
}
#: The readings of the representation every run is measured on (published figures are on the mean).
READINGS = ("log-location", "mean")
#: Metrics computed on the run's own reading only: DCI's trees split each latent by thresholds, so that
#: another reading (a monotone function of the latent where alpha is constant) changes it little, at the
#: price of refitting all its trees.
ONCE = ("dci",)
#: The learning curve's metrics and settings: cheap enough to take every ``curve_every`` steps.
CURVE_METRICS = ("mig", "total-correlation", "kl-per-dim", "active-units")
CURVE_SETTINGS = dict(num_points=1000, tc_num_samples=1000, tc_num_components=2000)
#: Points of a learning curve, by default (its step is ``steps // CURVE_POINTS``).
CURVE_POINTS = 10
#: Test images of the learning curve's ELBO.
CURVE_TEST_IMAGES = 1000
#: A metric setting smaller than ``fast``, for ``--quick`` (smoke tests: the numbers mean little).
QUICK_SETTINGS = dict(
    num_points=400,
    factor_vae_num_train=100,
    factor_vae_num_eval=50,
    factor_vae_num_variance=400,
    dci_num_train=300,
    dci_num_test=100,
    dci_n_estimators=2,
    sap_num_train=300,
    sap_num_test=100,
    tc_num_samples=400,
    tc_num_components=400,
    iw_num_samples=20,
    iw_num_images=50,
)
#: The headline numbers of a run from the built-in metrics: result value -> (metric, factor set or None, key in
#: the result). Any other metric's headline is its score, named after it (``my-metric``, ``my_metric_no_shape``).
HEADLINES = {
    "mig": ("mig", "all", "mig"),
    "mig_no_shape": ("mig", "no-shape", "mig"),
    "factor_vae": ("factor-vae", "all", "eval_accuracy"),
    "factor_vae_no_shape": ("factor-vae", "no-shape", "eval_accuracy"),
    "dci_disentanglement": ("dci", "all", "disentanglement"),
    "dci_completeness": ("dci", "all", "completeness"),
    "dci_informativeness": ("dci", "all", "informativeness_test"),
    "dci_disentanglement_no_shape": ("dci", "no-shape", "disentanglement"),
    "sap": ("sap", "all", "sap"),
    "sap_no_shape": ("sap", "no-shape", "sap"),
    "active_units": ("active-units", None, "num_active"),
    "total_correlation": ("total-correlation", None, "total_correlation"),
    "total_correlation_se": ("total-correlation", None, "standard_error"),
    "total_correlation_own_share": ("total-correlation", None, "own_component_share"),
    "total_correlation_mss": ("total-correlation", None, "tc_mss"),
    "total_correlation_mws": ("total-correlation", None, "tc_mws"),
    "total_correlation_components": ("total-correlation", None, "num_components"),
    "total_correlation_samples": ("total-correlation", None, "num_samples"),
    "kl_sum": ("kl-per-dim", None, "kl_sum"),
    "iw_log_likelihood": ("log-likelihood", None, "mean"),
    "psis_log_likelihood": ("psis", None, "mean"),
}


def steps_to_schedule(steps: int, batch_size: int, dataset_size: int) -> tuple[int, int | None]:
    """``(epochs, num_train)`` giving about ``steps`` optimiser steps: one epoch over a random subset of
    ``steps * batch_size`` images while that is smaller than the data set, else whole epochs over it."""
    per_epoch = dataset_size // batch_size
    if steps < per_epoch:
        return 1, steps * batch_size
    return max(1, round(steps / per_epoch)), None


def check_priors(names) -> tuple[str, ...]:
    """The prior names, checked against the registry of priors (``register_prior`` adds to it)."""
    names = tuple(dict.fromkeys(names))
    unknown = [n for n in names if n not in PRIORS]
    if unknown:
        raise ValueError(f"--priors: unknown {', '.join(map(repr, unknown))}; registered priors: {', '.join(PRIORS)}")
    if not names:
        raise ValueError(f"--priors: none given; registered priors: {', '.join(PRIORS)}")
    return names


def _check_network(config, likelihood: bool) -> None:
    """Build the run's network once (on the CPU, no data) so that a prior that cannot serve the latent
    (its event shape, its kind), or an improper one where the log-likelihood is asked for, is refused
    before any training."""
    ib = build_network(
        config.arch, (1, 64, 64), 1, prior=config.prior, z_dim=config.z_dim, latent=config.latent,
        likelihood=config.likelihood, activation=config.activation, alpha_max=config.alpha_max,
        kl_convention=config.kl_convention,
    )  # fmt: skip
    if likelihood and any(is_improper(p(torch.Size((1,)), torch.Size((config.z_dim,)))) for p in ib.model.priors):
        raise ValueError(
            f"--priors {config.prior}: an improper prior, under which log p(x) is undefined; "
            "drop it or pass --no-likelihood"
        )


def build(options: StudyOptions) -> Study:
    extra = dict(options.extra)
    priors = check_priors(extra.get("priors") or DEFAULT_PRIORS)
    betas = tuple(float(b) for b in (extra.get("betas") or ((1.0, 4.0) if options.quick else DEFAULT_BETAS)))
    if any(not (math.isfinite(b) and b >= 0) for b in betas):
        raise ValueError(f"--betas {','.join(map(str, betas))}: expected finite numbers >= 0")
    metrics = check_metrics(extra.get("metrics") or DEFAULT_METRICS)
    if options.quick:
        if extra.get("metric_settings"):
            raise ValueError(
                f"--metric-settings {extra['metric_settings']} with --quick: the quick study has settings of its own; "
                "give one"
            )
        settings = FAST.replace(**QUICK_SETTINGS).to_dict()
    else:
        settings = METRIC_SETTINGS[extra.get("metric_settings") or DEFAULT_SETTINGS].to_dict()
    preset = PRESETS["dsprites-vae"]
    steps = int(extra.get("steps") or (4 if options.quick else DEFAULT_STEPS))
    if options.epochs is not None:
        raise ValueError("compare-priors counts optimiser steps: give --steps, not --epochs")
    batch_size = int(extra.get("batch_size") or (16 if options.quick else preset["batch_size"]))
    lr = extra.get("lr")
    if lr is not None and not (isinstance(lr, (int, float)) and math.isfinite(lr) and lr > 0):
        raise ValueError(f"--lr {lr}: expected a positive number")
    schedule = {} if lr is None else {"lr": float(lr)}
    if extra.get("precision"):
        schedule["precision"] = extra["precision"]
    if extra.get("channels_last"):
        schedule["channels_last"] = True
    epochs, num_train = steps_to_schedule(steps, batch_size, math.prod(FACTOR_SIZES))
    curve_every = int(extra.get("curve_every") or max(1, steps // (2 if options.quick else CURVE_POINTS)))
    curve_settings = MetricSettings(**settings).replace(**CURVE_SETTINGS).to_dict()
    if options.quick:
        curve_settings = MetricSettings(**settings).to_dict()
    runs = []
    for prior in priors:
        gaussian = prior in GAUSSIAN_PRIORS
        for beta in betas:
            for seed in options.seeds_or(1 if options.quick else 3):
                config = options.config(
                    "dsprites-vae",
                    seed,
                    latent="gaussian" if gaussian else "information",
                    prior=prior,
                    beta=beta,
                    epochs=epochs,
                    num_train=num_train,
                    batch_size=batch_size,
                    num_test=64 if options.quick else None,
                    plugins=list(extra.get("plugins") or []),
                    **schedule,
                )
                if seed == 0:
                    _check_network(config, bool(extra.get("likelihood", True)))
                labels = {"prior": prior, "beta": beta}
                opts = {
                    "metrics": list(metrics),
                    "settings": settings,
                    "representation": extra.get("representation"),
                    "likelihood": bool(extra.get("likelihood", True)),
                    "curve_every": curve_every,
                    "curve_settings": curve_settings,
                }
                runs.append(RunSpec(f"{prior}-b{beta:g}-s{seed}", config, labels, "disentanglement", opts))
    study_settings = {
        "quick": options.quick,
        "steps": steps,
        "epochs": epochs,
        "num_train": num_train,
        "batch_size": batch_size,
        "lr": lr,
        "precision": extra.get("precision"),
        "channels_last": extra.get("channels_last") or None,
        "metric_settings": "quick" if options.quick else extra.get("metric_settings") or DEFAULT_SETTINGS,
        "representation": extra.get("representation") or "default (log-location; mean for the Gaussian VAE)",
        "readings": list(READINGS),
        "curve_every": curve_every,
        "protocol": extra.get("protocol"),
    }
    return Study("compare-priors", runs, primary="mig", description=__doc__.split("\n\n")[0], settings=study_settings)


# -- the measurement, in the worker after training ------------------------------------------------------


def headlines(metrics: dict) -> dict[str, float]:
    """A run's headline numbers from its metric results (see :data:`HEADLINES`)."""
    values = {}
    for name, (metric, factor_set, key) in HEADLINES.items():
        part = metrics.get(metric)
        if part is not None:
            values[name] = float((part[factor_set] if factor_set else part)[key])
    named = {metric for metric, _, _ in HEADLINES.values()}
    for metric_name, result in metrics.items():
        if metric_name in named:
            continue
        metric, base = get_metric(metric_name), metric_name.replace("-", "_")
        for set_name, part in result.items() if metric.per_factor_set else [("all", result)]:
            suffix = "" if set_name == "all" else "_" + set_name.replace("-", "_")
            values[base + suffix] = float(part[metric.score])
    return values


def measure_disentanglement(trainer, run_dir: Path, options: dict) -> dict:
    """Every metric of ``options["metrics"]`` on dSprites (both factor sets), the PSIS log-likelihood of
    ``iw_num_images`` images (the same images for every run of a study), and latent traversals: the
    arrays are measured into the run's record (:func:`~infodropout.train.evaluation.collect`), the metrics
    computed from the record, their results written to ``disentanglement.json``."""
    settings = MetricSettings(**options["settings"])
    data = load_dsprites(trainer.config.data_dir, trainer.device)
    names = check_metrics(options["metrics"])
    sets = factor_sets(data.factor_names)
    likelihood = bool(options.get("likelihood", True))
    groups, seconds = collect(
        trainer.ib, data, names, settings, kind=options.get("representation"), sets=sets,
        likelihood=likelihood, traversals="kl-per-dim" in names, also=READINGS,
    )  # fmt: skip
    write_record(run_dir, groups, attrs={"study": "compare-priors"})
    record = read_record(run_dir)
    metrics, metric_seconds = metrics_of(record, names, settings, sets)
    encoding = group(record, "encoding")
    own = encoding.attrs["representation"]
    readable = [r for r in READINGS if r == own or r in encoding.attrs["readings"].split(",")]
    on_points = [n for n in names if get_metric(n).needs in ("factors", "representation") and n not in ONCE]
    by_reading = {r: metrics_of(record, on_points, settings, sets, r)[0] if r != own else metrics for r in readable}
    representation = {k: encoding.attrs[k] for k in ("site", "latent", "posterior_space")}
    result = {
        "settings": settings.to_dict(),
        "seed": settings.seed,
        "factor_names": list(data.factor_names),
        "factor_sets": {k: [data.factor_names[c] for c in v] for k, v in sets.items()},
        "representation": {"kind": encoding.attrs["representation"], **representation},
        "num_points": encoding.sizes["point"],
        "metrics": metrics,
        "by_reading": {r: {n: m[n] for n in on_points} for r, m in by_reading.items()},
        "seconds": {**seconds, **metric_seconds},
    }
    values = headlines(metrics)
    for reading, measured in by_reading.items():  # every headline of the representation, on each reading
        suffix = "_" + reading.replace("-", "_")
        values.update({k + suffix: v for k, v in headlines({n: measured[n] for n in on_points}).items()})
    if likelihood:
        ll = group(record, "likelihood")
        values.update(
            log_likelihood=float(ll["log_likelihood"].mean()),
            log_likelihood_raw=float(ll["raw_log_likelihood"].mean()),
            khat_share_above=float(ll.attrs["share_khat_above"]),
        )
    write_json(run_dir / "disentanglement.json", jsonable(result))
    values["representation"] = result["representation"]["kind"]
    return values


def curve_disentanglement(trainer, options: dict) -> dict:
    """A point of a run's learning curve: MIG, the total correlation, the KL summed over dimensions and
    the active units on ``curve_settings`` (fewer points than the final measurement), and the test ELBO of
    the first :data:`CURVE_TEST_IMAGES` test images."""
    settings = MetricSettings(**options["curve_settings"])
    data = load_dsprites(trainer.config.data_dir, trainer.device)
    sets = factor_sets(data.factor_names)
    groups, _ = collect(trainer.ib, data, CURVE_METRICS, settings, kind=options.get("representation"), sets=sets)
    record = xr.DataTree.from_dict({f"/{name}": ds for name, ds in groups.items()})
    values = headlines(metrics_of(record, CURVE_METRICS, settings, sets)[0])
    batches = islice(trainer.data.test, max(1, CURVE_TEST_IMAGES // trainer.data.test.loader.batch_size))
    with evaluating(trainer.ib) as ib:
        values["test_elbo"] = reconstruction_measures(ib, batches)["test_elbo"]
    return {k: values[k] for k in ("mig", "total_correlation", "kl_sum", "active_units", "test_elbo") if k in values}


# -- the report --------------------------------------------------------------------------------------------

PLOTTED = (
    ("mig", "MIG (5 factors)"),
    ("factor_vae", "FactorVAE score"),
    ("dci_disentanglement", "DCI disentanglement"),
    ("sap", "SAP"),
    ("total_correlation", "total correlation (nats, MSS)"),
    ("log_likelihood", "PSIS log-likelihood (nats)"),
)


#: The main table's columns: (result value, heading, decimals).
COLUMNS = (
    ("mig", "MIG", 3), ("mig_no_shape", "MIG (no shape)", 3), ("mig_mean", "MIG (mean reading)", 3),
    ("factor_vae", "FactorVAE", 3), ("dci_disentanglement", "DCI D", 3), ("sap", "SAP", 3),
    ("sap_mean", "SAP (mean reading)", 3), ("total_correlation", "TC (nats)", 2), ("active_units", "active", 1),
    ("log_likelihood", "log p(x) PSIS", 1), ("khat_share_above", "k̂ > 0.7", 2), ("test_elbo", "test ELBO", 1),
)  # fmt: skip


def columns(study: Study) -> list[Column]:
    named = {metric for metric, _, _ in HEADLINES.values()}
    extra = dict.fromkeys(n for r in study.runs for n in r.options.get("metrics", ()) if n not in named)
    return [Column(*c) for c in COLUMNS] + [Column(n.replace("-", "_"), n, 3) for n in extra]  # a user's metrics


def report(results: dict, out: Path) -> list[str]:
    out = Path(out)
    cells, runs = results["cells"], results["runs"]
    for key, title in PLOTTED:
        by_prior = series(cells, "prior", "beta", key)
        if by_prior:
            figures.line_plot(out / "figures" / f"{key}_vs_beta.png", by_prior, "beta", title, "dSprites", logx=True)
    results["verdicts"] = verdicts(out, runs)  # into results.json too
    sections = [
        _targets(cells, results["verdicts"]),
        _verdict_section(results["verdicts"]),
        _total_correlation_section(results),
        _curves(out, runs),
        _kl_per_dimension(out, runs),
        _likelihood_comparison(out, runs),
    ]
    _traversal_and_mi_figures(out, runs)
    return [s for s in sections if s]


def _judged(row: dict | None, sign: int) -> str:
    """A target's verdict from the paired difference (factorised - correlated): "met" where the interval
    excludes 0 on the side ``sign`` asks for, "missed" where it excludes 0 on the other, else the side of
    the mean and that the seeds do not tell it apart."""
    if row is None:
        return "–"
    side = "higher" if sign > 0 else "lower"
    if row.get("excludes_zero"):
        return "met" if row["estimate"] * sign > 0 else "missed"
    mean = "in the mean" if row["estimate"] * sign > 0 else "not even in the mean"
    if not all(isinstance(row.get(end), (int, float)) and math.isfinite(row[end]) for end in ("low", "high")):
        return f"{side} {mean}; no interval (one seed)"
    return f"{side} {mean}, not distinguishable ({row['low']:+.3f}, {row['high']:+.3f})"


def _targets(cells, rows: list[dict]) -> str:
    """The issue's targets, read off the cells and the verdicts: factorised above correlated on MIG and
    below it on TC at every beta above 1 (met only where the paired interval excludes 0), and the best
    mean MIG of the study."""
    table = []
    by = {(c["labels"]["prior"], c["labels"]["beta"]): c["metrics"] for c in cells}
    verdict = {(r["beta"], r["metric"]): r for r in rows if (r["a"], r["b"]) == ("factorised", "correlated")}
    for beta in sorted({b for _, b in by if b > 1}):
        f, c = by.get(("factorised", beta)), by.get(("correlated", beta))
        if not (f and c and "mig" in f and "mig" in c):
            continue
        table.append([
            f"{beta:g}", format_mean_std(f["mig"], 3), format_mean_std(c["mig"], 3),
            _judged(verdict.get((beta, "mig")), +1),
            format_mean_std(f.get("total_correlation"), 2), format_mean_std(c.get("total_correlation"), 2),
            _judged(verdict.get((beta, "total_correlation")), -1),
        ])  # fmt: skip
    lines = ["## Targets", ""]
    if table:
        header = ["beta", "MIG factorised", "MIG correlated", "MIG higher"]
        header += ["TC factorised", "TC correlated", "TC lower"]
        lines += [markdown_table(header, table), ""]
    for key, label in (("mig", "MIG"), ("mig_mean", "MIG (mean reading)")):
        best = max(((c["metrics"][key]["mean"], c["labels"]) for c in cells if key in c["metrics"]), default=None,
                   key=lambda t: t[0])  # fmt: skip
        if best:
            where = f"{best[1]['prior']}, beta {best[1]['beta']:g}"
            lines.append(
                f"Best {label} of the study (target >= 0.30): {best[0]:.3f} ({where}): "
                f"{'met' if best[0] >= 0.30 else 'missed'}; a CPU study's target, 0.20: "
                f"{'met' if best[0] >= 0.20 else 'missed'}."
            )
    return "\n".join(lines)


#: The metrics the priors are compared on, pair by pair: (result value, what the verdict calls it).
COMPARED = (
    ("mig", "MIG"),
    ("mig_mean", "MIG (mean reading)"),
    ("factor_vae", "FactorVAE"),
    ("dci_disentanglement", "DCI disentanglement"),
    ("sap", "SAP"),
    ("total_correlation", "TC"),
    ("log_likelihood", "log p(x) (PSIS)"),
)


def _pairs(priors: list[str]) -> list[tuple[str, str]]:
    """The pairs compared: the factorised prior against every other, where it is in the study (the paper's
    claim); else every pair."""
    if "factorised" in priors:
        return [("factorised", p) for p in priors if p != "factorised"]
    return [(a, b) for i, a in enumerate(priors) for b in priors[i + 1 :]]


def verdicts(out: Path, runs: list[dict]) -> list[dict]:
    """Every pair of priors (:func:`_pairs`) on every metric of :data:`COMPARED` at every beta: the paired
    difference over the seeds both ran (:func:`~infodropout.train.report.significance.paired_difference`;
    the log-likelihood also over its per-image values, the same images for every run), with its verdict
    line."""
    by: dict[tuple, dict] = {}
    for run in runs:
        by.setdefault((run["labels"]["beta"], run["labels"]["prior"]), {})[run["seed"]] = run
    priors = list(dict.fromkeys(run["labels"]["prior"] for run in runs))
    out_rows = []
    for beta in sorted({b for b, _ in by}):
        for a, b in _pairs(priors):
            ra, rb = by.get((beta, a), {}), by.get((beta, b), {})
            seeds = sorted(set(ra) & set(rb))
            if not seeds:
                continue
            for key, label in COMPARED:
                if not all(key in ra[s]["values"] and key in rb[s]["values"] for s in seeds):
                    continue
                per_example = {}
                if key == "log_likelihood":
                    ll = [[group(run_record(out, r[s]), "likelihood") for s in seeds] for r in (ra, rb)]
                    if all(g is not None for side in ll for g in side):
                        per_example = dict(
                            per_example_a=[g["log_likelihood"].values for g in ll[0]],
                            per_example_b=[g["log_likelihood"].values for g in ll[1]],
                            paired_examples=True,
                        )
                result = paired_difference(
                    [ra[s]["values"][key] for s in seeds], [rb[s]["values"][key] for s in seeds], **per_example
                )
                line = verdict_line(result, f"{a} − {b}, {label} at β {beta:g}", 3 if key != "log_likelihood" else 2)
                row = {"beta": beta, "a": a, "b": b, "metric": key, "seeds": seeds, "line": line}
                row.update({k: result[k] for k in ("estimate", "low", "high", "excludes_zero", "seeds_needed")
                            if k in result})  # fmt: skip
                out_rows.append(row)
    return out_rows


def _verdict_section(rows: list[dict]) -> str:
    if not rows:
        return ""
    lines = ["## Verdicts", "",
             "Paired differences over the seeds both priors ran (the same seeds and data), with 95% bootstrap "
             "intervals over seeds widened for few seeds (the log-likelihood also resamples its images); a "
             "difference is a verdict only where its interval excludes 0.", ""]  # fmt: skip
    return "\n".join(lines + [f"- {row['line']}" for row in rows])


def _total_correlation_section(results: dict) -> str:
    """How the total correlation was estimated, at what sizes, and how close that estimator comes to a
    known answer at the same sizes (Gaussian codes of a known total correlation, D = 10)."""
    measured = [r["values"] for r in results["runs"] if "total_correlation" in r.get("values", {})]
    if not measured:
        return ""
    sizes = {(r.get("total_correlation_components"), r.get("total_correlation_samples")) for r in measured}
    lines = ["## Total correlation", ""]
    for components, samples in sorted(sizes, key=str):
        if components is None:
            continue
        loc, scale, closed, info = gaussian_case(10, "vae", int(components))
        known = total_correlation(loc, scale, None, num_samples=int(samples), seed=0)
        error = known["total_correlation"] / closed - 1
        lines.append(
            f"The exact density of the aggregate posterior's mixture over {int(components):,} encoded points of the "
            f"data set, at {int(samples):,} samples (`total_correlation`, with its standard error). On Gaussian codes "
            f"of a known total correlation at the same sizes (D = 10, five informative dimensions, I(x; z) = "
            f"{info:.1f} nats) it gives {known['total_correlation']:.3f} against the closed form {closed:.3f} "
            f"({error:+.1%}). Where the encoder keeps much more than log {int(components):,} = "
            f"{math.log(int(components)):.1f} nats the mixture's estimate is too high (its share of each sample's "
            f"density from its own point, `total_correlation_own_share`, then nears 1)."
        )
    return "\n".join(lines)


#: The learning curves drawn, per beta: (key in curve.jsonl, axis label).
CURVED = (("mig", "MIG"), ("total_correlation", "TC (nats)"), ("kl_sum", "KL (nats)"), ("test_elbo", "test ELBO"))


def _read_curve(out: Path, run: dict) -> list[dict]:
    path = out / "runs" / run["name"] / "curve.jsonl"
    return [json.loads(line) for line in path.read_text().splitlines()] if path.is_file() else []


def _curves(out: Path, runs: list[dict]) -> str:
    """Learning curves: per beta, a figure of MIG, TC, KL and the test ELBO against the step (each prior's
    mean over seeds, with every seed's point); a table of MIG and TC at the curve's middle and end, so that
    a reader sees whether the runs had converged."""
    per: dict[float, dict[str, list[list[dict]]]] = {}
    for run in runs:
        curve = _read_curve(out, run)
        if curve:
            per.setdefault(run["labels"]["beta"], {}).setdefault(run["labels"]["prior"], []).append(curve)
    if not per:
        return ""
    rows = []
    for beta, priors in sorted(per.items()):
        panels = {label: {} for _, label in CURVED}
        for prior, curves in priors.items():
            steps = sorted({p["step"] for curve in curves for p in curve})
            for key, label in CURVED:
                points = []
                for step in steps:
                    values = [p[key] for curve in curves for p in curve if p["step"] == step and key in p]
                    points.append((step, summarise(values) if values else None))
                panels[label][prior] = points
            middle, last = steps[(len(steps) - 1) // 2], steps[-1]
            at = {s: [p for curve in curves for p in curve if p["step"] == s] for s in (middle, last)}
            mig = [format_mean_std(summarise([p["mig"] for p in at[s] if "mig" in p]), 3) for s in (middle, last)]
            tc = [format_mean_std(summarise([p["total_correlation"] for p in at[s] if "total_correlation" in p]), 2)
                  for s in (middle, last)]  # fmt: skip
            rows.append([f"{beta:g}", prior, f"{middle} / {last}", *mig, *tc])
        figures.panels_plot(out / "figures" / f"curves_beta{beta:g}.png", panels, "step",
                            f"learning curves, beta {beta:g} (mean over seeds, each seed a dot)")  # fmt: skip
    header = ["beta", "prior", "steps (middle / end)", "MIG middle", "MIG end", "TC middle", "TC end"]
    return (
        "## Learning curves\n\nMetrics on a small setting every `curve_every` steps (`curve.jsonl` in each run); "
        "figures `curves_beta*.png`. A metric still moving between the middle and the end of the curve says the "
        "runs had not converged at this budget.\n\n" + markdown_table(header, rows)
    )


def _metric_results(out: Path, run: dict) -> dict | None:
    """The metric results a run wrote (``disentanglement.json``), or None."""
    path = out / "runs" / run["name"] / "disentanglement.json"
    return json.loads(path.read_text()) if path.is_file() else None


def _kl_per_dimension(out: Path, runs: list[dict]) -> str:
    """KL per latent dimension, sorted, per prior at each beta (figure), and a table of the sorted means."""
    per: dict[tuple, list] = {}
    for run in runs:
        result = _metric_results(out, run)
        if result and "kl-per-dim" in result["metrics"]:
            kl = sorted(result["metrics"]["kl-per-dim"]["kl_per_dim"], reverse=True)
            per.setdefault((run["labels"]["beta"], run["labels"]["prior"]), []).append(kl)
    if not per:
        return ""
    rows = []
    for beta in sorted({b for b, _ in per}):
        curves = {}
        for (b, prior), kls in per.items():
            if b != beta:
                continue
            columns_ = list(zip(*kls, strict=True))
            curves[prior] = [(rank + 1, summarise(values)) for rank, values in enumerate(columns_)]
            rows.append([f"{beta:g}", prior, " ".join(f"{summarise(v)['mean']:.1f}" for v in columns_)])
        figures.line_plot(out / "figures" / f"kl_per_dim_beta{beta:g}.png", curves, "latent (sorted by KL)",
                          "KL (nats per image)", f"KL per dimension, beta {beta:g}")  # fmt: skip
    header = ["beta", "prior", "KL per dimension, sorted (nats, mean over seeds)"]
    return "## KL per latent dimension\n\n" + markdown_table(header, rows)


def _likelihood_comparison(out: Path, runs: list[dict]) -> str:
    """Priors compared on the PSIS log-likelihood of the same images, per beta: per-image values averaged
    over seeds, differences to the best prior with their standard errors."""
    per: dict[float, dict[str, list]] = {}
    for run in runs:
        likelihood = group(run_record(out, run), "likelihood")
        if likelihood is not None:
            ll = likelihood["log_likelihood"].values
            per.setdefault(run["labels"]["beta"], {}).setdefault(run["labels"]["prior"], []).append(ll)
    rows = []
    for beta in sorted(per):
        models = {p: np.mean(np.stack(v), axis=0) for p, v in per[beta].items()}
        if len(models) < 2:
            continue
        cmp = compare_log_likelihoods(models)
        for prior in cmp["order"]:
            r = cmp["models"][prior]
            rows.append([f"{beta:g}", prior, r["rank"], f"{r['mean']:.2f}", f"{r['diff_mean']:.2f}",
                         f"{r['se_diff_mean']:.2f}"])  # fmt: skip
    if not rows:
        return ""
    header = ["beta", "prior", "rank", "log p(x) per image", "difference to best", "se of the difference"]
    return (
        "## Held-out log-likelihood (PSIS)\n\nPer-image PSIS estimates on the same images for every run, averaged "
        "over seeds; differences are per image, against the best prior at that beta.\n\n" + markdown_table(header, rows)
    )


def _traversal_and_mi_figures(out: Path, runs: list[dict]) -> None:
    """For each prior, at each beta, the first seed's latent traversals and its factor-by-latent mutual
    information (normalised by the factor's entropy, as MIG)."""
    first = first_runs(runs, lambda r: (r["labels"]["prior"], r["labels"]["beta"]))
    for (prior, beta), run in first.items():
        traversal = group(run_record(out, run), "traversals")
        if traversal is not None:
            images = traversal["images"].values.astype(np.float32)  # (D, V, 64, 64)
            d, v = images.shape[:2]
            labels = [f"z{int(i)}" for i in traversal["order"].values]
            figures.image_grid(out / "figures" / f"traversals_{prior}_beta{beta:g}.png", images.reshape(d * v, 64, 64),
                               v, f"{prior}, beta {beta:g}: latents by KL, 5%-95% quantiles", labels)  # fmt: skip
        result = _metric_results(out, run)
        if result and "mig" in result["metrics"]:
            mig = result["metrics"]["mig"]["all"]
            normalised = np.asarray(mig["normalized"], dtype=float).T  # (K, D)
            factors = result["factor_sets"]["all"]
            figures.matrix_plot(out / "figures" / f"mutual_information_{prior}_beta{beta:g}.png", normalised, factors,
                                [f"z{i}" for i in range(normalised.shape[1])],
                                f"I(factor; latent) / H(factor), {prior}, beta {beta:g}")  # fmt: skip


EXPERIMENT = Experiment(
    "compare-priors",
    "A factorised prior promotes disentangled representations, a correlated prior does not (Achille & Soatto, "
    "App. B): the information-dropout VAE on dSprites with factorised and correlated (full, low-rank) log-normal "
    "priors, and the Gaussian beta-VAE as the reference, over beta and seeds; disentanglement_lib's MIG, "
    "FactorVAE, DCI and SAP, the total correlation of the aggregate posterior, active units, KL per dimension "
    "and the PSIS log-likelihood.",
    build,
    columns,
    report,
    report_name="report.md",
    measures={"disentanglement": measure_disentanglement},
    curves={"disentanglement": curve_disentanglement},
)
