"""Search order, cache location, error messages and atomic cache writes."""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import pytest

from infodropout.train.data import (
    DataCorruptError,
    DataNotFoundError,
    add_data_dir_argument,
    cache_dir,
    search_dirs,
)
from infodropout.train.data.paths import load_arrays, save_arrays, save_npy_atomic


def test_search_dirs_order(monkeypatch, tmp_path):
    monkeypatch.setenv("INFODROPOUT_DATA", f"{tmp_path / 'a'}:{tmp_path / 'b'}")
    monkeypatch.setenv("INFODROPOUT_CACHE", str(tmp_path / "c"))
    assert search_dirs(tmp_path / "x") == [tmp_path / n for n in ("x", "a", "b", "c")]
    assert search_dirs() == [tmp_path / n for n in ("a", "b", "c")]


def test_search_dirs_without_repeats(monkeypatch, tmp_path):
    monkeypatch.setenv("INFODROPOUT_DATA", str(tmp_path))
    monkeypatch.setenv("INFODROPOUT_CACHE", str(tmp_path / "c"))
    assert search_dirs(tmp_path) == [tmp_path, tmp_path / "c"]


def test_cache_dir_precedence(monkeypatch, tmp_path):
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    monkeypatch.delenv("INFODROPOUT_CACHE", raising=False)
    monkeypatch.delenv("XDG_CACHE_HOME", raising=False)
    assert cache_dir() == tmp_path / "home" / ".cache" / "infodropout"
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert cache_dir() == tmp_path / "xdg" / "infodropout"
    monkeypatch.setenv("INFODROPOUT_CACHE", str(tmp_path / "mine"))
    assert cache_dir() == tmp_path / "mine"


def test_not_found_message_is_one_actionable_line(tmp_path):
    err = DataNotFoundError("MNIST", ["train-images-idx3-ubyte[.gz]"], [tmp_path / "d"], "hint")
    message = str(err)
    assert isinstance(err, FileNotFoundError)
    assert "\n" not in message
    for part in ("MNIST", "train-images-idx3-ubyte", str(tmp_path / "d"), "--data-dir"):
        assert part in message
    assert "INFODROPOUT_DATA" in message


def test_corrupt_message_is_one_line():
    err = DataCorruptError("/d/f.gz", "bad\nthing")
    assert isinstance(err, ValueError)
    assert str(err) == "/d/f.gz: bad thing"


def test_save_npy_atomic_roundtrip_leaves_no_temp(tmp_path):
    target = tmp_path / "sub" / "a.npy"
    save_npy_atomic(target, np.arange(6).reshape(2, 3))
    np.testing.assert_array_equal(np.load(target), np.arange(6).reshape(2, 3))
    assert sorted(p.name for p in target.parent.iterdir()) == ["a.npy"]


def test_failed_save_leaves_nothing(tmp_path):
    with pytest.raises(ValueError):  # object arrays need pickles, which are refused
        save_npy_atomic(tmp_path / "b.npy", np.array([object()]))
    assert list(tmp_path.iterdir()) == []


def test_load_arrays_needs_every_file(tmp_path):
    save_arrays(tmp_path, {"x": np.zeros(3), "y": np.ones(2)})
    assert load_arrays(tmp_path, ["x", "z"]) is None
    loaded = load_arrays(tmp_path, ["x", "y"])
    assert loaded is not None and loaded["y"].tolist() == [1.0, 1.0]


def test_damaged_cache_file_names_it(tmp_path):
    (tmp_path / "x.npy").write_bytes(b"\x93NUMPY garbage")
    with pytest.raises(DataCorruptError, match="x.npy"):
        load_arrays(tmp_path, ["x"])


def test_data_dir_flag():
    parser = argparse.ArgumentParser()
    add_data_dir_argument(parser)
    assert parser.parse_args(["--data-dir", "/some/where"]).data_dir == Path("/some/where")
    assert parser.parse_args([]).data_dir is None
