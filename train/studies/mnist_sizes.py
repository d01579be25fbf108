"""``mnist-sizes``: information dropout against binary dropout, Gaussian dropout and Deep VIB, by width.

The paper's claim: information dropout is comparable to or better than binary dropout, especially in
small networks. Three fully-connected layers of each width, the same optimiser and schedule for every
method (the ``mnist-mlp`` preset's Adam 1e-3, batch 100, lr x0.1 at one and two thirds of the epochs).
"""

from infodropout.train.config import PRESETS
from infodropout.train.report.tables import format_mean_std, markdown_table

from .common import against_paper, error_vs_width, no_options, scaled_milestones
from .experiment import TEST_ERROR, Column, Experiment, StudyOptions, information_columns
from .runner import RunSpec, Study

WIDTHS = (64, 256, 1024)
QUICK_WIDTHS = (16, 32)
EPOCHS = 20

#: method -> (how it differs from the preset, what the table calls it)
METHODS = {
    "information": dict(dropout="information"),  # ReLU, log-uniform prior, the preset's beta 3/60000
    "binary": dict(dropout="binary", p=0.5),
    "gaussian": dict(dropout="gaussian", p=0.5),
    "vib": dict(dropout="vib", beta=1e-3),  # Deep VIB: Gaussian last layer, N(0, 1) prior, Alemi's beta 1e-3
}


def build(options: StudyOptions) -> Study:
    no_options(options, "mnist-sizes")
    epochs = options.epochs or (1 if options.quick else EPOCHS)
    widths = QUICK_WIDTHS if options.quick else WIDTHS
    size = dict(num_train=1000, num_test=500) if options.quick else {}
    runs = []
    for width in widths:
        for method, changes in METHODS.items():
            for seed in options.seeds_or(1 if options.quick else 3):
                config = options.config(
                    "mnist-mlp", seed, hidden=[width] * 3, epochs=epochs, milestones=scaled_milestones(epochs),
                    **size, **changes,
                )  # fmt: skip
                labels = {"width": width, "method": method}
                runs.append(RunSpec(f"{method}-w{width}-s{seed}", config, labels))
    settings = {"quick": options.quick, "epochs": epochs, "widths": list(widths)}
    return Study("mnist-sizes", runs, primary="test_error", description=__doc__.split("\n\n")[0], settings=settings)


def columns(study: Study) -> list[Column]:
    return [TEST_ERROR, *information_columns(1)]


def report(results: dict, out) -> list[str]:
    error_vs_width(out, results, "width (units per layer)", "MNIST, 3 fully-connected layers")
    return [_information_table(results), against_paper(results, PRESETS["mnist-mlp"], "mnist-mlp")]


def _information_table(results: dict) -> str:
    """Information kept per layer (KL per example, nats; exact and authors' convention) for methods with a KL."""
    rows = []
    for cell in results["cells"]:
        metrics = cell["metrics"]
        layers = sorted({k.split(".")[1] for k in metrics if k.startswith("kl_per_layer.")})
        if not layers:
            continue
        exact = [format_mean_std(metrics.get(f"kl_per_layer.{z}"), 1) for z in layers]
        authors = [format_mean_std(metrics.get(f"kl_per_layer_authors.{z}"), 1) for z in layers]
        rows.append([cell["labels"]["method"], cell["labels"]["width"], ", ".join(exact), ", ".join(authors)])
    header = ["method", "width", "KL per layer (exact)", "KL per layer (authors' convention)"]
    return "## Information per layer\n\n" + markdown_table(header, rows)


EXPERIMENT = Experiment(
    "mnist-sizes",
    "Information dropout is comparable to or better than binary dropout, especially in small networks "
    "(three fully-connected layers of each width on MNIST; information dropout with ReLU and the log-uniform "
    "prior, binary and Gaussian dropout p = 0.5, Deep VIB with a Gaussian last layer and a N(0, 1) prior).",
    build,
    columns,
    report,
)
