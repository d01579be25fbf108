"""How a trained network is measured: one evaluation context for every caller."""

import contextlib
from collections.abc import Iterable

import pyro.poutine as poutine
import torch

from infodropout.train.engine import batchnorm_state, recalibrate_batchnorm, restore_batchnorm, training_context


@contextlib.contextmanager
def evaluating(ib, *, recalibrate: Iterable | None = None):
    """Measure ``ib`` (an :class:`~infodropout.models.InformationBottleneck`) as it is tested.

    Inside: evaluation mode (batch norm with its running statistics; the noise off unless
    :func:`~infodropout.guides.sampling` forces it on), no gradients, no Pyro site escaping
    (``poutine.block``), no distribution validation and no param-store registration (what the fast step
    runs without). With ``recalibrate``, batches ``(x, ...)``, every batch-norm layer's statistics are
    first re-estimated on them with the noise off (the authors' "dry run":
    :func:`~infodropout.train.engine.recalibrate_batchnorm`), and put back afterwards. The train or
    evaluation mode of every module is restored on the way out.
    """
    modes = [(module, module.training) for module in ib.modules()]
    saved = None
    try:
        if recalibrate is not None:
            saved = batchnorm_state(ib)
            recalibrate_batchnorm(ib, recalibrate)
        ib.eval()
        with torch.no_grad(), poutine.block(), training_context(ib):
            yield ib
    finally:
        if saved is not None:
            restore_batchnorm(ib, saved)
        for module, training in modes:
            module.training = training
