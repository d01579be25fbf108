"""Minibatches drawn on the device: shuffling, slicing, uint8 -> float, standardisation, augmentation.

Everything per batch is a device op on tensors already on the device (``randperm`` with a device
generator, ``index_select``, arithmetic); the host only walks a Python loop over batch starts, so a
GPU is never waiting for host-side collation. Randomness comes from two ``torch.Generator`` objects
on the data's device, one for the order and one for augmentation, seeded from ``(seed, epoch)``:
the batches of an epoch are a pure function of ``(seed, epoch)``, and :meth:`set_epoch` resumes
exactly. (A CPU and a CUDA generator give different streams: the same seed means the same batches
on the same kind of device.)

Augmentations are callables ``t(x, generator) -> x`` on float ``(B, C, H, W)`` images in [0, 1]
(before standardisation, so zero padding is black, as in torchvision's ``RandomCrop(padding=4)``).

In a data-parallel run (:meth:`ShuffledBatches.shard`) every rank draws the same order and takes its
contiguous block of each global batch; where a batch is augmented, the whole global batch is augmented
(the same draws as one process) and the rank keeps its rows. ``batch_size`` and ``len()`` stay global.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping, Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

Augment = Callable[[Tensor, torch.Generator], Tensor]

ORDER_STREAM, AUGMENT_STREAM = 0, 1


def mixed_seed(*keys: int) -> int:
    """A 63-bit seed mixed from non-negative ints by NumPy's ``SeedSequence``, so that nearby keys
    (seed 0 epoch 1, seed 1 epoch 0, ...) give unrelated random streams."""
    state = np.random.SeedSequence(list(keys)).generate_state(1, dtype=np.uint64)[0]
    return int(state >> np.uint64(1))


def epoch_generator(seed: int, epoch: int, stream: int, device: torch.device) -> torch.Generator:
    """A generator on ``device`` seeded with ``mixed_seed(seed, epoch, stream)``."""
    return torch.Generator(device=device).manual_seed(mixed_seed(seed, epoch, stream))


class RandomCrop:
    """Zero-pad each side by ``padding`` pixels, then crop ``size`` at an offset drawn uniformly
    and independently per sample (two batched ``gather`` ops, no loop over the batch).

    :param size: ``(h, w)`` or one int for a square; default: the input's own size.
    :param padding: zeros added on every side before cropping (4 for CIFAR-10).
    """

    def __init__(self, size: int | tuple[int, int] | None = None, padding: int = 0):
        if padding < 0:
            raise ValueError(f"padding must be >= 0, got {padding}")
        self.size = (size, size) if isinstance(size, int) else size
        self.padding = padding

    def __call__(self, x: Tensor, generator: torch.Generator) -> Tensor:
        b, c, h, w = x.shape
        out_h, out_w = self.size or (h, w)
        p = self.padding
        padded = F.pad(x, (p, p, p, p)) if p else x  # (B, C, H + 2p, W + 2p)
        span_h, span_w = h + 2 * p - out_h, w + 2 * p - out_w
        if span_h < 0 or span_w < 0:
            raise ValueError(f"crop {out_h}x{out_w} is larger than the padded {h}x{w} image")
        top = torch.randint(0, span_h + 1, (b,), generator=generator, device=x.device)  # (B,)
        left = torch.randint(0, span_w + 1, (b,), generator=generator, device=x.device)  # (B,)
        rows = top[:, None] + torch.arange(out_h, device=x.device)  # (B, out_h)
        cols = left[:, None] + torch.arange(out_w, device=x.device)  # (B, out_w)
        row_index = rows[:, None, :, None].expand(b, c, out_h, padded.shape[3])
        picked = padded.gather(2, row_index)  # (B, C, out_h, W + 2p)
        col_index = cols[:, None, None, :].expand(b, c, out_h, out_w)
        return picked.gather(3, col_index)  # (B, C, out_h, out_w)


class RandomHorizontalFlip:
    """Mirror each image left-right with probability ``p``, independently per sample."""

    def __init__(self, p: float = 0.5):
        self.p = p

    def __call__(self, x: Tensor, generator: torch.Generator) -> Tensor:
        flip = torch.rand(x.shape[0], generator=generator, device=x.device) < self.p  # (B,)
        return torch.where(flip[:, None, None, None], x.flip(3), x)  # (B, C, H, W)


class Binarize:
    """Each pixel value in [0, 1] becomes 1 with that probability, else 0 (dynamic binarisation, as for
    the binarised-MNIST likelihoods of VAEs), independently per pixel and draw."""

    def __call__(self, x: Tensor, generator: torch.Generator) -> Tensor:
        return torch.bernoulli(x, generator=generator)  # (B, C, H, W) of 0s and 1s


def binarized(x: Tensor, seed: int) -> Tensor:
    """One fixed binarisation of uint8 images ``(N, C, H, W)``: pixel ``v`` is 255 with probability ``v / 255``,
    else 0, drawn on the CPU from ``seed`` (the same images on every device)."""
    generator = torch.Generator().manual_seed(seed)
    u = torch.rand(x.shape, generator=generator)  # (N, C, H, W) on the CPU
    return ((u * 255 < x.cpu().float()).to(torch.uint8) * 255).to(x.device)


class Compose:
    """Apply augmentations in order, all drawing from the same generator."""

    def __init__(self, transforms: Sequence[Augment]):
        self.transforms = list(transforms)

    def __call__(self, x: Tensor, generator: torch.Generator) -> Tensor:
        for t in self.transforms:
            x = t(x, generator)
        return x


def row_block(num_rows: int, rank: int, world_size: int) -> tuple[int, int]:
    """``(start, stop)`` of rank ``rank``'s contiguous block of ``num_rows`` rows split over ``world_size``
    ranks as evenly as possible (the first ``num_rows % world_size`` blocks one row longer, as
    ``torch.tensor_split``); a block may be empty when there are fewer rows than ranks."""
    size, longer = divmod(num_rows, world_size)
    start = rank * size + min(rank, longer)
    return start, start + size + (1 if rank < longer else 0)


class ShuffledBatches:
    """Batches of indices into ``num_items`` items on ``device``: a fresh permutation each epoch
    (or ``0..n-1`` in order), cut into ``batch_size`` slices; the last short batch is dropped when
    ``drop_last``. Iterating uses the current epoch, then advances it by one.

    After :meth:`shard`, the batches (and ``batch_size``) are still the global ones; the subclasses
    yield this rank's rows of each.
    """

    def __init__(
        self,
        num_items: int,
        batch_size: int,
        shuffle: bool,
        drop_last: bool,
        seed: int,
        device: torch.device,
    ):
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        self.num_items, self.batch_size = num_items, batch_size
        self.shuffle, self.drop_last = shuffle, drop_last
        self.seed, self.device = seed, device
        self.epoch = 0
        self.rank, self.world_size = 0, 1

    def shard(self, rank: int, world_size: int) -> ShuffledBatches:
        """Yield rank ``rank``'s block of ``batch_size / world_size`` rows of every global batch from now on
        (``world_size`` must divide ``batch_size``); returns ``self``."""
        if not (isinstance(world_size, int) and world_size >= 1 and isinstance(rank, int) and 0 <= rank < world_size):
            raise ValueError(f"shard(rank={rank!r}, world_size={world_size!r}): expected 0 <= rank < world_size")
        if self.batch_size % world_size:
            raise ValueError(
                f"batch_size={self.batch_size} is not divisible by the world size {world_size}: the batch size is the "
                f"global batch, split evenly over the ranks"
            )
        self.rank, self.world_size = rank, world_size
        return self

    def rows(self, num_rows: int) -> tuple[int, int]:
        """``(start, stop)`` of this rank's rows in a global batch of ``num_rows`` (see :func:`row_block`)."""
        return row_block(num_rows, self.rank, self.world_size)

    def local_index(self, index: Tensor | slice) -> Tensor | slice:
        """This rank's part of a global batch's ``index`` (as :meth:`epoch_batches` yields it)."""
        if self.world_size == 1:
            return index
        if isinstance(index, slice):
            stop = min(index.stop, self.num_items)
            start, end = self.rows(stop - index.start)
            return slice(index.start + start, index.start + end)
        start, end = self.rows(len(index))
        return index[start:end]

    def set_epoch(self, epoch: int) -> None:
        """Make the next iteration produce epoch ``epoch`` (for exact resume)."""
        self.epoch = epoch

    def __len__(self) -> int:
        """Batches per epoch."""
        full, rest = divmod(self.num_items, self.batch_size)
        return full + (1 if rest and not self.drop_last else 0)

    def epoch_batches(self) -> Iterator[tuple[Tensor | slice, torch.Generator]]:
        """Advance the epoch and yield ``(index, augmentation generator)`` per batch; the index is a
        ``(B,)`` device tensor when shuffling, else a slice."""
        epoch, self.epoch = self.epoch, self.epoch + 1
        augment_gen = epoch_generator(self.seed, epoch, AUGMENT_STREAM, self.device)
        order = None
        if self.shuffle:
            order_gen = epoch_generator(self.seed, epoch, ORDER_STREAM, self.device)
            order = torch.randperm(self.num_items, generator=order_gen, device=self.device)  # (N,)
        for i in range(len(self)):
            window = slice(i * self.batch_size, (i + 1) * self.batch_size)
            yield (order[window] if order is not None else window), augment_gen


