"""The main job of the README, in minutes on a laptop's CPU and with nothing downloaded:

1. information dropout against binary dropout on the same MLP (MNIST where its files are found, else
   scikit-learn's bundled digits): test errors and the information each layer keeps;
2. a small version of the priors study (``infodropout compare-priors``) on the generated dSprites: the
   information-dropout VAE with a factorised and a correlated prior, and the Gaussian VAE, scored with
   disentanglement_lib's metrics, the total correlation and the PSIS log-likelihood.

Both tables are printed; the runs and the priors report stay in the output directory.
"""

from pathlib import Path

from . import data as datalib
from .config import resolve
from .run import Trainer, create_run_dir
from .studies import COMPARE_PRIORS, StudyOptions, run_experiment
from .threads import plan_threads, torch_threads

#: The demo's priors study: few steps and the ``fast`` metric settings (the full study is ``compare-priors``).
DEMO_PRIORS = ("factorised", "correlated", "normal")
DEMO_BETA = 4.0
DEMO_STEPS = 200
#: The metrics of the demo's table and verdicts (DCI and SAP, not shown, would cost a third of its measurement).
DEMO_METRICS = ("mig", "factor-vae", "total-correlation", "kl-per-dim", "active-units")
#: Points of each demo run's learning curve (each is a small measurement: ten took longer than the 200 steps).
DEMO_CURVE_POINTS = 2


def _dataset(data_dir) -> str:
    try:
        datalib.get_dataset("mnist", data_dir)
    except datalib.DataDirNotFoundError:
        raise  # a --data-dir that is not there is a mistake to report, not a reason to use other data
    except datalib.DataNotFoundError as err:
        print(f"MNIST not found ({err}); using scikit-learn's bundled 8x8 digits instead")
        return "digits"
    return "mnist"


def fresh_directory(base: Path) -> Path:
    """``base``, or ``base-2``, ``base-3`` ... : the first that does not exist (nothing is overwritten)."""
    base = Path(base)
    candidate, k = base, 1
    while candidate.exists():
        k += 1
        candidate = base.with_name(f"{base.name}-{k}")
    return candidate


def run_classifiers(epochs: int, data_dir, device: str, out: Path | None) -> dict:
    """Train the same MLP with information dropout and with binary dropout; print test errors and the
    information (KL per example, in nats) each information-dropout layer keeps about the input."""
    dataset = _dataset(data_dir)
    hidden = [256, 256, 256] if dataset == "mnist" else [128, 128, 128]
    results = {}
    for kind in ("information", "binary"):
        config = resolve(
            "mnist-mlp",
            overrides=dict(
                dataset=dataset,
                dropout=kind,
                hidden=hidden,
                epochs=epochs,
                schedule="constant",
                batch_size=100 if dataset == "mnist" else 50,
                device=device,
                data_dir=data_dir if dataset == "mnist" else None,  # digits are bundled: no directory is read
            ),
        )
        print(f"\n{kind} dropout, MLP {'-'.join(map(str, hidden))} on {dataset}, {epochs} epochs")
        trainer = Trainer.start(config, out / kind) if out is not None else Trainer(config)
        results[kind] = trainer.fit()
    return results


def classifier_table(results: dict) -> str:
    lines = [f"{'dropout':<12} {'test error':>10}   information per layer (nats per example, exact KL)"]
    for kind, final in results.items():
        kl = final["kl_per_layer"]
        layers = "  ".join(f"{site} {value:7.1f}" for site, value in kl.items()) if kl else "- (no learned noise)"
        lines.append(f"{kind:<12} {final['test_error']:>9.2f}%   {layers}")
    return "\n".join(lines)


def run_priors(steps: int, device: str, out: Path, quick: bool = False, threads: int | None = None) -> dict:
    """The small priors study (see the module docstring) into ``out``; ``quick``: the study's smoke-test sizes;
    ``threads``: torch threads of each run (default: the runner's policy)."""
    extra = {"priors": list(DEMO_PRIORS), "betas": [DEMO_BETA], "steps": steps}
    if not quick:
        extra.update(metric_settings="fast", metrics=list(DEMO_METRICS), curve_every=max(1, steps // DEMO_CURVE_POINTS))
    options = StudyOptions(seeds=1, quick=quick, device=device, extra=extra)
    print(f"\npriors study: {', '.join(DEMO_PRIORS)} at beta {DEMO_BETA:g}, {steps} steps each, on dSprites")
    return run_experiment(COMPARE_PRIORS, options, out, threads=threads, show_progress=True)


def priors_table(results: dict) -> str:
    keys = (("mig", "MIG", 3), ("factor_vae", "FactorVAE", 3), ("total_correlation", "TC", 2),
            ("log_likelihood", "log p(x)", 1), ("test_elbo", "test ELBO", 1))  # fmt: skip
    lines = [f"{'prior':<22}" + "".join(f"{title:>11}" for _, title, _ in keys)]
    for cell in results["cells"]:
        row = f"{cell['labels']['prior']:<22}"
        for key, _, digits in keys:
            summary = cell["metrics"].get(key)
            row += f"{summary['mean']:>11.{digits}f}" if summary and summary["mean"] is not None else f"{'-':>11}"
        lines.append(row)
    return "\n".join(lines)


#: The metrics whose verdicts the demo prints below its table.
DEMO_VERDICTS = ("mig", "total_correlation", "log_likelihood")


def verdict_lines(results: dict) -> str:
    """What the table's differences mean: the study's verdicts on :data:`DEMO_VERDICTS` (with one seed only
    the log-likelihood, over its images, can have an interval; the others say so)."""
    rows = [v["line"] for v in results.get("verdicts", []) if v["metric"] in DEMO_VERDICTS]
    if not rows:
        return ""
    return "\nwhat the differences mean (paired, 95% intervals):\n" + "\n".join(f"  {line}" for line in rows)


def run_demo(
    epochs: int = 2,
    data_dir=None,
    device: str = "auto",
    out: Path | None = None,
    steps: int = DEMO_STEPS,
    quick: bool = False,
    threads: int | None = None,
) -> dict:
    """Both parts of the demo into ``out`` (default: a new ``runs/demo`` directory); print both tables and
    the path of the priors report. ``quick`` shrinks the priors study to a smoke test. ``threads``: torch
    threads of every run, one run at a time (default: :func:`~infodropout.train.threads.plan_threads`'s for
    one run, decided once here, before the demo's own runs load the machine)."""
    datalib.check_data_dir(data_dir, "MNIST")  # a --data-dir that is not there: said before anything is made
    if threads is None:
        plan = plan_threads(1)
        threads = plan.threads
        if plan.note:
            print(plan.note)
    out = create_run_dir(out) if out is not None else create_run_dir(fresh_directory(Path("runs") / "demo"))
    with torch_threads(threads):
        classifiers = run_classifiers(epochs, data_dir, device, out / "classifiers")
    priors = run_priors(steps, device, out / "priors", quick, threads)
    print("\n" + classifier_table(classifiers))
    print("\n" + priors_table(priors))
    print(verdict_lines(priors))
    print(f"\nreport: {out / 'priors' / 'report.md'}   runs: {out}")
    return {"classifiers": classifiers, "priors": priors}
