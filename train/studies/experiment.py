"""Experiments: a study's grid from a few options, what it measures, and its report.

An :class:`Experiment` builds a :class:`~.runner.Study` from :class:`StudyOptions`; :func:`run_experiment`
checks the data, runs the study through :func:`~.runner.run_study`, aggregates the finished runs over seeds
and writes ``results.json``, ``results.md`` and the experiment's figures. The data flow reads one way:
configs -> runs -> measurements -> results.json -> report.
"""

import dataclasses
import json
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from infodropout.train import data as datalib
from infodropout.train.config import TrainConfig, resolve
from infodropout.train.errors import NotWritable, os_reason
from infodropout.train.files import write_json, write_text
from infodropout.train.ownership import claim
from infodropout.train.report.tables import aggregate, format_mean_std, markdown_table

from .runner import Study, StudyResult, describe_machine, finished_runs, machine, prepare_out, run_study


@dataclass
class StudyOptions:
    """What a user chooses of a study (the command line's options).

    :param seeds: seeds per cell (None: the experiment's default).
    :param epochs: epochs per run (None: the experiment's schedule).
    :param quick: a smoke-test version (seconds to a minute on a CPU).
    :param device: ``auto``, ``cpu`` or ``cuda`` for every run.
    :param data_dir: where the data sets are (None: ``$INFODROPOUT_DATA`` and the cache).
    :param grid: restrict axes of the grid: ``{axis: [values]}`` (values compared as strings).
    :param extra: experiment-specific options (e.g. priors and betas of the priors study).
    """

    seeds: int | None = None
    epochs: int | None = None
    quick: bool = False
    device: str = "auto"
    data_dir: str | None = None
    grid: Mapping[str, Sequence[str]] = field(default_factory=dict)
    extra: Mapping = field(default_factory=dict)

    def __post_init__(self):
        if self.seeds is not None and not (isinstance(self.seeds, int) and self.seeds >= 1):
            raise ValueError(f"--seeds {self.seeds}: expected an integer >= 1")
        if self.epochs is not None and not (isinstance(self.epochs, int) and self.epochs >= 1):
            raise ValueError(f"--epochs {self.epochs}: expected an integer >= 1")

    def seeds_or(self, default: int) -> list[int]:
        return list(range(self.seeds if self.seeds is not None else default))

    def config(self, preset: str, seed: int, **overrides) -> TrainConfig:
        """The configuration of one run: ``preset`` with ``overrides``, the seed, and these options' device
        and data directory."""
        return resolve(preset, overrides=dict(overrides, seed=seed, device=self.device, data_dir=self.data_dir))


@dataclass(frozen=True)
class Column:
    """A column of the main results table: the metric, its heading, decimals and a scale factor."""

    key: str
    title: str
    digits: int = 2
    scale: float = 1.0


#: The test error of a classifier (percent).
TEST_ERROR = Column("test_error", "test error (%)", 2)


def information_columns(digits: int, authors: bool = True) -> list[Column]:
    """The information of a classifier summed over its layers (nats per example), and under the authors'
    KL convention."""
    out = [Column("kl_total", "information (nats/example)", digits)]
    return out + [Column("kl_total_authors", "information, authors' KL", digits)] if authors else out


@dataclass(frozen=True)
class Experiment:
    """A named experiment.

    :param name: as the command line calls it.
    :param description: the claim it tests, one paragraph (the head of ``results.md``).
    :param build: ``options -> Study``.
    :param columns: ``study -> [Column]``: the main table's metric columns.
    :param report: ``(results, out) -> [markdown sections]``: figures and extra tables from
        ``results.json``'s content (a dict); it writes figures under ``out/figures``.
    :param report_name: the Markdown report's file name in the study directory.
    :param measures: the measurements its runs take after training, by the name a
        :class:`~.runner.RunSpec` gives: ``fn(trainer, run_dir, options) -> dict``.
    :param curves: the points of the learning curves its runs take every ``options["curve_every"]`` steps,
        by the name of the run's measurement: ``fn(trainer, options) -> {name: number}``.
    """

    name: str
    description: str
    build: Callable[[StudyOptions], Study]
    columns: Callable[[Study], Sequence[Column]]
    report: Callable[[dict, Path], list[str]] | None = None
    report_name: str = "results.md"
    measures: Mapping[str, Callable] = field(default_factory=dict)
    curves: Mapping[str, Callable] = field(default_factory=dict)


