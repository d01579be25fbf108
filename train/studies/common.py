"""What several studies share: study sizes, schedules compressed, the extras of generated data sets, and
the report's reading of run directories."""

import dataclasses
import functools
import math
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import torch

from infodropout.train.data import get_dataset, subset_index
from infodropout.train.evaluation import read_record
from infodropout.train.report.figures import line_plot
from infodropout.train.report.tables import series

from .experiment import StudyOptions
from .runner import describe_machine


def scaled_milestones(epochs: int, preset_milestones=(40, 80), preset_epochs: int = 120) -> list[int]:
    """The preset's learning-rate milestones at the same fractions of a shorter schedule (distinct, >= 1)."""
    marks = sorted({max(1, round(m * epochs / preset_epochs)) for m in preset_milestones})
    return [m for m in marks if m < epochs]


def against_paper(results: Mapping, preset: Mapping, preset_name: str, differences: Sequence[str] = ()) -> str:
    """A report's section on how its runs' schedule differs from the paper's (the preset's): the epochs and the
    learning-rate milestones it ran, the machine, and ``differences`` (one line each) where the study has more."""
    epochs = results["settings"]["epochs"]
    if epochs == preset["epochs"]:
        schedule = f"the paper's schedule (the `{preset_name}` preset): {epochs} epochs"
    else:
        ours = ", ".join(map(str, scaled_milestones(epochs, preset["milestones"], preset["epochs"])))
        ours = f"lr x0.1 after epochs {ours}" if ours else "no lr step (too few epochs)"
        theirs = ", ".join(map(str, preset["milestones"]))
        schedule = (
            f"{epochs} epoch{'s' if epochs != 1 else ''}, {ours}: the paper's schedule (the `{preset_name}` preset: "
            f"{preset['epochs']} epochs, lr x0.1 after {theirs}) compressed to the same fractions"
        )
    lines = [
        "## Against the paper's setting",
        "",
        f"- schedule: {schedule};",
        f"- machine: {describe_machine(results['machine'])};",
    ]
    lines += [f"- {d};" for d in differences]
    lines[-1] = lines[-1][:-1] + "."
    return "\n".join(lines)


def study_extras(options: StudyOptions, name: str, allowed: Sequence[str]) -> dict:
    """The study's own options (``--set``), refused in one line where one is not among ``allowed``."""
    extra = dict(options.extra)
    unknown = sorted(set(extra) - set(allowed))
    if unknown:
        raise ValueError(f"{name}: unknown option(s) {unknown}; it takes {', '.join(allowed)}")
    return extra


def number_list(name: str, key: str, value, *, positive: bool) -> list[float]:
    """An option that takes one number or a list of them (``> 0`` with ``positive``, else ``>= 0``), as a
    sorted list of distinct floats; anything else is a one-line error naming the study and the option."""
    values = list(value) if isinstance(value, (list, tuple)) else [value]
    ok = values and all(
        isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v) and (v > 0 if positive else v >= 0)
        for v in values
    )
    if not ok:
        what = "a positive number" if positive else "a number >= 0"
        raise ValueError(f"{name}: {key}={value!r}: expected {what} or a list of them")
    return sorted({float(v) for v in values})


def no_options(options: StudyOptions, name: str) -> None:
    """Refuse ``--set`` options for a study that takes none."""
    if options.extra:
        raise ValueError(f"--set {', '.join(options.extra)}: {name} takes no options")


@dataclass(frozen=True)
class Setting:
    """The size of a study (cluttered and occluded): network width, data, schedule, betas, seeds, and the
    figure's samples; ``batch_size``, ``optimizer`` and ``lr`` replace the preset's where given."""

    width: float
    num_train: int | None
    num_test: int | None
    epochs: int
    betas: tuple[float, ...]
    seeds: int
    recalibrate_batches: int
    batch_size: int | None = None
    optimizer: str | None = None
    lr: float | None = None
    samples: int = 4

    def overrides(self) -> dict:
        """The config fields this setting gives (None: the preset's)."""
        names = ("width", "num_train", "num_test", "recalibrate_batches", "batch_size", "optimizer", "lr")
        return {name: getattr(self, name) for name in names}

    def to_dict(self) -> dict:
        return {**self.overrides(), "epochs": self.epochs, "betas": list(self.betas)}


