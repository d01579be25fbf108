"""dSprites: 737,280 binary 64x64 images of one white shape, every factor combination once.

Factors (classes in row-major order, so ``index = sum_f class_f * prod(sizes after f)``, the order of
the original ``dsprites_ndarray_co1sh3sc6or40x32y32_64x64.npz`` without its constant colour):

======== ===== ===================================
factor   size  values
======== ===== ===================================
shape    3     1 square, 2 ellipse, 3 heart
scale    6     linspace(0.5, 1, 6)
orient.  40    linspace(0, 2 pi, 40) (radians)
posX     32    linspace(0, 1, 32)
posY     32    linspace(0, 1, 32)
======== ===== ===================================

Rendering geometry (pixel units; the frame spans [0, 64] on both axes, pixel ``[row i, col j]`` is
centred at ``(x, y) = (j + 0.5, i + 0.5)``, x grows to the right, y downward):

- centre ``(cx, cy) = (13 + 38 posX, 13 + 38 posY)``, so positions 0..1 sweep the central 38 px;
- size unit ``r = 8.4 scale``: the square has half-side ``r`` (area ``4 r^2``, 282 px at scale 1), the
  ellipse semi-axes ``1.4 r`` (along x at orientation 0) and ``0.7 r``, the heart is the curve
  ``(X^2 + Y^2 - 1)^3 = X^2 Y^3`` scaled to the square's area, point down, rotated about its centroid;
- orientation ``theta`` rotates the shape by ``theta`` about its centre (clockwise on screen, since y
  points down). No shape reaches further than ``1.42 r <= 11.9`` px from its centre, so every shape
  lies at least 1 px inside the frame.

A pixel is on when its centre lies inside the shape, so images are exactly binary. Rendering is a
batch of elementwise ops on the device (``(B, 64, 64)`` coordinate grids); nothing of the whole set is
ever held. Where the original file is given instead, its images are bit-packed once into
``cache_dir()/dsprites/<digest>/imgs_packed.npy`` (370 MB instead of 3 GB), read through a memory map.
"""

from __future__ import annotations

import math
import os
import zipfile
from collections.abc import Iterator
from pathlib import Path
from typing import IO

import numpy as np
import torch
from torch import Tensor
from torch.utils.data import Dataset

from .loader import ShuffledBatches
from .paths import (
    DataCorruptError,
    DataNotFoundError,
    cache_dir,
    candidate_dirs,
    check_data_dir,
    file_digest,
    load_arrays,
    save_arrays,
    search_dirs,
)

FACTOR_NAMES = ("shape", "scale", "orientation", "posX", "posY")
FACTOR_SIZES = (3, 6, 40, 32, 32)
SHAPE_NAMES = ("square", "ellipse", "heart")
IMAGE_SIZE = 64
NPZ_NAME = "dsprites_ndarray_co1sh3sc6or40x32y32_64x64.npz"
NPZ_LAYOUTS = ("dsprites", "dsprites-dataset", ".")

# Geometry, in pixels (see the module docstring).
MARGIN = 13.0  # centre of a shape at position 0
SPAN = IMAGE_SIZE - 2 * MARGIN  # 38 px from position 0 to position 1
UNIT = 8.4  # half-side of the square at scale 1
ELLIPSE_AXES = (1.4, 0.7)  # semi-axes in units of r
HEART_CENTROID = 0.2935  # centroid height of the heart curve in its own units
HEART_AREA = 3.662  # area enclosed by the heart curve in its own units
HEART_SCALE = math.sqrt(4.0 / HEART_AREA)  # heart units per r, matching the square's area 4 r^2

PACK_CHUNK = 16384  # images decompressed per step when packing the original file


def factor_value_table() -> list[Tensor]:
    """The values of each factor's classes (float64, see the module docstring)."""
    return [
        torch.tensor([1.0, 2.0, 3.0], dtype=torch.float64),
        torch.linspace(0.5, 1.0, 6, dtype=torch.float64),
        torch.linspace(0.0, 2 * math.pi, 40, dtype=torch.float64),
        torch.linspace(0.0, 1.0, 32, dtype=torch.float64),
        torch.linspace(0.0, 1.0, 32, dtype=torch.float64),
    ]


