"""``occluded``: the larger beta, the less a representation keeps of a nuisance, on Occluded CIFAR.

The paper's claim (Achille & Soatto, Sec. 6): information dropout learns to discard nuisances, the more so
the larger beta, at little cost to the task. On Occluded CIFAR (a CIFAR-10 image with an MNIST digit
painted over it; the task is the CIFAR class, the digit's class is the nuisance) All-CNN-32 with
information dropout at its two stride-2 layers (the ``cifar-allcnn`` preset: ReLU, log-uniform prior,
alpha_max 0.7) over a range of beta including 0, and binary dropout (p = 0.5) as the baseline.

**Measured.** The task error (the test error, noise off) and how well the digit can be read from the
*frozen* representation: ``r(x) = f_2(x)``, the encoder's output (the second noisy layer) with the
noise off, in evaluation mode (batch norm as ``Trainer.evaluate`` uses it), flattened to
``C x 8 x 8`` numbers. The probe, the same for every run, is multinomial logistic regression on the
standardised representation (each coordinate centred and scaled by its mean and standard deviation
over the probe's training examples)::

    minimise over W, b:   (1 / N) sum_n -log softmax(W r_n + b)[d_n]  +  (lambda / 2) ||W||^2

a convex problem solved by L-BFGS (from zero, then warm-started along the penalties). It is trained on
the representations of the run's training images (the first :data:`PROBE_TRAIN` of them at most) and
their digits ``d_n``, ``lambda`` chosen from :data:`~infodropout.train.evaluation.probe.L2_GRID` by
accuracy on a held-out fifth of them,
then refitted on all; it is scored on the test images: ``nuisance_accuracy`` (%). Why this probe: it
reads what the representation makes explicit, has no architecture or schedule of its own to tune, its
optimum is unique, and with its penalty chosen on held-out data it is as fair to a small
representation as to a large one; the probe reads every position (the digit is at a random place, so
globally pooled channels would lose it). ``nuisance_chance`` (%)
is the accuracy of always answering the digit most frequent among the probe's training examples.
``nuisance_accuracy_noisy`` (%) is the same probe trained and scored on one draw of the noisy
representation per image, the ``z`` whose information the bottleneck bounds. Target: nuisance accuracy
falls as beta grows while task error rises by less.

**Grids.** beta is Eq. 2's weight per example (the preset's 6e-5 is the authors' 3 / 50,000); it is a
label axis, its values written as ``results.md`` shows them (``--grid beta=0.0,0.0001``); binary dropout has no
beta (``--grid method=binary``).

- ``--device cuda`` (or ``auto`` on a machine with a GPU): the paper's setting, :data:`PAPER`: full
  width, 50,000 training and 10,000 test images, the preset's 200 epochs (SGD Nesterov, lr 0.05 x0.1 at
  80/120/160, weight decay 1e-3), betas 0, 1e-5, 6e-5 (the preset's), 3e-4, 1e-3 and 1e-2, 2 seeds.
- ``--device cpu`` (or no GPU): the CPU-sized setting, :data:`CPU`, sized for a 2-core CPU with
  ``--jobs 2`` (its cost is in the README): width 0.25 (24 and 48 channels), 20,000 training and 2,000
  test images, 8 epochs of the preset's schedule compressed (lr x0.1 after epochs 3, 5 and 6),
  batch-norm statistics re-estimated on 10 batches, betas 0, 1e-4, 1e-3 and 1e-2, and binary dropout,
  1 seed.
- ``--quick``: a smoke test, :data:`QUICK` (width 0.05, 200 images, one epoch, two betas and binary).

``StudyOptions.extra["size"]`` (``"cpu"`` or ``"paper"``) chooses the setting whatever the device;
``extra["num_train"]`` (``--set num_train=N``) runs it on N training images (a trend over data sizes).
"""

from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np
from matplotlib.figure import Figure

from infodropout.train.config import PRESETS
from infodropout.train.evaluation import features, linear_probe
from infodropout.train.report.figures import COLOURS, save
from infodropout.train.report.tables import format_mean_std, markdown_table

from .common import Setting, mean_of, run_extras, sized, standardised
from .experiment import TEST_ERROR, Column, Experiment, StudyOptions, information_columns
from .runner import RunSpec, Study

NAME = "occluded"
MEASURE = "occluded-nuisance"
#: The probe's training examples at most (the first of the run's training images).
PROBE_TRAIN = 10_000
BATCH = 500


PAPER = Setting(1.0, None, None, 200, (0.0, 1e-5, 6e-5, 3e-4, 1e-3, 1e-2), 2, 100)
CPU = Setting(0.25, 20_000, 2000, 8, (0.0, 1e-4, 1e-3, 1e-2), 1, 10)
QUICK = Setting(0.05, 200, 100, 1, (0.0, 1e-3), 1, 2)
SIZES = {"paper": PAPER, "cpu": CPU}


