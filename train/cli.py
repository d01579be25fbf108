"""The ``infodropout`` command line: train, eval, resume, bench, demo, reproduce, compare-priors."""

import argparse
import json
import sys
from pathlib import Path

from infodropout.guides.encoders import MLP_KINDS
from infodropout.guides.layers import ACTIVATIONS
from infodropout.models.likelihoods import LIKELIHOODS
from infodropout.models.priors import KL_CONVENTIONS, PRIORS

from .checkpoint import CheckpointError
from .config import DATASETS, DEVICES, OPTIMIZERS, PRECISIONS, PRESETS, read_config_file, resolve
from .data import DataCorruptError, DataNotFoundError, add_data_dir_argument
from .engine import GraphCaptureError, NonFiniteLoss
from .schedules import SCHEDULES


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected an integer, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected an integer >= 1, got {value}")
    return value


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
    p.add_argument("--epochs", type=_positive_int)
    width = p.add_mutually_exclusive_group()
    width.add_argument("--width", type=_number, help="channel multiplier of the All-CNN networks")
    width.add_argument("--hidden", type=_positive_int, nargs="+", help="hidden layer widths (MLP) or size (VAE)")
    p.add_argument("--activation", choices=ACTIVATIONS)
    p.add_argument("--alpha-max", type=_number, dest="alpha_max")
    p.add_argument("--latent", choices=("gaussian", "information"))
    p.add_argument("--likelihood", choices=LIKELIHOODS)
    p.add_argument("--z-dim", type=_positive_int, dest="z_dim")
    p.add_argument("--batch-size", type=_positive_int, dest="batch_size")
    p.add_argument("--optimizer", choices=OPTIMIZERS)
    p.add_argument("--lr", type=_number)
    p.add_argument("--weight-decay", type=_number, dest="weight_decay")
    p.add_argument("--schedule", choices=SCHEDULES)
    p.add_argument("--milestones", type=_positive_int, nargs="*")
    p.add_argument("--augment", action=argparse.BooleanOptionalAction, default=None)
    p.add_argument(
        "--binarize", action=argparse.BooleanOptionalAction, default=None, help="autoencoders: binarised pixels"
    )
    p.add_argument("--num-train", type=_positive_int, dest="num_train", help="use N training examples")
    p.add_argument("--num-test", type=_positive_int, dest="num_test")
    p.add_argument("--seed", type=int)
    p.add_argument("--device", choices=DEVICES)
    p.add_argument("--precision", choices=PRECISIONS)
    p.add_argument("--cuda-graph", action=argparse.BooleanOptionalAction, default=None, dest="cuda_graph")
    p.add_argument("--channels-last", action=argparse.BooleanOptionalAction, default=None, dest="channels_last")
    add_data_dir_argument(p)


_OVERRIDES = (
    "dataset dropout prior kl_convention beta beta_warmup_epochs epochs width hidden activation alpha_max latent "
    "likelihood z_dim batch_size optimizer lr weight_decay schedule milestones augment binarize num_train num_test "
    "seed "
    "device precision cuda_graph channels_last data_dir plugins"
).split()


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="infodropout", description="Information Dropout in Pyro: train, evaluate and benchmark."
    )
    sub = parser.add_subparsers(dest="command", required=True)
    _add_train_options(sub.add_parser("train", help="train a preset into a new run directory"))
    p = sub.add_parser("eval", help="evaluate the checkpoint of a run on its test set")
    p.add_argument("run_dir", type=Path)
    p.add_argument("--overwrite", action="store_true", help="replace an existing RUN_DIR/eval.json")
    p = sub.add_parser("resume", help="continue an interrupted run to its last epoch")
    p.add_argument("run_dir", type=Path)
    p = sub.add_parser("bench", help="time the project's step against hand-written PyTorch and stock SVI")
    p.add_argument("--device", choices=DEVICES, default="auto")
    p.add_argument("--out", type=Path, required=True, help="directory for bench.json")
    p.add_argument("--models", nargs="+", default=None, help="subset of: mlp, allcnn32")
    p.add_argument("--repeats", type=_positive_int, default=None, help="timed steps per variant")
    p.add_argument("--overwrite", action="store_true", help="replace an existing OUT/bench.json")
    p = sub.add_parser(
        "demo", help="information vs binary dropout on MNIST (or scikit-learn digits), and a small priors study"
    )
    p.add_argument("--epochs", type=_positive_int, default=2, help="epochs of each classifier")
    p.add_argument("--steps", type=_positive_int, default=None, help="optimiser steps of each priors-study VAE")
    p.add_argument("--quick", action="store_true", help="the priors study as a smoke test")
    add_data_dir_argument(p)
    p.add_argument("--device", choices=DEVICES, default="auto")
    p.add_argument("--out", type=Path, default=None, help="a new directory for the runs (default: runs/demo[-N])")
    from .studies.cli import add_parsers

    add_parsers(sub)  # reproduce, compare-priors
    return parser


