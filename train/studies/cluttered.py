"""``cluttered``: information dropout lets information through where the digit is, on Cluttered MNIST.

The paper's claim (Achille & Soatto, Sec. 6 and Fig. 3): trained on Cluttered MNIST (one 28x28 digit at
a random place on a 96x96 canvas among 21 8x8 pieces of other digits), the noisy layers of All-CNN-96
transmit information about the digit and block the clutter, the more so the larger beta. Four
information-dropout layers (ReLU, log-uniform prior, alpha_max 1.0: the ``cluttered-allcnn`` preset) over
a range of beta, and for each run the information of every unit of every noisy layer on the test images.

**Information per position.** For a test image ``x`` and the noisy layer ``l`` with units ``z_l[c, i, j]``,
the map ``m_l(i, j) = sum_c KL(q(z_l[c, i, j] | x) || p(z_l[c, i, j]))``: under the log-uniform prior and
the exact KL (the run's ``kl_convention``, exact unless a config asks for the authors'),
``-log(alpha_c(i, j) / max_alpha)`` on the units that are on and 0 on those that are off. It
is taken as :meth:`~infodropout.models.bottleneck.InformationBottleneck.information` takes the KL (and as
``Trainer.evaluate`` does): evaluation mode (batch norm with the statistics evaluation uses, re-estimated
without noise where the config says so), noise on (each layer's alpha sees the noisy output of the layer
before it), so that ``sum_{i, j} m_l(i, j)`` is ``ib.information(x)[l]`` for the same draw of the noise.

**Positions and pixels.** A layer of ``h x w`` positions on an ``H x W`` input has stride ``s = H / h``
(2, 4, 8, 16 for z1..z4); its position ``(i, j)`` stands for the ``s x s`` cell of input pixels
``[s i, s i + s) x [s j, s j + s)`` (rows x columns): the pixels it is drawn over when the map is
stretched over the input in the figure. (Its receptive field is wider: 7, 19, 43 and 91 pixels.) A
position counts inside the digit's box ``[x0, x1) x [y0, y1)`` by the fraction of its cell's pixels there,
so that the means below are the means over *pixels* of the map stretched over the input:

    inside_l  = sum_n sum_p m_l(p) |cell_p ∩ box_n|        / sum_n sum_p |cell_p ∩ box_n|
    outside_l = sum_n sum_p m_l(p) (s^2 - |cell_p ∩ box_n|) / sum_n sum_p (s^2 - |cell_p ∩ box_n|)
    ratio_l   = inside_l / outside_l

pooled over the test images ``n`` (a ratio of pooled means, not a mean of per-image ratios, which a near
empty outside would make unstable). Target: ``ratio_l > 1`` at every layer, increasing with beta.

**Grids.** beta is Eq. 2's weight per example (the preset's 1e-5 is the authors' 0.5 / 50,000); it is a
label axis, its values written as ``results.md`` shows them (``--grid beta=1e-06,1e-05``).

- ``--device cuda`` (or ``auto`` on a machine with a GPU): the paper's setting, :data:`PAPER`: full
  width, 50,000 training and 10,000 test images, the preset's 80 epochs (SGD Nesterov, lr 0.01 x0.1 at
  30 and 60), betas 1e-6 ... 1e-4, 2 seeds.
- ``--device cpu`` (or no GPU): the CPU-sized setting, :data:`CPU`, sized for a 2-core CPU with
  ``--jobs 2`` (its cost is in the README): width 0.25 (8, 16, 24, 48 channels), 12,000 training and
  1,000 test images, 10 epochs, batch 32 and Adam 1e-3 (so that a short schedule takes enough steps;
  with the preset's batch 128 and SGD 0.01 a short schedule stays at chance)
  with the lr x0.1 after epochs 4 and 8 (the preset's milestones compressed), batch-norm statistics
  re-estimated on 20 batches, betas 1e-6, 3e-6, 1e-5 and 3e-5, 1 seed.
- ``--quick``: a smoke test, :data:`QUICK` (width 1/16, 256 images, one epoch, two betas).

``StudyOptions.extra["size"]`` (``"cpu"`` or ``"paper"``) chooses the setting whatever the device;
``extra["num_train"]`` (``--set num_train=N``) runs it on N training images (a trend over data sizes).
"""