def render_sprites(shape: Tensor, scale: Tensor, orientation: Tensor, pos_x: Tensor, pos_y: Tensor) -> Tensor:
    """Binary images of sprites with the given factor *values* (``(B,)`` each; ``shape`` holds
    class ids 0 square, 1 ellipse, 2 heart), as ``(B, 64, 64)`` bool on their device."""
    device = scale.device
    r = (UNIT * scale.float())[:, None, None]  # (B, 1, 1)
    cx = (MARGIN + SPAN * pos_x.float())[:, None, None]  # (B, 1, 1)
    cy = (MARGIN + SPAN * pos_y.float())[:, None, None]  # (B, 1, 1)
    cos = torch.cos(orientation.float())[:, None, None]  # (B, 1, 1)
    sin = torch.sin(orientation.float())[:, None, None]  # (B, 1, 1)
    centres = torch.arange(IMAGE_SIZE, device=device, dtype=torch.float32) + 0.5  # (64,)
    dx = centres[None, None, :] - cx  # (B, 1, 64)
    dy = centres[None, :, None] - cy  # (B, 64, 1)
    u = (cos * dx + sin * dy) / r  # (B, 64, 64) along the shape's own x axis, in units of r
    v = (cos * dy - sin * dx) / r  # (B, 64, 64) along its own y axis (down at orientation 0)
    square = torch.maximum(u.abs(), v.abs()) <= 1.0
    ellipse = (u / ELLIPSE_AXES[0]).square() + (v / ELLIPSE_AXES[1]).square() <= 1.0
    hx = u / HEART_SCALE  # (B, 64, 64) heart curve coordinates, Y up
    hy = HEART_CENTROID - v / HEART_SCALE
    heart = (hx.square() + hy.square() - 1.0).pow(3) - hx.square() * hy.pow(3) <= 0.0
    kind = shape[:, None, None]  # (B, 1, 1)
    return torch.where(kind == 0, square, torch.where(kind == 1, ellipse, heart))  # (B, 64, 64)


def find_dsprites_npz(data_dir: str | os.PathLike[str] | None = None) -> Path:
    """The original dSprites file under ``dsprites/``, ``dsprites-dataset/`` or a search directory
    itself; :class:`DataNotFoundError` when it is nowhere."""
    dirs = candidate_dirs(search_dirs(data_dir), NPZ_LAYOUTS)
    for directory in dirs:
        if (directory / NPZ_NAME).is_file():
            return directory / NPZ_NAME
    raise DataNotFoundError("dSprites", [NPZ_NAME], dirs, "or use the renderer, which needs no file")


def read_npy_header(f: IO[bytes], where: str) -> tuple[tuple[int, ...], np.dtype]:
    """Shape and dtype from an open .npy stream (C order required)."""
    try:
        version = np.lib.format.read_magic(f)
        if version == (1, 0):
            shape, fortran, dtype = np.lib.format.read_array_header_1_0(f)
        else:
            shape, fortran, dtype = np.lib.format.read_array_header_2_0(f)
    except ValueError as err:
        raise DataCorruptError(where, f"bad .npy header ({err})") from err
    if fortran:
        raise DataCorruptError(where, "Fortran-ordered array; expected C order")
    return tuple(shape), dtype


