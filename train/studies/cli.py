"""The study commands of the command line: ``reproduce`` (the paper's experiments) and ``compare-priors``."""

import argparse
import contextlib
import json
import sys
from pathlib import Path

import torch

from infodropout.train.config import import_plugins
from infodropout.train.data import add_data_dir_argument
from infodropout.train.engine import bf16_emulated
from infodropout.train.evaluation import KINDS
from infodropout.train.metrics import METRICS
from infodropout.train.threads import plan_threads

from . import COMPARE_PRIORS, EXPERIMENTS
from .experiment import StudyOptions, run_experiment, select
from .priors import METRIC_SETTINGS, PROTOCOLS
from .runner import MAX_JOBS, dask_executor, scheduler_address


def positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected an integer, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected an integer >= 1, got {value}")
    return value


def bounded_int(high: int):
    """An argparse type: an integer in ``[1, high]``."""

    def parse(text: str) -> int:
        value = positive_int(text)
        if value > high:
            raise argparse.ArgumentTypeError(f"expected an integer in [1, {high}], got {value}")
        return value

    return parse


#: The most seeds per cell a study takes (each is a full training run).
MAX_SEEDS = 1000
#: The most torch threads per run.
MAX_THREADS = 1024


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
            values = [convert(v.strip()) for v in text.split(",") if v.strip()]
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected a comma-separated list, got {text!r}") from None
        if not values:
            raise argparse.ArgumentTypeError(f"none given ({text!r}): leave the option out for the default")
        return values

    return parse


