"""The ``infodropout`` command line: train, eval, resume, bench, demo, reproduce, compare-priors, info-plane,
uncertainty, prune.

``train``, ``resume`` and ``eval`` also run under torchrun (one run on several processes, see
:mod:`~infodropout.train.distributed`)::

    torchrun --nproc-per-node=K -m infodropout.train train PRESET --out RUN ...
    torchrun --nproc-per-node=K --no-python infodropout resume RUN

Only rank 0 prints; an error that every rank meets alike (a bad option, a run directory that exists,
an agreed stop) is reported once, by rank 0, and one of a single rank by that rank, naming it.

Every error a user can cause is one line on stderr (argparse's too: no usage block) and a non-zero exit
status: 2 for bad input (an option, a file, a directory, the environment), 1 for a study that finished
with runs failed, 130 for Ctrl-C. Under torchrun each rank also leaves its line in torchrun's error file
(``$TORCHELASTIC_ERROR_FILE``), so that torchrun's report of the failure names it as the root cause.
"""

import argparse
import contextlib
import dataclasses
import json
import os
import sys
import time
from pathlib import Path

from infodropout.guides.encoders import MLP_KINDS
from infodropout.guides.layers import ACTIVATIONS
from infodropout.models.likelihoods import LIKELIHOODS
from infodropout.models.priors import KL_CONVENTIONS, PRIORS

from . import distributed
from .analysis.prune import parse_keep, prune
from .analysis.uncertainty import NOISE_STD, OOD_SETS, uncertainty
from .bench import run_bench
from .checkpoint import CheckpointError
from .config import DATASETS, DEVICES, OPTIMIZERS, PRECISIONS, PRESETS, read_config_file, resolve
from .data import DataCorruptError, DataNotFoundError, add_data_dir_argument
from .demo import DEMO_STEPS, run_demo
from .engine import GraphCaptureError, NonFiniteLoss
from .errors import NotWritable, one_line, os_reason
from .files import write_json
from .ownership import claim
from .run import Interrupted, Trainer
from .schedules import SCHEDULES
from .studies import EXPERIMENTS
from .studies.cli import COMMANDS as STUDY_COMMANDS
from .studies.cli import StudyIncomplete, add_study_options, csv_list, execute, finished, positive_int, study_options
from .studies.cli import add_parsers as add_study_parsers
from .studies.runner import StudyInterrupted
from .threads import local_jobs, plan_threads, torch_threads


def _seconds(text: str) -> float:
    try:
        return distributed.check_timeout(float(text))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number of seconds > 0, got {text!r}") from None


def _add_dist_timeout(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--dist-timeout",
        type=_seconds,
        default=distributed.DEFAULT_TIMEOUT,
        dest="dist_timeout",
        metavar="SECONDS",
        help="under torchrun: how long a rank waits for the others (to join, in a collective) before it stops, "
        f"so that a rank that died or hangs ends the run (default {distributed.DEFAULT_TIMEOUT:g})",
    )


def _number(text: str) -> float:
    try:
        return float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None


