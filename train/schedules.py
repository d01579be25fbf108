"""Learning-rate and beta schedules: pure functions of the step, applied without host synchronisation."""

import math
from collections.abc import Sequence

import torch

SCHEDULES = ("constant", "step", "cosine", "one-cycle")


def lr_factor(
    schedule: str,
    step: int,
    total_steps: int,
    steps_per_epoch: int,
    milestones: Sequence[int] = (),
    gamma: float = 0.1,
    pct_start: float = 0.3,
    div_factor: float = 25.0,
    final_div_factor: float = 1e4,
) -> float:
    """The multiplier of the base learning rate before optimizer step ``step`` (0-based).

    - ``constant``: 1.
    - ``step``: ``gamma ** k`` where k milestones (in epochs) have passed (``MultiStepLR``).
    - ``cosine``: ``(1 + cos(pi * step / total_steps)) / 2`` (``CosineAnnealingLR`` per step, to 0).
    - ``one-cycle``: from ``1 / div_factor`` up to 1 over ``pct_start`` of the steps, then down to
      ``1 / (div_factor * final_div_factor)``, both halves cosine (``OneCycleLR``).
    """
    if schedule == "constant":
        return 1.0
    if schedule == "step":
        epoch = step // steps_per_epoch
        return gamma ** sum(1 for m in milestones if epoch >= m)
    if schedule == "cosine":
        return 0.5 * (1 + math.cos(math.pi * min(step, total_steps) / total_steps))
    if schedule == "one-cycle":
        start, peak, end = 1 / div_factor, 1.0, 1 / (div_factor * final_div_factor)
        up = float(pct_start * total_steps) - 1
        if step <= up:
            return _cos_anneal(start, peak, step / up)
        down = total_steps - 1 - up
        return _cos_anneal(peak, end, min(1.0, (step - up) / down))
    raise ValueError(f"schedule={schedule!r}: expected one of {SCHEDULES}")


def _cos_anneal(start: float, end: float, t: float) -> float:
    return end + (start - end) / 2 * (math.cos(math.pi * t) + 1)


def beta_at(step: int, beta: float, warmup_steps: int) -> float:
    """Beta before step ``step``: constant, or warmed up linearly from 0 over ``warmup_steps`` steps."""
    if warmup_steps <= 0:
        return beta
    return beta * min(1.0, step / warmup_steps)


def set_lr(optimizer: torch.optim.Optimizer, base_lrs: Sequence[float], factor: float) -> None:
    """Set every group's learning rate to ``base * factor``, in place where it is a tensor (no sync)."""
    # Not torch.optim.lr_scheduler: its schedulers advance one call at a time from state they keep (recursively,
    # from the current lr), while a resumed run and a captured graph's device lr tensor need the factor of any step.
    for group, base in zip(optimizer.param_groups, base_lrs, strict=True):
        if isinstance(group["lr"], torch.Tensor):
            group["lr"].fill_(base * factor)
        else:
            group["lr"] = base * factor
