"""Occluded CIFAR: both labels kept, only the digit's frame painted, determinism."""

from __future__ import annotations

import pytest
import torch

from infodropout.train.data import get_dataset, make_occluded


@pytest.fixture(scope="module")
def sources(cifar, mnist):
    return (
        torch.from_numpy(cifar.x_test[:500]),
        torch.from_numpy(cifar.y_test[:500]),
        torch.from_numpy(mnist.x_test),
        torch.from_numpy(mnist.y_test),
    )


def frame_mask(boxes: torch.Tensor, size: int = 32) -> torch.Tensor:
    mask = torch.zeros(len(boxes), 1, size, size, dtype=torch.bool)
    for i, (x0, y0, x1, y1) in enumerate(boxes.tolist()):
        mask[i, 0, y0:y1, x0:x1] = True
    return mask


def test_labels_and_nuisance_kept(sources):
    images, labels, digits, digit_labels = sources
    out = make_occluded(images, labels, digits, digit_labels, seed=0)
    assert torch.equal(out.labels, labels)
    assert torch.equal(out.nuisance, digit_labels[out.digit_index])
    assert len(out.digit_index.unique()) == 500  # no digit twice
    assert len(out.nuisance.unique()) == 10


def test_only_the_digit_frame_is_painted(sources):
    images, labels, digits, digit_labels = sources
    out = make_occluded(images, labels, digits, digit_labels, seed=0, digit_size=24)
    assert out.images.shape == images.shape and out.images.dtype == torch.uint8
    assert bool(((out.boxes[:, 2:] - out.boxes[:, :2]) == 24).all())
    changed = (out.images != images).any(1, keepdim=True)  # (n, 1, 32, 32)
    assert not bool((changed & ~frame_mask(out.boxes)).any())
    assert bool((changed.flatten(1).sum(1) > 20).all())  # every digit is visible


def test_determinism(sources):
    a = make_occluded(*sources, seed=1)
    b = make_occluded(*sources, seed=1)
    c = make_occluded(*sources, seed=2)
    assert all(torch.equal(p, q) for p, q in zip(a, b, strict=True))
    assert not torch.equal(a.images, c.images)


def test_registry_keeps_both_labels(data_dir, cifar_cache, cifar, mnist):
    ds = get_dataset("occluded-cifar", data_dir, n_train=300, n_test=200, cache=cifar_cache)
    assert ds.x_train.shape == (300, 3, 32, 32) and ds.input_shape == (3, 32, 32)
    index = ds.extras["cifar_index"].train.numpy()
    assert torch.equal(ds.y_train, torch.from_numpy(cifar.y_train[index]))
    nuisance = ds.extras["nuisance"].test
    assert torch.equal(nuisance, torch.from_numpy(mnist.y_test)[ds.extras["digit_index"].test])
    outside = ~frame_mask(ds.extras["boxes"].train).expand(-1, 3, -1, -1)
    assert torch.equal(ds.x_train[outside], torch.from_numpy(cifar.x_train[index])[outside])