def _add_train_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("preset", choices=list(PRESETS), help="the experiment to start from")
    p.add_argument("--out", required=True, type=Path, help="new run directory (never overwritten)")
    p.add_argument("--config", type=Path, help="a .json or .toml file of options (applied before the flags)")
    p.add_argument("--dataset", choices=DATASETS)
    p.add_argument("--dropout", choices=MLP_KINDS, help="kind of noise in the noisy layers ('vib': MLP only)")
    # not choices=: a plugin (--plugin) may register more priors; the config checks the name against the registry
    p.add_argument(
        "--prior", metavar="NAME", help=f"a registered prior: {', '.join(PRIORS)}, or one a --plugin registers"
    )
    p.add_argument(
        "--kl-convention",
        choices=KL_CONVENTIONS,
        dest="kl_convention",
        help="log-uniform prior: 'exact' KL (units that are off cost nothing, default) or 'authors' (every unit "
        "is charged -log(alpha / (alpha_min + alpha_max)), as the authors' code)",
    )
    p.add_argument(
        "--plugin",
        action="append",
        dest="plugins",
        metavar="MODULE_OR_FILE",
        help="import a module or .py file first (e.g. one that calls register_prior); repeatable; recorded in the run",
    )
    p.add_argument("--beta", type=_number, help="KL weight per example (Eq. 2); >= 0")
    p.add_argument("--beta-warmup-epochs", type=_number, dest="beta_warmup_epochs")
    p.add_argument("--epochs", type=positive_int)
    width = p.add_mutually_exclusive_group()
    width.add_argument("--width", type=_number, help="channel multiplier of the All-CNN networks")
    width.add_argument("--hidden", type=positive_int, nargs="+", help="hidden layer widths (MLP) or size (VAE)")
    p.add_argument("--activation", choices=ACTIVATIONS)
    p.add_argument("--alpha-max", type=_number, dest="alpha_max")
    p.add_argument("--latent", choices=("gaussian", "information"))
    p.add_argument("--likelihood", choices=LIKELIHOODS)
    p.add_argument("--z-dim", type=positive_int, dest="z_dim")
    p.add_argument("--batch-size", type=positive_int, dest="batch_size")
    p.add_argument("--optimizer", choices=OPTIMIZERS)
    p.add_argument("--lr", type=_number)
    p.add_argument("--weight-decay", type=_number, dest="weight_decay")
    p.add_argument("--schedule", choices=SCHEDULES)
    p.add_argument("--milestones", type=positive_int, nargs="*")
    p.add_argument("--augment", action=argparse.BooleanOptionalAction, default=None)
    p.add_argument(
        "--binarize", action=argparse.BooleanOptionalAction, default=None, help="autoencoders: binarised pixels"
    )
    p.add_argument("--num-train", type=positive_int, dest="num_train", help="use N training examples")
    p.add_argument("--num-test", type=positive_int, dest="num_test")
    p.add_argument("--seed", type=int)
    p.add_argument("--device", choices=DEVICES)
    p.add_argument("--precision", choices=PRECISIONS)
    p.add_argument("--cuda-graph", action=argparse.BooleanOptionalAction, default=None, dest="cuda_graph")
    p.add_argument("--channels-last", action=argparse.BooleanOptionalAction, default=None, dest="channels_last")
    add_data_dir_argument(p)
    _add_threads(p)
    _add_dist_timeout(p)


def _add_threads(p: argparse.ArgumentParser, what: str = "the run") -> None:
    p.add_argument(
        "--threads",
        type=positive_int,
        help=f"torch threads of {what} (default: the cores this process may use, shared with torchrun's other "
        "processes on this machine; fewer where the machine is busy)",
    )


_OVERRIDES = (
    "dataset dropout prior kl_convention beta beta_warmup_epochs epochs width hidden activation alpha_max latent "
    "likelihood z_dim batch_size optimizer lr weight_decay schedule milestones augment binarize num_train num_test "
    "seed "
    "device precision cuda_graph channels_last data_dir plugins"
).split()


class _Parser(argparse.ArgumentParser):
    """argparse with a one-line error (no usage block), printed by rank 0 alone under torchrun."""

    def error(self, message: str):
        fail(f"{self.prog}: error: {message} (see {self.prog} --help)", 2)


def _rank_from_environment() -> int:
    """This process's rank as torchrun's ``RANK`` says (0 without torchrun, or where it does not parse)."""
    try:
        return int(os.environ.get("RANK", "0"))
    except ValueError:
        return 0


def record_for_torchrun(line: str) -> None:
    """Leave ``line`` in torchrun's error file for this rank (``$TORCHELASTIC_ERROR_FILE``, in the format of
    torch's ``ErrorHandler``), so that torchrun's failure report shows it instead of a link to its docs."""
    path = os.environ.get("TORCHELASTIC_ERROR_FILE")
    if not path:
        return
    message = {"message": line, "extraInfo": {"py_callstack": line, "timestamp": str(int(time.time()))}}
    with contextlib.suppress(OSError):
        Path(path).write_text(json.dumps({"message": message}))


