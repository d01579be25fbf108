"""Studies: named grids of training runs, run by one runner, aggregated over seeds, reported.

- :mod:`.runner`: :class:`Study`, :class:`RunSpec`, :func:`run_study` (skip, resume, local or cluster
  executors, retries) and the registry of measurements taken after training;
- :mod:`.experiment`: :class:`Experiment`, :class:`StudyOptions`, :func:`run_experiment` (data check,
  results.json, results.md, figures);
- one module per experiment of the paper: :data:`EXPERIMENTS` by name.
"""

from . import cifar_widths, cluttered, mnist_sizes, occluded, priors, vae
from .experiment import Column, Experiment, StudyOptions, run_experiment, select
from .runner import MEASURES, RunSpec, Study, StudyInterrupted, StudyResult, measure, run_study

#: The paper's experiments, as ``infodropout reproduce`` names them.
EXPERIMENTS: dict[str, Experiment] = {
    e.name: e
    for e in (
        mnist_sizes.EXPERIMENT,
        cifar_widths.EXPERIMENT,
        cluttered.EXPERIMENT,
        occluded.EXPERIMENT,
        vae.EXPERIMENT,
    )
}
#: The priors study of ``infodropout compare-priors``.
COMPARE_PRIORS: Experiment = priors.EXPERIMENT

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
    "measure",
    "run_experiment",
    "run_study",
    "select",
]
