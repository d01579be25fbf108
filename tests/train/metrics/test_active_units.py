"""Active units: a latent is active when its variance over the data exceeds the threshold (0.01)."""

import numpy as np
import pytest

from infodropout.train.metrics import active_units


def test_latents_are_active_above_the_variance_threshold():
    rng = np.random.default_rng(0)
    stds = np.array([0.05, 0.09, 0.11, 1.0])  # variances 0.0025, 0.0081, 0.0121, 1
    codes = rng.normal(size=(20000, 4)) * stds
    result = active_units(codes)
    np.testing.assert_array_equal(result["active"], [False, False, True, True])
    assert result["num_active"] == 2
    np.testing.assert_allclose(result["variance"], stds**2, rtol=0.05)
    assert active_units(codes, threshold=0.001)["num_active"] == 4


def test_constant_representation_has_no_active_unit():
    assert active_units(np.ones((100, 5)))["num_active"] == 0


def test_bad_input_is_a_one_line_error():
    with pytest.raises(ValueError, match="threshold=-1"):
        active_units(np.ones((10, 2)), threshold=-1)
    with pytest.raises(ValueError, match="representation: contains NaN"):
        active_units(np.full((10, 2), np.inf))
