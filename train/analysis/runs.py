"""Finished runs, read for a measurement that writes nothing into them, and the new directory it writes."""

import contextlib
from collections.abc import Iterator
from pathlib import Path

import torch

from infodropout.train import data as datalib
from infodropout.train.errors import NotWritable
from infodropout.train.files import LOCK_NAME, interrupted_write
from infodropout.train.ownership import claim
from infodropout.train.run import Trainer

#: Examples per batch of a measurement.
BATCH = 500


def _quiet(message: str) -> None:
    pass


def standardised_like(x: torch.Tensor, y: torch.Tensor, like, batch_size: int = BATCH) -> datalib.DeviceLoader:
    """Batches of ``x`` (and ``y``) in order, without augmentation, standardised as the run's loader ``like``
    standardises its images (with the run's statistics, whatever images ``x`` holds)."""
    stats = {} if like.mean is None else {"mean": like.mean.flatten().tolist(), "std": like.std.flatten().tolist()}
    return datalib.DeviceLoader(x, y, batch_size, False, False, 0, **stats)


def load_finished(run_dir: Path, data_dir: str | None = None) -> Trainer:
    """The finished run in ``run_dir`` (every epoch trained), its network and data restored from its files,
    read without claiming the directory (nothing is written there). A directory that holds no run, or a
    run that has not finished, is a one-line ``ValueError``. ``data_dir`` is looked in first for the data."""
    run_dir = Path(run_dir)
    if not run_dir.exists():
        raise ValueError(f"{run_dir}: no such run directory")
    options = {} if data_dir is None else {"data_dir": str(data_dir)}
    trainer = Trainer.from_run_dir(run_dir, own=False, log=_quiet, show_progress=False, **options)
    if not trainer.complete:
        raise ValueError(
            f"{run_dir}: the run has not finished ({trainer.epoch} of {trainer.config.epochs} epochs): "
            f"measure a finished run (or `infodropout resume {run_dir}` first)"
        )
    return trainer


@contextlib.contextmanager
def new_output(out: Path, what: str = "output directory") -> Iterator[Path]:
    """Own ``out``, a new directory (absent, or empty but for a lock file or an interrupted write), for the
    command's life; a command that fails before writing anything there leaves no directory it made."""
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise NotWritable(f"--out {out}: is a file, not a directory")

    def check() -> None:
        if out.is_dir() and any(not (interrupted_write(p) or p.name == LOCK_NAME) for p in out.iterdir()):
            raise FileExistsError(
                f"--out {out}: exists and is not empty (nothing is overwritten): choose another --out"
            )

    check()
    owner = claim(out, what)
    try:
        check()  # again, now that no other command can write it
        yield out
    except BaseException:
        owner.abandon()
        raise
    owner.release()


def seeded(seed: int) -> None:
    """Seed torch's global generator (the noise the measurements draw)."""
    torch.manual_seed(seed)
