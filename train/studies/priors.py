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

import math
from pathlib import Path

import numpy as np
import torch

from infodropout.train.checkpoint import write_json
from infodropout.train.config import PRESETS, resolve
from infodropout.train.report import figures
from infodropout.train.report.tables import format_mean_std, markdown_table, series, summarise

from .experiment import Column, Experiment, StudyOptions
from .runner import RunSpec, Study, measure

#: The priors the study compares by default: log-normal factorised, correlated (full and low-rank), and
#: the Gaussian VAE's N(0, 1) (beta-VAE) as the reference.
DEFAULT_PRIORS = ("factorised", "correlated", "correlated-low-rank", "normal")
#: Priors of the Gaussian latent (every other registered prior is a prior on the log-normal latent).
GAUSSIAN_PRIORS = ("normal",)
DEFAULT_BETAS = (1.0, 2.0, 4.0, 8.0)
DEFAULT_STEPS = 300_000  # the literature's order (disentanglement_lib: 300k steps at batch 64)
DEFAULT_METRICS = ("mig", "factor-vae", "dci", "sap", "active-units", "total-correlation", "kl-per-dim")
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
#: The headline numbers of a run: result value -> (metric, factor set or None, key in the result).
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
    from infodropout.models.priors import PRIORS

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
    from infodropout.models.priors import LogUniformPrior
    from infodropout.models.zoo import build_network

    ib = build_network(
        config.arch, (1, 64, 64), 1, prior=config.prior, z_dim=config.z_dim, latent=config.latent,
        likelihood=config.likelihood, activation=config.activation, alpha_max=config.alpha_max,
        kl_convention=config.kl_convention,
    )  # fmt: skip
    if likelihood and any(isinstance(p, LogUniformPrior) for p in ib.model.priors):
        raise ValueError(
            f"--priors {config.prior}: an improper prior, under which log p(x) is undefined; "
            "drop it or pass --no-likelihood"
        )