def build(options: StudyOptions) -> Study:
    size, setting, epochs, milestones = sized(options, NAME, SIZES, QUICK, PRESETS["cifar-allcnn"])
    common = dict(dataset="occluded-cifar", **setting.overrides(), epochs=epochs, milestones=milestones)
    cells = [("information", beta, dict(dropout="information", beta=beta)) for beta in setting.betas]
    cells.append(("binary", None, dict(dropout="binary", p=0.5)))
    runs = []
    for method, beta, changes in cells:
        for seed in options.seeds_or(setting.seeds):
            config = options.config("cifar-allcnn", seed, **common, **changes)
            if beta is None:
                name, labels = f"binary-s{seed}", {"method": method}
            else:
                name, labels = f"information-beta{beta:g}-s{seed}", {"method": method, "beta": beta}
            runs.append(RunSpec(name, config, labels, MEASURE, {}))
    settings = {"size": size, "quick": options.quick, "milestones": milestones, **setting.to_dict(), "epochs": epochs}
    return Study(NAME, runs, primary="nuisance_accuracy", description=__doc__.split("\n\n")[0], settings=settings)


# -- the measurement ------------------------------------------------------------------------------------


def representations(ib, loader, x, noisy: bool = False):
    """The encoder's output for uint8 images ``x`` ``(N, C, H, W)``, as ``loader`` standardises them:
    ``(N, D)``, in the current train/eval mode (call it under
    :func:`~infodropout.train.evaluation.evaluating`), with the noise off (``f(x)``), or on (one draw of
    every noise of the encoder, input dropout included, as in training)."""
    return features(ib, x, noisy=noisy, batch_size=BATCH, transform=lambda batch: standardised(loader, batch))


def measure_nuisance(trainer, run_dir, options) -> dict:
    """``nuisance_accuracy`` and ``nuisance_chance`` (%) of the linear probe on the frozen representation
    with the noise off (see the module docstring), with the probe's ``probe_train_accuracy`` (%) and
    chosen ``probe_l2``; ``nuisance_accuracy_noisy`` (%), the same probe trained and scored on one draw of
    the noisy representation per image (what the information bottleneck bounds)."""
    probe_train = int(options.get("probe_train", PROBE_TRAIN))
    train, test = trainer.data.train, trainer.data.test
    digits_train = run_extras(trainer, "train", ["nuisance"])["nuisance"][:probe_train]  # (N,)
    digits_test = run_extras(trainer, "test", ["nuisance"])["nuisance"]  # (M,)
    out = {}
    for noisy, suffix in ((False, ""), (True, "_noisy")):
        with trainer.as_tested() as ib:
            r_train = representations(ib, train, train.x[:probe_train], noisy)  # (N, D)
            r_test = representations(ib, test, test.x, noisy)  # (M, D)
        probe = linear_probe(r_train, digits_train, r_test, digits_test, 10, seed=trainer.config.seed)
        out[f"nuisance_accuracy{suffix}"] = 100 * probe["accuracy"]
        if not noisy:
            out["nuisance_chance"] = 100 * probe["chance"]
            out["probe_train_accuracy"] = 100 * probe["train_accuracy"]
            out["probe_l2"] = probe["l2"]
            out["representation_size"] = int(r_test.shape[1])
    return out


# -- the report -----------------------------------------------------------------------------------------


def columns(study: Study) -> list[Column]:
    return [
        TEST_ERROR,
        Column("nuisance_accuracy", "nuisance accuracy (%)", 1),
        Column("nuisance_accuracy_noisy", "nuisance accuracy, noise on (%)", 1),
        Column("nuisance_chance", "chance (%)", 1),
        *information_columns(0),
    ]


def _split(results: Mapping) -> tuple[list[dict], list[dict]]:
    """The information-dropout cells by beta, and the binary-dropout cells."""
    cells = results["cells"]
    info = sorted((c for c in cells if c["labels"].get("method") == "information"), key=lambda c: c["labels"]["beta"])
    return info, [c for c in cells if c["labels"].get("method") == "binary"]


def report(results: dict, out) -> list[str]:
    info, binary = _split(results)
    if info:
        against_beta(Path(out) / "figures" / "error_and_nuisance_vs_beta.png", info, binary)
    return [_targets(info, binary)]


