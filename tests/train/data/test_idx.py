"""MNIST and Fashion-MNIST idx files: the real sets, the layouts, and damaged or missing files."""

from __future__ import annotations

import gzip
import hashlib
from pathlib import Path

import numpy as np
import pytest
import torch

from infodropout.train.data import (
    DataCorruptError,
    DataNotFoundError,
    channel_stats,
    load_idx_dataset,
    read_idx,
)
from infodropout.train.data import idx as idx_module

MNIST_TRAIN_COUNTS = [5923, 6742, 5958, 6131, 5842, 5421, 5918, 6265, 5851, 5949]
MNIST_TEST_COUNTS = [980, 1135, 1032, 1010, 982, 892, 958, 1028, 974, 1009]
FASHION_DIR = Path("/usr/share/datasets/fashion-mnist")
STEMS = list(idx_module.IDX_FILES.values())


def copy_set(src: Path, dst: Path, gunzip: bool = False) -> Path:
    """Copy the four MNIST files from ``src`` into ``dst`` (gunzipped when asked)."""
    dst.mkdir(parents=True, exist_ok=True)
    for stem in STEMS:
        data = (src / f"{stem}.gz").read_bytes()
        if gunzip:
            (dst / stem).write_bytes(gzip.decompress(data))
        else:
            (dst / f"{stem}.gz").write_bytes(data)
    return dst


def test_mnist_sizes_counts_and_stats(mnist):
    assert mnist.x_train.shape == (60000, 28, 28) and mnist.x_test.shape == (10000, 28, 28)
    assert mnist.x_train.dtype == np.uint8 and mnist.y_train.dtype == np.int64
    assert np.bincount(mnist.y_train).tolist() == MNIST_TRAIN_COUNTS
    assert np.bincount(mnist.y_test).tolist() == MNIST_TEST_COUNTS
    mean, std = channel_stats(torch.from_numpy(mnist.x_train[:, None]))
    assert mean[0] == pytest.approx(0.1307, abs=5e-5)
    assert std[0] == pytest.approx(0.3081, abs=5e-5)


@pytest.mark.parametrize(("layout", "gunzip"), [("MNIST/raw", True), (".", False), ("mnist", True)])
def test_mnist_layouts(isolated, tmp_path, data_dir, mnist, layout, gunzip):
    root = tmp_path / "data"
    copy_set(data_dir / "mnist", root / layout, gunzip)
    loaded = load_idx_dataset("mnist", root)
    for a, b in zip(loaded, mnist, strict=True):
        np.testing.assert_array_equal(a, b)


def test_mnist_from_environment(isolated, monkeypatch, tmp_path, data_dir):
    copy_set(data_dir / "mnist", tmp_path / "env" / "mnist")
    monkeypatch.setenv("INFODROPOUT_DATA", str(tmp_path / "env"))
    assert load_idx_dataset("mnist").x_test.shape == (10000, 28, 28)


def test_missing_mnist_names_files_dirs_and_fix(isolated, tmp_path):
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(DataNotFoundError) as info:
        load_idx_dataset("mnist", empty)
    message = str(info.value)
    assert "\n" not in message
    for part in ("train-images-idx3-ubyte", str(empty / "MNIST/raw"), str(isolated), "--data-dir"):
        assert part in message
    assert "INFODROPOUT_DATA" in message


def test_incomplete_set_names_the_missing_file(isolated, tmp_path, data_dir):
    root = copy_set(data_dir / "mnist", tmp_path / "mnist")
    (root / "t10k-labels-idx1-ubyte.gz").unlink()
    with pytest.raises(DataNotFoundError) as info:
        load_idx_dataset("mnist", tmp_path)
    assert "t10k-labels-idx1-ubyte" in str(info.value)
    assert "train-images" not in str(info.value)
    assert str(root) in str(info.value)


def corrupt_magic(raw: bytes) -> bytes:
    return raw[:3] + b"\x01" + raw[4:]


def corrupt_truncate(raw: bytes) -> bytes:
    return raw[:-1000]


def corrupt_append(raw: bytes) -> bytes:
    return raw + b"\x00" * 7


def corrupt_text(raw: bytes) -> bytes:
    return b"this is not an idx file\n"


@pytest.mark.parametrize(
    ("mutate", "expected"),
    [
        (corrupt_magic, "wrong magic number 0x00000801 (expected 0x00000803)"),
        (corrupt_truncate, "truncated"),
        (corrupt_append, "too long"),
        (corrupt_text, "wrong magic number"),
    ],
)
def test_damaged_idx_file_is_named(isolated, tmp_path, data_dir, mutate, expected):
    root = copy_set(data_dir / "mnist", tmp_path / "mnist", gunzip=True)
    bad = root / "t10k-images-idx3-ubyte"
    bad.write_bytes(mutate(bad.read_bytes()))
    with pytest.raises(DataCorruptError) as info:
        load_idx_dataset("mnist", tmp_path)
    message = str(info.value)
    assert message.startswith(f"{bad}: ") and expected in message and "\n" not in message