def _train(args) -> int:
    from .run import Trainer

    file_options = read_config_file(args.config) if args.config else {}
    overrides = {k: getattr(args, k) for k in _OVERRIDES}
    if overrides["data_dir"] is not None:
        overrides["data_dir"] = str(overrides["data_dir"])  # saved in config.json
    config = resolve(args.preset, file_options, overrides)
    trainer = Trainer.start(config, args.out)
    print(f"training {config.preset} ({config.dropout} dropout) into {args.out}")
    final = trainer.fit()
    print(json.dumps(final, indent=2, sort_keys=True))
    return 0


def _resume(args) -> int:
    from .run import Trainer

    trainer = Trainer.from_run_dir(args.run_dir)
    epochs = trainer.config.epochs
    metrics = Path(args.run_dir) / "metrics.json"
    if trainer.complete and metrics.is_file():  # nothing to train: report, rewrite nothing
        print(
            f"{args.run_dir}: the run is complete ({trainer.epoch} of {epochs} epochs); its final metrics ({metrics}):"
        )
        print(metrics.read_text(), end="")
        return 0
    if trainer.complete:
        print(f"{args.run_dir}: the run is complete ({trainer.epoch} of {epochs} epochs); writing its metrics.json")
    else:
        print(f"resuming {args.run_dir} at epoch {trainer.epoch + 1} of {epochs}")
    final = trainer.fit()
    print(json.dumps(final, indent=2, sort_keys=True))
    return 0


def _eval(args) -> int:
    from .checkpoint import write_json
    from .run import Trainer

    path = Path(args.run_dir) / "eval.json"
    if path.exists() and not args.overwrite:  # before the (long) evaluation
        raise FileExistsError(f"{path} exists (an earlier evaluation): pass --overwrite to replace it")
    trainer = Trainer.from_run_dir(args.run_dir)
    result = {"epoch": trainer.epoch, **trainer.evaluate()}
    write_json(path, result)
    print(json.dumps(result, indent=2, sort_keys=True))
    return 0


def _bench(args) -> int:
    from .bench import run_bench

    run_bench(args.device, args.out, models=args.models, repeats=args.repeats, overwrite=args.overwrite)
    return 0


def _demo(args) -> int:
    from .demo import DEMO_STEPS, run_demo

    steps = args.steps or (4 if args.quick else DEMO_STEPS)
    run_demo(
        epochs=args.epochs, data_dir=args.data_dir, device=args.device, out=args.out, steps=steps, quick=args.quick
    )
    return 0


def _study(args) -> int:
    from .studies.cli import COMMANDS as STUDY_COMMANDS

    return STUDY_COMMANDS[args.command](args)


COMMANDS = {
    "train": _train,
    "resume": _resume,
    "eval": _eval,
    "bench": _bench,
    "demo": _demo,
    "reproduce": _study,
    "compare-priors": _study,
}


def main(argv=None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    from .run import Interrupted
    from .studies.runner import StudyInterrupted

    try:
        return COMMANDS[args.command](args)
    except StudyInterrupted as stop:
        print(f"infodropout {args.command}: {stop}; continue with the same command and --resume", file=sys.stderr)
        return 130
    except Interrupted as stop:
        print(f"infodropout: {stop}; continue with: infodropout resume {getattr(args, 'out', None) or args.run_dir}")
        return 130
    except KeyboardInterrupt:
        print(f"infodropout {args.command}: interrupted", file=sys.stderr)
        return 130
    except (ValueError, FileExistsError, DataNotFoundError, DataCorruptError, CheckpointError, NonFiniteLoss) as err:
        print(f"infodropout {args.command}: {err}", file=sys.stderr)
        return 2
    except RuntimeError as err:
        if "out of GPU memory" in str(err) or isinstance(err, GraphCaptureError):
            print(f"infodropout {args.command}: {err}", file=sys.stderr)
            return 2
        raise


if __name__ == "__main__":
    sys.exit(main())
