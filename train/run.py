"""A training run: data, network and optimiser from a config, the loop, evaluation, checkpoints.

A run directory holds ``config.json`` (resolved config, seed, package versions, the data directory
actually read), ``metrics.jsonl`` (one line per epoch), ``metrics.json`` (final) and ``checkpoint.pt``
(written atomically every epoch and when interrupted). An existing run directory is never
overwritten: the one exception is a run that never saved anything (it holds its ``config.json``
and no checkpoint or metrics, e.g. it failed or was killed in its first epoch), which ``resume``
restarts from the beginning and ``train --out`` may reuse. A run directory has one owner at a time:
:meth:`Trainer.start` and :meth:`Trainer.from_run_dir` claim it (:mod:`~infodropout.train.ownership`)
before they write or read anything, for the trainer's life. A file of the run that cannot be written
(read-only, full) stops the run with a one-line :class:`~infodropout.train.errors.NotWritable` that says
which, and what was kept.

Under torchrun (several ranks, :mod:`~infodropout.train.distributed`) the same run is trained data-parallel:
``batch_size`` is the global batch, each rank trains on its block of every global batch with the noise one
process would draw for it, metrics are reduced over the ranks, and only rank 0 writes the run directory
(``config.json`` records the world size) and prints. Every rank reads the run directory on resume (it
lives on storage they share), which works with any number of ranks.
"""

import contextlib
import json
import os
import platform
import signal
import threading
import time
import weakref
from collections.abc import Callable
from dataclasses import dataclass
from importlib.metadata import PackageNotFoundError, version
from itertools import islice
from pathlib import Path

import pyro
import torch

from infodropout.models.priors import KL_CONVENTIONS
from infodropout.models.zoo import build_network

from . import data as datalib
from . import distributed
from .checkpoint import CheckpointError, load_checkpoint, save_checkpoint
from .config import OptionError, TrainConfig, zero_steps_message
from .data.dsprites import find_dsprites_npz
from .data.paths import root_of
from .distributed import DEFAULT_TIMEOUT, World, shard
from .elbo import ELBOModule
from .engine import TrainStep, check_finite, make_optimizer, make_step, progress, training_context
from .errors import NotWritable, os_reason
from .evaluation import classifier_measures, evaluating, reconstruction_measures
from .files import check_new_run_dir, create_run_dir, never_saved, write_json, write_text
from .ownership import claim
from .report.tensorboard import EpochScalars
from .schedules import beta_at, lr_factor, set_lr

EVAL_BATCH = 500


class Interrupted(KeyboardInterrupt):
    """The run was interrupted (Ctrl-C); a checkpoint was saved first."""


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise ValueError("device='cuda': no CUDA device is available here (use --device cpu)")
    return torch.device(name)


def package_versions() -> dict:
    out = {"python": platform.python_version()}
    for dist in ("information-dropout", "torch", "pyro-ppl", "numpy"):
        try:
            out[dist] = version(dist)
        except PackageNotFoundError:
            out[dist] = None
    return out


@dataclass
class RunData:
    """The data of a run: loaders on the device, and what the network needs to know."""

    train: object
    test: object
    recalibration: object | None
    num_train: int
    input_shape: tuple[int, ...]
    num_classes: int
    reconstruct: bool
    #: the directories the files were read from (absolute, joined with ``os.pathsep``); None: no files
    #: (scikit-learn's bundled digits, rendered dSprites)
    source: str | None = None


def _kept(total: int, n: int | None, seed: int) -> torch.Tensor | None:
    """The positions of the ``n`` of ``total`` examples a run uses (:func:`~infodropout.train.data.subset_index`),
    or None for all of them."""
    return None if n is None or n >= total else datalib.subset_index(total, n, seed)


def _check_count(name: str, n: int | None, total: int, dataset: str, split: str) -> None:
    """A one-line ``ValueError`` where ``n`` (``num_train`` or ``num_test``) asks for more examples than exist."""
    if n is not None and n > total:
        raise ValueError(
            f"{name}={n}: {dataset} has {total:,} {split} examples; ask for at most that (or leave it out: all of them)"
        )


def _joined(roots) -> str | None:
    return os.pathsep.join(str(r) for r in roots) or None


