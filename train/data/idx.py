"""MNIST and Fashion-MNIST from idx files (raw or gzipped), validated before use.

An idx file is a 4-byte magic number ``0x00 0x00 <dtype code> <ndim>``, then ``ndim`` big-endian
uint32 sizes, then the values in C order. MNIST images are ``idx3`` uint8 (magic 2051 = 0x00000803),
labels ``idx1`` uint8 (magic 2049 = 0x00000801). Every size is checked against the byte count, so a
damaged file raises :class:`DataCorruptError` naming it rather than failing inside NumPy.

Layouts searched under each directory of :func:`search_dirs`: MNIST in ``mnist/``, ``MNIST/raw/``
(torchvision) and the directory itself; Fashion-MNIST in ``fashion-mnist/`` and ``FashionMNIST/raw/``,
then the Debian package's ``/usr/share/datasets/fashion-mnist/``. (The two sets share file names, so
Fashion-MNIST is never taken from a bare directory, where it would be mistaken for MNIST.)
"""

from __future__ import annotations

import gzip
import os
import zlib
from pathlib import Path
from typing import NamedTuple

import numpy as np
from torchvision import datasets

from .paths import DataCorruptError, DataNotFoundError, cache_dir, candidate_dirs, check_data_dir, search_dirs

IMAGES_MAGIC = 0x00000803
LABELS_MAGIC = 0x00000801

# idx dtype code -> NumPy dtype (big-endian where it matters).
IDX_DTYPES: dict[int, np.dtype] = {
    0x08: np.dtype(np.uint8),
    0x09: np.dtype(np.int8),
    0x0B: np.dtype(">i2"),
    0x0C: np.dtype(">i4"),
    0x0D: np.dtype(">f4"),
    0x0E: np.dtype(">f8"),
}

# split array -> file stem, shared by MNIST and Fashion-MNIST.
IDX_FILES: dict[str, str] = {
    "x_train": "train-images-idx3-ubyte",
    "y_train": "train-labels-idx1-ubyte",
    "x_test": "t10k-images-idx3-ubyte",
    "y_test": "t10k-labels-idx1-ubyte",
}

IDX_LAYOUTS: dict[str, tuple[str, ...]] = {
    "mnist": ("mnist", "MNIST/raw", "."),
    "fashion-mnist": ("fashion-mnist", "FashionMNIST/raw"),
}
SYSTEM_DIRS: dict[str, tuple[Path, ...]] = {
    "mnist": (),
    "fashion-mnist": (Path("/usr/share/datasets/fashion-mnist"),),
}
TITLES = {"mnist": "MNIST", "fashion-mnist": "Fashion-MNIST"}
HINTS = {
    "mnist": "or pass download=True where online",
    "fashion-mnist": "or apt-get install dataset-fashion-mnist, or pass download=True where online",
}


class Splits(NamedTuple):
    """A data set as host arrays: images ``(N, ...)`` and int64 labels ``(N,)`` per split."""

    x_train: np.ndarray
    y_train: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray


def read_file_bytes(path: Path) -> bytes:
    """The file's bytes, gunzipped when it starts with the gzip magic ``1f 8b``."""
    # Not torchvision.datasets.MNIST: it reads only uncompressed files in its own MNIST/raw layout and checks
    # them with asserts, so a gzipped file, another layout or a damaged file would not get a one-line error.
    data = path.read_bytes()
    if data[:2] != b"\x1f\x8b":
        return data
    try:
        return gzip.decompress(data)
    except (EOFError, OSError, zlib.error) as err:
        raise DataCorruptError(path, f"damaged gzip stream ({err})") from err


