"""CIFAR-10 from the original pickled batches or from an archive of JPEG files.

Forms accepted under each directory of :func:`search_dirs`, first found wins:

- ``cifar-10-batches-py/`` (or ``cifar10/cifar-10-batches-py/``): the original python batches
  ``data_batch_1..5`` and ``test_batch`` (pickles: load only files you trust, as with torchvision);
- ``cifar-10-python.tar.gz`` (or under ``cifar10/``): the original download, read without extracting;
- ``cifar10/cifar10-jpeg.tar.gz`` (or ``cifar10-jpeg.tar.gz``): one JPEG per image,
  ``{train,test}/<class>/<name>.jpg``, class folders named as CIFAR-10's classes (their sorted order is
  CIFAR-10's label order). The archive is decoded once (``torchvision.io.decode_jpeg`` on
  batches in threads, else Pillow; about 5 s) and the uint8 arrays are cached as .npy under
  ``cache_dir()/cifar10/jpeg-v1-<first 16 hex digits of the archive's SHA-256>/``, so an archive
  with other contents never reuses a stale cache. Images are ordered by label, then by member name.
"""

from __future__ import annotations

import io
import os
import pickle
import tarfile
import warnings
import zlib
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path, PurePosixPath
from typing import NamedTuple

import numpy as np
import torch
from PIL import Image
from torchvision.datasets import CIFAR10

try:
    from torchvision.io import ImageReadMode, decode_jpeg
except ImportError:  # a torchvision without image codecs: Pillow decodes instead
    decode_jpeg = None

from .idx import Splits, read_file_bytes
from .paths import (
    DataCorruptError,
    DataNotFoundError,
    cache_dir,
    check_data_dir,
    file_digest,
    load_arrays,
    save_arrays,
    search_dirs,
)

CIFAR10_CLASSES = (
    "airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck",
)  # fmt: skip
TRAIN_BATCHES = tuple(f"data_batch_{i}" for i in range(1, 6))
TEST_BATCH = "test_batch"
PICKLE_DIRS = ("cifar-10-batches-py", "cifar10/cifar-10-batches-py")
PICKLE_ARCHIVES = ("cifar-10-python.tar.gz", "cifar10/cifar-10-python.tar.gz")
JPEG_ARCHIVES = ("cifar10/cifar10-jpeg.tar.gz", "cifar10-jpeg.tar.gz")
JPEG_SUFFIXES = (".jpg", ".jpeg")
CACHE_VERSION = "jpeg-v1"
DECODE_CHUNK = 2048  # images per decode_jpeg call (one thread each)
TORCHVISION_IO_DEPRECATION = "The image decoding and encoding capabilities of TorchVision"
SPLIT_ARRAYS = ("x_train", "y_train", "x_test", "y_test")
# Errors a damaged gzip/tar stream raises while being read.
ARCHIVE_ERRORS = (tarfile.TarError, EOFError, OSError, zlib.error)


def find_cifar10(data_dir: str | os.PathLike[str] | None = None) -> tuple[str, Path]:
    """The first CIFAR-10 source found, as ``(kind, path)`` with kind ``"pickle-dir"``,
    ``"pickle-archive"`` or ``"jpeg-archive"``; :class:`DataNotFoundError` when there is none."""
    roots = search_dirs(data_dir)
    batches = (*TRAIN_BATCHES, TEST_BATCH)
    for root in roots:
        for rel in PICKLE_DIRS:
            directory = root / rel
            present = [b for b in batches if (directory / b).is_file()]
            if len(present) == len(batches):
                return "pickle-dir", directory
            if present:
                missing = [b for b in batches if b not in present]
                raise DataNotFoundError("CIFAR-10", missing, [directory], "the other batches of the set are there")
        for rel in PICKLE_ARCHIVES:
            if (root / rel).is_file():
                return "pickle-archive", root / rel
        for rel in JPEG_ARCHIVES:
            if (root / rel).is_file():
                return "jpeg-archive", root / rel
    looked_for = [f"{d}/" for d in PICKLE_DIRS] + list(PICKLE_ARCHIVES) + list(JPEG_ARCHIVES)
    raise DataNotFoundError("CIFAR-10", looked_for, roots, "or pass download=True where online")


def parse_batch(raw: bytes, where: str) -> tuple[np.ndarray, np.ndarray]:
    """One pickled CIFAR-10 batch -> images ``(n, 3, 32, 32)`` uint8 and labels ``(n,)`` int64."""
    try:
        batch = pickle.loads(raw, encoding="latin1")
    except Exception as err:  # a damaged pickle can raise almost anything
        raise DataCorruptError(where, f"unreadable pickle ({type(err).__name__}: {err})") from err
    if not isinstance(batch, dict) or "data" not in batch or "labels" not in batch:
        raise DataCorruptError(where, "not a CIFAR-10 batch (no 'data' and 'labels' entries)")
    data, labels = batch["data"], np.asarray(batch["labels"])
    if not isinstance(data, np.ndarray) or data.dtype != np.uint8 or data.ndim != 2:
        raise DataCorruptError(where, "'data' is not a 2-d uint8 array")
    if data.shape[1] != 3 * 32 * 32 or labels.shape != (len(data),):
        raise DataCorruptError(where, f"expected (n, 3072) data and n labels, found {data.shape} and {labels.shape}")
    if len(labels) and (labels.min() < 0 or labels.max() >= len(CIFAR10_CLASSES)):
        raise DataCorruptError(where, f"labels outside 0..9 (min {labels.min()}, max {labels.max()})")
    return data.reshape(-1, 3, 32, 32), labels.astype(np.int64)  # (n, 3, 32, 32), (n,)


