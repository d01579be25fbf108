"""Data: the paper's data sets offline, as device tensors, with clear errors.

- :func:`get_dataset` / :data:`DATASETS`: MNIST, Fashion-MNIST, CIFAR-10, scikit-learn digits,
  Cluttered MNIST and Occluded CIFAR as an :class:`ArrayDataset` on a device;
- :class:`DSprites`: the dSprites factor grid, rendered by index on the device;
- :class:`DeviceLoader`, :class:`RandomCrop`, :class:`RandomHorizontalFlip`: minibatches and
  augmentation as device ops;
- :func:`search_dirs`, :func:`cache_dir`, :class:`DataNotFoundError`, :class:`DataCorruptError`:
  where data are looked for and what a missing or damaged file raises; :func:`data_roots`: where a
  set's files were found (what a run records).
"""

from .arrays import ArrayDataset, SplitPair, TensorImageDataset, channel_stats, subset, subset_index, to_float
from .cifar import CIFAR10_CLASSES, load_cifar10
from .cluttered import make_cluttered
from .dsprites import DSprites, DSpritesLoader, load_dsprites
from .idx import Splits, load_idx_dataset, read_idx
from .loader import Binarize, Compose, DeviceLoader, RandomCrop, RandomHorizontalFlip, binarized
from .occluded import make_occluded
from .paths import (
    DataCorruptError,
    DataDirNotFoundError,
    DataNotFoundError,
    add_data_dir_argument,
    cache_dir,
    check_data_dir,
    search_dirs,
)
from .registry import CLUTTERED_SIZES, DATASETS, MIRROR_INVARIANT, data_roots, get_dataset

__all__ = [
    "Binarize",
    "CIFAR10_CLASSES",
    "CLUTTERED_SIZES",
    "DATASETS",
    "MIRROR_INVARIANT",
    "ArrayDataset",
    "Compose",
    "DSprites",
    "DSpritesLoader",
    "DataCorruptError",
    "DataDirNotFoundError",
    "DataNotFoundError",
    "DeviceLoader",
    "RandomCrop",
    "RandomHorizontalFlip",
    "SplitPair",
    "Splits",
    "TensorImageDataset",
    "add_data_dir_argument",
    "binarized",
    "cache_dir",
    "channel_stats",
    "check_data_dir",
    "data_roots",
    "get_dataset",
    "load_cifar10",
    "load_dsprites",
    "load_idx_dataset",
    "make_cluttered",
    "make_occluded",
    "read_idx",
    "search_dirs",
    "subset",
    "subset_index",
    "to_float",
]