def fail(line: str, status: int):
    """Print ``line`` (rank 0 only), record it for torchrun, and exit with ``status``."""
    if _rank_from_environment() == 0:
        print(line, file=sys.stderr)
    record_for_torchrun(line)
    sys.exit(status)


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="infodropout", description="Information Dropout in Pyro: train, evaluate and benchmark.")
    sub = parser.add_subparsers(dest="command", required=True)
    _add_train_options(sub.add_parser("train", help="train a preset into a new run directory"))
    p = sub.add_parser("eval", help="evaluate the checkpoint of a run on its test set")
    p.add_argument("run_dir", type=Path)
    p.add_argument("--overwrite", action="store_true", help="replace an existing RUN_DIR/eval.json")
    _add_threads(p, "the evaluation")
    _add_dist_timeout(p)
    p = sub.add_parser("resume", help="continue an interrupted run to its last epoch (any number of processes)")
    p.add_argument("run_dir", type=Path)
    _add_threads(p)
    _add_dist_timeout(p)
    p = sub.add_parser("bench", help="time the project's step against hand-written PyTorch and stock SVI")
    p.add_argument("--device", choices=DEVICES, default="auto")
    p.add_argument("--out", type=Path, required=True, help="directory for bench.json")
    p.add_argument(
        "--models", nargs="+", default=None, metavar="MODEL",
        help="what to time (default: all): mlp, allcnn32, dsprites-vae (each prior's step, and on the CPU "
        "bf16, channels-last, threads and GFLOP/s)",
    )  # fmt: skip
    p.add_argument(
        "--priors", type=csv_list(str), default=None, metavar="P1,P2",
        help="dsprites-vae: the priors to time (default: factorised,correlated,correlated-low-rank,normal)",
    )  # fmt: skip
    p.add_argument("--repeats", type=positive_int, default=None, help="timed steps per variant")
    p.add_argument(
        "--threads", type=positive_int,
        help="torch threads of the timed steps (default: as for train); the CPU figures time 1 and 2 threads",
    )  # fmt: skip
    p.add_argument("--overwrite", action="store_true", help="replace an existing OUT/bench.json")
    p = sub.add_parser(
        "demo", help="information vs binary dropout on MNIST (or scikit-learn digits), and a small priors study"
    )
    p.add_argument("--epochs", type=positive_int, default=2, help="epochs of each classifier")
    p.add_argument("--steps", type=positive_int, default=None, help="optimiser steps of each priors-study VAE")
    p.add_argument("--quick", action="store_true", help="the priors study as a smoke test")
    add_data_dir_argument(p)
    p.add_argument("--device", choices=DEVICES, default="auto")
    p.add_argument("--out", type=Path, default=None, help="a new directory for the runs (default: runs/demo[-N])")
    _add_threads(p, "each run")
    add_study_parsers(sub)  # reproduce, compare-priors
    _add_info_plane_parser(sub)
    _add_analysis_parsers(sub)
    return parser


def _keep(text: str) -> list[int]:
    try:
        return parse_keep(text)
    except ValueError as err:
        raise argparse.ArgumentTypeError(str(err)) from None


def _add_info_plane_parser(sub) -> None:
    """``info-plane``: the study of ``reproduce info-plane``, with its options as flags."""
    p = sub.add_parser("info-plane", help="the information plane across beta and training (MNIST MLP, VAE): a study")
    p.add_argument("--models", type=csv_list(str), metavar="M1,M2", help="of: mlp, vae (default: both)")
    p.add_argument("--mlp-betas", type=csv_list(float), dest="mlp_betas", metavar="B1,B2",
                   help="the MLP's betas per example (default: 1e-6,1e-5,5e-5,1e-4,1e-3,1e-2)")  # fmt: skip
    p.add_argument("--vae-betas", type=csv_list(float), dest="vae_betas", metavar="B1,B2",
                   help="the VAE's betas (default: 0.25,0.5,1,2,4,8)")  # fmt: skip
    p.add_argument("--hidden", type=positive_int, help="width of the MLP's three layers (default: the preset's 1024)")
    add_study_options(p)


