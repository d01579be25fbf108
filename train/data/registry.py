"""The data sets by name: ``get_dataset(name, ...)`` -> :class:`ArrayDataset` on a device.

========================= ======================================== ===============================
name                      source                                   options (keyword arguments)
========================= ======================================== ===============================
``mnist``                 idx files (see :mod:`.idx`)              ``download``
``fashion-mnist``         idx files or the Debian package           ``download``
``cifar10``               batches or JPEG archive (:mod:`.cifar`)  ``download``, ``cache``
``digits``                scikit-learn ``load_digits`` (8x8)       ``test_size``, ``split_seed``
``cluttered-mnist``       generated from MNIST (:mod:`.cluttered`) ``n_train``, ``n_test``,
                                                                   ``num_clutter``, ``canvas``,
                                                                   ``clutter_size``, ``download``
``occluded-cifar``        generated from CIFAR-10 and MNIST        ``n_train``, ``n_test``,
                                                                   ``digit_size``, ``download``,
                                                                   ``cache``
========================= ======================================== ===============================

``seed`` drives only the generated sets (train and test get separate streams, mixed from ``seed``);
real data sets come in their files' order. dSprites is not a classification set: see
:class:`~.dsprites.DSprites`.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch
from sklearn.datasets import load_digits
from sklearn.model_selection import train_test_split
from torch import Tensor

from .arrays import ArrayDataset, SplitPair, channel_stats, subset_index
from .cifar import CIFAR10_CLASSES, find_cifar10, load_cifar10
from .cluttered import make_cluttered
from .idx import Splits, find_idx_files, load_idx_dataset
from .loader import mixed_seed
from .occluded import make_occluded
from .paths import root_of

DATASETS = ("mnist", "fashion-mnist", "cifar10", "digits", "cluttered-mnist", "occluded-cifar")
#: The data sets whose classes do not change under a left-right mirror (horizontal flips augment them).
#: Digits are not (a mirrored 2 or 7 is no digit), nor is Occluded CIFAR (its occluding digit is the nuisance).
MIRROR_INVARIANT = frozenset({"cifar10"})

DIGIT_CLASSES = tuple(str(i) for i in range(10))
FASHION_CLASSES = (
    "T-shirt/top", "Trouser", "Pullover", "Dress", "Coat",
    "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot",
)  # fmt: skip
TRAIN_STREAM, TEST_STREAM = 0, 1

PathLike = str | os.PathLike[str] | None


def from_arrays(
    name: str,
    x_train: Tensor,
    y_train: Tensor,
    x_test: Tensor,
    y_test: Tensor,
    classes: tuple[str, ...],
    extras: dict[str, SplitPair] | None = None,
) -> ArrayDataset:
    """An :class:`ArrayDataset` with channel statistics computed on ``x_train``."""
    mean, std = channel_stats(x_train)
    return ArrayDataset(name, x_train, y_train, x_test, y_test, len(classes), mean, std, classes, extras or {})


def with_channel(splits: Splits) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """Host arrays -> tensors, greyscale ``(N, H, W)`` images becoming ``(N, 1, H, W)``."""
    x_train, x_test = (x[:, None] if x.ndim == 3 else x for x in (splits.x_train, splits.x_test))
    return (
        torch.from_numpy(x_train),
        torch.from_numpy(splits.y_train),
        torch.from_numpy(x_test),
        torch.from_numpy(splits.y_test),
    )


def build_mnist(data_dir: PathLike, seed: int, device: str, download: bool = False) -> ArrayDataset:
    """MNIST: 60,000/10,000 grey 28x28 digits."""
    arrays = with_channel(load_idx_dataset("mnist", data_dir, download))
    return from_arrays("mnist", *(t.to(device) for t in arrays), DIGIT_CLASSES)


def build_fashion(data_dir: PathLike, seed: int, device: str, download: bool = False) -> ArrayDataset:
    """Fashion-MNIST: 60,000/10,000 grey 28x28 clothing images."""
    arrays = with_channel(load_idx_dataset("fashion-mnist", data_dir, download))
    return from_arrays("fashion-mnist", *(t.to(device) for t in arrays), FASHION_CLASSES)


def build_cifar10(
    data_dir: PathLike,
    seed: int,
    device: str,
    download: bool = False,
    cache: Path | None = None,
) -> ArrayDataset:
    """CIFAR-10: 50,000/10,000 RGB 32x32 images."""
    arrays = with_channel(load_cifar10(data_dir, download, cache))
    return from_arrays("cifar10", *(t.to(device) for t in arrays), CIFAR10_CLASSES)


def build_digits(data_dir: PathLike, seed: int, device: str, test_size: int = 300, split_seed: int = 0) -> ArrayDataset:
    """scikit-learn's 1,797 8x8 digits (values 0..16 scaled to uint8 0..255), split stratified
    into ``1797 - test_size`` train and ``test_size`` test images by ``split_seed`` (a fixed split,
    whatever ``seed``, so that runs with different seeds share a test set)."""
    bunch = load_digits()
    images = np.rint(bunch.images * (255.0 / 16.0)).astype(np.uint8)[:, None]  # (1797, 1, 8, 8)
    labels = bunch.target.astype(np.int64)
    x_tr, x_te, y_tr, y_te = train_test_split(
        images, labels, test_size=test_size, stratify=labels, random_state=split_seed
    )
    arrays = (torch.from_numpy(a).to(device) for a in (x_tr, y_tr, x_te, y_te))
    return from_arrays("digits", *arrays, DIGIT_CLASSES)


#: How many Cluttered MNIST examples :func:`build_cluttered` makes by default (train, test).
CLUTTERED_SIZES = (50_000, 10_000)


def build_cluttered(
    data_dir: PathLike,
    seed: int,
    device: str,
    n_train: int = CLUTTERED_SIZES[0],
    n_test: int = CLUTTERED_SIZES[1],
    num_clutter: int = 21,
    canvas: int = 96,
    clutter_size: int = 8,
    download: bool = False,
    train_index: Tensor | None = None,
    test_index: Tensor | None = None,
) -> ArrayDataset:
    """Cluttered MNIST (see :mod:`.cluttered`): train from MNIST train, test from MNIST test;
    ``extras``: ``boxes`` (digit boxes) and ``source`` (MNIST index of each digit).

    ``train_index`` / ``test_index`` keep only those examples of the ``n_train`` / ``n_test`` (in that
    order), and only those are composed: the same images as indexing the whole set. The channel statistics
    are then those of the kept training images."""
    mnist = load_idx_dataset("mnist", data_dir, download)
    parts = []
    for digits, labels, n, stream, index in (
        (mnist.x_train, mnist.y_train, n_train, TRAIN_STREAM, train_index),
        (mnist.x_test, mnist.y_test, n_test, TEST_STREAM, test_index),
    ):
        parts.append(
            make_cluttered(
                torch.from_numpy(digits),
                torch.from_numpy(labels),
                n,
                mixed_seed(seed, stream),
                canvas,
                num_clutter,
                clutter_size,
                device,
                index,
            )
        )
    train, test = parts
    extras = {
        "boxes": SplitPair(train.boxes, test.boxes),
        "source": SplitPair(train.source, test.source),
    }
    return from_arrays(
        "cluttered-mnist",
        train.images,
        train.labels,
        test.images,
        test.labels,
        DIGIT_CLASSES,
        extras,
    )


def build_occluded(
    data_dir: PathLike,
    seed: int,
    device: str,
    n_train: int | None = None,
    n_test: int | None = None,
    digit_size: int = 24,
    download: bool = False,
    cache: Path | None = None,
) -> ArrayDataset:
    """Occluded CIFAR (see :mod:`.occluded`): CIFAR-10 train (or a random ``n_train`` of it)
    occluded by MNIST train digits, test by MNIST test digits; ``y`` is the CIFAR-10 class and
    ``extras``: ``nuisance`` (the digit's class), ``boxes``, ``digit_index`` (into MNIST) and
    ``cifar_index`` (into CIFAR-10)."""
    cifar = load_cifar10(data_dir, download, cache)
    mnist = load_idx_dataset("mnist", data_dir, download)
    parts = []
    for images, labels, digits, digit_labels, n, stream in (
        (cifar.x_train, cifar.y_train, mnist.x_train, mnist.y_train, n_train, TRAIN_STREAM),
        (cifar.x_test, cifar.y_test, mnist.x_test, mnist.y_test, n_test, TEST_STREAM),
    ):
        if n is not None and n > len(images):
            raise ValueError(f"asked for {n} examples of {len(images)}")
        chosen = subset_index(len(images), n, mixed_seed(seed, stream, 1), sort=True)  # (n,)
        occluded = make_occluded(
            torch.from_numpy(images[chosen.numpy()]),
            torch.from_numpy(labels[chosen.numpy()]),
            torch.from_numpy(digits),
            torch.from_numpy(digit_labels),
            mixed_seed(seed, stream),
            digit_size,
            device,
        )
        parts.append((occluded, chosen.to(device)))
    (train, train_index), (test, test_index) = parts
    extras = {
        "nuisance": SplitPair(train.nuisance, test.nuisance),
        "boxes": SplitPair(train.boxes, test.boxes),
        "digit_index": SplitPair(train.digit_index, test.digit_index),
        "cifar_index": SplitPair(train_index, test_index),
    }
    return from_arrays(
        "occluded-cifar",
        train.images,
        train.labels,
        test.images,
        test.labels,
        CIFAR10_CLASSES,
        extras,
    )


BUILDERS: dict[str, Callable[..., ArrayDataset]] = {
    "mnist": build_mnist,
    "fashion-mnist": build_fashion,
    "cifar10": build_cifar10,
    "digits": build_digits,
    "cluttered-mnist": build_cluttered,
    "occluded-cifar": build_occluded,
}


def data_roots(name: str, data_dir: PathLike = None) -> list[Path]:
    """The search directories (absolute, see :func:`~.paths.search_dirs`) that the files of data set
    ``name`` are read from, as :func:`get_dataset` finds them: one, two for a set made from two others
    found in different places (Occluded CIFAR), none for a set bundled with a package (``digits``)."""
    if name not in BUILDERS:
        raise ValueError(f"unknown data set {name!r}; valid names: {', '.join(DATASETS)}")
    sources = {"cluttered-mnist": ("mnist",), "occluded-cifar": ("cifar10", "mnist")}.get(name, (name,))
    roots: list[Path] = []
    for source in sources:
        if source in ("mnist", "fashion-mnist"):
            found = find_idx_files(source, data_dir)["x_train"]
        elif source == "cifar10":
            found = find_cifar10(data_dir)[1]
        else:
            continue
        root = root_of(found, data_dir)
        if root not in roots:
            roots.append(root)
    return roots


def get_dataset(
    name: str,
    data_dir: PathLike = None,
    device: torch.device | str = "cpu",
    seed: int = 0,
    **options,
) -> ArrayDataset:
    """The data set ``name`` (one of :data:`DATASETS`) as uint8 images and int64 labels on
    ``device``, with train-set channel statistics.

    :param data_dir: searched before ``$INFODROPOUT_DATA`` and the user cache.
    :param device: where every tensor is put (generated sets are composed there).
    :param seed: fixes the generated sets (non-negative).
    :param options: per-set keyword arguments (see the module docstring); unknown ones raise
        TypeError.
    """
    if name not in BUILDERS:
        raise ValueError(f"unknown data set {name!r}; valid names: {', '.join(DATASETS)}")
    return BUILDERS[name](data_dir, seed, str(torch.device(device)), **options)
