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
from pathlib import Path

import numpy as np
import torch

from infodropout.models.priors import PRIORS, is_improper
from infodropout.models.zoo import build_network
from infodropout.train.config import PRESETS
from infodropout.train.data import load_dsprites
from infodropout.train.data.dsprites import FACTOR_SIZES
from infodropout.train.evaluation import collect, factor_sets, metrics_of, read_record, write_record
from infodropout.train.evaluation.record import group
from infodropout.train.files import write_json
from infodropout.train.metrics import DEFAULT_METRICS, FAST, FULL, MetricSettings, check_metrics, get_metric, jsonable
from infodropout.train.metrics.psis import compare_log_likelihoods
from infodropout.train.report import figures
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
    "total_correlation": ("total-correlation", None, "tc_mss"),
    "total_correlation_mws": ("total-correlation", None, "tc_mws"),
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
        settings = {"full": FULL, "fast": FAST}[extra.get("metric_settings") or "full"].to_dict()
    preset = PRESETS["dsprites-vae"]
    steps = int(extra.get("steps") or (4 if options.quick else DEFAULT_STEPS))
    if options.epochs is not None:
        raise ValueError("compare-priors counts optimiser steps: give --steps, not --epochs")
    batch_size = 16 if options.quick else preset["batch_size"]
    epochs, num_train = steps_to_schedule(steps, batch_size, math.prod(FACTOR_SIZES))
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
                )
                if seed == 0:
                    _check_network(config, bool(extra.get("likelihood", True)))
                labels = {"prior": prior, "beta": beta}
                opts = {
                    "metrics": list(metrics),
                    "settings": settings,
                    "representation": extra.get("representation"),
                    "likelihood": bool(extra.get("likelihood", True)),
                }
                runs.append(RunSpec(f"{prior}-b{beta:g}-s{seed}", config, labels, "disentanglement", opts))
    study_settings = {
        "quick": options.quick,
        "steps": steps,
        "epochs": epochs,
        "num_train": num_train,
        "batch_size": batch_size,
        "metric_settings": "quick" if options.quick else extra.get("metric_settings") or "full",
        "representation": extra.get("representation") or "default (log-location; mean for the Gaussian VAE)",
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
        likelihood=likelihood, traversals="kl-per-dim" in names,
    )  # fmt: skip
    write_record(run_dir, groups, attrs={"study": "compare-priors"})
    record = read_record(run_dir)
    metrics, metric_seconds = metrics_of(record, names, settings, sets)
    encoding = group(record, "encoding")
    representation = {k: encoding.attrs[k] for k in ("site", "latent", "posterior_space")}
    result = {
        "settings": settings.to_dict(),
        "seed": settings.seed,
        "factor_names": list(data.factor_names),
        "factor_sets": {k: [data.factor_names[c] for c in v] for k, v in sets.items()},
        "representation": {"kind": encoding.attrs["representation"], **representation},
        "num_points": encoding.sizes["point"],
        "metrics": metrics,
        "seconds": {**seconds, **metric_seconds},
    }
    values = headlines(metrics)
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


# -- the report --------------------------------------------------------------------------------------------

PLOTTED = (
    ("mig", "MIG (5 factors)"),
    ("factor_vae", "FactorVAE score"),
    ("dci_disentanglement", "DCI disentanglement"),
    ("sap", "SAP"),
    ("total_correlation", "total correlation (nats, MSS)"),
    ("log_likelihood", "PSIS log-likelihood (nats)"),
)


def columns(study: Study) -> list[Column]:
    named = {metric for metric, _, _ in HEADLINES.values()}
    extra = dict.fromkeys(n for r in study.runs for n in r.options.get("metrics", ()) if n not in named)
    return [
        Column("mig", "MIG", 3),
        Column("mig_no_shape", "MIG (no shape)", 3),
        Column("factor_vae", "FactorVAE", 3),
        Column("dci_disentanglement", "DCI D", 3),
        Column("sap", "SAP", 3),
        Column("total_correlation", "TC (nats)", 2),
        Column("active_units", "active", 1),
        Column("log_likelihood", "log p(x) PSIS", 1),
        Column("khat_share_above", "k̂ > 0.7", 2),
        Column("test_elbo", "test ELBO", 1),
        *(Column(name.replace("-", "_"), name, 3) for name in extra),  # metrics registered by a user
    ]


def report(results: dict, out: Path) -> list[str]:
    out = Path(out)
    cells, runs = results["cells"], results["runs"]
    for key, title in PLOTTED:
        by_prior = series(cells, "prior", "beta", key)
        if by_prior:
            figures.line_plot(out / "figures" / f"{key}_vs_beta.png", by_prior, "beta", title, "dSprites", logx=True)
    sections = [_targets(cells), _kl_per_dimension(out, runs), _likelihood_comparison(out, runs)]
    _traversal_and_mi_figures(out, runs)
    return [s for s in sections if s]


def _targets(cells) -> str:
    """The issue's targets, read off the cells: factorised above correlated on MIG and below it on TC at
    every beta above 1, and the best MIG of the study."""
    rows = []
    by = {(c["labels"]["prior"], c["labels"]["beta"]): c["metrics"] for c in cells}
    betas = sorted({b for _, b in by if b > 1})
    for beta in betas:
        f, c = by.get(("factorised", beta)), by.get(("correlated", beta))
        if not (f and c and "mig" in f and "mig" in c):
            continue
        mig_ok = f["mig"]["mean"] > c["mig"]["mean"]
        tc_ok = f["total_correlation"]["mean"] < c["total_correlation"]["mean"]
        rows.append([
            f"{beta:g}", format_mean_std(f["mig"], 3), format_mean_std(c["mig"], 3), "met" if mig_ok else "missed",
            format_mean_std(f["total_correlation"], 2), format_mean_std(c["total_correlation"], 2),
            "met" if tc_ok else "missed",
        ])  # fmt: skip
    lines = ["## Targets", ""]
    if rows:
        header = ["beta", "MIG factorised", "MIG correlated", "MIG higher"]
        header += ["TC factorised", "TC correlated", "TC lower"]
        lines += [markdown_table(header, rows), ""]
    best = max(((c["metrics"]["mig"]["mean"], c["labels"]) for c in cells if "mig" in c["metrics"]), default=None,
               key=lambda t: t[0])  # fmt: skip
    if best:
        verdict = "met" if best[0] >= 0.30 else "missed"
        where = f"{best[1]['prior']}, beta {best[1]['beta']:g}"
        lines.append(f"Best MIG of the study (target >= 0.30): {best[0]:.3f} ({where}): {verdict}.")
    return "\n".join(lines)


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
)
