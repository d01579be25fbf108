"""Cluttered MNIST: determinism, the vectorised composition against a plain loop, and the boxes."""

from __future__ import annotations

import pytest
import torch

from infodropout.train.data import get_dataset, make_cluttered
from infodropout.train.data.cluttered import compose_cluttered, digit_boxes, draw_layout


@pytest.fixture(scope="module")
def digits(mnist) -> tuple[torch.Tensor, torch.Tensor]:
    return torch.from_numpy(mnist.x_test[:2000]), torch.from_numpy(mnist.y_test[:2000])


def reference_canvas(digits: torch.Tensor, layout, i: int, canvas: int = 96, c: int = 8) -> torch.Tensor:
    """Example ``i`` composed piece by piece, saturating after each, as the original generator does."""
    out = torch.zeros(canvas, canvas, dtype=torch.int32)
    for k in range(layout.other.shape[1]):
        (cx, cy), (px, py) = layout.cut[i, k].tolist(), layout.put[i, k].tolist()
        piece = digits[layout.other[i, k], cy : cy + c, cx : cx + c].int()
        out[py : py + c, px : px + c] = (out[py : py + c, px : px + c] + piece).clamp_max(255)
    x, y = layout.pos[i].tolist()
    out[y : y + 28, x : x + 28] = (out[y : y + 28, x : x + 28] + digits[layout.source[i]].int()).clamp_max(255)
    return out.to(torch.uint8)


def test_composition_matches_a_plain_loop(digits):
    x, _ = digits
    layout = draw_layout(len(x), 24, seed=5)
    images = compose_cluttered(x, layout)
    assert images.shape == (24, 1, 96, 96) and images.dtype == torch.uint8
    for i in range(24):
        assert torch.equal(images[i, 0], reference_canvas(x, layout, i))


def test_same_seed_same_images_other_seed_other_images(digits):
    a = make_cluttered(*digits, 64, seed=1)
    b = make_cluttered(*digits, 64, seed=1)
    c = make_cluttered(*digits, 64, seed=2)
    for p, q in zip(a, b, strict=True):
        assert torch.equal(p, q)
    assert not torch.equal(a.images, c.images)


def test_layout_draws(digits):
    layout = draw_layout(2000, 1500, seed=0)
    assert len(layout.source.unique()) == 1500  # no digit twice
    assert bool((layout.other != layout.source[:, None]).all())  # clutter comes from other digits
    assert layout.other.shape == (1500, 21)
    assert int(layout.pos.max()) == 96 - 28 and int(layout.put.max()) == 96 - 8
    assert int(layout.cut.max()) == 28 - 8 and int(layout.cut.min()) == 0


def test_box_contains_the_digit(digits):
    x, y = digits
    n = 200
    clean = make_cluttered(x, y, n, seed=3, num_clutter=0)
    full = make_cluttered(x, y, n, seed=3)
    layout = draw_layout(len(x), n, seed=3)
    assert torch.equal(clean.boxes, full.boxes) and torch.equal(clean.labels, y[layout.source])
    for i in range(n):
        x0, y0, x1, y1 = full.boxes[i].tolist()
        digit = x[full.source[i]]
        inside = torch.zeros(96, 96, dtype=torch.bool)
        inside[y0:y1, x0:x1] = True
        # Without clutter the canvas is the digit, all of it inside the box, touching every side.
        assert int(clean.images[i, 0][~inside].sum()) == 0
        box = clean.images[i, 0][y0:y1, x0:x1]
        assert box[0].any() and box[-1].any() and box[:, 0].any() and box[:, -1].any()
        px, py = layout.pos[i].tolist()
        assert torch.equal(clean.images[i, 0, py : py + 28, px : px + 28], digit)
        # With clutter: inside the box, where no piece lands, the pixels are the digit's.
        covered = torch.zeros(96, 96, dtype=torch.bool)
        for qx, qy in layout.put[i].tolist():
            covered[qy : qy + 8, qx : qx + 8] = True
        free = inside & ~covered
        assert torch.equal(full.images[i, 0][free], clean.images[i, 0][free])
        assert bool((full.images[i, 0] >= clean.images[i, 0]).all())


def test_digit_boxes_of_known_images():
    images = torch.zeros(2, 28, 28, dtype=torch.uint8)
    images[0, 3:9, 5:7] = 255
    assert digit_boxes(images).tolist() == [[5, 3, 7, 9], [0, 0, 0, 0]]


def test_registry_sizes_and_extras(data_dir):
    a = get_dataset("cluttered-mnist", data_dir, n_train=300, n_test=100, seed=4)
    assert a.x_train.shape == (300, 1, 96, 96) and a.x_test.shape == (100, 1, 96, 96)
    assert a.input_shape == (1, 96, 96) and a.num_classes == 10
    assert a.extras["boxes"].train.shape == (300, 4) and a.extras["source"].test.shape == (100,)
    b = get_dataset("cluttered-mnist", data_dir, n_train=300, n_test=100, seed=4)
    assert torch.equal(a.x_train, b.x_train) and torch.equal(a.x_test, b.x_test)
    assert not torch.equal(a.x_train[:100], a.x_test)  # train and test streams differ


@pytest.mark.slow
def test_paper_sizes(data_dir):
    ds = get_dataset("cluttered-mnist", data_dir)
    assert ds.x_train.shape == (50_000, 1, 96, 96) and ds.x_test.shape == (10_000, 1, 96, 96)
    assert len(ds.extras["source"].train.unique()) == 50_000


def test_composing_only_the_kept_examples_gives_the_same_images(digits):
    x, y = digits
    whole = make_cluttered(x, y, 300, seed=5)
    keep = torch.randperm(300, generator=torch.Generator().manual_seed(9))[:40]  # (40,) in a random order
    part = make_cluttered(x, y, 300, seed=5, index=keep)
    for field in ("images", "labels", "boxes", "source"):
        assert torch.equal(getattr(part, field), getattr(whole, field)[keep]), field
    with pytest.raises(ValueError, match=r"index: expected positions in 0\.\.299"):
        make_cluttered(x, y, 300, seed=5, index=torch.tensor([300]))


def test_a_run_on_part_of_cluttered_mnist_generates_only_that_part_with_the_images_it_used_to(data_dir, monkeypatch):
    """``load_run_data`` with ``num_train``/``num_test`` composes only the examples kept: the very images of
    generating the whole set and taking the run's subset of it (what it did before)."""
    from infodropout.train import data as datalib
    from infodropout.train.config import resolve
    from infodropout.train.run import load_run_data

    monkeypatch.setattr(datalib, "CLUTTERED_SIZES", (600, 200))  # a small whole set to compare with
    config = resolve(
        "cluttered-allcnn", overrides=dict(num_train=150, num_test=50, seed=3, device="cpu", data_dir=str(data_dir))
    )
    data = load_run_data(config, torch.device("cpu"))
    whole = get_dataset("cluttered-mnist", data_dir, "cpu", 3, n_train=600, n_test=200)
    x_train, y_train = datalib.subset(whole.x_train, whole.y_train, 150, 3)
    x_test, y_test = datalib.subset(whole.x_test, whole.y_test, 50, 4)
    assert torch.equal(data.train.x.cpu(), x_train) and torch.equal(data.train.y.cpu(), y_train)
    assert torch.equal(data.test.x.cpu(), x_test) and torch.equal(data.test.y.cpu(), y_test)
    with pytest.raises(ValueError, match=r"^num_train=601: cluttered-mnist has 600 training examples"):
        load_run_data(resolve("cluttered-allcnn", overrides=dict(num_train=601, device="cpu")), torch.device("cpu"))