def select(study: Study, grid: Mapping[str, Sequence[str]]) -> Study:
    """The runs of ``study`` whose labels take one of the given values on each named axis."""
    if not grid:
        return study
    axes = sorted({k for r in study.runs for k in r.labels})
    runs = study.runs
    for axis, wanted in grid.items():
        if axis not in axes:
            raise ValueError(f"--grid {axis}=...: {study.name} has no axis {axis!r}; its axes: {', '.join(axes)}")
        values = sorted({str(r.labels[axis]) for r in study.runs if axis in r.labels})
        unknown = [w for w in wanted if w not in values]
        if unknown:
            raise ValueError(f"--grid {axis}={','.join(unknown)}: not in the grid; {axis} takes {', '.join(values)}")
        runs = [r for r in runs if str(r.labels.get(axis)) in wanted]
    if not runs:
        raise ValueError(f"--grid: no run of {study.name} has all of {dict(grid)}")
    selection = {k: list(v) for k, v in grid.items()}
    return dataclasses.replace(study, runs=runs, grid=study.grid or study.runs, selection=selection)


#: The files each data set is made from (a generated set needs its sources).
DATA_SOURCES = {
    "mnist": ("mnist",),
    "fashion-mnist": ("fashion-mnist",),
    "cifar10": ("cifar10",),
    "cluttered-mnist": ("mnist",),
    "occluded-cifar": ("cifar10", "mnist"),
    "digits": ("digits",),
    "dsprites": (),
}


def check_data(study: Study) -> None:
    """Load every source data set the study's runs need (on the CPU) before any training starts, so that a
    missing or damaged file is a one-line error now rather than a failed run later."""
    needed = {(src, r.config.data_dir) for r in study.runs for src in DATA_SOURCES.get(r.config.dataset, ())}
    for source, data_dir in sorted(needed, key=str):
        datalib.get_dataset(source, data_dir, "cpu")


def run_experiment(
    experiment: Experiment,
    options: StudyOptions,
    out: Path,
    *,
    jobs: int = 1,
    resume: bool = False,
    executor=None,
    threads: int | None = None,
    log: Callable[[str], None] = print,
    show_progress: bool = True,
) -> dict:
    """Build, check and run the experiment's study in ``out``; write and return its results.

    ``out`` is claimed (:func:`~infodropout.train.ownership.claim`) once the study is known to be one it
    may hold, before the data are checked, and held until the report is written.
    """
    study = select(experiment.build(options), options.grid)
    prepare_out(study, out, resume, write=False)  # another study, or this one without --resume: refused now
    with claim(out, "study directory") as owner:
        try:
            check_data(study)
            started = time.perf_counter()
            outcome = run_study(
                study,
                out,
                jobs=jobs,
                resume=resume,
                executor=executor,
                threads=threads,
                device=options.device,
                log=log,
                show_progress=show_progress,
            )
            try:
                results = write_results(experiment, outcome, time.perf_counter() - started)
            except OSError as err:
                where = err.filename or out
                raise NotWritable(
                    f"{where}: cannot be written ({os_reason(err)}); every finished run is kept"
                ) from None
        except BaseException:
            owner.abandon()  # a directory this command made and wrote nothing into is removed
            raise
    report = Path(out) / experiment.report_name
    log(f"{study.name}: {len(outcome.results)} of {len(study.runs)} runs finished; wrote {report}")
    if outcome.failures:
        log(f"{study.name}: {len(outcome.failures)} runs failed: " + "; ".join(outcome.failures))
    return results