def set_option(text: str) -> tuple[str, object]:
    """``KEY=VALUE`` -> ``("KEY", value)``, the value read as JSON where it is JSON (``3``, ``0.5``,
    ``[1, 2]``, ``true``), else kept as a string (``cpu``)."""
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
    p.add_argument("--seeds", type=bounded_int(MAX_SEEDS), help="seeds per cell (default: the experiment's)")
    if epochs:
        p.add_argument("--epochs", type=positive_int, help="epochs per run (default: the experiment's schedule)")
    p.add_argument("--quick", action="store_true", help="a smoke test: tiny grid, tiny data, one epoch")
    p.add_argument(
        "--jobs", type=bounded_int(MAX_JOBS), help=f"runs at once (local worker processes, 1 to {MAX_JOBS}; default: 1)"
    )
    p.add_argument(
        "--scheduler",
        metavar="ADDRESS",
        help="a Dask scheduler (tcp://HOST:8786) to run the grid on (default: $DASK_SCHEDULER_ADDRESS, else local)",
    )
    p.add_argument(
        "--threads", type=bounded_int(MAX_THREADS),
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
    p = sub.add_parser("reproduce", help="run one of the paper's experiments as a study")
    p.add_argument("experiment", choices=list(EXPERIMENTS), help="the experiment")
    p.add_argument(
        "--set", type=set_option, action="append", default=[], dest="settings", metavar="KEY=VALUE",
        help="an option of the experiment (e.g. size=cpu for cluttered/occluded, iw_images=1000 for vae)",
    )  # fmt: skip
    add_study_options(p)

    p = sub.add_parser("compare-priors", help="compare priors for disentanglement on dSprites (a study)")
    p.add_argument("--dataset", choices=("dsprites",), default="dsprites", help="data with known factors")
    p.add_argument(
        "--protocol", choices=list(PROTOCOLS),
        help="a named set of the options below, measured to conclude on its machine (an option given wins): "
        + "; ".join(f"{name}: {protocol.description}" for name, protocol in PROTOCOLS.items()),
    )  # fmt: skip
    p.add_argument("--priors", type=csv_list(str), help="registered prior names (default: %(default)s)")
    p.add_argument("--betas", type=csv_list(float), help="KL weights per example, e.g. 1,2,4,8")
    p.add_argument("--steps", type=positive_int, help="optimiser steps per run (default: 300000)")
    p.add_argument("--lr", type=float, help="Adam's learning rate (default: the dsprites-vae preset's, 5e-4)")
    p.add_argument("--batch-size", type=positive_int, dest="batch_size", help="images per step (default: 64)")
    p.add_argument("--precision", choices=("fp32", "bf16"), help="bf16 autocast in training (default: fp32)")
    p.add_argument("--channels-last", action="store_true", dest="channels_last", default=None,
                   help="channels-last convolutions in training")  # fmt: skip
    p.add_argument(
        "--curve-every", type=positive_int, dest="curve_every",
        help="steps between the points of each run's learning curve (default: a tenth of --steps)",
    )  # fmt: skip
    p.add_argument("--metrics", type=csv_list(str), help=f"of: {', '.join(METRICS)}")
    p.add_argument(
        "--metric-settings", choices=list(METRIC_SETTINGS), dest="metric_settings",
        help="points per metric (default: study, about a tenth of a 30,000-step run's training on a CPU)",
    )  # fmt: skip
    p.add_argument("--representation", choices=list(KINDS), help="how a latent is read (default: log-location)")
    p.add_argument("--no-likelihood", action="store_false", dest="likelihood", help="skip the PSIS log-likelihood")
    p.add_argument(
        "--plugin", action="append", default=[], dest="plugins", metavar="MODULE_OR_FILE",
        help="a module or .py file registering priors (imported in every run)",
    )  # fmt: skip
    add_study_options(p, epochs=False)


def study_options(args, **extra):
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
    """Run ``experiment`` as the study options say: on a Dask cluster when a scheduler is named, else locally.

    ``--device cuda`` without a CUDA device here is refused before anything runs (with a scheduler the
    cluster's workers have the devices, and each run says so where it has none)."""
    address = scheduler_address(args.scheduler)
    args.jobs = args.jobs or 1
    if address and args.jobs != 1:
        raise ValueError(f"--jobs {args.jobs} with --scheduler {address}: the cluster's workers set the parallelism")
    if args.device == "cuda" and not address and not torch.cuda.is_available():
        raise ValueError("--device cuda: no CUDA device is available here (use --device cpu)")
    select(experiment.build(options), options.grid)  # every option checked before a scheduler is contacted
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


class StudyIncomplete(Exception):
    """A study that ended with runs failed: its finished runs are kept (the command exits with status 1)."""


def finished(results: dict) -> int:
    """0 when every run of the study finished; else :class:`StudyIncomplete` naming how many did not."""
    failed = results["runs_total"] - results["runs_finished"]
    if failed:
        names = sorted(results["failures"])
        shown = ", ".join(names[:3]) + (f" and {len(names) - 3} more" if len(names) > 3 else "")
        raise StudyIncomplete(
            f"{failed} of {results['runs_total']} runs did not finish ({shown}): see failure.txt in their run "
            "directories; the finished runs are kept, and the same command with --resume runs the others again"
        )
    return 0


def reproduce(args) -> int:
    return finished(execute(EXPERIMENTS[args.experiment], args, study_options(args, **dict(args.settings))))


def apply_protocol(args) -> None:
    """Fill the options ``args`` leaves unset from ``--protocol``'s (a protocol's bf16 becomes fp32, with a
    note, on a CPU without bf16 arithmetic: there it would be emulated and slower)."""
    if not args.protocol:
        return
    for name, value in PROTOCOLS[args.protocol].options.items():
        if getattr(args, name) is None:
            setattr(args, name, list(value) if isinstance(value, list) else value)
    if args.precision == "bf16" and bf16_emulated(args.device):
        args.precision = "fp32"
        print(
            f"infodropout compare-priors: --protocol {args.protocol} trains in bf16 where the CPU has bf16 "
            "arithmetic; this one has not: fp32 (the study takes about 1.7 times as long)",
            file=sys.stderr,
        )


def compare_priors(args) -> int:
    apply_protocol(args)
    extra = {
        "protocol": args.protocol,
        "priors": args.priors,
        "betas": args.betas,
        "steps": args.steps,
        "curve_every": args.curve_every,
        "lr": args.lr,
        "batch_size": args.batch_size,
        "precision": args.precision,
        "channels_last": args.channels_last,
        "metrics": args.metrics,
        "metric_settings": args.metric_settings,
        "representation": args.representation,
        "likelihood": args.likelihood,
        "plugins": import_plugins(args.plugins),
    }
    options = study_options(args, **{k: v for k, v in extra.items() if v is not None})
    return finished(execute(COMPARE_PRIORS, args, options))


COMMANDS = {"reproduce": reproduce, "compare-priors": compare_priors}