def parse_idx(data: bytes, path: Path, magic: int | None = None) -> np.ndarray:
    """Decode idx bytes into a native-endian array, checking the header against the byte count.

    :param data: the (already gunzipped) file contents.
    :param path: the file, for error messages.
    :param magic: the magic number required (e.g. :data:`IMAGES_MAGIC`), or None for any idx file.
    """
    if len(data) < 4:
        raise DataCorruptError(path, f"too short for an idx header ({len(data)} bytes)")
    found = int.from_bytes(data[:4], "big")
    if magic is not None and found != magic:
        raise DataCorruptError(path, f"wrong magic number 0x{found:08x} (expected 0x{magic:08x})")
    if data[:2] != b"\x00\x00" or data[2] not in IDX_DTYPES or data[3] == 0:
        raise DataCorruptError(path, f"not an idx file (magic number 0x{found:08x})")
    dtype, ndim = IDX_DTYPES[data[2]], data[3]
    header = 4 + 4 * ndim
    if len(data) < header:
        raise DataCorruptError(path, f"truncated idx header ({len(data)} of {header} bytes)")
    shape = tuple(int.from_bytes(data[4 + 4 * i : 8 + 4 * i], "big") for i in range(ndim))
    expected = int(np.prod(shape, dtype=np.int64)) * dtype.itemsize
    got = len(data) - header
    if got != expected:
        state = "truncated" if got < expected else "too long"
        raise DataCorruptError(path, f"{state}: {got} bytes of data, expected {expected} for shape {shape}")
    array = np.frombuffer(data, dtype=dtype, offset=header).reshape(shape)
    return array.astype(dtype.newbyteorder("="))  # a writable, native-endian copy


def read_idx(path: Path, magic: int | None = None) -> np.ndarray:
    """Read an idx file, raw or gzipped (see :func:`parse_idx`)."""
    return parse_idx(read_file_bytes(path), path, magic)


def find_idx_files(name: str, data_dir: str | os.PathLike[str] | None = None) -> dict[str, Path]:
    """The four idx files of ``name`` (``"mnist"`` or ``"fashion-mnist"``), all from one directory.

    The first candidate directory holding any of them must hold all four (raw preferred to ``.gz``);
    otherwise :class:`DataNotFoundError` names the missing ones.
    """
    dirs = candidate_dirs(search_dirs(data_dir), IDX_LAYOUTS[name]) + list(SYSTEM_DIRS[name])
    for directory in dirs:
        found: dict[str, Path] = {}
        for key, stem in IDX_FILES.items():
            for candidate in (directory / stem, directory / f"{stem}.gz"):
                if candidate.is_file():
                    found[key] = candidate
                    break
        if len(found) == len(IDX_FILES):
            return found
        if found:
            missing = [f"{IDX_FILES[k]}[.gz]" for k in IDX_FILES if k not in found]
            raise DataNotFoundError(TITLES[name], missing, [directory], "the other files of the set are there")
    files = [f"{stem}[.gz]" for stem in IDX_FILES.values()]
    raise DataNotFoundError(TITLES[name], files, dirs, HINTS[name])


def download_idx(name: str) -> None:
    """Fetch ``name`` with torchvision into :func:`cache_dir` (its ``MNIST/raw`` layout); needs a network."""
    cls = {"mnist": datasets.MNIST, "fashion-mnist": datasets.FashionMNIST}[name]
    cls(root=str(cache_dir()), train=True, download=True)


def load_idx_dataset(name: str, data_dir: str | os.PathLike[str] | None = None, download: bool = False) -> Splits:
    """MNIST or Fashion-MNIST as host arrays: images ``(N, 28, 28)`` uint8, labels ``(N,)`` int64.

    :param name: ``"mnist"`` or ``"fashion-mnist"``.
    :param data_dir: searched first (see :func:`search_dirs`).
    :param download: when the files are nowhere, fetch them with torchvision into the cache first.
        Without it, a ``data_dir`` that does not exist is an error (:func:`check_data_dir`).
    """
    if not download:
        check_data_dir(data_dir, TITLES[name])
    try:
        files = find_idx_files(name, data_dir)
    except DataNotFoundError:
        if not download:
            raise
        download_idx(name)
        files = find_idx_files(name, data_dir)
    arrays: dict[str, np.ndarray] = {}
    for split in ("train", "test"):
        x_path, y_path = files[f"x_{split}"], files[f"y_{split}"]
        x = read_idx(x_path, IMAGES_MAGIC)
        y = read_idx(y_path, LABELS_MAGIC)
        if x.dtype != np.uint8 or x.shape[1:] != (28, 28):
            raise DataCorruptError(x_path, f"expected uint8 28x28 images, found {x.dtype} {x.shape}")
        if y.dtype != np.uint8 or len(y) != len(x):
            raise DataCorruptError(y_path, f"expected {len(x)} uint8 labels to match {x_path.name}, found {len(y)}")
        if len(y) and int(y.max()) > 9:
            raise DataCorruptError(y_path, f"label {int(y.max())} outside 0..9")
        arrays[f"x_{split}"], arrays[f"y_{split}"] = x, y.astype(np.int64)
    return Splits(**arrays)
