"""The study commands of the command line: ``reproduce`` (the paper's experiments) and ``compare-priors``."""

import argparse
import sys
from pathlib import Path

from infodropout.train.data import add_data_dir_argument
from infodropout.train.threads import plan_threads


def positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected an integer, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected an integer >= 1, got {value}")
    return value


def grid_option(text: str) -> tuple[str, list[str]]:
    """``AXIS=V1,V2`` -> ``("AXIS", ["V1", "V2"])``."""
    axis, sep, values = text.partition("=")
    if not sep or not axis or not values:
        raise argparse.ArgumentTypeError(f"expected AXIS=VALUE[,VALUE...], got {text!r}")
    return axis, [v for v in values.split(",") if v]


def csv_list(convert):
    """``A,B,C`` -> ``[convert(A), convert(B), convert(C)]``."""

    def parse(text: str) -> list:
        try:
            return [convert(v.strip()) for v in text.split(",") if v.strip()]
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected a comma-separated list, got {text!r}") from None

    return parse


def set_option(text: str) -> tuple[str, object]:
    """``KEY=VALUE`` -> ``("KEY", value)``, the value read as JSON where it is JSON (``3``, ``0.5``,
    ``[1, 2]``, ``true``), else kept as a string (``cpu``)."""
    import json

    key, sep, value = text.partition("=")
    if not sep or not key:
        raise argparse.ArgumentTypeError(f"expected KEY=VALUE, got {text!r}")
    try:
        return key, json.loads(value)
    except json.JSONDecodeError:
        return key, value


def add_study_options(p: argparse.ArgumentParser, epochs: bool = True) -> None:
    """The options every study command takes."""
    p.add_argument("--out", required=True, type=Path, help="the study directory (never overwritten)")
    p.add_argument("--seeds", type=positive_int, help="seeds per cell (default: the experiment's)")
    if epochs:
        p.add_argument("--epochs", type=positive_int, help="epochs per run (default: the experiment's schedule)")
    p.add_argument("--quick", action="store_true", help="a smoke test: tiny grid, tiny data, one epoch")
    p.add_argument("--jobs", type=positive_int, default=1, help="runs at once (local worker processes)")
    p.add_argument(
        "--scheduler",
        metavar="ADDRESS",
        help="a Dask scheduler (tcp://HOST:8786) to run the grid on (default: $DASK_SCHEDULER_ADDRESS, else local)",
    )
    p.add_argument(
        "--threads", type=positive_int,
        help="torch threads per run (default: the cores shared by --jobs, fewer where the machine is busy; "
        "with --scheduler: the workers')",
    )  # fmt: skip
    p.add_argument("--device", choices=("auto", "cpu", "cuda"), default="auto")
    p.add_argument("--resume", action="store_true", help="continue the study in --out (finished runs are kept)")
    p.add_argument(
        "--grid", type=grid_option, action="append", default=[], metavar="AXIS=V1,V2", help="only these values"
    )
    add_data_dir_argument(p)


def add_parsers(sub) -> None:
    from . import EXPERIMENTS

    p = sub.add_parser("reproduce", help="run one of the paper's experiments as a study")
    p.add_argument("experiment", choices=list(EXPERIMENTS), help="the experiment")
    p.add_argument(
        "--set", type=set_option, action="append", default=[], dest="settings", metavar="KEY=VALUE",
        help="an option of the experiment (e.g. size=cpu for cluttered/occluded, iw_images=1000 for vae)",
    )  # fmt: skip
    add_study_options(p)

    from infodropout.train.metrics import METRICS, SETTINGS
    from infodropout.train.representations import KINDS

    p = sub.add_parser("compare-priors", help="compare priors for disentanglement on dSprites (a study)")
    p.add_argument("--dataset", choices=("dsprites",), default="dsprites", help="data with known factors")
    p.add_argument("--priors", type=csv_list(str), help="registered prior names (default: %(default)s)")
    p.add_argument("--betas", type=csv_list(float), help="KL weights per example, e.g. 1,2,4,8")
    p.add_argument("--steps", type=positive_int, help="optimiser steps per run (default: 300000)")
    p.add_argument("--metrics", type=csv_list(str), help=f"of: {', '.join(METRICS)}")
    p.add_argument("--metric-settings", choices=list(SETTINGS), dest="metric_settings", help="points per metric")
    p.add_argument("--representation", choices=list(KINDS), help="how a latent is read (default: log-location)")
    p.add_argument("--no-likelihood", action="store_false", dest="likelihood", help="skip the PSIS log-likelihood")
    p.add_argument(
        "--plugin", action="append", default=[], dest="plugins", metavar="MODULE_OR_FILE",
        help="a module or .py file registering priors (imported in every run)",
    )  # fmt: skip
    add_study_options(p, epochs=False)


def study_options(args, **extra):
    from .experiment import StudyOptions

    grid: dict[str, list[str]] = {}
    for axis, values in args.grid:
        grid.setdefault(axis, []).extend(values)
    return StudyOptions(
        seeds=args.seeds,
        epochs=getattr(args, "epochs", None),
        quick=args.quick,
        device=args.device,
        data_dir=None if args.data_dir is None else str(args.data_dir),
        grid=grid,
        extra=extra,
    )


def execute(experiment, args, options) -> dict:
    """Run ``experiment`` as the study options say: on a Dask cluster when a scheduler is named, else locally."""
    import contextlib

    from .experiment import run_experiment
    from .runner import dask_executor, scheduler_address

    address = scheduler_address(args.scheduler)
    if address and args.jobs != 1:
        raise ValueError(f"--jobs {args.jobs} with --scheduler {address}: the cluster's workers set the parallelism")
    threads = args.threads
    if not address:  # the runs share this machine's cores
        plan = plan_threads(args.jobs, args.threads)
        threads = plan.threads
        if plan.note:
            print(f"infodropout {args.command}: {plan.note}", file=sys.stderr)
    with dask_executor(address) if address else contextlib.nullcontext() as executor:
        return run_experiment(
            experiment, options, args.out, jobs=args.jobs, resume=args.resume, executor=executor, threads=threads
        )


def reproduce(args) -> int:
    from . import EXPERIMENTS

    execute(EXPERIMENTS[args.experiment], args, study_options(args, **dict(args.settings)))
    return 0


def compare_priors(args) -> int:
    from infodropout.models.priors import PRIORS  # noqa: F401  (the registry, before plugins add to it)
    from infodropout.train.config import import_plugins

    from . import COMPARE_PRIORS

    extra = {
        "priors": args.priors,
        "betas": args.betas,
        "steps": args.steps,
        "metrics": args.metrics,
        "metric_settings": args.metric_settings,
        "representation": args.representation,
        "likelihood": args.likelihood,
        "plugins": import_plugins(args.plugins),
    }
    execute(COMPARE_PRIORS, args, study_options(args, **{k: v for k, v in extra.items() if v is not None}))
    return 0


COMMANDS = {"reproduce": reproduce, "compare-priors": compare_priors}
