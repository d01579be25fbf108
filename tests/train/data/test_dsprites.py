"""dSprites: the factor grid, index <-> factors, rendering geometry, sampling and the original file."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from infodropout.train.data import DataCorruptError, DataNotFoundError, DSprites, load_dsprites
from infodropout.train.data.dsprites import MARGIN, SPAN, UNIT


@pytest.fixture(scope="module")
def ds() -> DSprites:
    return DSprites()


def classes(rows: list[list[int]]) -> torch.Tensor:
    return torch.tensor(rows, dtype=torch.int64)


def render(ds: DSprites, rows: list[list[int]]) -> torch.Tensor:
    return ds.render(ds.factors_to_index(classes(rows)))[:, 0]  # (B, 64, 64)


def test_grid_size_and_factors(ds):
    assert len(ds) == 737_280
    assert ds.factor_sizes == (3, 6, 40, 32, 32)
    assert ds.factor_names == ("shape", "scale", "orientation", "posX", "posY")


def test_every_index_round_trips_and_every_value_occurs(ds):
    index = torch.arange(len(ds))
    factors = ds.index_to_factors(index)  # (N, 5)
    assert torch.equal(ds.factors_to_index(factors), index)
    for f, size in enumerate(ds.factor_sizes):
        assert torch.bincount(factors[:, f]).tolist() == [len(ds) // size] * size
    assert factors[1].tolist() == [0, 0, 0, 0, 1]  # posY varies fastest, as in the original file
    assert factors[-1].tolist() == [2, 5, 39, 31, 31]


def test_factor_values(ds):
    values = ds.factor_values(torch.tensor([0, len(ds) - 1]))
    assert values[0].tolist() == [1.0, 0.5, 0.0, 0.0, 0.0]
    assert values[1].tolist() == pytest.approx([3.0, 1.0, 2 * math.pi, 1.0, 1.0])
    scales = ds.factor_values(ds.factors_to_index(classes([[0, s, 0, 0, 0] for s in range(6)])))[:, 1]
    assert scales.tolist() == pytest.approx([0.5, 0.6, 0.7, 0.8, 0.9, 1.0])


def test_images_are_binary_and_deterministic(ds):
    index = torch.randint(0, len(ds), (256,), generator=torch.Generator().manual_seed(0))
    a, b = ds.render(index), ds.render(index)
    assert a.shape == (256, 1, 64, 64) and a.dtype == torch.float32
    assert torch.equal(a, b)
    assert set(a.unique().tolist()) == {0.0, 1.0}
    assert bool((a.sum((1, 2, 3)) > 0).all())


def centroid(image: torch.Tensor) -> tuple[float, float]:
    rows, cols = image.nonzero(as_tuple=True)
    return float(cols.float().mean()), float(rows.float().mean())


def test_centroid_follows_position(ds):
    across = render(ds, [[0, 5, 0, x, 7] for x in range(32)])
    down = render(ds, [[0, 5, 0, 7, y] for y in range(32)])
    for k in range(32):
        expected = MARGIN + SPAN * k / 31 - 0.5  # pixel-index coordinates of the centre
        cx, cy = centroid(across[k])
        assert abs(cx - expected) <= 0.5 and abs(cy - (MARGIN + SPAN * 7 / 31 - 0.5)) <= 0.5
        cx, cy = centroid(down[k])
        assert abs(cy - expected) <= 0.5 and abs(cx - (MARGIN + SPAN * 7 / 31 - 0.5)) <= 0.5


def test_area_grows_with_scale(ds):
    for shape in range(3):
        areas = render(ds, [[shape, s, 3, 16, 16] for s in range(6)]).sum((1, 2))
        assert bool((areas.diff() > 0).all())
    square = render(ds, [[0, 5, 0, 16, 16]]).sum()
    assert float(square) == pytest.approx(4 * UNIT**2, rel=0.1)


def test_shapes_differ_and_rotate(ds):
    square, ellipse, heart = render(ds, [[s, 5, 0, 16, 16] for s in range(3)])
    for a, b in ((square, ellipse), (square, heart), (ellipse, heart)):
        assert int((a != b).sum()) > 40
    upright, turned = render(ds, [[2, 5, 0, 16, 16], [2, 5, 20, 16, 16]])  # 0 and ~pi
    assert int((upright != turned).sum()) > 40
    rows = upright.nonzero()[:, 0].float()
    assert rows.mean() < (rows.min() + rows.max()) / 2  # heart: wide top, point down


def test_every_shape_stays_inside_the_frame(ds):
    rows = [[s, 5, o, x, y] for s in range(3) for o in range(40) for x in (0, 31) for y in (0, 31)]
    images = render(ds, rows)
    border = images[:, 0].sum() + images[:, -1].sum() + images[:, :, 0].sum() + images[:, :, -1].sum()
    assert float(border) == 0.0
    assert bool((render(ds, [[s, 0, o, 0, 0] for s in range(3) for o in range(40)]).sum((1, 2)) > 0).all())


def test_sampling_helpers(ds):
    g = torch.Generator().manual_seed(0)
    fixed = ds.sample_fixed_factor(500, "scale", 2, generator=g)
    assert bool((fixed[:, 1] == 2).all())
    assert len(fixed[:, 4].unique()) > 20  # the others vary
    drawn = ds.sample_fixed_factor(100, 0, generator=torch.Generator().manual_seed(1))
    assert len(drawn[:, 0].unique()) == 1
    a = ds.sample_factors(300, torch.Generator().manual_seed(5))
    assert torch.equal(a, ds.sample_factors(300, torch.Generator().manual_seed(5)))
    for f, size in enumerate(ds.factor_sizes):
        assert int(a[:, f].min()) >= 0 and int(a[:, f].max()) == size - 1
    index = ds.sample_indices(50, torch.Generator().manual_seed(2))
    assert index.shape == (50,) and int(index.max()) < len(ds)
    with pytest.raises(ValueError, match="posX class 32"):
        ds.sample_fixed_factor(4, "posX", 32)


def test_dataset_item_and_loader(ds):
    image, factors = ds[1234]
    assert image.shape == (1, 64, 64)
    assert torch.equal(image, ds.render(torch.tensor([1234]))[0])
    assert torch.equal(factors, ds.index_to_factors(torch.tensor([1234]))[0])
    loader = ds.loader(batch_size=64, seed=1)
    assert len(loader) == len(ds) // 64
    batches = iter(loader)
    for _ in range(2):
        images, factors = next(batches)
        assert images.shape == (64, 1, 64, 64)
        assert torch.equal(images, ds.render(ds.factors_to_index(factors)))
    first = next(iter(ds.loader(batch_size=64, seed=1)))[1]
    assert torch.equal(first, next(iter(ds.loader(batch_size=64, seed=1)))[1])


def fake_npz(path, sizes=(1, 3, 2, 2, 2, 2), seed=0, shuffle_rows=False):
    """A miniature file in the original format: row-major latents and random binary images."""
    grid = np.stack(np.meshgrid(*[np.arange(s) for s in sizes], indexing="ij"), -1).reshape(-1, len(sizes))
    if shuffle_rows:
        grid = grid[::-1]
    values = grid.astype(np.float64)
    values[:, 1] += 1  # shapes 1, 2, 3
    values[:, 2] = 0.5 + 0.5 * grid[:, 2] / (sizes[2] - 1)
    images = np.random.default_rng(seed).integers(0, 2, (len(grid), 64, 64), dtype=np.uint8)
    np.savez_compressed(path, imgs=images, latents_classes=grid, latents_values=values)
    return images, values


def test_original_file_is_read_through_a_packed_cache(tmp_path):
    path = tmp_path / "dsprites_ndarray_co1sh3sc6or40x32y32_64x64.npz"
    images, values = fake_npz(path)
    ds = DSprites(npz=path, cache=tmp_path / "cache")
    assert len(ds) == 48 and ds.factor_sizes == (3, 2, 2, 2, 2)
    index = torch.tensor([0, 5, 47, 23])
    assert torch.equal(ds.render(index)[:, 0], torch.from_numpy(images[index.numpy()]).float())
    torch.testing.assert_close(ds.factor_values(index), torch.from_numpy(values[index.numpy(), 1:]))
    assert torch.equal(ds.factors_to_index(ds.index_to_factors(torch.arange(48))), torch.arange(48))
    assert len(list((tmp_path / "cache" / "dsprites").iterdir())) == 1
    again = DSprites(npz=path, cache=tmp_path / "cache")  # from the cache
    assert torch.equal(again.render(index), ds.render(index))


def test_original_file_found_by_load_dsprites(isolated, tmp_path):
    with pytest.raises(DataNotFoundError, match="dsprites_ndarray_co1sh3sc6or40x32y32_64x64.npz"):
        load_dsprites(tmp_path, source="file")
    assert load_dsprites(tmp_path).packed is None  # "auto" renders without the file
    (tmp_path / "dsprites").mkdir()
    fake_npz(tmp_path / "dsprites" / "dsprites_ndarray_co1sh3sc6or40x32y32_64x64.npz")
    assert len(load_dsprites(tmp_path)) == 48
    assert len(load_dsprites(tmp_path, source="render")) == 737_280


def test_damaged_original_file_is_named(tmp_path):
    path = tmp_path / "bad.npz"
    path.write_bytes(b"not a zip at all")
    with pytest.raises(DataCorruptError, match="unreadable .npz") as info:
        DSprites(npz=path, cache=tmp_path / "cache")
    assert str(info.value).startswith(str(path))
    fake_npz(path, shuffle_rows=True)
    with pytest.raises(DataCorruptError, match="row-major"):
        DSprites(npz=path, cache=tmp_path / "cache")


def test_loader_over_a_subset_renders_only_its_images():
    from infodropout.train.data import DSprites, DSpritesLoader

    sprites = DSprites()
    subset = torch.tensor([5, 700_000, 123_456, 42])
    loader = DSpritesLoader(sprites, 2, shuffle=True, drop_last=False, seed=0, indices=subset)
    assert len(loader) == 2
    seen = torch.cat([classes for _, classes in loader])
    expected = sprites.index_to_factors(subset)
    assert sorted(map(tuple, seen.tolist())) == sorted(map(tuple, expected.tolist()))