def write_results(experiment: Experiment, outcome: StudyResult, seconds: float) -> dict:
    """``results.json`` (cells aggregated over seeds, every run, failures, machine) and ``results.md``."""
    study, out = outcome.study, Path(outcome.out)
    columns = list(experiment.columns(study))
    runs, joined = joined_results(outcome)
    cells = aggregate(runs)
    results = {
        "study": study.name,
        "description": experiment.description,
        "settings": dict(study.settings),
        "selection": dict(study.selection),
        "machine": machine(),
        "seconds": seconds,
        "runs_total": len(study.runs),
        "runs_finished": len(outcome.results),
        "cells": cells,
        "runs": runs,
        "joined": joined,
        "failures": outcome.failures,
    }
    sections = experiment.report(results, out) if experiment.report else []
    results["figures"] = sorted(str(p.relative_to(out)) for p in (out / "figures").glob("*.png"))
    write_json(out / "results.json", json.loads(json.dumps(results, default=str)))
    write_text(out / experiment.report_name, render_markdown(results, columns, sections))
    return results


def joined_results(outcome: StudyResult) -> tuple[list[dict], list[str]]:
    """The results the study's table covers, in the grid's order: this selection's, and those of the grid's other
    runs already finished in the directory (studies of other ``--grid`` selections of one grid share it, so the
    table grows as they join); with the names of the latter."""
    study = outcome.study
    if study.grid is None:
        return list(outcome.results), []
    selected = {r.name for r in study.runs}
    found = {r["name"]: r for r in finished_runs(outcome.out, (s for s in study.grid if s.name not in selected))}
    found.update((r["name"], r) for r in outcome.results)
    runs = [found[s.name] for s in study.grid if s.name in found]
    return runs, [s.name for s in study.grid if s.name in found and s.name not in selected]


def main_table(cells: Sequence[Mapping], columns: Sequence[Column]) -> str:
    """One row per cell: its labels, each column's mean ± std over seeds, and the seeds."""
    axes = list(dict.fromkeys(k for c in cells for k in c["labels"]))
    header = [*axes, *(c.title for c in columns), "seeds"]
    rows = []
    for cell in cells:
        row = [cell["labels"].get(a, "") for a in axes]
        row += [format_mean_std(cell["metrics"].get(c.key), c.digits, c.scale) for c in columns]
        row.append(len(cell["seeds"]))
        rows.append(row)
    return markdown_table(header, rows)


def render_markdown(results: Mapping, columns: Sequence[Column], sections: Sequence[str]) -> str:
    where = describe_machine(results["machine"])
    lines = [
        f"# {results['study']}",
        "",
        results["description"],
        "",
        f"{results['runs_finished']} of {results['runs_total']} runs finished; {results['seconds']:.0f} s this "
        f"session on {where}."
        + (
            f" The table also holds {len(results['joined'])} run{'s' if len(results['joined']) > 1 else ''} of "
            "other selections finished earlier in this directory."
            if results.get("joined")
            else ""
        ),
        f"Settings: `{json.dumps(results['settings'], sort_keys=True)}`"
        + (f"; selection: `{json.dumps(results['selection'], sort_keys=True)}`." if results["selection"] else "."),
        "Values are mean ± standard deviation over seeds (ddof 1); every seed's value is in results.json.",
        "",
        main_table(results["cells"], columns),
        "",
    ]
    for section in sections:
        lines += [section, ""]
    if results["failures"]:
        lines += ["## Failed runs", ""]
        lines += [f"- `{name}`: {message}" for name, message in results["failures"].items()]
        lines.append("")
    if results.get("figures"):
        lines += ["## Figures", ""] + [f"![{Path(f).stem}]({f})" for f in results["figures"]] + [""]
    return "\n".join(lines)
