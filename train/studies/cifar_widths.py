"""``cifar-widths``: information against binary dropout in All-CNN-32 at 25%, 50% and 100% of the filters.

The paper's CIFAR-10 claim: information dropout is comparable to or better than binary dropout, more so
in smaller networks. The authors' schedule (the ``cifar-allcnn`` preset: SGD Nesterov, lr 0.05 x0.1 at
80/120/160 of 200 epochs, weight decay 1e-3, batch 100) or, with ``--epochs N``, the same schedule
compressed to N epochs (milestones at the same fractions), for CPU-sized checks (``--epochs 20``).
"""

from infodropout.train.config import PRESETS

from .common import against_paper, error_vs_width, no_options, scaled_milestones
from .experiment import TEST_ERROR, Column, Experiment, StudyOptions, information_columns
from .runner import RunSpec, Study

WIDTHS = (0.25, 0.5, 1.0)
METHODS = {"information": dict(dropout="information"), "binary": dict(dropout="binary", p=0.5)}


def build(options: StudyOptions) -> Study:
    no_options(options, "cifar-widths")
    preset = PRESETS["cifar-allcnn"]
    epochs = options.epochs or (1 if options.quick else preset["epochs"])
    milestones = scaled_milestones(epochs, preset["milestones"], preset["epochs"])
    widths = (0.05,) if options.quick else WIDTHS
    size = dict(num_train=200, num_test=100, recalibrate_batches=2) if options.quick else {}
    runs = []
    for width in widths:
        for method, changes in METHODS.items():
            for seed in options.seeds_or(1):
                config = options.config(
                    "cifar-allcnn", seed, width=width, epochs=epochs, milestones=milestones, **size, **changes
                )
                runs.append(RunSpec(f"{method}-w{width:g}-s{seed}", config, {"width": width, "method": method}))
    schedule = "authors" if epochs == preset["epochs"] else f"compressed to {epochs} epochs"
    settings = {"quick": options.quick, "epochs": epochs, "milestones": milestones, "schedule": schedule}
    return Study("cifar-widths", runs, primary="test_error", description=__doc__.split("\n\n")[0], settings=settings)


def columns(study: Study) -> list[Column]:
    return [TEST_ERROR, *information_columns(1, authors=False)]


def report(results: dict, out) -> list[str]:
    error_vs_width(out, results, "fraction of All-CNN-32's filters", "CIFAR-10 (JPEG copy), All-CNN-32")
    data = "data: the offline JPEG copy of CIFAR-10 (quality about 75), not the original PNG-exact images"
    return [against_paper(results, PRESETS["cifar-allcnn"], "cifar-allcnn", [data])]


EXPERIMENT = Experiment(
    "cifar-widths",
    "Information dropout against binary dropout (p = 0.5) on CIFAR-10 in All-CNN-32 with 25%, 50% and 100% "
    "of the filters; information dropout at the two stride-2 layers (ReLU, log-uniform prior, alpha_max 0.7, "
    "the authors' beta 3, i.e. 3/50000 per example). The data are the offline JPEG copy of CIFAR-10.",
    build,
    columns,
    report,
)