def pack_npz_images(path: Path) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Read the original file: images bit-packed along x ``(N, 64, 8)`` uint8, and
    ``latents_classes``/``latents_values`` ``(N, 6)``, streaming ``imgs`` in chunks."""
    try:
        with zipfile.ZipFile(path) as zf:
            with zf.open("latents_classes.npy") as f:
                classes = np.load(f, allow_pickle=False)
            with zf.open("latents_values.npy") as f:
                values = np.load(f, allow_pickle=False)
            with zf.open("imgs.npy") as f:
                where = f"{path}::imgs.npy"
                shape, dtype = read_npy_header(f, where)
                if len(shape) != 3 or shape[1:] != (IMAGE_SIZE, IMAGE_SIZE) or dtype.itemsize != 1:
                    raise DataCorruptError(where, f"expected (N, 64, 64) bytes, found {shape} {dtype}")
                packed = np.empty((shape[0], IMAGE_SIZE, IMAGE_SIZE // 8), dtype=np.uint8)
                row_bytes = IMAGE_SIZE * IMAGE_SIZE
                for start in range(0, shape[0], PACK_CHUNK):
                    rows = min(PACK_CHUNK, shape[0] - start)
                    raw = f.read(rows * row_bytes)
                    if len(raw) != rows * row_bytes:
                        raise DataCorruptError(where, f"truncated at image {start + len(raw) // row_bytes}")
                    bits = np.frombuffer(raw, dtype=np.uint8).reshape(rows, IMAGE_SIZE, IMAGE_SIZE)
                    packed[start : start + rows] = np.packbits(bits != 0, axis=-1)  # (rows, 64, 8)
    except DataCorruptError:
        raise
    except KeyError as err:
        raise DataCorruptError(path, f"missing array ({err.args[0]})") from err
    except (zipfile.BadZipFile, OSError, EOFError, ValueError) as err:
        raise DataCorruptError(path, f"unreadable .npz ({type(err).__name__}: {err})") from err
    return packed, classes, values


def grid_sizes(path: Path, count: int, classes: np.ndarray, values: np.ndarray) -> tuple[int, ...]:
    """The factor sizes of the original file's ``latents_classes`` ``(N, 6)`` (colour, shape, scale,
    orientation, posX, posY), checked against ``count`` images in row-major factor order."""
    if classes.ndim != 2 or classes.shape[1] != 6 or values.shape != classes.shape:
        raise DataCorruptError(path, f"latents arrays of shape {classes.shape}, expected (N, 6)")
    if len(classes) != count or classes[:, 0].max() != 0:
        raise DataCorruptError(path, "latents do not match the images (or colour varies)")
    sizes = tuple(int(s) for s in classes[:, 1:].max(axis=0) + 1)
    if math.prod(sizes) != count:
        raise DataCorruptError(path, f"{count} images for a {sizes} grid")
    strides = np.array([math.prod(sizes[f + 1 :]) for f in range(len(sizes))])
    if not np.array_equal(classes[:, 1:] @ strides, np.arange(count)):
        raise DataCorruptError(path, "images are not in row-major factor order")
    return sizes


class DSprites(Dataset):
    """The dSprites factor grid with images rendered on demand (or read from the original file).

    ``ds[i]`` gives ``(image (1, 64, 64) float32, classes (5,) int64)``; batch methods take a
    ``(B,)`` int64 index tensor and work on ``device``. See the module docstring for the factors and
    the rendering geometry.

    :param device: where images, indices and factors are produced.
    :param npz: the original ``dsprites_ndarray_co1sh3sc6or40x32y32_64x64.npz``; None renders. The
        file's own grid (from ``latents_classes``) and values are used, and must be row-major.
    :param cache: cache root for the bit-packed images of ``npz`` (default :func:`cache_dir`).
    """

    factor_names = FACTOR_NAMES
    shape_names = SHAPE_NAMES

    def __init__(
        self,
        device: torch.device | str = "cpu",
        npz: str | os.PathLike[str] | None = None,
        cache: Path | None = None,
    ):
        self.device = torch.device(device)
        self.packed: np.ndarray | None = None
        self.factor_sizes: tuple[int, ...] = FACTOR_SIZES
        self.values = [v.to(self.device) for v in factor_value_table()]
        if npz is not None:
            self.load_npz(Path(npz), cache)
        sizes = self.factor_sizes
        self.sizes_t = torch.tensor(sizes, device=self.device)  # (F,)
        strides = [math.prod(sizes[f + 1 :]) for f in range(len(sizes))]
        self.bases = torch.tensor(strides, device=self.device)  # (F,) stride of each factor in the index

    def load_npz(self, path: Path, cache: Path | None) -> None:
        """Take images, grid and values from the original file (bit-packed and cached on first use,
        then memory-mapped)."""
        entry = (cache or cache_dir()) / "dsprites" / f"npz-v1-{file_digest(path)}"
        names = ("imgs_packed", "latents_classes", "latents_values")
        cached = load_arrays(entry, names, mmap=True)
        if cached is not None:
            packed, classes, values = (cached[n] for n in names)
            sizes = grid_sizes(path, len(packed), classes, values)
        else:
            packed, classes, values = pack_npz_images(path)
            sizes = grid_sizes(path, len(packed), classes, values)
            save_arrays(entry, dict(zip(names, (packed, classes, values), strict=True)))
        first_of_class = [np.arange(n) * math.prod(sizes[f + 1 :]) for f, n in enumerate(sizes)]
        self.factor_sizes = sizes
        self.values = [
            torch.as_tensor(np.array(values[rows, f + 1]), device=self.device) for f, rows in enumerate(first_of_class)
        ]
        self.packed = packed

    def __len__(self) -> int:
        return math.prod(self.factor_sizes)

    def __getitem__(self, index: int) -> tuple[Tensor, Tensor]:
        if not -len(self) <= index < len(self):
            raise IndexError(f"index {index} out of range for {len(self)} images")
        idx = torch.tensor([index % len(self)], device=self.device)  # (1,)
        return self.render(idx)[0], self.index_to_factors(idx)[0]

    def index_to_factors(self, index: Tensor) -> Tensor:
        """Factor classes ``(B, 5)`` int64 of flat indices ``(B,)``."""
        return (index[:, None] // self.bases) % self.sizes_t  # (B, F)

    def factors_to_index(self, classes: Tensor) -> Tensor:
        """Flat indices ``(B,)`` of factor classes ``(B, 5)``."""
        return (classes * self.bases).sum(-1)  # (B,)

    def factor_values(self, index: Tensor) -> Tensor:
        """Factor values ``(B, 5)`` float64 of flat indices (shape 1/2/3, scale, radians, posX, posY)."""
        classes = self.index_to_factors(index)  # (B, F)
        return torch.stack([v[classes[:, f]] for f, v in enumerate(self.values)], dim=1)

    def render(self, index: Tensor, dtype: torch.dtype = torch.float32) -> Tensor:
        """Images ``(B, 1, 64, 64)`` with values 0 and 1 of flat indices ``(B,)``."""
        index = index.to(self.device)
        if self.packed is not None:
            rows = self.packed[index.cpu().numpy()]  # (B, 64, 8) bit-packed
            bits = torch.from_numpy(np.unpackbits(rows, axis=-1))  # (B, 64, 64)
            return bits.to(self.device, dtype)[:, None]  # (B, 1, 64, 64)
        classes = self.index_to_factors(index)  # (B, F)
        v = [table[classes[:, f]] for f, table in enumerate(self.values)]
        images = render_sprites(classes[:, 0], v[1], v[2], v[3], v[4])  # (B, 64, 64)
        return images.to(dtype)[:, None]  # (B, 1, 64, 64)

    def sample_factors(self, n: int, generator: torch.Generator | None = None) -> Tensor:
        """``n`` factor-class rows ``(n, 5)`` drawn uniformly (each factor independently)."""
        u = torch.rand(n, len(self.factor_sizes), generator=generator, device=self.device)
        return (u * self.sizes_t).long().clamp_max(self.sizes_t - 1)  # (n, F)

    def sample_indices(self, n: int, generator: torch.Generator | None = None) -> Tensor:
        """``n`` flat indices ``(n,)`` drawn uniformly with replacement."""
        return torch.randint(0, len(self), (n,), generator=generator, device=self.device)

    def sample_fixed_factor(
        self,
        n: int,
        factor: int | str,
        value: int | None = None,
        generator: torch.Generator | None = None,
    ) -> Tensor:
        """``n`` factor-class rows ``(n, 5)`` that share class ``value`` of ``factor`` (drawn
        uniformly when None), the other factors uniform: the batches of the beta-VAE and
        FactorVAE disentanglement metrics."""
        f = self.factor_names.index(factor) if isinstance(factor, str) else factor
        classes = self.sample_factors(n, generator)  # (n, F)
        if value is None:
            value_t = torch.randint(0, self.factor_sizes[f], (1,), generator=generator, device=self.device)
            classes[:, f] = value_t
        else:
            if not 0 <= value < self.factor_sizes[f]:
                raise ValueError(f"{self.factor_names[f]} class {value} outside 0..{self.factor_sizes[f] - 1}")
            classes[:, f] = value
        return classes

    def loader(self, batch_size: int, shuffle: bool = True, drop_last: bool = True, seed: int = 0) -> DSpritesLoader:
        """Epochs over all images in minibatches ``(images (B, 1, 64, 64), classes (B, 5))``."""
        return DSpritesLoader(self, batch_size, shuffle, drop_last, seed)


class DSpritesLoader(ShuffledBatches):
    """Shuffled epochs over a :class:`DSprites` (or over the images ``indices`` of it), rendering each
    batch on the device."""

    def __init__(
        self,
        data: DSprites,
        batch_size: int,
        shuffle: bool,
        drop_last: bool,
        seed: int,
        indices: Tensor | None = None,
    ):
        num_items = len(data) if indices is None else len(indices)
        super().__init__(num_items, batch_size, shuffle, drop_last, seed, data.device)
        self.data = data
        self.indices = None if indices is None else indices.to(data.device)

    def __iter__(self) -> Iterator[tuple[Tensor, Tensor]]:
        for index, _ in self.epoch_batches():
            index = self.local_index(index)  # this rank's rows (all of them in one process): rendering draws nothing
            if isinstance(index, slice):
                index = torch.arange(index.start, min(index.stop, self.num_items), device=self.device)
            if self.indices is not None:
                index = self.indices.index_select(0, index)  # (B,) positions in the subset -> images
            yield self.data.render(index), self.data.index_to_factors(index)


def load_dsprites(
    data_dir: str | os.PathLike[str] | None = None,
    device: torch.device | str = "cpu",
    source: str = "auto",
    cache: Path | None = None,
) -> DSprites:
    """dSprites from the original file when ``source`` is ``"file"`` (required) or ``"auto"`` (where
    found under the search directories), else rendered (``"render"``, or ``"auto"`` without a file)."""
    if source not in ("auto", "file", "render"):
        raise ValueError(f"source must be 'auto', 'file' or 'render', got {source!r}")
    if source == "render":
        return DSprites(device)
    check_data_dir(data_dir, "dSprites")  # a --data-dir that is not there is an error, not a reason to render
    try:
        path = find_dsprites_npz(data_dir)
    except DataNotFoundError:
        if source == "file":
            raise
        return DSprites(device)
    return DSprites(device, npz=path, cache=cache)
