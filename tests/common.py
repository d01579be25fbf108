"""Shared assertions for the test suite."""

import torch


def assert_close(actual, expected, rtol=1e-5, atol=1e-6, msg=""):
    """``torch.testing.assert_close`` on tensors or numbers, with float64 promotion of Python numbers."""
    actual = torch.as_tensor(actual)
    expected = torch.as_tensor(expected, dtype=actual.dtype, device=actual.device)
    torch.testing.assert_close(actual, expected, rtol=rtol, atol=atol, msg=msg or None)
