"""Checks shared by the metrics: every bad input is a one-line ``ValueError`` naming the argument."""

import numbers

import numpy as np


def as_codes(values, name: str = "representation", min_dims: int = 1, min_points: int = 2) -> np.ndarray:
    """``values`` as a finite float64 array ``(N, D)`` with ``N >= min_points`` and ``D >= min_dims``."""
    array = np.asarray(values)
    if array.ndim != 2:
        raise ValueError(f"{name}: expected a 2-d array (N, D), got shape {array.shape}")
    if not (np.issubdtype(array.dtype, np.number) or array.dtype == np.bool_):
        raise ValueError(f"{name}: expected numbers, got dtype {array.dtype}")
    array = array.astype(np.float64, copy=False)
    if not np.isfinite(array).all():
        raise ValueError(f"{name}: contains NaN or infinite values ({int((~np.isfinite(array)).sum())} entries)")
    if array.shape[0] < min_points:
        raise ValueError(f"{name}: expected at least {min_points} points (rows), got {array.shape[0]}")
    if array.shape[1] < min_dims:
        raise ValueError(f"{name}: expected at least {min_dims} latent dimension(s) (columns), got {array.shape[1]}")
    return array


def factor_array(values, num_points: int | None = None, name: str = "factors") -> np.ndarray:
    """``values`` checked as discrete factor classes ``(N, K)`` (integers, or floats with integer values)."""
    array = np.asarray(values)
    if array.ndim != 2:
        raise ValueError(f"{name}: expected a 2-d array (N, K) of factor classes, got shape {array.shape}")
    if num_points is not None and array.shape[0] != num_points:
        raise ValueError(f"{name}: {array.shape[0]} rows for {num_points} points of the representation")
    if array.shape[1] == 0:
        raise ValueError(f"{name}: expected at least one factor (column), got shape {array.shape}")
    if np.issubdtype(array.dtype, np.floating):
        if not np.isfinite(array).all():
            raise ValueError(f"{name}: contains NaN or infinite values")
        if not np.array_equal(array, np.round(array)):
            raise ValueError(f"{name}: expected discrete classes (integers), got non-integer values")
    elif not (np.issubdtype(array.dtype, np.integer) or array.dtype == np.bool_):
        raise ValueError(f"{name}: expected integer factor classes, got dtype {array.dtype}")
    return array


def relabel(array: np.ndarray, name: str = "factors", num_train: int | None = None) -> np.ndarray:
    """Classes relabelled ``0..n_k - 1`` per factor (int64); a factor with a single class among the first
    ``num_train`` rows (all rows when None) is rejected: its entropy is zero."""
    out = np.empty(array.shape, dtype=np.int64)
    for k in range(array.shape[1]):
        _, out[:, k] = np.unique(array[:, k], return_inverse=True)
        if len(np.unique(out[:num_train, k])) < 2:
            raise ValueError(f"{name}: factor {k} is constant (a single class, zero entropy); drop it")
    return out


def as_factors(values, num_points: int | None = None, name: str = "factors") -> np.ndarray:
    """``values`` as discrete factor classes relabelled ``0..n_k - 1`` per factor, int64 ``(N, K)``.

    Classes must be integers (or floats with integer values); a factor that takes a single value
    (zero entropy) is rejected, and so is a length different from ``num_points``.
    """
    return relabel(factor_array(values, num_points, name), name)


def check_same_dims(train: np.ndarray, test: np.ndarray, name: str) -> None:
    if test.shape[1] != train.shape[1]:
        raise ValueError(f"{name}: {test.shape[1]} columns, the training set has {train.shape[1]}")


def check_positive_int(value, name: str, minimum: int = 1) -> int:
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < minimum:
        raise ValueError(f"{name}={value!r}: expected an integer >= {minimum}")
    return int(value)


def check_fraction(value, name: str) -> float:
    if not (isinstance(value, numbers.Real) and 0 < value < 1):
        raise ValueError(f"{name}={value!r}: expected a number in (0, 1)")
    return float(value)


def rng_of(seed) -> np.random.Generator:
    """A NumPy generator from a seed (int or None) or a generator itself."""
    if isinstance(seed, np.random.Generator):
        return seed
    if seed is None or (isinstance(seed, numbers.Integral) and not isinstance(seed, bool) and seed >= 0):
        return np.random.default_rng(seed)
    raise ValueError(f"seed={seed!r}: expected a nonnegative integer, None or a numpy Generator")


def split(codes, factors, test_codes, test_factors, test_fraction: float, rng: np.random.Generator):
    """Train and test sets ``(codes, factors, test_codes, test_factors)``: the given test arrays, or a
    random split of ``codes``/``factors`` with ``test_fraction`` of the points for testing. Classes
    are relabelled jointly, so that a class means the same in both sets."""
    if (test_codes is None) != (test_factors is None):
        raise ValueError("test_representation and test_factors: give both or neither")
    codes = as_codes(codes)
    if test_codes is None:
        factors = as_factors(factors, len(codes))
        test_fraction = check_fraction(test_fraction, "test_fraction")
        num_test = int(round(test_fraction * len(codes)))
        if not 2 <= num_test <= len(codes) - 2:
            raise ValueError(f"test_fraction={test_fraction}: leaves {num_test} of {len(codes)} points for testing")
        order = rng.permutation(len(codes))
        test, train = order[:num_test], order[num_test:]
        return codes[train], factors[train], codes[test], factors[test]
    test_codes = as_codes(test_codes, "test_representation")
    check_same_dims(codes, test_codes, "test_representation")
    train = factor_array(factors, len(codes))
    test = factor_array(test_factors, len(test_codes), "test_factors")
    if test.shape[1] != train.shape[1]:
        raise ValueError(f"test_factors: {test.shape[1]} factors, the training set has {train.shape[1]}")
    both = relabel(np.concatenate([train, test]), num_train=len(train))
    return codes, both[: len(train)], test_codes, both[len(train) :]