def against_beta(path: Path, info: Sequence[Mapping], binary: Sequence[Mapping]) -> Path:
    """Two panels against beta (one position per beta, 0 included): task error, and nuisance accuracy
    (noise off, solid; noise on, dashed) with its chance level; information dropout as lines with a band
    of one standard deviation over seeds and each seed a dot, binary dropout as levels."""
    fig = Figure(figsize=(10, 3.9))
    axes = fig.subplots(1, 2)
    xs = np.arange(len(info), dtype=float)
    panels = (
        ("task test error (%)", (("test_error", "", "-"),)),
        (
            "nuisance (digit) accuracy (%)",
            (("nuisance_accuracy", ", noise off", "-"), ("nuisance_accuracy_noisy", ", noise on", "--")),
        ),
    )
    for ax, (label, lines) in zip(axes, panels, strict=True):
        for key, what, style in lines:
            summaries = [c["metrics"].get(key) or {} for c in info]
            means = np.array([np.nan if s.get("mean") is None else s["mean"] for s in summaries], dtype=float)
            stds = np.array([s.get("std") or 0.0 for s in summaries], dtype=float)
            ax.plot(xs, means, style, marker="o", color=COLOURS[0], label=f"information dropout{what}")
            ax.fill_between(xs, means - stds, means + stds, color=COLOURS[0], alpha=0.12, linewidth=0)
            for x, s in zip(xs, summaries, strict=True):
                ax.scatter([x] * len(s.get("values", [])), s.get("values", []), color=COLOURS[0], s=8, alpha=0.5)
            for cell in binary:
                level = mean_of(cell, key)
                if level is not None:
                    ax.axhline(level, color=COLOURS[1], linestyle=style, label=f"binary dropout{what}")
        if len(lines) > 1:
            chance = [m for m in (mean_of(c, "nuisance_chance") for c in info) if m is not None]
            if chance:
                ax.axhline(float(np.mean(chance)), color=COLOURS[7], linestyle=":", label="chance")
        ax.set_xticks(xs, [f"{c['labels']['beta']:g}" for c in info])
        ax.set_xlabel("beta (Eq. 2, per example)")
        ax.set_ylabel(label)
        ax.grid(alpha=0.3)
        ax.legend(fontsize="x-small")
    fig.suptitle("Occluded CIFAR, All-CNN-32")
    return save(fig, path)


def _targets(info: Sequence[Mapping], binary: Sequence[Mapping]) -> str:
    """What the measured means say about the target (nuisance accuracy falls with beta, task error rises
    by less), from the smallest beta to the largest."""
    lines = ["## Targets", ""]
    error = [mean_of(c, "test_error") for c in info]
    nuisance = [mean_of(c, "nuisance_accuracy") for c in info]
    if len(info) < 2 or None in error or None in nuisance:
        lines.append("- fewer than two betas measured: no trend to read")
        return "\n".join(lines)
    first, last = info[0]["labels"]["beta"], info[-1]["labels"]["beta"]
    falls = all(b < a for a, b in zip(nuisance, nuisance[1:], strict=False))
    drop, rise = nuisance[0] - nuisance[-1], error[-1] - error[0]
    trend = " -> ".join(f"{v:.1f}" for v in nuisance)
    lines.append(f"- nuisance accuracy falls as beta grows: {'met' if falls else 'not met'} ({trend} %)")
    noisy = [mean_of(c, "nuisance_accuracy_noisy") for c in info]
    if None not in noisy:
        lines.append("- with the noise on (for comparison): " + " -> ".join(f"{v:.1f}" for v in noisy) + " %")
    lines.append(
        f"- from beta {first:g} to {last:g} the nuisance accuracy falls by {drop:.1f} points and the task error "
        f"rises by {rise:.1f}: {'met' if drop > rise else 'not met'}"
    )
    for cell in binary:
        lines.append(
            f"- binary dropout: task error {format_mean_std(cell['metrics'].get('test_error'), 2)} %, nuisance "
            f"accuracy {format_mean_std(cell['metrics'].get('nuisance_accuracy'), 1)} %"
        )
    rows = [
        [
            c["labels"]["beta"],
            format_mean_std(c["metrics"].get("probe_train_accuracy"), 1),
            ", ".join(f"{v:g}" for v in (c["metrics"].get("probe_l2") or {}).get("values", [])) or "–",
        ]
        for c in info
    ]
    lines += ["", "The probe (information dropout): accuracy on its training examples and its L2 penalty per seed.", ""]
    lines.append(markdown_table(["beta", "probe train accuracy (%)", "probe lambda"], rows))
    return "\n".join(lines)


EXPERIMENT = Experiment(
    NAME,
    "Information dropout discards nuisances, the more so the larger beta: on Occluded CIFAR (a CIFAR-10 image "
    "with an MNIST digit painted over it) All-CNN-32 with information dropout at its two stride-2 layers over "
    "a range of beta, and binary dropout; the task error and the accuracy of a linear probe reading the "
    "occluding digit from the frozen representation (the encoder's output, noise off).",
    build,
    columns,
    report,
    measures={MEASURE: measure_nuisance},
)
