"""CIFAR-10: the real JPEG archive, its cache, the original pickled layouts, and damaged files."""

from __future__ import annotations

import io
import pickle
import tarfile
from pathlib import Path

import numpy as np
import pytest
import torch

from infodropout.train.data import DataCorruptError, DataNotFoundError, channel_stats, load_cifar10
from infodropout.train.data import cifar as cifar_module


def test_cifar_sizes_balance_and_means(cifar):
    assert cifar.x_train.shape == (50000, 3, 32, 32) and cifar.x_test.shape == (10000, 3, 32, 32)
    assert cifar.x_train.dtype == np.uint8 and cifar.y_train.dtype == np.int64
    assert np.bincount(cifar.y_train).tolist() == [5000] * 10
    assert np.bincount(cifar.y_test).tolist() == [1000] * 10
    mean, _ = channel_stats(torch.from_numpy(cifar.x_train))
    assert mean == pytest.approx((0.4913, 0.4821, 0.4465), abs=1e-4)


def test_decoded_archive_is_cached_and_reused(monkeypatch, data_dir, cifar_cache, cifar):
    entries = list((cifar_cache / "cifar10").iterdir())
    assert len(entries) == 1
    assert sorted(p.name for p in entries[0].iterdir()) == [
        "x_test.npy", "x_train.npy", "y_test.npy", "y_train.npy",
    ]  # fmt: skip

    def no_decoding(path):
        raise AssertionError("the archive was decoded again")

    monkeypatch.setattr(cifar_module, "decode_jpeg_archive", no_decoding)
    again = load_cifar10(data_dir, cache=cifar_cache)
    np.testing.assert_array_equal(again.x_test, cifar.x_test)
    np.testing.assert_array_equal(again.y_train, cifar.y_train)


def test_cache_is_keyed_by_archive_contents(isolated, tmp_path, jpeg_archive):
    archive = tmp_path / "data" / "cifar10" / "cifar10-jpeg.tar.gz"
    jpeg_archive(archive, seed=1)
    first = load_cifar10(tmp_path / "data")
    assert first.x_train.shape == (10, 3, 32, 32) and first.y_train.tolist() == list(range(10))
    jpeg_archive(archive, seed=2)  # same name, other images
    second = load_cifar10(tmp_path / "data")
    assert not np.array_equal(first.x_train, second.x_train)
    assert len(list((isolated / "cifar10").iterdir())) == 2
    jpeg_archive(archive, seed=1)
    np.testing.assert_array_equal(load_cifar10(tmp_path / "data").x_train, first.x_train)


def test_jpeg_pixels_match_a_direct_decode(isolated, tmp_path, jpeg_archive):
    from PIL import Image

    archive = jpeg_archive(tmp_path / "cifar10-jpeg.tar.gz", seed=3)
    loaded = load_cifar10(tmp_path)
    with tarfile.open(archive) as tar:
        raw = tar.extractfile("test/ship/0000.jpg").read()
    expected = np.asarray(Image.open(io.BytesIO(raw)).convert("RGB")).transpose(2, 0, 1)
    np.testing.assert_array_equal(loaded.x_test[8], expected)
    assert loaded.y_test[8] == 8


def test_pillow_fallback_decodes_the_same_pixels(isolated, monkeypatch, tmp_path, jpeg_archive):
    jpeg_archive(tmp_path / "cifar10-jpeg.tar.gz", per_class=3, seed=4)
    archive = tmp_path / "cifar10-jpeg.tar.gz"
    fast = cifar_module.decode_jpeg_archive(archive)
    monkeypatch.setattr(cifar_module, "decode_jpeg", None)
    slow = cifar_module.decode_jpeg_archive(archive)
    for a, b in zip(fast, slow, strict=True):
        np.testing.assert_array_equal(a, b)


def test_pillow_fallback_names_an_unreadable_member(isolated, monkeypatch, tmp_path, jpeg_archive):
    monkeypatch.setattr(cifar_module, "decode_jpeg", None)
    jpeg_archive(tmp_path / "cifar10-jpeg.tar.gz", replace={"test/frog/0000.jpg": b"junk"})
    with pytest.raises(DataCorruptError, match="test/frog/0000.jpg: unreadable image"):
        load_cifar10(tmp_path)


def write_batches(directory: Path, cifar, per_batch: int = 7) -> None:
    """A small ``cifar-10-batches-py`` from the real arrays: ``per_batch`` images per batch."""
    directory.mkdir(parents=True)
    names = [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]
    for b, name in enumerate(names):
        if name == "test_batch":
            x, y, rows = cifar.x_test, cifar.y_test, slice(0, per_batch)
        else:  # batch b takes train images from 7000 b on (several classes across batches)
            x, y, rows = cifar.x_train, cifar.y_train, slice(b * 7000, b * 7000 + per_batch)
        batch = {"data": x[rows].reshape(per_batch, -1), "labels": y[rows].tolist(), "batch_label": name}
        (directory / name).write_bytes(pickle.dumps(batch))


