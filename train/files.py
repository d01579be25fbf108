"""Every file the project writes, written atomically; the files of a run directory, by name.

:func:`atomic_write` is the one way a file is written: the content goes to a temporary file in the same
directory (``.NAME.XXXXXXXX.tmp``), is flushed to disk, and is renamed over ``NAME``. A reader sees the
old file or the whole new one, never a part; a process killed while writing leaves only the temporary
file, which :func:`interrupted_write` recognises and nothing trusts. JSON, text, NumPy archives, netCDF
records, PNG figures and checkpoints all go through it.

A run directory (see :mod:`infodropout.train.run`) is never overwritten, with one exception: a run that
never saved anything (its ``config.json`` and none of :data:`RESULT_FILES`), which may be taken again.
"""

import io
import json
import os
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import BinaryIO

import numpy as np

#: The temporary files of :func:`atomic_write` end so: ``.NAME.XXXXXXXX.tmp``.
TMP_SUFFIX = ".tmp"
#: The lock file a command holds a run or study directory by (see :mod:`infodropout.train.ownership`).
LOCK_NAME = ".infodropout.lock"
#: What a study writes beside a run (its report of a failed try, its log): no part of the run itself.
BOOKKEEPING = ("failure.txt", "train.log")
#: The files of a run that has saved something (a run directory holding none of them can be reused).
RESULT_FILES = ("checkpoint.pt", "metrics.jsonl", "metrics.json", "eval.json")


def atomic_write(path: Path, write: Callable[[BinaryIO], object]) -> Path:
    """Write ``path`` with ``write(f)`` on a binary file ``f``, through a temporary file in the same
    directory and a rename; the directory is created if needed. Returns ``path``."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=TMP_SUFFIX)
    try:
        with os.fdopen(fd, "w+b") as f:  # readable too: HDF5 (netCDF) reads back what it writes
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def interrupted_write(path: Path) -> bool:
    """Whether ``path`` is the temporary file of an :func:`atomic_write` that never reached its rename
    (``.NAME.XXXXXXXX.tmp``: the process was killed while writing): it holds nothing to trust."""
    name = Path(path).name
    return name.startswith(".") and name.endswith(TMP_SUFFIX) and name.count(".") >= 3


def write_bytes(path: Path, data: bytes) -> Path:
    return atomic_write(path, lambda f: f.write(data))


def write_text(path: Path, text: str) -> Path:
    return write_bytes(path, text.encode())


def write_json(path: Path, value) -> Path:
    """``value`` as indented JSON with sorted keys."""
    return write_text(path, json.dumps(value, indent=2, sort_keys=True) + "\n")


def write_npz(path: Path, **arrays) -> Path:
    """``np.savez_compressed`` of ``arrays`` (no pickles are needed to read it back)."""
    return atomic_write(path, lambda f: np.savez_compressed(f, **arrays))


def read_npz(path: Path) -> dict[str, np.ndarray]:
    """The arrays of a :func:`write_npz` file, loaded (the file is closed)."""
    with np.load(path, allow_pickle=False) as f:
        return {k: f[k] for k in f.files}


def buffer_of(write: Callable[[BinaryIO], object]) -> bytes:
    """What ``write(f)`` writes on a binary file, as bytes (e.g. ``torch.save`` into memory)."""
    buffer = io.BytesIO()
    write(buffer)
    return buffer.getvalue()


# -- the run directory ------------------------------------------------------------------------------------


def never_saved(path: Path) -> bool:
    """Whether ``path`` holds a run that never saved anything: a ``config.json`` and none of
    :data:`RESULT_FILES` (the run failed or was killed before its first checkpoint)."""
    path = Path(path)
    return (path / "config.json").is_file() and not any((path / name).exists() for name in RESULT_FILES)


def check_new_run_dir(path: Path) -> Path:
    """Refuse a run directory that exists and is not empty (nothing is ever overwritten), unless it holds
    a run that never saved anything (:func:`never_saved`): only its ``config.json`` is replaced. The
    temporary file of a write that was killed before its rename (:func:`interrupted_write`, e.g. a run
    killed while writing its first ``config.json``), the lock file and a study's :data:`BOOKKEEPING` (a
    run that failed before writing anything is tried again) count as nothing."""
    path = Path(path)
    if path.exists() and not path.is_dir():
        raise FileExistsError(f"run directory {path} is a file: choose another --out")
    ignored = (LOCK_NAME, *BOOKKEEPING)
    holds = path.is_dir() and any(not (interrupted_write(e) or e.name in ignored) for e in path.iterdir())
    if holds and not never_saved(path):
        raise FileExistsError(
            f"run directory {path} exists and is not empty: choose another --out, or `infodropout resume {path}`"
        )
    return path


def create_run_dir(path: Path) -> Path:
    """Create ``path`` for a new run; refuse one that exists and is not empty."""
    path = check_new_run_dir(path)
    path.mkdir(parents=True, exist_ok=True)
    return path
