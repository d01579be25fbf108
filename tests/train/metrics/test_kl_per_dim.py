"""KL per latent dimension: means over the data, their standard errors and the order of the dimensions."""

import numpy as np
import pytest

from infodropout.train.metrics import kl_per_dimension


def test_means_and_order():
    rng = np.random.default_rng(0)
    kl = rng.exponential(size=(5000, 3)) * np.array([0.1, 2.0, 0.5])
    result = kl_per_dimension(kl)
    np.testing.assert_allclose(result["kl_per_dim"], kl.mean(0))
    np.testing.assert_array_equal(result["order"], [1, 2, 0])
    assert result["kl_sum"] == pytest.approx(kl.sum(1).mean())
    np.testing.assert_allclose(result["kl_per_dim_se"], [0.1, 2.0, 0.5] / np.sqrt(5000), rtol=0.1)


def test_negative_kl_is_rejected():
    with pytest.raises(ValueError, match="kl: expected nonnegative"):
        kl_per_dimension(-np.ones((3, 2)))