def _add_analysis_parsers(sub) -> None:
    """``uncertainty`` and ``prune``: measurements of finished runs, written into a new directory."""
    p = sub.add_parser(
        "uncertainty", help="calibration and out-of-distribution detection of trained classifiers, from their noise"
    )
    p.add_argument("run_dirs", type=Path, nargs="+", metavar="RUN_DIR", help="finished classifier runs of one data set")
    p.add_argument("--out", type=Path, required=True, help="a new directory for the tables, record and figures")
    p.add_argument(
        "--samples", type=csv_list(int), metavar="T1,T2", help="draws of the noise to average over (default: 1,10,50)"
    )
    p.add_argument(
        "--ood", type=csv_list(str), metavar="SET1,SET2",
        help=f"out-of-distribution sets, of: {', '.join(OOD_SETS)} (default: fashion-mnist for MNIST, noised and "
        "occluded-cifar for CIFAR-10, else noised)",
    )  # fmt: skip
    p.add_argument("--held-out", type=positive_int, dest="held_out",
                   help="test examples the temperature is fitted on (default: half); the rest are scored")  # fmt: skip
    p.add_argument("--num-examples", type=positive_int, dest="num_examples",
                   help="at most this many test and OOD examples, drawn with --seed (default: all)")  # fmt: skip
    p.add_argument("--noise-std", type=_number, dest="noise_std", default=NOISE_STD,
                   help=f"the Gaussian noise of the 'noised' set, in pixel units (default {NOISE_STD})")  # fmt: skip
    p.add_argument("--seed", type=int, default=0, help="the examples, the split, the noised set and the noise draws")
    p.add_argument("--quick", action="store_true", help="a smoke test: 1 and 5 draws, 200 examples")
    add_data_dir_argument(p)
    _add_threads(p, "the measurement")

    p = sub.add_parser("prune", help="remove the units of a trained MLP whose information stays near zero")
    p.add_argument("run_dir", type=Path, help="a finished fully-connected classifier run")
    p.add_argument("--out", type=Path, required=True, help="a new directory for the curve, networks and figures")
    p.add_argument(
        "--keep", type=_keep, nargs="+", metavar="N1,N2,...",
        help="units each layer keeps, one point of the curve each (default: the units above each information "
        "threshold)",
    )  # fmt: skip
    p.add_argument("--thresholds", type=csv_list(float), metavar="NATS1,NATS2",
                   help="without --keep: the information thresholds that make the points (nats)")  # fmt: skip
    p.add_argument("--random-seeds", type=positive_int, default=3, dest="random_seeds",
                   help="random orders averaged at each point (default 3)")  # fmt: skip
    p.add_argument("--quick", action="store_true", help="a smoke test: two thresholds, one timed pass")
    add_data_dir_argument(p)
    _add_threads(p, "the measurement")


def _train(args) -> int:
    file_options = read_config_file(args.config) if args.config else {}
    overrides = {k: getattr(args, k) for k in _OVERRIDES}
    if overrides["data_dir"] is not None:
        overrides["data_dir"] = str(overrides["data_dir"])  # saved in config.json
    config = resolve(args.preset, file_options, overrides, source=args.config)
    with _thread_policy(args):
        trainer = Trainer.start(config, args.out, dist_timeout=args.dist_timeout)
        say = _printer(trainer)
        ranks = f" on {trainer.world.world_size} processes" if trainer.world.distributed else ""
        say(f"training {config.preset} ({config.dropout} dropout) into {args.out}{ranks}")
        final = trainer.fit()
    say(json.dumps(final, indent=2, sort_keys=True))
    return 0