def expected_from_batches(cifar, per_batch: int = 7):
    rows = [np.arange(b * 7000, b * 7000 + per_batch) for b in range(5)]
    return cifar.x_train[np.concatenate(rows)], cifar.y_train[np.concatenate(rows)]


def test_pickled_batches_directory(isolated, tmp_path, cifar):
    write_batches(tmp_path / "cifar-10-batches-py", cifar)
    loaded = load_cifar10(tmp_path)
    x, y = expected_from_batches(cifar)
    np.testing.assert_array_equal(loaded.x_train, x)
    np.testing.assert_array_equal(loaded.y_train, y)
    np.testing.assert_array_equal(loaded.x_test, cifar.x_test[:7])


def test_original_python_archive(isolated, tmp_path, cifar):
    write_batches(tmp_path / "src" / "cifar-10-batches-py", cifar)
    (tmp_path / "data").mkdir()
    with tarfile.open(tmp_path / "data" / "cifar-10-python.tar.gz", "w:gz") as tar:
        tar.add(tmp_path / "src" / "cifar-10-batches-py", arcname="cifar-10-batches-py")
    loaded = load_cifar10(tmp_path / "data")
    x, _ = expected_from_batches(cifar)
    np.testing.assert_array_equal(loaded.x_train, x)
    np.testing.assert_array_equal(loaded.y_test, cifar.y_test[:7])


def test_truncated_pickle_is_named(isolated, tmp_path, cifar):
    directory = tmp_path / "cifar-10-batches-py"
    write_batches(directory, cifar)
    bad = directory / "data_batch_3"
    bad.write_bytes(bad.read_bytes()[:500])
    with pytest.raises(DataCorruptError, match="unreadable pickle") as info:
        load_cifar10(tmp_path)
    assert str(info.value).startswith(f"{bad}: ") and "\n" not in str(info.value)


def test_missing_batch_is_named(isolated, tmp_path, cifar):
    write_batches(tmp_path / "cifar-10-batches-py", cifar)
    (tmp_path / "cifar-10-batches-py" / "test_batch").unlink()
    with pytest.raises(DataNotFoundError, match="test_batch"):
        load_cifar10(tmp_path)


def test_unreadable_image_names_the_member(isolated, tmp_path, jpeg_archive):
    archive = jpeg_archive(tmp_path / "cifar10-jpeg.tar.gz", replace={"train/cat/0000.jpg": b"\xff\xd8garbage"})
    with pytest.raises(DataCorruptError, match="unreadable image") as info:
        load_cifar10(tmp_path)
    assert str(info.value).startswith(f"{archive}::train/cat/0000.jpg: ")
    assert "\n" not in str(info.value)
    assert not (isolated / "cifar10").exists()  # nothing cached from a damaged archive


def test_wrong_image_size_names_the_member(isolated, tmp_path, jpeg_archive):
    from PIL import Image

    buffer = io.BytesIO()
    Image.new("RGB", (16, 16)).save(buffer, format="JPEG")
    small = buffer.getvalue()
    jpeg_archive(tmp_path / "cifar10-jpeg.tar.gz", replace={"test/dog/0000.jpg": small})
    with pytest.raises(DataCorruptError, match=r"test/dog/0000.jpg: image is \(3, 16, 16\)"):
        load_cifar10(tmp_path)


@pytest.mark.parametrize("damage", ["garbage", "truncated"])
def test_bad_archive_is_named(isolated, tmp_path, jpeg_archive, damage):
    archive = jpeg_archive(tmp_path / "cifar10" / "cifar10-jpeg.tar.gz")
    raw = archive.read_bytes()
    archive.write_bytes(b"\x00" * 2048 if damage == "garbage" else raw[: len(raw) // 2])
    with pytest.raises(DataCorruptError, match="bad archive") as info:
        load_cifar10(tmp_path)
    assert str(info.value).startswith(f"{archive}: ")


def test_missing_cifar_names_the_forms_and_dirs(isolated, tmp_path):
    with pytest.raises(DataNotFoundError) as info:
        load_cifar10(tmp_path)
    message = str(info.value)
    for part in ("cifar10/cifar10-jpeg.tar.gz", "cifar-10-batches-py/", str(tmp_path), "--data-dir"):
        assert part in message
    assert "\n" not in message