import math
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np
import torch

from infodropout.train.config import PRESETS
from infodropout.train.evaluation import information_maps, write_record
from infodropout.train.evaluation.record import group, maps_dataset
from infodropout.train.report.figures import heat_maps, line_plot
from infodropout.train.report.tables import format_mean_std, markdown_table

from .common import Setting, first_runs, run_extras, run_record, sized, standardised
from .experiment import TEST_ERROR, Column, Experiment, StudyOptions, information_columns
from .runner import RunSpec, Study

NAME = "cluttered"
MEASURE = "cluttered-information"
#: The noisy layers of All-CNN-96, input side first.
SITES = ("z1", "z2", "z3", "z4")


PAPER = Setting(1.0, None, None, 80, (1e-6, 3e-6, 1e-5, 3e-5, 1e-4), 2, 100)
CPU = Setting(0.25, 12_000, 1000, 10, (1e-6, 3e-6, 1e-5, 3e-5), 1, 20, batch_size=32, optimizer="adam", lr=1e-3)
QUICK = Setting(0.0625, 256, 128, 1, (1e-4, 1e-3), 1, 1, samples=3)
SIZES = {"paper": PAPER, "cpu": CPU}


def build(options: StudyOptions) -> Study:
    size, setting, epochs, milestones = sized(options, NAME, SIZES, QUICK, PRESETS["cluttered-allcnn"])
    runs = []
    for beta in setting.betas:
        for seed in options.seeds_or(setting.seeds):
            config = options.config(
                "cluttered-allcnn", seed, **setting.overrides(), beta=beta, epochs=epochs, milestones=milestones
            )
            options_ = {"samples": setting.samples}
            runs.append(RunSpec(f"beta{beta:g}-s{seed}", config, {"beta": beta}, MEASURE, options_))
    settings = {"size": size, "quick": options.quick, **setting.to_dict(), "epochs": epochs, "milestones": milestones}
    return Study(NAME, runs, primary="ratio.z1", description=__doc__.split("\n\n")[0], settings=settings)


# -- the measurement ------------------------------------------------------------------------------------


def box_sums(maps: torch.Tensor, boxes: torch.Tensor, image_size: tuple[int, int]) -> torch.Tensor:
    """``[inside sum, inside pixels, outside sum, outside pixels]`` (float64) of maps ``(B, h, w)`` over
    images of ``image_size = (H, W)`` with boxes ``(B, 4)`` = (x0, y0, x1, y1), ends exclusive, in pixels.

    Position ``(i, j)`` is the cell ``[s_y i, s_y (i + 1)) x [s_x j, s_x (j + 1))`` with ``s_y = H / h``,
    ``s_x = W / w``, weighed inside by the pixels it shares with the box and outside by the rest:
    ``inside sum = sum_p m(p) |cell_p ∩ box|``, ``outside sum = sum_p m(p) (s_y s_x - |cell_p ∩ box|)``.
    """
    b, h, w = maps.shape
    height, width = image_size
    if height % h or width % w:
        raise ValueError(f"a map of {h}x{w} positions does not tile an input of {height}x{width} pixels")
    if boxes.shape != (b, 4):
        raise ValueError(f"boxes: expected shape ({b}, 4) for {b} maps, got {tuple(boxes.shape)}")
    sy, sx = height // h, width // w
    boxes = boxes.to(device=maps.device, dtype=torch.float64)
    x0, y0, x1, y1 = boxes.unbind(1)  # (B,) each
    left = torch.arange(w, device=maps.device, dtype=torch.float64) * sx  # (w,)
    top = torch.arange(h, device=maps.device, dtype=torch.float64) * sy  # (h,)
    ox = (torch.minimum(x1[:, None], left + sx) - torch.maximum(x0[:, None], left)).clamp_min(0)  # (B, w)
    oy = (torch.minimum(y1[:, None], top + sy) - torch.maximum(y0[:, None], top)).clamp_min(0)  # (B, h)
    overlap = oy[:, :, None] * ox[:, None, :]  # (B, h, w) pixels of each cell inside the box
    rest = sy * sx - overlap  # (B, h, w) pixels outside
    m = maps.to(torch.float64)
    return torch.stack([(m * overlap).sum(), overlap.sum(), (m * rest).sum(), rest.sum()])