def _thread_policy(args):
    """torch's threads for the command's run, restored when it is done: ``--threads``, else the cores shared
    by torchrun's processes on this machine (one process without torchrun), fewer where the machine is busy
    (:func:`~infodropout.train.threads.plan_threads`); its one-line note, if any, goes to stderr (rank 0)."""
    plan = plan_threads(local_jobs(), args.threads)
    if plan.note and _launch().is_main:
        print(f"infodropout {args.command}: {plan.note}", file=sys.stderr)
    return torch_threads(plan.threads)


def _printer(trainer):
    """``print`` on rank 0 (or in one process), nothing on the other ranks."""
    return print if trainer.world.is_main else _quiet


def _quiet(*args, **kwargs) -> None:
    pass


def _resume(args) -> int:
    with _thread_policy(args):
        return _resume_run(args)


def _resume_run(args) -> int:
    trainer = Trainer.from_run_dir(args.run_dir, dist_timeout=args.dist_timeout)
    say = _printer(trainer)
    epochs = trainer.config.epochs
    metrics = Path(args.run_dir) / "metrics.json"
    if trainer.complete and metrics.is_file():  # nothing to train: report, rewrite nothing
        say(f"{args.run_dir}: the run is complete ({trainer.epoch} of {epochs} epochs); its final metrics ({metrics}):")
        say(metrics.read_text(), end="")
        return 0
    if trainer.complete:
        say(f"{args.run_dir}: the run is complete ({trainer.epoch} of {epochs} epochs); writing its metrics.json")
    else:
        ranks = f" on {trainer.world.world_size} processes" if trainer.world.distributed else ""
        say(f"resuming {args.run_dir} at epoch {trainer.epoch + 1} of {epochs}{ranks}")
    final = trainer.fit()
    say(json.dumps(final, indent=2, sort_keys=True))
    return 0


def _eval(args) -> int:
    path = Path(args.run_dir) / "eval.json"
    with _own(args.run_dir):  # before eval.json is looked at: no other command writes it meanwhile
        if path.exists() and not args.overwrite:  # before the (long) evaluation
            raise FileExistsError(f"{path} exists (an earlier evaluation): pass --overwrite to replace it")
        with _thread_policy(args):
            trainer = Trainer.from_run_dir(args.run_dir, dist_timeout=args.dist_timeout)
            result = {"epoch": trainer.epoch, **trainer.evaluate()}  # every rank: the test set is split over them
        if trainer.world.is_main:
            try:
                write_json(path, result)
            except OSError as err:
                raise NotWritable(f"{path}: cannot be written ({os_reason(err)})") from None
            print(json.dumps(result, indent=2, sort_keys=True))
    return 0


def _own(run_dir: Path):
    """The claim on a run directory (rank 0, where it holds a run), else a context that does nothing."""
    if _launch().is_main and (Path(run_dir) / "config.json").exists():
        return claim(run_dir, "run directory", create=False)
    return contextlib.nullcontext()


def _bench(args) -> int:
    run_bench(
        args.device,
        args.out,
        models=args.models,
        repeats=args.repeats,
        overwrite=args.overwrite,
        priors=args.priors,
        threads=args.threads,
    )
    return 0


def _demo(args) -> int:
    steps = args.steps or (4 if args.quick else DEMO_STEPS)
    plan = plan_threads(1, args.threads)  # one run at a time
    if plan.note:
        print(f"infodropout demo: {plan.note}", file=sys.stderr)
    result = run_demo(
        epochs=args.epochs,
        data_dir=args.data_dir,
        device=args.device,
        out=args.out,
        steps=steps,
        quick=args.quick,
        threads=plan.threads,
    )
    return finished(result["priors"])  # a priors run that failed: status 1


def _study(args) -> int:
    return STUDY_COMMANDS[args.command](args)


def _info_plane(args) -> int:
    extra = {"models": args.models, "mlp_betas": args.mlp_betas, "vae_betas": args.vae_betas, "hidden": args.hidden}
    options = study_options(args, **{k: v for k, v in extra.items() if v is not None})
    return finished(execute(EXPERIMENTS["info-plane"], args, options))


