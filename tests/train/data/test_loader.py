"""DeviceLoader: coverage, determinism per (seed, epoch), exact resume, and the augmentations."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from infodropout.train.data import Compose, DeviceLoader, RandomCrop, RandomHorizontalFlip


def images(n: int = 103, c: int = 3, size: int = 8, seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.randint(0, 256, (n, c, size, size), generator=g, dtype=torch.uint8)


def epoch_labels(loader: DeviceLoader) -> list[torch.Tensor]:
    return [batch[1] for batch in loader]


def test_every_sample_once_per_epoch():
    x, y = images(), torch.arange(103)
    loader = DeviceLoader(x, y, batch_size=10, drop_last=False)
    assert len(loader) == 11
    for _ in range(2):
        seen = torch.cat(epoch_labels(loader))
        assert torch.equal(seen.sort().values, y)
        assert not torch.equal(seen, y)  # shuffled


def test_drop_last_keeps_distinct_full_batches():
    loader = DeviceLoader(images(), torch.arange(103), batch_size=10)
    batches = epoch_labels(loader)
    assert len(loader) == len(batches) == 10
    assert all(len(b) == 10 for b in batches)
    assert len(torch.cat(batches).unique()) == 100


def test_deterministic_per_seed_and_epoch_and_resumable():
    x, y = images(), torch.arange(103)
    a = DeviceLoader(x, y, 16, seed=3)
    b = DeviceLoader(x, y, 16, seed=3)
    a0, a1 = epoch_labels(a), epoch_labels(a)
    assert all(torch.equal(p, q) for p, q in zip(a0, epoch_labels(b), strict=True))
    assert not torch.equal(torch.cat(a0), torch.cat(a1))  # epochs differ
    b.set_epoch(1)  # exact resume at epoch 1
    assert all(torch.equal(p, q) for p, q in zip(a1, epoch_labels(b), strict=True))
    other = DeviceLoader(x, y, 16, seed=4)
    assert not torch.equal(torch.cat(a0), torch.cat(epoch_labels(other)))


def test_in_order_without_shuffle_keeps_the_short_batch():
    x, y = images(), torch.arange(103)
    batches = epoch_labels(DeviceLoader(x, y, 25, shuffle=False, drop_last=False))
    assert [len(b) for b in batches] == [25, 25, 25, 25, 3]
    assert torch.equal(torch.cat(batches), y)


def test_batches_are_converted_and_standardised():
    x, y = images(), torch.arange(103)
    mean, std = (0.2, 0.4, 0.6), (0.1, 0.2, 0.3)
    extras = {"double": 2 * y}
    for xb, yb, eb in DeviceLoader(x, y, 20, mean=mean, std=std, extras=extras):
        expected = (x[yb].float() / 255 - torch.tensor(mean)[:, None, None]) / torch.tensor(std)[:, None, None]
        torch.testing.assert_close(xb, expected)
        assert xb.dtype == torch.float32
        assert torch.equal(eb["double"], 2 * yb)


def test_mismatched_inputs_are_refused():
    with pytest.raises(ValueError, match="y must have 103 rows"):
        DeviceLoader(images(), torch.arange(5), 10)
    with pytest.raises(ValueError, match="batch_size"):
        DeviceLoader(images(), torch.arange(103), 0)
    with pytest.raises(ValueError, match="both mean and std"):
        DeviceLoader(images(), torch.arange(103), 10, mean=(0.5,))


def windows(padded: torch.Tensor, h: int, w: int) -> torch.Tensor:
    """Every (h, w) window of one padded image: (offsets, C, h, w)."""
    c = padded.shape[0]
    unfolded = padded.unfold(1, h, 1).unfold(2, w, 1)  # (C, oy, ox, h, w)
    return unfolded.permute(1, 2, 0, 3, 4).reshape(-1, c, h, w)


@pytest.mark.parametrize(("size", "padding"), [(None, 4), (6, 0), ((5, 7), 2)])
def test_random_crop_picks_a_window_of_the_padded_image(size, padding):
    x = images(64).float() / 255
    out = RandomCrop(size, padding)(x, torch.Generator().manual_seed(0))
    h, w = (8, 8) if size is None else ((size, size) if isinstance(size, int) else size)
    assert out.shape == (64, 3, h, w)
    padded = F.pad(x, (padding,) * 4)
    offsets = []
    for i in range(64):
        match = (windows(padded[i], h, w) == out[i]).flatten(1).all(1).nonzero()
        assert len(match) >= 1  # out[i] is some window of the padded image
        offsets.append(int(match[0]))
    assert len(set(offsets)) > 5  # offsets are drawn per sample


def test_random_crop_rejects_oversized_crops():
    with pytest.raises(ValueError, match="larger than"):
        RandomCrop(12, padding=1)(images(2).float(), torch.Generator())


def test_horizontal_flip_is_exact_and_per_sample():
    x = images(200).float()
    out = RandomHorizontalFlip()(x, torch.Generator().manual_seed(1))
    flipped = (out == x.flip(3)).flatten(1).all(1)
    same = (out == x).flatten(1).all(1)
    assert bool((flipped | same).all())
    assert 60 < int(flipped.sum()) < 140
    assert torch.equal(RandomHorizontalFlip(1.0)(x, torch.Generator()), x.flip(3))
    assert torch.equal(RandomHorizontalFlip(0.0)(x, torch.Generator()), x)


def test_augmented_epochs_repeat_exactly_with_the_seed():
    x, y = images(), torch.arange(103)
    augment = Compose([RandomCrop(padding=2), RandomHorizontalFlip()])
    a = [xb for xb, _ in DeviceLoader(x, y, 32, seed=7, transform=augment)]
    b = [xb for xb, _ in DeviceLoader(x, y, 32, seed=7, transform=augment)]
    assert all(torch.equal(p, q) for p, q in zip(a, b, strict=True))
    plain = [xb for xb, _ in DeviceLoader(x, y, 32, seed=7)]
    assert not torch.equal(a[0], plain[0])


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_everything_stays_on_the_gpu():
    x, y = images().cuda(), torch.arange(103).cuda()
    loader = DeviceLoader(x, y, 16, transform=Compose([RandomCrop(padding=4), RandomHorizontalFlip()]))
    seen = []
    for xb, yb in loader:
        assert xb.is_cuda and yb.is_cuda
        seen.append(yb)
    assert len(torch.cat(seen).unique()) == 96