def inside_outside(sums: torch.Tensor) -> dict[str, float]:
    """``inside``, ``outside`` (mean information per position, nats) and their ``ratio`` from
    :func:`box_sums` (summed over batches); a mean over no pixels is NaN, a ratio over 0 is inf or NaN."""
    in_sum, in_px, out_sum, out_px = (float(v) for v in sums)
    inside = in_sum / in_px if in_px else math.nan
    outside = out_sum / out_px if out_px else math.nan
    if outside == 0:
        ratio = math.inf if inside > 0 else math.nan
    else:
        ratio = inside / outside
    return {"inside": inside, "outside": outside, "ratio": ratio}


def measure_information(trainer, run_dir, options) -> dict:
    """Per noisy layer, over the run's test images: ``ratio``, ``inside`` and ``outside`` (see the
    module docstring) and ``information``, the maps summed over positions and averaged over images
    (nats per example, the test KL of the layer for this draw of the noise). The first ``samples``
    images, their boxes and maps go to the run's record (group ``maps``) for the figure."""
    samples = int(options.get("samples", 4))
    test = trainer.data.test
    if test.shuffle:
        raise ValueError(f"{run_dir}: the test loader is shuffled; its images cannot be matched to their boxes")
    boxes = run_extras(trainer, "test", ["boxes"], n_train=2)["boxes"]  # (N, 4); the test split alone
    image_size = tuple(test.x.shape[-2:])
    sums: dict[str, torch.Tensor] = {}
    totals: dict[str, float] = {}
    kept: dict[str, list] = {}
    count = 0
    with trainer.as_tested() as ib:
        for start in range(0, len(test.x), test.batch_size):
            stop = min(start + test.batch_size, len(test.x))
            x = standardised(test, test.x[start:stop])  # (B, 1, H, W)
            maps = information_maps(ib, x)
            for site, m in maps.items():  # m: (B, h, w)
                sums[site] = sums.get(site, 0) + box_sums(m, boxes[start:stop], image_size)
                totals[site] = totals.get(site, 0.0) + float(m.sum())
                if count < samples:
                    kept.setdefault(site, []).append(m[: samples - count].cpu())
            count += stop - start
    out: dict[str, dict] = {"ratio": {}, "inside": {}, "outside": {}, "information": {}}
    for site in sums:
        parts = inside_outside(sums[site])
        for key in ("ratio", "inside", "outside"):
            out[key][site] = parts[key]
        out["information"][site] = totals[site] / max(count, 1)
    k = min(samples, len(test.x))
    maps = maps_dataset(
        (test.x[:k].to(torch.float32) / 255.0).cpu().numpy(),  # (k, C, H, W)
        boxes[:k].cpu().numpy(),
        test.y[:k].cpu().numpy(),
        {site: torch.cat(parts).numpy() for site, parts in kept.items()},
    )
    write_record(run_dir, {"maps": maps})
    return out


# -- the report -----------------------------------------------------------------------------------------


def columns(study: Study) -> list[Column]:
    return [TEST_ERROR, *(Column(f"ratio.{s}", f"ratio {s}", 2) for s in SITES), *information_columns(0)]


def _by_beta(results: Mapping) -> list[dict]:
    return sorted(results["cells"], key=lambda c: c["labels"]["beta"])


def report(results: dict, out) -> list[str]:
    out = Path(out)
    cells = _by_beta(results)
    series = {s: [(c["labels"]["beta"], c["metrics"].get(f"ratio.{s}")) for c in cells] for s in SITES}
    line_plot(
        out / "figures" / "ratio_vs_beta.png",
        series,
        "beta (Eq. 2, per example)",
        "information per position, inside / outside the box",
        "Cluttered MNIST, All-CNN-96",
        logx=all(c["labels"]["beta"] > 0 for c in cells),
    )
    _figures(results, out)
    return [_ratio_table(cells), _position_table(cells), _targets(cells)]


