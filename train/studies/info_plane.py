"""``info-plane``: the information plane of a network built with the library, across beta and across training.

Per latent layer, the information the representation carries about the input, bounded by the KL term
``I(x; z_l) <= E_x KL(q(z_l | x) || p(z_l))`` (nats per example, on the test set; for log-uniform layers
under both conventions: ``exact``, a unit that is off carries nothing, and the authors', every unit
charged), against the task loss:

- the MNIST MLP (the ``mnist-mlp`` preset: three information-dropout layers, ReLU, log-uniform prior):
  ``I(x; z_l)`` of each layer against the test cross-entropy (the noise off);
- the VAE (the ``mnist-vae`` preset: the Gaussian VAE with a standard normal prior): the rate, ``KL``,
  against the distortion, the reconstruction's negative log-likelihood (one draw): the beta-VAE's
  rate-distortion curve (beta = 1 is the ELBO).

Across beta, the final values of every run (its Pareto front: the runs no other run beats on both axes);
across training, every epoch of every run (what each run's ``metrics.jsonl`` records, kept in its
``result.json`` and in ``results.json``).
"""

from collections.abc import Mapping, Sequence
from pathlib import Path

from infodropout.train.report import diagnostics
from infodropout.train.report.tables import markdown_table

from .common import first_runs, number_list, scaled_milestones, study_extras
from .experiment import Column, Experiment, StudyOptions
from .runner import RunSpec, Study

NAME = "info-plane"
MEASURE = "info-plane"
MODELS = ("mlp", "vae")
#: beta per example (Eq. 2) of the MLP: around the preset's 3/60000 = 5e-5, from barely to heavily compressed.
MLP_BETAS = (1e-6, 1e-5, 5e-5, 1e-4, 1e-3, 1e-2)
#: beta of the VAE (1: the ELBO; above 1: the beta-VAE).
VAE_BETAS = (0.25, 0.5, 1.0, 2.0, 4.0, 8.0)
EPOCHS = 20
SEEDS = 1
#: ``--quick``: scikit-learn's digits, tiny networks, two epochs, three betas each.
QUICK = {
    "mlp": dict(dataset="digits", hidden=[16, 16], batch_size=100),
    "vae": dict(dataset="digits", hidden=[16], z_dim=4, batch_size=64),
}
QUICK_BETAS = {"mlp": (1e-4, 1e-2, 1e-1), "vae": (0.5, 1.0, 4.0)}
QUICK_EPOCHS = 2
PRESET = {"mlp": "mnist-mlp", "vae": "mnist-vae"}
EXTRA = ("models", "mlp_betas", "vae_betas", "hidden")


def build(options: StudyOptions) -> Study:
    extra = study_extras(options, NAME, EXTRA)
    models = extra.get("models") or list(MODELS)
    models = [models] if isinstance(models, str) else list(models)
    wrong = [m for m in models if m not in MODELS]
    if wrong or not models:
        raise ValueError(f"{NAME}: models={models!r}: expected some of {', '.join(MODELS)}")
    betas = {m: number_list(NAME, f"{m}_betas", extra.get(f"{m}_betas", QUICK_BETAS[m] if options.quick else default),
                            positive=False)
             for m, default in (("mlp", MLP_BETAS), ("vae", VAE_BETAS))}  # fmt: skip
    hidden = extra.get("hidden")
    if hidden is not None and (isinstance(hidden, bool) or not isinstance(hidden, int) or hidden < 1):
        raise ValueError(f"{NAME}: hidden={hidden!r}: expected the width of the MLP's layers, an integer >= 1")
    epochs = options.epochs or (QUICK_EPOCHS if options.quick else EPOCHS)
    runs = []
    for model in models:
        changes = dict(QUICK[model]) if options.quick else {}
        if model == "mlp" and hidden is not None:
            changes["hidden"] = [hidden] * 3
        if model == "mlp":
            changes["milestones"] = scaled_milestones(epochs)
        for beta in betas[model]:
            for seed in options.seeds_or(SEEDS):
                config = options.config(PRESET[model], seed, beta=beta, epochs=epochs, **changes)
                labels = {"model": model, "beta": beta}
                runs.append(RunSpec(f"{model}-b{beta:g}-s{seed}", config, labels, MEASURE))
    settings = {"quick": options.quick, "epochs": epochs, "models": models, "hidden": hidden,
                **{f"{m}_betas": betas[m] for m in models}}  # fmt: skip
    return Study(NAME, runs, primary="information_total", description=__doc__.split("\n\n")[0], settings=settings)


