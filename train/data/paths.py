"""Where data sets are looked for, where caches go, and the two errors bad data raises.

A data set is looked for, in order, in

1. the directory given explicitly (the command line's ``--data-dir``; several may be joined with
   ``os.pathsep``), each of which must exist (:func:`check_data_dir`),
2. ``$INFODROPOUT_DATA`` (several directories may be joined with ``os.pathsep``),
3. the per-user cache :func:`cache_dir` (where optional downloads and decoded arrays live).

Nothing in a data directory is ever modified or deleted; everything the project writes goes under
:func:`cache_dir`, atomically (:func:`~infodropout.train.files.atomic_write`).
"""

from __future__ import annotations

import argparse
import hashlib
import os
from collections.abc import Iterable, Sequence
from pathlib import Path

import numpy as np

from infodropout.train import files

DATA_ENV = "INFODROPOUT_DATA"
CACHE_ENV = "INFODROPOUT_CACHE"
DATA_DIR_FLAG = "--data-dir"


class DataNotFoundError(FileNotFoundError):
    """A data file is missing. The message is one line: what, where it was looked for, how to fix it.

    :param what: the data set, e.g. ``"MNIST"``.
    :param files: the file names (or relative paths) looked for.
    :param dirs: the directories searched, in order.
    :param hint: how else to get the data (appended to the standard flag/variable advice).
    """

    def __init__(self, what: str, files: Sequence[str], dirs: Sequence[Path], hint: str = ""):
        self.what = what
        self.files = tuple(files)
        self.dirs = tuple(Path(d) for d in dirs)
        searched = ", ".join(str(d) for d in self.dirs) or "(no directories)"
        message = (
            f"{what} not found: looked for {', '.join(self.files)} in {searched}; "
            f"put the files in a directory and pass {DATA_DIR_FLAG} DIR or set {DATA_ENV}=DIR"
        )
        if hint:
            message += f" ({hint})"
        super().__init__(message)


class DataDirNotFoundError(DataNotFoundError):
    """A data directory given explicitly (``--data-dir``) does not exist: one line naming it.

    :param what: the data set looked for, e.g. ``"MNIST"``.
    :param path: the directory that is not there.
    """

    def __init__(self, what: str, path: Path):
        self.what, self.files, self.dirs = what, (), (Path(path),)
        FileNotFoundError.__init__(
            self, f"{what} not found: the data directory {path} given by {DATA_DIR_FLAG} does not exist"
        )


class DataCorruptError(ValueError):
    """A data file exists but cannot be read as what it claims to be; the one-line message names it.

    :param path: the file (for an archive member, ``archive::member``).
    :param problem: what is wrong, e.g. ``"wrong magic number 0x00000000 (expected 0x00000803)"``.
    """

    def __init__(self, path: Path | str, problem: str):
        self.path = str(path)
        self.problem = " ".join(str(problem).split())  # always one line
        super().__init__(f"{self.path}: {self.problem}")


def cache_dir() -> Path:
    """The per-user cache: ``$INFODROPOUT_CACHE``, else ``$XDG_CACHE_HOME/infodropout``, else
    ``~/.cache/infodropout``. It is not created here."""
    env = os.environ.get(CACHE_ENV)
    if env:
        return Path(env).expanduser()
    xdg = os.environ.get("XDG_CACHE_HOME")
    base = Path(xdg).expanduser() if xdg else Path.home() / ".cache"
    return base / "infodropout"


def explicit_dirs(data_dir: str | os.PathLike[str] | None) -> list[Path]:
    """The directories ``data_dir`` names (one, or several joined with ``os.pathsep``)."""
    if data_dir is None:
        return []
    return [Path(p).expanduser() for p in os.fspath(data_dir).split(os.pathsep) if p]


def check_data_dir(data_dir: str | os.PathLike[str] | None, what: str) -> None:
    """Raise :class:`DataDirNotFoundError` when a directory given explicitly does not exist (it would
    otherwise be skipped in silence, and the data taken from ``$INFODROPOUT_DATA`` instead)."""
    for path in explicit_dirs(data_dir):
        if not path.is_dir():
            raise DataDirNotFoundError(what, path)


def search_dirs(data_dir: str | os.PathLike[str] | None = None) -> list[Path]:
    """The directories a data set is looked for in, in order and without repeats: ``data_dir``
    (one, or several joined with ``os.pathsep``), each entry of ``$INFODROPOUT_DATA``, then
    :func:`cache_dir`. Directories need not exist (:func:`check_data_dir` checks ``data_dir``)."""
    candidates: list[Path] = explicit_dirs(data_dir)
    env = os.environ.get(DATA_ENV, "")
    candidates.extend(Path(p).expanduser() for p in env.split(os.pathsep) if p)
    candidates.append(cache_dir())
    unique: list[Path] = []
    for path in candidates:
        if path not in unique:
            unique.append(path)
    return unique


def add_data_dir_argument(parser: argparse.ArgumentParser) -> None:
    """Add ``--data-dir DIR`` (dest ``data_dir``, default None) to a command-line parser."""
    parser.add_argument(
        DATA_DIR_FLAG,
        dest="data_dir",
        type=Path,
        default=None,
        metavar="DIR",
        help=f"directory holding the data sets (searched before ${DATA_ENV} and the user cache)",
    )


def root_of(path: Path, data_dir: str | os.PathLike[str] | None = None) -> Path:
    """The search directory (see :func:`search_dirs`) that ``path`` was found under, absolute; the
    directory of ``path`` itself when it lies under none of them (a system directory)."""
    path = Path(path).absolute()
    for root in search_dirs(data_dir):
        root = root.absolute()
        if path.is_relative_to(root):
            return root
    return path.parent


def candidate_dirs(roots: Iterable[Path], layouts: Sequence[str]) -> list[Path]:
    """Every ``root / layout`` in order (``"."`` is the root itself), without repeats."""
    out: list[Path] = []
    for root in roots:
        for layout in layouts:
            path = root if layout == "." else root / layout
            if path not in out:
                out.append(path)
    return out


def file_digest(path: Path, length: int = 16) -> str:
    """The first ``length`` hex digits of the SHA-256 of a file's bytes (read in 1 MiB blocks)."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()[:length]


def save_npy_atomic(path: Path, array: np.ndarray) -> None:
    """Write ``array`` to ``path`` as .npy, atomically: a reader sees either no file or the whole file."""
    files.atomic_write(path, lambda f: np.save(f, array, allow_pickle=False))


def load_npy(path: Path, mmap: bool = False) -> np.ndarray:
    """Read a cached .npy (no pickles) into memory, or map it read-only when ``mmap``; a damaged
    cache file raises DataCorruptError."""
    try:
        return np.load(path, mmap_mode="r" if mmap else None, allow_pickle=False)
    except (OSError, ValueError, EOFError) as err:
        raise DataCorruptError(path, f"unreadable cache file ({err}); delete it to rebuild") from err


def save_arrays(directory: Path, arrays: dict[str, np.ndarray]) -> None:
    """Cache several arrays as ``directory/<name>.npy``, each written atomically."""
    for name, array in arrays.items():
        save_npy_atomic(directory / f"{name}.npy", array)


def load_arrays(directory: Path, names: Sequence[str], mmap: bool = False) -> dict[str, np.ndarray] | None:
    """The arrays cached by :func:`save_arrays` (see :func:`load_npy`), or None when any is missing."""
    paths = [directory / f"{name}.npy" for name in names]
    if not all(p.is_file() for p in paths):
        return None
    return {name: load_npy(p, mmap) for name, p in zip(names, paths, strict=True)}