def _figures(results: Mapping, out: Path) -> None:
    """For each beta, its first seed's sample test images with every layer's map stretched over them."""
    for beta, run in sorted(first_runs(results["runs"], lambda r: r["labels"]["beta"]).items()):
        saved = group(run_record(out, run), "maps")
        if saved is None:
            continue
        images, boxes = saved["images"].values, saved["boxes"].values
        maps = {f"{s} (nats/position)": saved[f"map_{s}"].values for s in SITES if f"map_{s}" in saved}
        x0, y0, x1, y1 = boxes.T.astype(float)
        heat_maps(
            out / "figures" / f"information_maps_beta{beta:g}.png",
            images,
            maps,
            boxes=np.stack([y0, x0, y1 - y0, x1 - x0], axis=1),  # (top, left, height, width)
            title=f"information per position, beta = {beta:g} ({run['name']})",
        )


def _ratio_table(cells: Sequence[Mapping]) -> str:
    rows = [[c["labels"]["beta"], *(format_mean_std(c["metrics"].get(f"ratio.{s}"), 2) for s in SITES)] for c in cells]
    return (
        "## Inside / outside information ratio\n\n"
        "Mean information per position inside the digit's box over the mean outside it, per noisy layer "
        "(positions weighed by the pixels of their cell inside the box; pooled over the test images).\n\n"
        + markdown_table(["beta", *SITES], rows)
    )


def _position_table(cells: Sequence[Mapping]) -> str:
    rows = []
    for c in cells:
        m = c["metrics"]
        for s in SITES:
            exact = m.get(f"test_kl_exact.{s}", m.get(f"test_kl.{s}"))  # test_kl: the run's convention (exact here)
            rows.append(
                [
                    c["labels"]["beta"],
                    s,
                    format_mean_std(m.get(f"inside.{s}"), 3),
                    format_mean_std(m.get(f"outside.{s}"), 3),
                    format_mean_std(exact, 1),
                    format_mean_std(m.get(f"test_kl_authors.{s}"), 1),
                ]
            )
    header = ["beta", "layer", "inside (nats/position)", "outside (nats/position)", "test KL (nats/example)"]
    header.append("test KL, authors' convention")
    return "## Information per position\n\n" + markdown_table(header, rows)


def _targets(cells: Sequence[Mapping]) -> str:
    """What the measured ratios say about the targets (ratio > 1 everywhere; increasing with beta)."""
    lines = ["## Targets", ""]
    means = {
        s: [(c["labels"]["beta"], (c["metrics"].get(f"ratio.{s}") or {}).get("mean")) for c in cells] for s in SITES
    }
    below = [f"{s} at beta {b:g} ({r:.2f})" for s in SITES for b, r in means[s] if r is not None and not r > 1]
    lines.append(
        "- ratio > 1 at every noisy layer and beta: " + ("met" if not below else "not met: " + ", ".join(below))
    )
    for s in SITES:
        values = [r for _, r in means[s] if r is not None]
        if len(values) < 2:
            lines.append(f"- {s} increasing with beta: one beta only")
            continue
        rising = all(b > a for a, b in zip(values, values[1:], strict=False))
        trend = " -> ".join(f"{v:.2f}" for v in values)
        lines.append(f"- {s} increasing with beta: {'met' if rising else 'not met'} ({trend})")
    return "\n".join(lines)


EXPERIMENT = Experiment(
    NAME,
    "Information dropout ignores nuisances: on Cluttered MNIST, All-CNN-96's four information-dropout layers "
    "(ReLU, log-uniform prior, alpha_max 1.0) carry more information per position inside the digit's box than "
    "outside it, the more so the larger beta. The information is the exact KL of every unit against its prior.",
    build,
    columns,
    report,
    measures={MEASURE: measure_information},
)