def plane(trainer, run_dir: Path, options: Mapping) -> dict:
    """A run's points in the information plane: every epoch's test loss and information per layer (what
    ``metrics.jsonl`` holds), and the final total information (``information_total``, nats per example)."""
    epochs = []
    for record in trainer.history:
        point = {"epoch": record["epoch"], "test_nll": record["test_nll"], "test_kl": dict(record["test_kl"])}
        for key in ("test_kl_exact", "test_kl_authors", "test_error", "test_elbo"):
            if key in record:
                point[key] = record[key]
        epochs.append(point)
    last = epochs[-1]
    out = {"epochs": epochs, "information_total": float(sum(last["test_kl"].values()))}
    if "test_kl_authors" in last:
        out["information_total_authors"] = float(sum(last["test_kl_authors"].values()))
    return out


def pareto_front(points: Sequence[tuple[float, float]]) -> list[int]:
    """The indices of the points that no other point beats on both coordinates (both minimised): ``i`` is
    on the front unless some ``j`` has ``x_j <= x_i``, ``y_j <= y_i`` and one of them strictly smaller."""
    front = []
    for i, (x, y) in enumerate(points):
        dominated = any((a <= x and b <= y) and (a < x or b < y) for j, (a, b) in enumerate(points) if j != i)
        if not dominated:
            front.append(i)
    return front


def columns(study: Study) -> list[Column]:
    return [
        Column("test_nll", "test NLL (nats)", 4),
        Column("information_total", "information (nats/example)", 2),
        Column("information_total_authors", "information, authors' KL", 2),
        Column("test_error", "test error (%)", 2),
    ]


def _label(beta: float) -> str:
    return f"β={beta:g}"


def _trajectory(epochs: Sequence[Mapping], key: str, layer: str) -> list[tuple[float, float, str]]:
    """A run's points across training, ``(information, test NLL, label)``, its first and last epochs labelled."""
    ends = {epochs[0]["epoch"], epochs[-1]["epoch"]}
    return [(e[key][layer], e["test_nll"], f"ep {e['epoch']}" if e["epoch"] in ends else "") for e in epochs]


def report(results: dict, out: Path) -> list[str]:
    figures = Path(out) / "figures"
    sections = []
    first = first_runs(results["runs"], lambda r: (r["labels"]["model"], r["labels"]["beta"]))
    for model in MODELS:
        runs = sorted(((k[1], r) for k, r in first.items() if k[0] == model), key=lambda kr: kr[0])
        if not runs:
            continue
        final = runs[0][1]["measures"]["epochs"][-1]
        conventions = ["test_kl_exact", "test_kl_authors"] if "test_kl_authors" in final else ["test_kl"]
        layers = list(final["test_kl"])
        across_beta, fronts, across_training = {}, {}, {}
        rows = []
        for layer in layers:
            panel = f"I(x; {layer})" if model == "mlp" else "rate-distortion"
            for key in conventions:
                name = {"test_kl_exact": "exact", "test_kl_authors": "authors' convention"}.get(key, "KL")
                across_beta.setdefault(panel, {})[name] = [
                    (r["measures"]["epochs"][-1][key][layer], r["measures"]["epochs"][-1]["test_nll"], _label(b))
                    for b, r in runs
                ]
            points = [(x, y) for x, y, _ in across_beta[panel][list(across_beta[panel])[0]]]
            front = pareto_front(points)
            fronts[panel] = [points[i] for i in front]
            across_training[panel] = {
                _label(b): _trajectory(r["measures"]["epochs"], conventions[0], layer) for b, r in runs
            }
            for i, (b, r) in enumerate(runs):
                last = r["measures"]["epochs"][-1]
                rows.append([layer, f"{b:g}", f"{last['test_nll']:.4f}",
                             *(f"{last[k][layer]:.2f}" for k in conventions), "yes" if i in front else ""])  # fmt: skip
        task = "test cross-entropy (nats)" if model == "mlp" else "distortion: reconstruction NLL (nats)"
        info = "I(x; z) bound: KL (nats/example)" if model == "mlp" else "rate: KL (nats/example)"
        title = "MNIST MLP" if model == "mlp" else "VAE (beta-VAE)"
        diagnostics.information_plane(figures / f"{model}_across_beta.png", across_beta, info, task,
                                      f"{title}: across beta (final epoch)", fronts)  # fmt: skip
        diagnostics.information_plane(figures / f"{model}_across_training.png", across_training, info, task,
                                      f"{title}: across training (every epoch; hollow: first)")  # fmt: skip
        header = ["layer", "beta", "test NLL", *({"test_kl_exact": "KL exact", "test_kl_authors": "KL authors"}
                                                  .get(k, "KL") for k in conventions), "Pareto front"]  # fmt: skip
        sections.append(f"## {title}: information plane across beta\n\n" + markdown_table(header, rows))
    return sections


EXPERIMENT = Experiment(
    NAME,
    "The information plane across beta and across training: per latent layer, the KL bound on I(x; z) "
    "against the task loss, for the MNIST MLP (information dropout) and the VAE (rate against distortion).",
    build,
    columns,
    report,
    measures={MEASURE: plane},
)