def load_run_data(config: TrainConfig, device: torch.device, data_dir: str | None = None) -> RunData:
    """Loaders for ``config.dataset`` on ``device``: standardised images for classifiers, [0, 1] pixels
    (the reconstruction targets) for autoencoders; with ``augment``, random crops (padding 1/8 of the
    side) for every set and horizontal flips for the mirror-invariant ones only (CIFAR-10).

    Data are looked for in ``data_dir`` (default ``config.data_dir``) first; ``RunData.source`` says where
    they were found.
    """
    reconstruct = config.arch in ("vae", "conv-vae")
    data_dir = config.data_dir if data_dir is None else data_dir
    if config.dataset == "dsprites":
        # dSprites has no test split: the test sample is a fixed random draw of num_test images (10,000)
        sprites = datalib.load_dsprites(data_dir, device)
        _check_count("num_train", config.num_train, len(sprites), config.dataset, "training")
        _check_count("num_test", config.num_test, len(sprites), config.dataset, "test")
        source = None if sprites.packed is None else _joined([root_of(find_dsprites_npz(data_dir), data_dir)])
        subset = None
        if config.num_train is not None and config.num_train < len(sprites):
            subset = datalib.subset_index(len(sprites), config.num_train, config.seed)
        train = datalib.DSpritesLoader(sprites, config.batch_size, True, True, config.seed, indices=subset)
        num_test = config.num_test or 10_000
        test = _FirstBatches(datalib.DSpritesLoader(sprites, EVAL_BATCH, True, False, config.seed + 1), num_test)
        num_train = len(train.indices if subset is not None else sprites)
        return RunData(train, test, None, num_train, (1, 64, 64), 0, True, source)
    generate = {}
    if config.dataset == "cluttered-mnist":  # generated: make only the examples kept (the same images)
        totals = datalib.CLUTTERED_SIZES
        _check_count("num_train", config.num_train, totals[0], config.dataset, "training")
        _check_count("num_test", config.num_test, totals[1], config.dataset, "test")
        generate = dict(
            n_train=totals[0],
            n_test=totals[1],
            train_index=_kept(totals[0], config.num_train, config.seed),
            test_index=_kept(totals[1], config.num_test, config.seed + 1),
        )
    ds = datalib.get_dataset(config.dataset, data_dir, device, config.seed, **generate)
    source = _joined(datalib.data_roots(config.dataset, data_dir))
    _check_count("num_train", config.num_train, len(ds.x_train), config.dataset, "training")
    _check_count("num_test", config.num_test, len(ds.x_test), config.dataset, "test")
    x_train, y_train = datalib.subset(ds.x_train, ds.y_train, config.num_train, config.seed)
    x_test, y_test = datalib.subset(ds.x_test, ds.y_test, config.num_test, config.seed + 1)
    norm = {} if reconstruct else {"mean": ds.mean, "std": ds.std}
    augments = []
    if config.augment:
        height = ds.input_shape[1]
        augments.append(datalib.RandomCrop(height, padding=max(1, height // 8)))
        if config.dataset in datalib.MIRROR_INVARIANT:  # a mirrored digit is another (or no) digit
            augments.append(datalib.RandomHorizontalFlip())
    if config.binarize:  # dynamic binarisation: a fresh draw of every training pixel each epoch
        augments.append(datalib.Binarize())
        x_test = datalib.binarized(x_test, seed=config.seed + 1)  # one fixed draw of the test set
    transform = datalib.Compose(augments) if augments else None
    train = datalib.DeviceLoader(
        x_train, y_train, config.batch_size, True, True, config.seed, transform=transform, **norm
    )
    test = datalib.DeviceLoader(x_test, y_test, EVAL_BATCH, False, False, 0, **norm)
    recalibration = None
    if config.recalibrate_batches:
        recalibration = datalib.DeviceLoader(x_train, y_train, config.batch_size, True, True, config.seed + 7, **norm)
    return RunData(train, test, recalibration, len(x_train), tuple(ds.input_shape), ds.num_classes, reconstruct, source)


class _FirstBatches:
    """The first ``num_items`` items of a loader's first epoch, the same every time (a fixed test sample)."""

    def __init__(self, loader, num_items):
        self.loader, self.num_items = loader, num_items

    def __iter__(self):
        self.loader.set_epoch(0)
        left = self.num_items
        for x, *rest in self.loader:
            if left <= 0:
                return
            yield (x[:left], *(r[:left] for r in rest))
            left -= len(x)

    def __len__(self):
        return min(-(-self.num_items // self.loader.batch_size), len(self.loader))


def build_model(config: TrainConfig, data: RunData):
    """The network ``config`` describes, for the shapes of ``data``."""
    return build_network(
        config.arch,
        data.input_shape,
        max(data.num_classes, 1),
        dropout=config.dropout,
        prior=config.prior,
        beta=config.beta,
        num_data=data.num_train,
        hidden=config.hidden,
        width=config.width,
        activation=config.activation,
        p=config.p,
        alpha_max=config.alpha_max,
        z_dim=config.z_dim,
        latent=config.latent,
        likelihood=config.likelihood,
        input_dropout=config.input_dropout,
        kl_convention=config.kl_convention,
    )


class Trainer:
    """Trains the network a :class:`TrainConfig` describes; see the module docstring for the run files.

    :param config: the run's configuration (validated, and normalised in place).
    :param run_dir: where to write the run (None: nothing is written).
    :param log: where progress lines go.
    :param show_progress: progress bars on a terminal.
    :param data_dir: where to look for the data first when ``config.data_dir`` is None (what
        :meth:`from_run_dir` passes: the directory the run recorded, so another shell finds it).
    :param world: the ranks of a data-parallel run (default: what torchrun's environment says; one
        process without it); the process group is joined here where there are several.
    :param dist_timeout: seconds a rank waits in a collective (or for the others to join) before it
        gives up: a rank that died or hangs ends the others within it.
    """

    def __init__(
        self,
        config: TrainConfig,
        run_dir: Path | None = None,
        log=print,
        show_progress: bool = True,
        data_dir: str | None = None,
        world: World | None = None,
        dist_timeout: float = DEFAULT_TIMEOUT,
    ):
        self.config = config.validate()
        self.run_dir = None if run_dir is None else Path(run_dir)
        launch = distributed.environment() if world is None else world
        launch.check_batch(config.batch_size)
        self.world = distributed.connect(resolve_device(config.device), dist_timeout, launch)
        self.log = log if self.world.is_main else _silent
        self.show_progress = show_progress and self.world.is_main
        self.device = self.world.device
        pyro.set_rng_seed(config.seed)
        self.data = load_run_data(config, self.device, config.data_dir if config.data_dir is not None else data_dir)
        if len(self.data.train) == 0:
            raise ValueError(zero_steps_message(self.data.num_train, config.batch_size))
        if self.world.distributed:  # every rank draws the same global batches and keeps its block of each
            self.data.train.shard(self.world.rank, self.world.world_size)
        self.ib = build_model(config, self.data).to(self.device)
        graph = config.cuda_graph and self.device.type == "cuda"
        if graph and self.world.distributed:
            graph = False
            self.log(
                "the graphed step is off under DDP (its gradient all-reduce is not captured in a CUDA graph here): "
                "every step runs eagerly"
            )
        self.channels_last = config.channels_last  # on any device; the config refuses it without convolutions
        if self.channels_last:
            self.ib = self.ib.to(memory_format=torch.channels_last)
        self.optimizer = make_optimizer(
            config.optimizer,
            self.ib.parameters(),
            config.lr,
            config.momentum,
            config.nesterov,
            config.weight_decay,
            self.device,
            capturable=graph,
        )
        self.base_lrs = [config.lr for _ in self.optimizer.param_groups]
        self.step = TrainStep(
            self.ib,
            self.optimizer,
            self.data.num_train,
            self.device,
            config.precision,
            world=self.world,
            terms=self.world.data_parallel(ELBOModule(self.ib), find_unused_parameters=self._kl_may_be_off()),
        )
        self._call_step = make_step(self.step, graph, self.log)
        self.steps_per_epoch = len(self.data.train)
        self.total_steps = self.steps_per_epoch * config.epochs
        self.warmup_steps = round(config.beta_warmup_epochs * self.steps_per_epoch)
        if graph and self.warmup_steps:
            self.ib.beta = torch.tensor(config.beta, device=self.device)
        self.epoch = 0
        self.step_in_epoch = 0
        self.global_step = 0
        self.history: list[dict] = []
        self.curve: list[dict] = []  # the learning curve's points (see measure_every)
        self._curve: tuple[int, Callable] | None = None
        self._scalars: EpochScalars | None = None
        self.saved_at: tuple[int, int] | None = None  # (epoch, step in epoch) of the last checkpoint

    def _kl_may_be_off(self) -> bool:
        """Whether a step may leave parameters without a gradient: with beta = 0 (from the start or at the
        start of a warm-up) the KL terms are masked, and a learned prior gets none (DDP must be told)."""
        c = self.config
        learned_prior = any(p.requires_grad for p in self.ib.model.priors.parameters())
        return learned_prior and (c.beta == 0 or c.beta_warmup_epochs > 0)

    # -- persistence -------------------------------------------------------------------------------

    def state_dict(self) -> dict:
        """The run's state (every rank calls it at the same point: the accumulators are summed over the ranks)."""
        return {
            "config": self.config.to_dict(),
            "model": self.ib.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "step": self.step.state_dict(),
            "epoch": self.epoch,
            "step_in_epoch": self.step_in_epoch,
            "global_step": self.global_step,
            "history": self.history,
            "curve": self.curve,
            "rng": {"torch": torch.get_rng_state(), "cuda": self._cuda_rng_states()},
            "world_size": self.world.world_size,
        }

    def _cuda_rng_states(self) -> list:
        """Every CUDA device's generator state; a rank of several saves only its own device's (the same on
        every rank), first, where one process would have used device 0."""
        if not torch.cuda.is_available():
            return []
        if self.world.distributed and self.device.type == "cuda":
            return [torch.cuda.get_rng_state(self.device)]
        return torch.cuda.get_rng_state_all()

    def load_state_dict(self, state: dict, where: str = "checkpoint") -> None:
        if _normalised(state.get("config")) != self.config.to_dict():
            raise CheckpointError(f"{where}: made by another configuration than this run's config.json")
        try:
            self.ib.load_state_dict(state["model"])
            self.optimizer.load_state_dict(state["optimizer"])
            self.step.load_state_dict(state["step"])
            self.epoch, self.step_in_epoch = int(state["epoch"]), int(state["step_in_epoch"])
            self.global_step, self.history = int(state["global_step"]), list(state["history"])
            self.curve = list(state.get("curve", []))  # a checkpoint from before learning curves has none
            torch.set_rng_state(state["rng"]["torch"])
            if state["rng"]["cuda"] and torch.cuda.is_available():
                if self.world.distributed and self.device.type == "cuda":
                    torch.cuda.set_rng_state(state["rng"]["cuda"][0], self.device)
                else:
                    torch.cuda.set_rng_state_all(state["rng"]["cuda"])
        except (KeyError, RuntimeError, TypeError, ValueError) as err:
            reason = str(err).strip().splitlines()[0][:160] if str(err).strip() else type(err).__name__
            raise CheckpointError(f"{where}: does not match this run's network ({reason})") from None
        self.saved_at = (self.epoch, self.step_in_epoch)
        saved_by = state.get("world_size", 1)
        if saved_by != self.world.world_size:
            self.log(f"{where}: saved by {saved_by} process(es), continuing on {self.world.world_size}")

    def save(self) -> None:
        """Write the checkpoint, then ``metrics.jsonl`` from the history (both atomically; rank 0 only, but
        every rank calls it)."""
        if self.run_dir is None:
            return
        state = self.state_dict()
        if not self.world.is_main:
            self.saved_at = (self.epoch, self.step_in_epoch)
            return
        # read-only, full, gone: a write that fails leaves the previous file whole (atomic writes)
        path = self.run_dir / "checkpoint.pt"
        try:
            save_checkpoint(path, state)
        except OSError as err:
            raise NotWritable(self._write_failed(path, err)) from None
        self.saved_at = (self.epoch, self.step_in_epoch)
        for name, records in (("metrics.jsonl", self.history), ("curve.jsonl", self.curve)):
            if name == "curve.jsonl" and not records:
                continue
            path = self.run_dir / name  # rewritten whole from the history (the curve) at every save
            try:
                write_text(path, "".join(json.dumps(record, sort_keys=True) + "\n" for record in records))
            except OSError as err:
                raise NotWritable(self._write_failed(path, err)) from None

    def _write_failed(self, path: Path, err: OSError) -> str:
        """One line: what could not be written, what is kept, how to go on."""
        kept = self.what_is_kept()
        if self.saved_at is not None:
            kept += (
                f" is intact; make {self.run_dir} writable (or free space), then `infodropout resume {self.run_dir}`"
            )
        return f"{path}: cannot be written ({os_reason(err)}); the run stops, {kept}"

    def what_is_kept(self) -> str:
        """What survives a run that stops now: the last checkpoint, or a true word that there is none."""
        if self.run_dir is None:
            return "nothing is kept (no run directory)"
        if self.saved_at is None:
            return (
                f"no checkpoint was saved yet: `infodropout resume {self.run_dir}` restarts the run from the "
                "beginning (or train into it again with --out)"
            )
        epoch, step = self.saved_at
        where = f"epoch {epoch + 1}, step {step}" if step else f"the end of epoch {epoch}"
        return f"keeping the last good checkpoint ({where})"

    @classmethod
    def start(cls, config: TrainConfig, out: Path, **kwargs) -> "Trainer":
        """A new run in the new directory ``out`` (with its ``config.json``); ``out`` may also hold a
        run that never saved anything, whose ``config.json`` is then replaced.

        Rank 0 claims ``out`` first (created if absent; refused if another process holds it, or if it cannot
        be created), then loads the data and builds the network; a failure before ``config.json`` is
        written leaves no directory it made."""
        config.validate()
        launch = kwargs.get("world") or distributed.environment()
        launch.check_batch(config.batch_size)
        if not launch.is_main:  # rank 0 owns the directory
            trainer = cls(config, None, **kwargs)
            trainer.run_dir = Path(out)
            return trainer
        check_new_run_dir(out)  # fail fast, and leave a directory that is not ours as it is
        owner = claim(out, "run directory")  # before anything is written or read; held for the trainer's life
        try:
            check_new_run_dir(out)  # again, now that no other process can write it
            reused = never_saved(out)
            trainer = cls(config, None, **kwargs)  # data and network first: a failure leaves no directory
            run_dir = trainer.run_dir = create_run_dir(out)
            if reused:
                trainer.log(f"reusing {run_dir}: it held a run that never saved a checkpoint")
            config_path = run_dir / "config.json"
            record = {
                "config": trainer.config.to_dict(),
                "seed": trainer.config.seed,
                "versions": package_versions(),
                "device": str(trainer.device),
                "world_size": trainer.world.world_size,  # processes it started on (resume may use others)
                "threads": torch.get_num_threads(),  # torch threads per process it started with (likewise)
                "data_dir": trainer.data.source,  # where the data were actually read (None: no files)
            }
            try:
                write_json(config_path, record)
            except OSError as err:
                raise NotWritable(f"{config_path}: cannot be written ({os_reason(err)})") from None
        except BaseException:
            owner.abandon()
            raise
        trainer.owns(owner)
        return trainer

    def owns(self, owner) -> None:
        """Hold ``owner`` (the claim on the run directory, :func:`~infodropout.train.ownership.claim`) until
        :meth:`release` or until this trainer is collected."""
        self._owner = owner
        weakref.finalize(self, owner.release)

    def release(self) -> None:
        """Give back the run directory (the end of a run in a process that goes on, e.g. a study's worker)."""
        owner = getattr(self, "_owner", None)
        if owner is not None:
            owner.release()

    @classmethod
    def from_run_dir(cls, run_dir: Path, own: bool = True, **kwargs) -> "Trainer":
        """The run in ``run_dir``, restored from its ``config.json`` and ``checkpoint.pt``; a run that never
        saved a checkpoint (:func:`never_saved`) restarts from the beginning. The data are looked for
        first where the run recorded having read them. ``own=False`` reads the run without claiming its
        directory (for a measurement that writes nothing there: the trainer must not train or save)."""
        run_dir = Path(run_dir)
        config_path = run_dir / "config.json"
        if run_dir.exists() and not run_dir.is_dir():
            raise ValueError(f"{run_dir}: not a run directory (it is a file)")
        if not config_path.exists():
            raise ValueError(f"{run_dir}: not a run directory (no config.json)")
        launch = kwargs.get("world") or distributed.environment()
        owner = claim(run_dir, "run directory", create=False) if launch.is_main and own else None
        try:
            trainer = cls._restore(run_dir, config_path, **kwargs)
        except BaseException:
            if owner is not None:
                owner.release()
            raise
        if owner is not None:
            trainer.owns(owner)
        return trainer

    @classmethod
    def _restore(cls, run_dir: Path, config_path: Path, **kwargs) -> "Trainer":
        try:
            saved = json.loads(config_path.read_text())
            config = TrainConfig.from_dict(saved["config"], where=str(config_path))
            config.validate()
        except FileNotFoundError:
            raise ValueError(f"{run_dir}: not a run directory (no config.json)") from None
        except OSError as err:
            raise ValueError(f"{config_path}: cannot be read ({os_reason(err)})") from None
        except (json.JSONDecodeError, UnicodeDecodeError, KeyError, TypeError) as err:
            raise ValueError(f"{config_path}: not a readable run config ({type(err).__name__}: {err})") from None
        except OptionError as err:  # a value this version refuses
            raise OptionError(err.option, f"{config_path}: {err}") from None
        recorded = saved.get("data_dir") if isinstance(saved, dict) else None
        if isinstance(recorded, str):  # the recorded directories that still exist here
            recorded = os.pathsep.join(d for d in recorded.split(os.pathsep) if Path(d).is_dir()) or None
        kwargs.setdefault("data_dir", recorded if isinstance(recorded, str) else None)
        trainer = cls(config, run_dir, **kwargs)
        checkpoint = run_dir / "checkpoint.pt"
        if never_saved(run_dir):
            trainer.log(f"{run_dir}: no checkpoint was saved: starting the run from the beginning")
            return trainer
        trainer.load_state_dict(load_checkpoint(checkpoint, map_location=trainer.device), where=str(checkpoint))
        return trainer

    @property
    def complete(self) -> bool:
        """Whether every epoch of the run has been trained."""
        return self.epoch >= self.config.epochs

    # -- training ----------------------------------------------------------------------------------

    def _schedule(self) -> None:
        c = self.config
        factor = lr_factor(c.schedule, self.global_step, self.total_steps, self.steps_per_epoch, c.milestones, c.gamma)
        set_lr(self.optimizer, self.base_lrs, factor)
        if self.warmup_steps:
            beta = beta_at(self.global_step, c.beta, self.warmup_steps)
            if isinstance(self.ib.beta, torch.Tensor):
                self.ib.beta.fill_(beta)
            else:
                self.ib.beta = beta

    def fit(self, stop_after_steps: int | None = None) -> dict:
        """Train to ``config.epochs``, evaluating and checkpointing every epoch; return the final metrics.

        Ctrl-C (or ``stop_after_steps`` steps of this call) stops after the current step, saves a
        checkpoint and raises :class:`Interrupted`; ``resume`` continues exactly where it stopped. With
        several ranks the ranks agree to stop every ``log_every`` steps and at the end of every epoch (an
        all-reduce of their stop flags), so they all stop after the same step.
        """
        try:
            return self._fit(stop_after_steps)
        except RuntimeError as err:
            message = distributed.lost_contact(err, self.world)
            if message is None:
                raise
            raise distributed.RankError(f"{message}; the run stops, {self.what_is_kept()}") from None

    def _fit(self, stop_after_steps: int | None) -> dict:
        c = self.config
        stop = _StopFlag()
        steps_this_call = 0
        with stop.on_sigint(), training_context(self.ib), self._training_noise():
            while self.epoch < c.epochs:
                self.data.train.set_epoch(self.epoch)
                if self.step_in_epoch == 0:
                    self.step.reset()
                start = time.perf_counter()
                batches = progress(self.data.train, self.steps_per_epoch, f"epoch {self.epoch + 1}", self.show_progress)
                for i, (x, y, *_) in enumerate(batches):
                    if i < self.step_in_epoch:
                        continue  # resuming inside an epoch: the loader replays its order and augmentation
                    self._schedule()
                    if self.channels_last and x.dim() == 4:
                        x = x.contiguous(memory_format=torch.channels_last)
                    try:
                        self._call_step(x, None if self.data.reconstruct else y)
                    except torch.OutOfMemoryError:
                        smaller = max(1, c.batch_size // 2)
                        raise RuntimeError(
                            f"out of GPU memory at batch size {c.batch_size}: lower --batch-size (try {smaller})"
                        ) from None
                    self.global_step += 1
                    self.step_in_epoch += 1
                    steps_this_call += 1
                    if self._curve is not None and self.global_step % self._curve[0] == 0:
                        self._curve_point()
                    if self.global_step % c.log_every == 0:
                        check_finite(self.step, self.epoch, self.steps_per_epoch, self.what_is_kept())
                    if self._stop_now(stop, stop_after_steps is not None and steps_this_call >= stop_after_steps):
                        check_finite(self.step, self.epoch, self.steps_per_epoch, self.what_is_kept())
                        self.save()
                        raise Interrupted(
                            f"interrupted at epoch {self.epoch + 1}, step {self.step_in_epoch}; checkpoint saved"
                        )
                check_finite(self.step, self.epoch, self.steps_per_epoch, self.what_is_kept())
                train = self.step.read()
                seconds = time.perf_counter() - start
                start_eval = time.perf_counter()
                evaluation = self.evaluate()
                record = {
                    "epoch": self.epoch + 1,
                    "step": self.global_step,
                    "lr": float(self.optimizer.param_groups[0]["lr"]),  # what the last step used
                    "beta": float(self.ib.beta),
                    "train_loss": train["loss"],
                    "train_nll": train["nll"],
                    "train_kl": train["kl"],
                    "train_kl_total": sum(train["kl"].values()),
                    **evaluation,
                    "seconds": seconds,
                    "eval_seconds": time.perf_counter() - start_eval,
                }
                self.history.append(record)
                self.epoch += 1
                self.step_in_epoch = 0
                self.save()
                if self.run_dir is not None and self.world.is_main:  # TensorBoard events beside metrics.jsonl
                    self._scalars = self._scalars or EpochScalars(self.run_dir)
                    self._scalars.write(record)
                self.log(format_record(record))
                if self.world.distributed and self.epoch < c.epochs and self.world.any(stop.requested):
                    raise Interrupted(f"interrupted at the end of epoch {self.epoch}; checkpoint saved")
        if self._scalars is not None:
            self._scalars.close()
        return self.finish()

    def measure_every(self, every: int, measure: Callable[["Trainer"], dict]) -> None:
        """Take ``measure(trainer) -> {name: number}`` every ``every`` optimiser steps: the points of the
        run's learning curve (``step``, ``epoch`` as a fraction, and the numbers). They are kept in the
        checkpoint (a resumed run keeps its curve), written to ``curve.jsonl`` and to TensorBoard as
        ``curve/<name>`` at their step, and a checkpoint is saved at each (a run of one long epoch, as the
        priors study's, resumes from its last point). The measurement runs with the training's random
        state set aside, so that training is the same with or without it (one process only)."""
        if isinstance(every, bool) or not isinstance(every, int) or every < 1:
            raise ValueError(f"every={every!r}: expected a number of steps >= 1")
        if self.world.distributed:
            raise ValueError("learning curves are measured in one process (not under torchrun)")
        self._curve = (every, measure)

    def _curve_point(self) -> None:
        check_finite(self.step, self.epoch, self.steps_per_epoch, self.what_is_kept())  # a NaN stops the run first
        devices = [self.device] if self.device.type == "cuda" else []
        start = time.perf_counter()
        with torch.random.fork_rng(devices=devices):
            values = self._curve[1](self)
        point = {"step": self.global_step, "epoch": self.epoch + self.step_in_epoch / self.steps_per_epoch}
        point.update(values, seconds=time.perf_counter() - start)
        self.curve.append(point)
        if self.run_dir is not None:
            self._scalars = self._scalars or EpochScalars(self.run_dir)
            self._scalars.write({k: v for k, v in point.items() if k != "seconds"}, self.global_step, "curve/")
            self.save()  # a checkpoint at every point: a run of one long epoch resumes from its last point

    def _stop_now(self, stop: "_StopFlag", asked: bool) -> bool:
        """Whether to stop after this step: ``asked`` (by the caller, the same on every rank), or Ctrl-C;
        with several ranks, Ctrl-C on any of them, agreed every ``log_every`` steps."""
        if asked:
            return True
        if not self.world.distributed:
            return stop.requested
        return self.global_step % self.config.log_every == 0 and self.world.any(stop.requested)

    def _training_noise(self):
        """With several ranks: noise drawn for the global batch, of which this rank holds its block."""
        if not self.world.distributed:
            return contextlib.nullcontext()
        rows = self.config.batch_size // self.world.world_size
        return shard(self.world.rank * rows, self.config.batch_size)

    def finish(self) -> dict:
        """Write and return ``metrics.json``: the last epoch's figures and the totals."""
        if not self.history:
            raise ValueError("no completed epoch to report")
        last = self.history[-1]
        final = {k: v for k, v in last.items() if k not in ("lr", "seconds", "eval_seconds")}
        final["kl_per_layer"] = last.get("test_kl", last["train_kl"])
        for convention in KL_CONVENTIONS:  # the information under each convention, where it differs
            if f"test_kl_{convention}" in last:
                final[f"kl_per_layer_{convention}"] = last[f"test_kl_{convention}"]
        final["kl_convention"] = self.config.kl_convention
        final["epochs"] = self.epoch
        final["seconds_total"] = sum(r["seconds"] for r in self.history)
        if self.run_dir is not None and self.world.is_main:
            try:
                write_json(self.run_dir / "metrics.json", final)
            except OSError as err:
                raise NotWritable(self._write_failed(self.run_dir / "metrics.json", err)) from None
        return final

    # -- evaluation --------------------------------------------------------------------------------

    def recalibration_batches(self):
        """The batches batch-norm statistics are re-estimated on before testing (the config's
        ``recalibrate_batches`` of the recalibration loader's first epoch), or None where there are none."""
        if self.data.recalibration is None or not self.config.recalibrate_batches:
            return None
        self.data.recalibration.set_epoch(0)
        return islice(iter(self.data.recalibration), self.config.recalibrate_batches)

    def as_tested(self) -> contextlib.AbstractContextManager:
        """The network as the run tests it, for every measurement of it: under
        :func:`~infodropout.train.evaluation.evaluating`, with its batch-norm statistics re-estimated first on
        :meth:`recalibration_batches` where the config says so (and put back afterwards), so that a measurement
        made after training sees the network whose test error the run reported."""
        return evaluating(self.ib, recalibrate=self.recalibration_batches())

    def evaluate(self) -> dict:
        """The test measures of the network (:func:`~infodropout.train.evaluation.classifier_measures`:
        error with the noise off and KL per layer under both conventions; or
        :func:`~infodropout.train.evaluation.reconstruction_measures`: the ELBO with the noise on and beta
        = 1, and its parts), under :func:`~infodropout.train.evaluation.evaluating` with batch-norm
        statistics re-estimated first where the config says so.

        With several ranks, every rank evaluates rank 0's network (its batch-norm statistics are
        broadcast first) on its block of each test batch, with that batch's noise (as one process draws
        it), and the totals are summed over the ranks: every rank returns the same metrics.
        Recalibration runs the same batches on every rank."""
        self.world.broadcast_buffers(self.ib)
        hooks = dict(kl_convention=self.config.kl_convention, rows=self._test_rows, reduce=self.world.sum)
        with self.as_tested() as ib:
            if self.data.reconstruct:
                return reconstruction_measures(ib, self.data.test, **hooks)
            return classifier_measures(ib, self.data.test, eval_samples=self.config.eval_samples, **hooks)

    def _test_rows(self, batch: tuple) -> tuple[tuple, contextlib.AbstractContextManager]:
        """This rank's rows of a test batch, and the noise context to evaluate them in (the batch and no
        context for one process; with several ranks, its block of rows and the batch's sharded noise)."""
        if not self.world.distributed:
            return batch, contextlib.nullcontext()
        total = len(batch[0])
        start, stop = self.world.rows(total)
        rows = tuple({k: v[start:stop] for k, v in t.items()} if isinstance(t, dict) else t[start:stop] for t in batch)
        return rows, shard(start, total)


def _silent(message: str) -> None:
    """The log of the ranks other than 0: nothing."""


def _normalised(config) -> dict | None:
    """A saved config dict as :meth:`TrainConfig.validate` normalises it (tuples saved by an older
    version compare equal to the lists of ``config.json``); None if it is not a valid config."""
    try:
        return TrainConfig.from_dict(dict(config)).validate().to_dict()
    except (TypeError, ValueError):
        return None


class _StopFlag:
    """Ctrl-C asks the loop to stop after the current step; a second Ctrl-C stops at once."""

    def __init__(self):
        self.requested = False

    @contextlib.contextmanager
    def on_sigint(self):
        if threading.current_thread() is not threading.main_thread():
            yield self
            return

        def handler(signum, frame):
            if self.requested:
                raise KeyboardInterrupt
            self.requested = True

        previous = signal.signal(signal.SIGINT, handler)
        try:
            yield self
        finally:
            signal.signal(signal.SIGINT, previous)


def format_record(record: dict) -> str:
    """One line per epoch for the terminal."""
    parts = [f"epoch {record['epoch']:>3}", f"loss {record['train_loss']:.4f}", f"nll {record['train_nll']:.4f}"]
    parts.append(f"kl {record['train_kl_total']:.2f}")
    if "test_error" in record:
        parts.append(f"test error {record['test_error']:.2f}%")
    if "test_elbo" in record:
        parts.append(f"test elbo {record['test_elbo']:.2f}")
    parts.append(f"{record['seconds']:.1f}s")
    return "  ".join(parts)