def build(options: StudyOptions) -> Study:
    from infodropout.train.data.dsprites import FACTOR_SIZES
    from infodropout.train.metrics import FAST, FULL, check_metrics

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
                config = resolve(
                    "dsprites-vae",
                    overrides=dict(
                        latent="gaussian" if gaussian else "information",
                        prior=prior,
                        beta=beta,
                        epochs=epochs,
                        num_train=num_train,
                        batch_size=batch_size,
                        num_test=64 if options.quick else None,
                        seed=seed,
                        device=options.device,
                        data_dir=options.data_dir,
                        plugins=list(extra.get("plugins") or []),
                    ),
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


@measure("disentanglement")
def measure_disentanglement(trainer, run_dir: Path, options: dict) -> dict:
    """Every metric of ``options["metrics"]`` on dSprites (both factor sets), the PSIS log-likelihood of
    ``iw_num_images`` images (the same images for every run of a study), and latent traversals."""
    from infodropout.train.data import load_dsprites
    from infodropout.train.metrics import MetricSettings, jsonable
    from infodropout.train.representations import evaluate

    settings = MetricSettings(**options["settings"])
    data = load_dsprites(trainer.config.data_dir, trainer.device)
    ib = trainer.ib
    result = evaluate(ib, data, metrics=options["metrics"], settings=settings, kind=options.get("representation"))
    values = {}
    for name, (metric, factor_set, key) in HEADLINES.items():
        part = result["metrics"].get(metric)
        if part is not None:
            part = part[factor_set] if factor_set else part
            values[name] = float(part[key])
    if options.get("likelihood", True):
        values.update(_likelihood(ib, data, settings, run_dir, result["representation"]["kind"]))
    if "kl-per-dim" in result["metrics"]:
        order = [int(i) for i in result["metrics"]["kl-per-dim"]["order"]]
        pool = min(1000, settings.num_points)
        np.savez_compressed(run_dir / "traversals.npz", **latent_traversals(ib, data, order, pool, seed=settings.seed))
    write_json(run_dir / "disentanglement.json", jsonable(result))
    values["representation"] = result["representation"]["kind"]
    return values


def _likelihood(ib, data, settings, run_dir: Path, kind: str) -> dict:
    """Log importance weights of ``iw_num_images`` rendered images (drawn with the metrics' seed, so every
    run sees the same images), their PSIS log-likelihood, k-hat, and the ArviZ file of the run."""
    from infodropout.train.metrics.psis import psis_log_likelihood, save_inference_data
    from infodropout.train.representations import log_importance_weights

    generator = torch.Generator(device=data.device).manual_seed(settings.seed + 1)
    index = data.sample_indices(settings.iw_num_images, generator)
    images = data.render(index)  # (N, 1, 64, 64)
    log_weights = log_importance_weights(ib, images, settings.iw_num_samples, seed=settings.seed)  # (K, N)
    psis = psis_log_likelihood(log_weights)
    attrs = {"representation": kind, "images_seed": settings.seed + 1, "num_images": settings.iw_num_images}
    save_inference_data(log_weights, run_dir, attrs=attrs, overwrite=True)  # a re-measured run replaces its own
    return {
        "log_likelihood": psis["mean"],
        "log_likelihood_raw": psis["raw_mean"],
        "khat_share_above": psis["share_khat_above"],
    }


@torch.no_grad()
def latent_traversals(ib, data, order, pool: int = 1000, num_values: int = 8, seed: int = 0) -> dict:
    """Decoded images of one latent moved at a time: from a fixed base image's representation (noise off,
    in the decoder's input space: ``f(x)`` for the log-normal latent, the mean for a Gaussian), each latent
    in ``order`` is set to ``num_values`` quantiles (5% to 95%) of its values over ``pool`` images.

    :returns: ``images (D, V, 64, 64)`` (pixel means), ``order (D,)``, ``values (D, V)``.
    """
    from infodropout.train.representations import evaluating, latent_layer, latent_type

    generator = torch.Generator(device=data.device).manual_seed(seed + 2)
    x = data.render(data.sample_indices(pool, generator))  # (pool, 1, 64, 64)
    _, layer = latent_layer(ib)
    with evaluating(ib):
        z = ib.representation(x)  # (pool, D): the decoder's input with the noise off
        quantiles = torch.quantile(z, torch.linspace(0.05, 0.95, num_values, device=z.device), dim=0).T  # (D, V)
        base = z[:1]  # (1, D)
        images = []
        for d in order:
            grid = base.repeat(num_values, 1)  # (V, D)
            grid[:, d] = quantiles[d]
            images.append(ib.likelihood.mean(ib.head(grid))[:, 0])  # (V, 64, 64)
    return {
        "images": torch.stack(images).float().cpu().numpy().astype(np.float16),
        "order": np.asarray(order),
        "values": quantiles[list(order)].cpu().numpy(),
        "latent": np.asarray(latent_type(layer)),
    }


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


def _read(out: Path, run: dict, name: str):
    path = out / "runs" / run["name"] / name
    if not path.is_file():
        return None
    if name.endswith(".npz"):
        with np.load(path) as f:
            return {k: f[k] for k in f.files}
    import json

    return json.loads(path.read_text())


def _kl_per_dimension(out: Path, runs: list[dict]) -> str:
    """KL per latent dimension, sorted, per prior at each beta (figure), and a table of the sorted means."""
    per: dict[tuple, list] = {}
    for run in runs:
        result = _read(out, run, "disentanglement.json")
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
    from infodropout.train.metrics.psis import compare_log_likelihoods, read_results

    per: dict[float, dict[str, list]] = {}
    for run in runs:
        path = out / "runs" / run["name"] / "log_likelihood.nc"
        if path.is_file():
            ll = read_results(path)["log_likelihood"]
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
    first: dict[tuple, dict] = {}
    for run in sorted(runs, key=lambda r: r["seed"]):
        first.setdefault((run["labels"]["prior"], run["labels"]["beta"]), run)
    for (prior, beta), run in first.items():
        traversal = _read(out, run, "traversals.npz")
        if traversal is not None:
            images = traversal["images"].astype(np.float32)  # (D, V, 64, 64)
            d, v = images.shape[:2]
            labels = [f"z{int(i)}" for i in traversal["order"]]
            figures.image_grid(out / "figures" / f"traversals_{prior}_beta{beta:g}.png", images.reshape(d * v, 64, 64),
                               v, f"{prior}, beta {beta:g}: latents by KL, 5%-95% quantiles", labels)  # fmt: skip
        result = _read(out, run, "disentanglement.json")
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
)