def read_pickle_dir(directory: Path) -> Splits:
    """The six batch files of a ``cifar-10-batches-py`` directory."""

    def read(names: tuple[str, ...]) -> tuple[np.ndarray, np.ndarray]:
        parts = [parse_batch((directory / n).read_bytes(), str(directory / n)) for n in names]
        return np.concatenate([p[0] for p in parts]), np.concatenate([p[1] for p in parts])

    return Splits(*read(TRAIN_BATCHES), *read((TEST_BATCH,)))


def read_pickle_archive(path: Path) -> Splits:
    """The six batches straight from the original ``cifar-10-python.tar.gz`` (no extraction)."""
    wanted = {f"cifar-10-batches-py/{b}": b for b in (*TRAIN_BATCHES, TEST_BATCH)}
    parts: dict[str, tuple[np.ndarray, np.ndarray]] = {}
    try:
        with tarfile.open(path, "r:*") as tar:
            for member in tar:
                name = member.name.removeprefix("./")
                if name in wanted and member.isfile():
                    raw = tar.extractfile(member).read()  # type: ignore[union-attr]
                    parts[wanted[name]] = parse_batch(raw, f"{path}::{name}")
    except ARCHIVE_ERRORS as err:
        raise DataCorruptError(path, f"bad archive ({type(err).__name__}: {err})") from err
    missing = [b for b in wanted.values() if b not in parts]
    if missing:
        raise DataCorruptError(path, f"archive lacks {', '.join(missing)}")
    train = [parts[b] for b in TRAIN_BATCHES]
    return Splits(
        np.concatenate([p[0] for p in train]),
        np.concatenate([p[1] for p in train]),
        *parts[TEST_BATCH],
    )


class JpegMember(NamedTuple):
    """Where one image lies in the uncompressed tar bytes."""

    label: int
    name: str
    offset: int
    size: int


def list_jpeg_members(path: Path, tar_bytes: bytes) -> dict[str, list[JpegMember]]:
    """The ``{train,test}/<class>/*.jpg`` members per split, sorted by (label, name); other members
    are skipped. A damaged archive or a class folder CIFAR-10 lacks raises :class:`DataCorruptError`."""
    # Not torchvision.datasets.ImageFolder: it needs the archive extracted to disk and names no damaged member.
    members: dict[str, list[JpegMember]] = {"train": [], "test": []}
    try:
        with tarfile.open(fileobj=io.BytesIO(tar_bytes), mode="r:") as tar:
            for info in tar:
                parts = PurePosixPath(info.name.removeprefix("./")).parts
                if (
                    not info.isfile()
                    or len(parts) != 3
                    or parts[0] not in members
                    or not parts[2].lower().endswith(JPEG_SUFFIXES)
                ):
                    continue
                if parts[1] not in CIFAR10_CLASSES:
                    problem = f"class folder {parts[1]!r} is not one of CIFAR-10's classes"
                    raise DataCorruptError(f"{path}::{info.name}", problem)
                if info.offset_data + info.size > len(tar_bytes):
                    raise DataCorruptError(f"{path}::{info.name}", "member is truncated")
                label = CIFAR10_CLASSES.index(parts[1])
                members[parts[0]].append(JpegMember(label, info.name, info.offset_data, info.size))
    except tarfile.TarError as err:
        raise DataCorruptError(path, f"bad archive ({type(err).__name__}: {err})") from err
    for split, items in members.items():
        if not items:
            raise DataCorruptError(path, f"bad archive: no {split}/<class>/*.jpg members")
        items.sort(key=lambda m: (m.label, m.name))
    return members


def pillow_decode(blob: torch.Tensor) -> torch.Tensor:
    """Decode one JPEG with Pillow to ``(3, H, W)`` uint8 RGB (raises what Pillow raises)."""
    with Image.open(io.BytesIO(blob.numpy().tobytes())) as image:
        return torch.from_numpy(np.array(image.convert("RGB"))).permute(2, 0, 1)  # (3, H, W)


