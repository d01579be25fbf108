"""Fixtures for the data tests: the real sets loaded once per session, an isolated environment,
and small hand-made archives."""

from __future__ import annotations

import io
import tarfile
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from infodropout.train.data import CIFAR10_CLASSES, Splits, load_cifar10, load_idx_dataset


@pytest.fixture(scope="session")
def mnist(data_dir: Path) -> Splits:
    """The real MNIST as host arrays."""
    return load_idx_dataset("mnist", data_dir)


@pytest.fixture(scope="session")
def cifar_cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A cache root private to this test session (the JPEG archive is decoded into it once)."""
    return tmp_path_factory.mktemp("cifar-cache")


@pytest.fixture(scope="session")
def cifar(data_dir: Path, cifar_cache: Path) -> Splits:
    """The real CIFAR-10 as host arrays."""
    return load_cifar10(data_dir, cache=cifar_cache)


@pytest.fixture
def isolated(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Path:
    """No ``$INFODROPOUT_DATA`` and an empty per-test cache, so only explicit directories count.
    Returns the cache directory."""
    cache = tmp_path / "user-cache"
    monkeypatch.delenv("INFODROPOUT_DATA", raising=False)
    monkeypatch.setenv("INFODROPOUT_CACHE", str(cache))
    return cache


def add_member(tar: tarfile.TarFile, name: str, data: bytes) -> None:
    info = tarfile.TarInfo(name)
    info.size = len(data)
    tar.addfile(info, io.BytesIO(data))


@pytest.fixture
def jpeg_archive() -> Callable[..., Path]:
    """``make(path, per_class=1, seed=0, replace={member: bytes}, size=32)`` writes a small
    CIFAR-10-style JPEG archive of random images and returns its path."""

    def make(
        path: Path,
        per_class: int = 1,
        seed: int = 0,
        replace: dict[str, bytes] | None = None,
        size: int = 32,
    ) -> Path:
        rng = np.random.default_rng(seed)
        path.parent.mkdir(parents=True, exist_ok=True)
        with tarfile.open(path, "w:gz") as tar:
            for split in ("train", "test"):
                for cls in CIFAR10_CLASSES:
                    for i in range(per_class):
                        name = f"{split}/{cls}/{i:04d}.jpg"
                        pixels = rng.integers(0, 256, (size, size, 3), dtype=np.uint8)
                        buffer = io.BytesIO()
                        Image.fromarray(pixels).save(buffer, format="JPEG", quality=95)
                        data = buffer.getvalue()
                        add_member(tar, name, (replace or {}).get(name, data))
        return path

    return make
