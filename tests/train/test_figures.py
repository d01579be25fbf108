"""Figures as a reader sees them: the PNG files the report layer writes."""

import numpy as np
from PIL import Image

from infodropout.train.report.figures import image_grid

DPI = 110  # figures.save's


def _white_bands(path) -> list[int]:
    """Heights in pixels of the bands of rows with no dark pixel between dark rows, from the top (the
    white padding around the figure is not counted)."""
    dark = np.flatnonzero((np.asarray(Image.open(path).convert("L")) < 128).any(axis=1))
    gaps = np.diff(dark) - 1
    return [int(g) for g in gaps if g > 0]


def test_a_tall_image_grid_starts_just_below_its_title(tmp_path):
    """Ten rows of black images with a title: the white band between the title and the first row is
    a fraction of an inch (matplotlib's default margins left about an inch on such a grid)."""
    path = image_grid(tmp_path / "grid.png", np.zeros((80, 64, 64)), 8, "a title", [f"z{i}" for i in range(10)])
    bands = _white_bands(path)
    assert len(bands) == 10  # under the title, then between the ten rows
    assert bands[0] <= 0.3 * DPI and max(bands[1:]) <= 0.15 * DPI, bands
    untitled = _white_bands(image_grid(tmp_path / "untitled.png", np.zeros((16, 64, 64)), 8))
    assert len(untitled) == 1 and untitled[0] <= 0.15 * DPI, untitled  # between the two rows