class DeviceLoader(ShuffledBatches):
    """Minibatches of tensors that stay on their device (see the module docstring).

    Each batch is ``(x, y)``, or ``(x, y, extras)`` when ``extras`` are given: ``x`` is
    ``(B, C, H, W)`` float32 (uint8 scaled to [0, 1], then ``transform``, then ``(x - mean) / std``
    when ``mean``/``std`` are given), ``y`` the matching labels, ``extras`` the matching rows of each
    extra tensor.

    :param x: ``(N, C, H, W)`` images, uint8 or float.
    :param y: ``(N, ...)`` targets on the same device.
    :param batch_size: examples per batch.
    :param shuffle: a new permutation each epoch (else the stored order).
    :param drop_last: drop the last short batch.
    :param seed: with the epoch, fixes order and augmentation (non-negative).
    :param transform: an augmentation ``t(x, generator)`` on [0, 1] float images.
    :param mean: per-channel mean in [0, 1] units (with ``std``) for standardisation.
    :param std: per-channel standard deviation in [0, 1] units.
    :param extras: more ``(N, ...)`` tensors to slice alongside (e.g. boxes, nuisance labels).
    """

    def __init__(
        self,
        x: Tensor,
        y: Tensor,
        batch_size: int,
        shuffle: bool = True,
        drop_last: bool = True,
        seed: int = 0,
        transform: Augment | None = None,
        mean: Sequence[float] | None = None,
        std: Sequence[float] | None = None,
        extras: Mapping[str, Tensor] | None = None,
    ):
        super().__init__(len(x), batch_size, shuffle, drop_last, seed, x.device)
        extras = dict(extras or {})
        for name, t in [("y", y), *extras.items()]:
            if len(t) != len(x) or t.device != x.device:
                raise ValueError(f"{name} must have {len(x)} rows on {x.device}")
        self.x, self.y, self.extras, self.transform = x, y, extras, transform
        self.mean = self.std = None
        if (mean is None) != (std is None):
            raise ValueError("give both mean and std, or neither")
        if mean is not None and std is not None:
            shape = (1, -1, 1, 1)
            self.mean = torch.tensor(mean, dtype=torch.float32, device=x.device).reshape(shape)
            self.std = torch.tensor(std, dtype=torch.float32, device=x.device).reshape(shape)

    def __iter__(self) -> Iterator[tuple[Tensor, ...]]:
        for index, generator in self.epoch_batches():
            if self.world_size == 1 or self.transform is None:  # nothing random per batch: gather this rank's rows
                yield self.make_batch(self.local_index(index), generator)
            else:  # the global batch's augmentation (one process's draws), then this rank's rows of it
                yield self._rows_of(self.make_batch(index, generator))

    def _rows_of(self, batch: tuple) -> tuple:
        start, stop = self.rows(len(batch[0]))
        return tuple({k: v[start:stop] for k, v in t.items()} if isinstance(t, dict) else t[start:stop] for t in batch)

    def take(self, t: Tensor, index: Tensor | slice) -> Tensor:
        """Rows ``index`` of ``t``: a view for a slice, ``index_select`` for a tensor."""
        return t[index] if isinstance(index, slice) else t.index_select(0, index)

    def make_batch(self, index: Tensor | slice, generator: torch.Generator) -> tuple[Tensor, ...]:
        """Gather, convert, augment and standardise one batch."""
        xb = self.take(self.x, index)  # (B, C, H, W)
        xb = xb.to(torch.float32) / 255.0 if xb.dtype == torch.uint8 else xb.to(torch.float32)
        if self.transform is not None:
            xb = self.transform(xb, generator)  # (B, C, H', W')
        if self.mean is not None:
            xb = (xb - self.mean) / self.std  # (B, C, H', W')
        yb = self.take(self.y, index)  # (B, ...)
        if not self.extras:
            return xb, yb
        return xb, yb, {name: self.take(t, index) for name, t in self.extras.items()}