def _analysis_threads(args):
    """torch's threads for a measurement (one process): ``--threads``, else the cores free here."""
    plan = plan_threads(1, args.threads)
    if plan.note:
        print(f"infodropout {args.command}: {plan.note}", file=sys.stderr)
    return torch_threads(plan.threads)


def _uncertainty(args) -> int:
    with _analysis_threads(args):
        uncertainty(
            args.run_dirs, args.out, samples=args.samples, ood=args.ood, held_out=args.held_out,
            num_examples=args.num_examples, noise_std=args.noise_std, seed=args.seed, data_dir=args.data_dir,
            quick=args.quick,
        )  # fmt: skip
    return 0


def _prune(args) -> int:
    with _analysis_threads(args):
        prune(
            args.run_dir, args.out, keep=args.keep, thresholds=args.thresholds, random_seeds=args.random_seeds,
            data_dir=args.data_dir, quick=args.quick, timing_repeats=1 if args.quick else 5,
        )  # fmt: skip
    return 0


COMMANDS = {
    "train": _train,
    "resume": _resume,
    "eval": _eval,
    "bench": _bench,
    "demo": _demo,
    "reproduce": _study,
    "compare-priors": _study,
    "info-plane": _info_plane,
    "uncertainty": _uncertainty,
    "prune": _prune,
}


#: Errors that every rank of a run meets alike (the same options, environment and files; agreed stops):
#: reported by rank 0 alone. Any other error is reported by every rank that meets it, naming it.
_SAME_ON_EVERY_RANK = (ValueError, FileExistsError, CheckpointError, NonFiniteLoss, KeyboardInterrupt)


def main(argv=None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return _run(args)
    finally:
        distributed.shutdown()


def _run(args) -> int:
    launch = _launch()
    command = args.command

    def report(err, stream=sys.stderr, prefix=f"infodropout {command}: ") -> None:
        line = f"{prefix}{one_line(err)}"
        if stream is sys.stderr:
            record_for_torchrun(line)
        if launch.is_main:
            print(line, file=stream)
        elif isinstance(err, distributed.RankError):  # names its rank already
            print(line, file=stream)
        elif not isinstance(err, _SAME_ON_EVERY_RANK) or isinstance(err, (DataNotFoundError, DataCorruptError)):
            print(f"{prefix}rank {launch.rank}: {one_line(err)}", file=stream)

    try:
        return COMMANDS[command](args)
    except StudyIncomplete as err:
        report(err)
        return 1
    except StudyInterrupted as stop:
        report(f"{stop}; continue with the same command and --resume")
        return 130
    except Interrupted as stop:
        run = getattr(args, "out", None) or args.run_dir
        again = f"infodropout resume {run}"
        if launch.distributed:
            again = f"torchrun --nproc-per-node=K -m infodropout.train resume {run} (with any number of processes)"
        report(Interrupted(f"{stop}; continue with: {again}"), sys.stdout, "infodropout: ")
        return 130
    except KeyboardInterrupt:
        report(KeyboardInterrupt("interrupted"))
        return 130
    except (ValueError, FileExistsError, DataNotFoundError, DataCorruptError, CheckpointError, NonFiniteLoss) as err:
        report(err)
        return 2
    except RuntimeError as err:
        timeout = getattr(args, "dist_timeout", distributed.DEFAULT_TIMEOUT)
        lost = distributed.lost_contact(err, dataclasses.replace(launch, timeout=timeout))
        if lost is not None:
            report(distributed.RankError(lost))
            return 2
        if "out of GPU memory" in str(err) or isinstance(err, (GraphCaptureError, distributed.RankError)):
            report(err)
            return 2
        raise
    except OSError as err:  # a file or directory the commands above did not name themselves
        where = f"{err.filename}: " if err.filename else ""
        report(f"{where}{os_reason(err)}")
        return 2


def _launch() -> distributed.World:
    """Where torchrun put this process (for reporting errors): rank 0 of 1 where its environment is bad
    (that error is reported where a command reads it)."""
    try:
        return distributed.environment()
    except ValueError:
        return distributed.World()


if __name__ == "__main__":
    sys.exit(main())
