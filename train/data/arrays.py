"""A whole data set as device tensors, its channel statistics, and a ``torch.utils.data`` view."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import Any, NamedTuple

import torch
from torch import Tensor
from torch.utils.data import Dataset

from .loader import DeviceLoader

SPLITS = ("train", "test")


class SplitPair(NamedTuple):
    """One extra array per split, e.g. the nuisance labels of the train and of the test set."""

    train: Tensor
    test: Tensor


def subset_index(total: int, n: int | None, seed: int, *, sort: bool = False) -> Tensor:
    """Which ``n`` of ``total`` examples to keep: all of them, in order, for None or ``n >= total``; else
    the first ``n`` of a random permutation seeded with ``seed`` (in that order, or sorted with ``sort``)."""
    if n is None or n >= total:
        return torch.arange(total)
    if n < 1:
        raise ValueError(f"asked for {n} examples of {total}")
    order = torch.randperm(total, generator=torch.Generator().manual_seed(seed))[:n]
    return order.sort().values if sort else order


def subset(x: Tensor, y: Tensor, n: int | None, seed: int, *, sort: bool = False) -> tuple[Tensor, Tensor]:
    """The ``n`` examples of ``(x, y)`` that :func:`subset_index` keeps (on ``x``'s device), or ``(x, y)`` itself
    for None or ``n >= len(x)``: a random sample, never the first ``n`` (of a test set stored by class, as
    CIFAR-10's copy here is, those would be its first classes)."""
    if n is None or n >= len(x):
        return x, y
    keep = subset_index(len(x), n, seed, sort=sort).to(x.device)
    return x.index_select(0, keep), y.index_select(0, keep)


def channel_stats(x: Tensor) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """Per-channel mean and (population) standard deviation of uint8 images, in [0, 1] pixel units.

    Computed exactly from a 256-bin histogram per channel (no float copy of the data set):
    ``mean_c = sum_v v h_c(v) / (255 n_c)``, ``var_c = sum_v v^2 h_c(v) / (255^2 n_c) - mean_c^2``.

    :param x: ``(N, C, H, W)`` uint8 images.
    """
    if x.dtype != torch.uint8:
        raise TypeError(f"channel_stats expects uint8 images, got {x.dtype}")
    values = torch.arange(256, dtype=torch.float64, device=x.device) / 255.0  # (256,)
    means, stds = [], []
    for c in range(x.shape[1]):
        hist = torch.bincount(x[:, c].reshape(-1), minlength=256).double()  # (256,)
        n = hist.sum()
        mean = (hist * values).sum() / n
        var = (hist * values.square()).sum() / n - mean.square()
        means.append(float(mean))
        stds.append(float(var.clamp_min(0.0).sqrt()))
    return tuple(means), tuple(stds)


def to_float(
    x: Tensor,
    mean: tuple[float, ...] | Tensor | None = None,
    std: tuple[float, ...] | Tensor | None = None,
) -> Tensor:
    """Images as float32: uint8 is scaled to [0, 1], then ``(x - mean) / std`` per channel when
    ``mean`` and ``std`` are given (in [0, 1] units). Works on ``(C, H, W)`` or ``(N, C, H, W)``."""
    out = x.to(torch.float32) / 255.0 if x.dtype == torch.uint8 else x.to(torch.float32)
    if mean is None or std is None:
        return out
    shape = (-1, 1, 1)  # broadcast over (..., C, H, W)
    m = torch.as_tensor(mean, dtype=torch.float32, device=x.device).reshape(shape)
    s = torch.as_tensor(std, dtype=torch.float32, device=x.device).reshape(shape)
    return (out - m) / s


class TensorImageDataset(Dataset):
    """A torchvision-style map-style view of image/label tensors: ``ds[i] -> (image, label)``.

    ``image`` is ``(C, H, W)`` float32, in [0, 1] or standardised with ``mean``/``std``, then passed
    through ``transform``; ``label`` is a Python int passed through ``target_transform``.
    """

    def __init__(
        self,
        x: Tensor,
        y: Tensor,
        mean: tuple[float, ...] | None = None,
        std: tuple[float, ...] | None = None,
        transform: Callable[[Tensor], Any] | None = None,
        target_transform: Callable[[int], Any] | None = None,
    ):
        if len(x) != len(y):
            raise ValueError(f"{len(x)} images but {len(y)} labels")
        self.x, self.y = x, y
        self.mean, self.std = mean, std
        self.transform, self.target_transform = transform, target_transform

    def __len__(self) -> int:
        return len(self.x)

    def __getitem__(self, index: int) -> tuple[Any, Any]:
        image: Any = to_float(self.x[index], self.mean, self.std)  # (C, H, W)
        label: Any = int(self.y[index])
        if self.transform is not None:
            image = self.transform(image)
        if self.target_transform is not None:
            label = self.target_transform(label)
        return image, label


@dataclass
class ArrayDataset:
    """A classification data set held whole as tensors on one device.

    :param name: the registry name, e.g. ``"mnist"``.
    :param x_train: ``(N, C, H, W)`` uint8 images (floats only for data that are not pixels).
    :param y_train: ``(N,)`` int64 labels in ``0..num_classes-1``.
    :param x_test: ``(M, C, H, W)``, same dtype as ``x_train``.
    :param y_test: ``(M,)`` int64.
    :param num_classes: number of classes.
    :param mean: per-channel mean of the train images, in [0, 1] pixel units.
    :param std: per-channel standard deviation of the train images, in [0, 1] pixel units.
    :param classes: class names, in label order.
    :param extras: extra per-example arrays, one :class:`SplitPair` each (e.g. ``"boxes"``,
        ``"nuisance"``); their first dimension matches the split's images.
    """

    name: str
    x_train: Tensor
    y_train: Tensor
    x_test: Tensor
    y_test: Tensor
    num_classes: int
    mean: tuple[float, ...]
    std: tuple[float, ...]
    classes: tuple[str, ...] = ()
    extras: dict[str, SplitPair] = field(default_factory=dict)

    def __post_init__(self) -> None:
        for split in SPLITS:
            x, y = self.images(split), self.labels(split)
            if len(x) != len(y):
                raise ValueError(f"{self.name} {split}: {len(x)} images but {len(y)} labels")
            for key, pair in self.extras.items():
                if len(getattr(pair, split)) != len(x):
                    raise ValueError(f"{self.name} {split}: extras[{key!r}] has the wrong length")

    @property
    def input_shape(self) -> tuple[int, int, int]:
        """``(C, H, W)`` of one image."""
        c, h, w = self.x_train.shape[1:]
        return (c, h, w)

    @property
    def device(self) -> torch.device:
        """The device every tensor is on."""
        return self.x_train.device

    def images(self, split: str) -> Tensor:
        """The ``(N, C, H, W)`` images of ``split`` (``"train"`` or ``"test"``), as stored."""
        return getattr(self, f"x_{check_split(split)}")

    def labels(self, split: str) -> Tensor:
        """The ``(N,)`` int64 labels of ``split``."""
        return getattr(self, f"y_{check_split(split)}")

    def arrays(self, split: str) -> dict[str, Tensor]:
        """The extras of ``split`` as ``{name: tensor}``."""
        check_split(split)
        return {key: getattr(pair, split) for key, pair in self.extras.items()}

    def float_images(self, split: str, standardize: bool = True) -> Tensor:
        """``(N, C, H, W)`` float32 images of ``split``: in [0, 1], or ``(x - mean) / std`` per
        channel with the train statistics when ``standardize``."""
        x = self.images(split)
        return to_float(x, self.mean, self.std) if standardize else to_float(x)

    def to(self, device: torch.device | str) -> ArrayDataset:
        """A copy with every tensor on ``device``."""
        extras = {k: SplitPair(v.train.to(device), v.test.to(device)) for k, v in self.extras.items()}
        return replace(
            self,
            x_train=self.x_train.to(device),
            y_train=self.y_train.to(device),
            x_test=self.x_test.to(device),
            y_test=self.y_test.to(device),
            extras=extras,
        )

    def as_torch_dataset(
        self,
        split: str,
        standardize: bool = True,
        transform: Callable[[Tensor], Any] | None = None,
        target_transform: Callable[[int], Any] | None = None,
    ) -> TensorImageDataset:
        """A :class:`torch.utils.data.Dataset` over ``split`` for use with a ``DataLoader``."""
        mean, std = (self.mean, self.std) if standardize else (None, None)
        return TensorImageDataset(self.images(split), self.labels(split), mean, std, transform, target_transform)

    def loader(
        self,
        split: str,
        batch_size: int,
        shuffle: bool | None = None,
        drop_last: bool | None = None,
        seed: int = 0,
        transform: Callable[[Tensor, torch.Generator], Tensor] | None = None,
        standardize: bool = True,
        with_extras: bool = False,
    ) -> DeviceLoader:
        """A :class:`DeviceLoader` over ``split``. ``shuffle`` and ``drop_last`` default to True for
        ``"train"`` and False for ``"test"``; standardisation uses the train statistics."""
        train = check_split(split) == "train"
        return DeviceLoader(
            self.images(split),
            self.labels(split),
            batch_size,
            shuffle=train if shuffle is None else shuffle,
            drop_last=train if drop_last is None else drop_last,
            seed=seed,
            transform=transform,
            mean=self.mean if standardize else None,
            std=self.std if standardize else None,
            extras=self.arrays(split) if with_extras else None,
        )


def check_split(split: str) -> str:
    """``split`` itself when it is ``"train"`` or ``"test"``; ValueError otherwise."""
    if split not in SPLITS:
        raise ValueError(f"unknown split {split!r}; expected one of {', '.join(SPLITS)}")
    return split