def decode_members(path: Path, whole: torch.Tensor, members: list[JpegMember]) -> np.ndarray:
    """Decode JPEG members (views into ``whole``, the tar bytes) to ``(n, 3, 32, 32)`` uint8 RGB.

    torchvision's ``decode_jpeg`` decodes chunks of images in parallel threads where it exists
    (it is about 3x faster than Pillow, and releases the GIL); Pillow decodes otherwise. Both use
    libjpeg, so the pixels agree. A bad image raises :class:`DataCorruptError` naming the member.
    """

    def decode_one(member: JpegMember, blob: torch.Tensor) -> torch.Tensor:
        try:
            if decode_jpeg is None:
                return pillow_decode(blob)
            return decode_jpeg(blob, mode=ImageReadMode.RGB)
        except Exception as err:  # a damaged image can make a decoder raise almost anything
            problem = f"unreadable image ({type(err).__name__}: {' '.join(str(err).split())[:200]})"
            raise DataCorruptError(f"{path}::{member.name}", problem) from err

    def decode_chunk(chunk: list[JpegMember]) -> torch.Tensor:
        blobs = [whole[m.offset : m.offset + m.size] for m in chunk]  # 1-d uint8 views
        images = None
        if decode_jpeg is not None:
            try:
                images = decode_jpeg(blobs, mode=ImageReadMode.RGB)
            except RuntimeError:
                images = None  # a bad image in the chunk: found and named one at a time below
        if images is None:
            images = [decode_one(m, blob) for m, blob in zip(chunk, blobs, strict=True)]
        for member, image in zip(chunk, images, strict=True):
            if tuple(image.shape) != (3, 32, 32):
                problem = f"image is {tuple(image.shape)}, expected (3, 32, 32)"
                raise DataCorruptError(f"{path}::{member.name}", problem)
        return torch.stack(images)  # (chunk, 3, 32, 32)

    chunks = [members[i : i + DECODE_CHUNK] for i in range(0, len(members), DECODE_CHUNK)]
    workers = min(4, os.cpu_count() or 1) if decode_jpeg is not None else 1
    with warnings.catch_warnings():
        # torchvision >= 0.29 marks its image codecs deprecated; they are still the fastest here.
        warnings.filterwarnings("ignore", message=TORCHVISION_IO_DEPRECATION, category=DeprecationWarning)
        with ThreadPoolExecutor(max_workers=workers) as pool:
            decoded = list(pool.map(decode_chunk, chunks))
    return torch.cat(decoded).numpy()  # (n, 3, 32, 32)


def decode_jpeg_archive(path: Path) -> Splits:
    """Decode a CIFAR-10 JPEG archive (layout in the module docstring) into uint8 arrays."""
    try:
        tar_bytes = read_file_bytes(path)
    except DataCorruptError as err:
        raise DataCorruptError(path, f"bad archive: {err.problem}") from err
    members = list_jpeg_members(path, tar_bytes)
    whole = torch.frombuffer(bytearray(tar_bytes), dtype=torch.uint8)  # (bytes,)
    arrays: list[np.ndarray] = []
    for split in ("train", "test"):
        arrays.append(decode_members(path, whole, members[split]))
        arrays.append(np.array([m.label for m in members[split]], dtype=np.int64))
    return Splits(*arrays)


def load_jpeg_archive(path: Path, cache: Path | None = None) -> Splits:
    """A JPEG archive's arrays, decoded once and then read from the .npy cache.

    :param cache: the cache root (default :func:`cache_dir`); entries live in
        ``<cache>/cifar10/jpeg-v1-<digest>/``.
    """
    entry = (cache or cache_dir()) / "cifar10" / f"{CACHE_VERSION}-{file_digest(path)}"
    cached = load_arrays(entry, SPLIT_ARRAYS)
    if cached is not None:
        splits = Splits(**cached)
        for x, y in ((splits.x_train, splits.y_train), (splits.x_test, splits.y_test)):
            if x.dtype != np.uint8 or x.shape[1:] != (3, 32, 32) or y.shape != (len(x),):
                raise DataCorruptError(entry, "cached arrays have the wrong shape; delete the folder to rebuild")
        return splits
    splits = decode_jpeg_archive(path)
    save_arrays(entry, splits._asdict())
    return splits


def load_cifar10(
    data_dir: str | os.PathLike[str] | None = None,
    download: bool = False,
    cache: Path | None = None,
) -> Splits:
    """CIFAR-10 as host arrays: images ``(N, 3, 32, 32)`` uint8 RGB, labels ``(N,)`` int64.

    :param data_dir: searched first (see :func:`search_dirs`).
    :param download: when no source is found, fetch the original batches with torchvision into
        :func:`cache_dir` first (needs a network).
    :param cache: where decoded JPEG archives are cached (default :func:`cache_dir`).

    Without ``download``, a ``data_dir`` that does not exist is an error (:func:`check_data_dir`).
    """
    if not download:
        check_data_dir(data_dir, "CIFAR-10")
    try:
        kind, path = find_cifar10(data_dir)
    except DataNotFoundError:
        if not download:
            raise
        CIFAR10(root=str(cache_dir()), train=True, download=True)
        kind, path = find_cifar10(data_dir)
    if kind == "pickle-dir":
        return read_pickle_dir(path)
    if kind == "pickle-archive":
        return read_pickle_archive(path)
    return load_jpeg_archive(path, cache)
