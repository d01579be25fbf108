"""Studies: named grids of training runs, run by one runner, aggregated over seeds, reported.

- :mod:`.runner`: :class:`Study`, :class:`RunSpec`, :func:`run_study` (skip, resume, local or cluster
  executors, retries);
- :mod:`.experiment`: :class:`Experiment`, :class:`StudyOptions`, :func:`run_experiment` (data check,
  results.json, results.md, figures);
- :mod:`.common`: what several studies share (sizes, schedules, generated data's extras, reading runs);
- one module per experiment of the paper: :data:`EXPERIMENTS` by name; :data:`MEASURES`, the
  measurements their runs take after training, by name.
"""

from . import cifar_widths, cluttered, info_plane, mnist_sizes, occluded, priors, vae
from .experiment import Column, Experiment, StudyOptions, run_experiment, select
from .runner import RunSpec, Study, StudyInterrupted, StudyResult, run_study

#: The paper's experiments (and the information plane), as ``infodropout reproduce`` names them.
EXPERIMENTS: dict[str, Experiment] = {
    e.name: e
    for e in (
        mnist_sizes.EXPERIMENT,
        cifar_widths.EXPERIMENT,
        cluttered.EXPERIMENT,
        occluded.EXPERIMENT,
        vae.EXPERIMENT,
        info_plane.EXPERIMENT,
    )
}
#: The priors study of ``infodropout compare-priors``.
COMPARE_PRIORS: Experiment = priors.EXPERIMENT
#: The measurements the experiments' runs take after training, by the name a run gives.
MEASURES = {name: fn for e in (*EXPERIMENTS.values(), COMPARE_PRIORS) for name, fn in e.measures.items()}
#: The learning-curve measurements of the experiments' runs, by the name of the run's measurement.
CURVES = {name: fn for e in (*EXPERIMENTS.values(), COMPARE_PRIORS) for name, fn in e.curves.items()}

__all__ = [
    "COMPARE_PRIORS",
    "EXPERIMENTS",
    "MEASURES",
    "Column",
    "Experiment",
    "RunSpec",
    "Study",
    "StudyInterrupted",
    "StudyOptions",
    "StudyResult",
    "run_experiment",
    "run_study",
    "select",
]