def test_truncated_gzip_is_named(isolated, tmp_path, data_dir):
    root = copy_set(data_dir / "mnist", tmp_path / "mnist")
    bad = root / "train-labels-idx1-ubyte.gz"
    bad.write_bytes(bad.read_bytes()[:5000])
    with pytest.raises(DataCorruptError, match="damaged gzip stream") as info:
        load_idx_dataset("mnist", tmp_path)
    assert str(info.value).startswith(str(bad))


def test_label_count_mismatch_is_named(isolated, tmp_path, data_dir):
    root = copy_set(data_dir / "mnist", tmp_path / "mnist", gunzip=True)
    bad = root / "t10k-labels-idx1-ubyte"
    raw = bad.read_bytes()
    bad.write_bytes(raw[:4] + (9999).to_bytes(4, "big") + raw[8:-1])
    with pytest.raises(DataCorruptError, match="expected 10000 uint8 labels") as info:
        load_idx_dataset("mnist", tmp_path)
    assert str(bad) in str(info.value)


def test_read_idx_general_types(tmp_path):
    values = np.arange(12, dtype=">i4").reshape(3, 4)
    path = tmp_path / "ints-idx2"
    path.write_bytes(b"\x00\x00\x0c\x02" + (3).to_bytes(4, "big") + (4).to_bytes(4, "big") + values.tobytes())
    out = read_idx(path)
    assert out.dtype == np.dtype("int32") and out.tolist() == values.tolist()


def test_data_dir_is_left_untouched(isolated, tmp_path, data_dir):
    root = copy_set(data_dir / "mnist", tmp_path / "mnist")
    before = {p.name: (hashlib.sha256(p.read_bytes()).hexdigest(), p.stat().st_mtime_ns) for p in root.iterdir()}
    load_idx_dataset("mnist", tmp_path)
    after = {p.name: (hashlib.sha256(p.read_bytes()).hexdigest(), p.stat().st_mtime_ns) for p in root.iterdir()}
    assert before == after
    assert [p.name for p in tmp_path.iterdir()] == ["mnist"]  # nothing written, not even a cache


def test_fashion_layout_and_never_a_bare_dir(isolated, monkeypatch, tmp_path, data_dir, mnist):
    monkeypatch.setitem(idx_module.SYSTEM_DIRS, "fashion-mnist", ())
    copy_set(data_dir / "mnist", tmp_path / "bare")  # MNIST files at the top: not Fashion-MNIST
    with pytest.raises(DataNotFoundError, match="Fashion-MNIST not found"):
        load_idx_dataset("fashion-mnist", tmp_path / "bare")
    copy_set(data_dir / "mnist", tmp_path / "tv" / "FashionMNIST" / "raw", gunzip=True)
    np.testing.assert_array_equal(load_idx_dataset("fashion-mnist", tmp_path / "tv").y_test, mnist.y_test)


@pytest.mark.skipif(
    not (FASHION_DIR / "train-images-idx3-ubyte.gz").is_file(),
    reason="Fashion-MNIST not installed (apt-get install dataset-fashion-mnist)",
)
def test_fashion_mnist_from_the_debian_package(isolated, tmp_path):
    fashion = load_idx_dataset("fashion-mnist", tmp_path)
    assert fashion.x_train.shape == (60000, 28, 28) and fashion.x_test.shape == (10000, 28, 28)
    assert np.bincount(fashion.y_train).tolist() == [6000] * 10
    assert np.bincount(fashion.y_test).tolist() == [1000] * 10
    mean, std = channel_stats(torch.from_numpy(fashion.x_train[:, None]))
    assert mean[0] == pytest.approx(0.2860, abs=1e-4)
    assert std[0] == pytest.approx(0.3530, abs=1e-4)


def test_download_is_offered_not_required(isolated, monkeypatch, tmp_path, data_dir, mnist):
    import torchvision.datasets

    calls = []

    class FakeMNIST:  # stands in for torchvision's downloader: writes MNIST/raw under root
        def __init__(self, root, train, download):
            calls.append(Path(root))
            copy_set(data_dir / "mnist", Path(root) / "MNIST" / "raw")

    monkeypatch.setattr(torchvision.datasets, "MNIST", FakeMNIST)
    with pytest.raises(DataNotFoundError):
        load_idx_dataset("mnist", tmp_path / "nowhere")
    assert calls == []
    loaded = load_idx_dataset("mnist", tmp_path / "nowhere", download=True)
    assert calls == [isolated]
    np.testing.assert_array_equal(loaded.y_train, mnist.y_train)