def choose_size(options: StudyOptions, name: str, sizes: Sequence[str] = ("cpu", "paper")) -> str:
    """``"quick"``, ``"cpu"`` or ``"paper"``: ``--quick``; else ``extra["size"]``; else ``"paper"`` on CUDA
    (``--device cuda``, or ``auto`` where a GPU is present) and ``"cpu"`` otherwise."""
    unknown = sorted(set(options.extra) - {"size", "num_train"})
    if unknown:
        raise ValueError(
            f"{name}: unknown option(s) {unknown}; it takes size ({' or '.join(sizes)}) and num_train (an integer >= 1)"
        )
    if options.device == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"{name} --device cuda: no CUDA device is available here (the CPU-sized study: --device cpu)")
    size = options.extra.get("size")
    if size is not None and size not in sizes:
        raise ValueError(f"{name}: size={size!r}: expected one of {', '.join(sizes)}")
    if options.quick:
        if size is not None:
            raise ValueError(f"{name}: size={size!r} with --quick: the quick study has a size of its own; give one")
        return "quick"
    if size is not None:
        return size
    cuda = options.device == "cuda" or (options.device == "auto" and torch.cuda.is_available())
    return "paper" if cuda else "cpu"


def sized(options: StudyOptions, name: str, sizes: Mapping[str, "Setting"], quick: "Setting", preset: Mapping):
    """A sized study's setting and schedule: ``(size, setting, epochs, milestones)`` for the size
    :func:`choose_size` picks (its training images replaced by ``extra["num_train"]`` where given: the same
    study on less or more data, to measure a trend over sizes), ``--epochs`` or the setting's, and the
    preset's milestones scaled to them."""
    size = choose_size(options, name, tuple(sorted(sizes)))
    setting = quick if size == "quick" else sizes[size]
    num_train = options.extra.get("num_train")
    if num_train is not None:
        if isinstance(num_train, bool) or not isinstance(num_train, int) or num_train < 1:
            raise ValueError(f"{name}: num_train={num_train!r}: expected an integer >= 1")
        setting = dataclasses.replace(setting, num_train=num_train)
    epochs = options.epochs or setting.epochs
    return size, setting, epochs, scaled_milestones(epochs, preset["milestones"], preset["epochs"])


def error_vs_width(out: Path, results: Mapping, xlabel: str, title: str) -> Path:
    """The figure of a study over widths: each method's test error against the width."""
    return line_plot(out / "figures" / "test_error_vs_width.png", series(results["cells"], "method", "width",
                     "test_error"), xlabel, "test error (%)", title, logx=True)  # fmt: skip


# -- the examples of a run ----------------------------------------------------------------------------------


@functools.lru_cache(maxsize=1)
def _regenerated(name: str, data_dir: str | None, seed: int, options: tuple):
    return get_dataset(name, data_dir, "cpu", seed, **dict(options))


def run_extras(trainer, split: str, keys: Sequence[str], **options) -> dict[str, torch.Tensor]:
    """The extras ``keys`` (``boxes``, ``nuisance`` ...) of the examples of the run's ``split`` loader, in
    its order, on the run's device: the generated data set made again with the run's seed (``options``
    go to :func:`~infodropout.train.data.get_dataset`), the run's subset taken, and its images checked to
    be the run's own."""
    config = trainer.config
    ds = _regenerated(config.dataset, config.data_dir, config.seed, tuple(sorted(options.items())))
    if split == "train":  # as load_run_data subsets them
        x, n, seed, loader, which = ds.x_train, config.num_train, config.seed, trainer.data.train, 0
    else:
        x, n, seed, loader, which = ds.x_test, config.num_test, config.seed + 1, trainer.data.test, 1
    keep = subset_index(len(x), n, seed)
    if not torch.equal(x[keep], loader.x.cpu()):
        raise ValueError(
            f"{config.dataset} (seed {config.seed}): the {split} images made again differ from the run's; "
            "cannot match their extras"
        )
    return {k: ds.extras[k][which][keep].to(trainer.device) for k in keys}


def standardised(loader, x: torch.Tensor) -> torch.Tensor:
    """uint8 images ``(B, C, H, W)`` as ``loader`` gives them to the network: [0, 1], then its
    ``(x - mean) / std`` (no augmentation)."""
    x = x.to(torch.float32) / 255.0  # (B, C, H, W)
    return x if loader.mean is None else (x - loader.mean) / loader.std


# -- reports --------------------------------------------------------------------------------------------------


def first_runs(runs: Iterable[Mapping], key: Callable[[Mapping], object]) -> dict:
    """The run of the smallest seed for each value of ``key(run)`` (what a figure shows of each cell)."""
    first: dict = {}
    for run in sorted(runs, key=lambda r: r["seed"]):
        first.setdefault(key(run), run)
    return first


def run_record(out: Path, run: Mapping):
    """The measured record of a study's run (see :func:`~infodropout.train.evaluation.read_record`)."""
    return read_record(Path(out) / "runs" / run["name"])


def mean_of(cell: Mapping | None, key: str):
    """A cell's mean of ``key`` over seeds, or None."""
    summary = (cell or {}).get("metrics", {}).get(key)
    return None if not summary else summary.get("mean")
