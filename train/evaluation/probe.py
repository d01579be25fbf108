"""A probe on frozen features: how well a linear classifier reads a label from a trained network's
representation (what a representation makes explicit, e.g. a nuisance it should have discarded).

The probe is multinomial logistic regression on the standardised representation (each coordinate
centred and scaled by its mean and standard deviation over the probe's training examples)::

    minimise over W, b:   (1 / N) sum_n -log softmax(W r_n + b)[d_n]  +  (lambda / 2) ||W||^2

a convex problem solved by L-BFGS (from zero, then warm-started along the penalties), ``lambda`` chosen
from a grid by accuracy on a held-out part of the training examples, then refitted on all of them.
"""

from collections.abc import Callable, Sequence

import torch
from torch.nn import functional as F

from infodropout.guides.layers import sampling

#: The probe's L2 penalties to choose from (on the standardised representation).
L2_GRID = (1e-3, 1e-2, 1e-1, 1.0, 10.0)


def features(
    ib, x: torch.Tensor, *, noisy: bool = False, batch_size: int = 500, transform: Callable | None = None
) -> torch.Tensor:
    """The encoder's output for the inputs ``x`` ``(N, ...)`` (each batch through ``transform`` first, e.g.
    a loader's standardisation), flattened: ``(N, D)``, in the current train/eval mode (call it under
    :func:`~.context.evaluating`), with the noise off (``f(x)``), or on (one draw of every noise of the
    encoder, as in training)."""
    parts = []
    with sampling(noisy):
        for start in range(0, len(x), batch_size):
            batch = x[start : start + batch_size]
            parts.append(ib.encoder(batch if transform is None else transform(batch)).flatten(1))  # (B, D)
    return torch.cat(parts)  # (N, D)


def _fit_softmax(x: torch.Tensor, y: torch.Tensor, num_classes: int, l2: float, max_iter: int, start=None):
    """``(W, b)`` minimising ``mean_n CE(W x_n + b, y_n) + l2 / 2 ||W||^2`` by L-BFGS, from zero or from
    ``start`` (a neighbouring penalty's solution: the problem is convex, so only the time changes)."""
    if start is None:
        start = (x.new_zeros(x.shape[1], num_classes), x.new_zeros(num_classes))
    weight = start[0].clone().requires_grad_(True)  # (D, K)
    bias = start[1].clone().requires_grad_(True)  # (K,)
    optimizer = torch.optim.LBFGS(
        [weight, bias],
        lr=1.0,
        max_iter=max_iter,
        history_size=20,
        tolerance_grad=1e-5,
        tolerance_change=1e-9,
        line_search_fn="strong_wolfe",
    )

    def closure():
        optimizer.zero_grad()
        loss = F.cross_entropy(x @ weight + bias, y) + 0.5 * l2 * weight.square().sum()
        loss.backward()
        return loss

    with torch.enable_grad():
        optimizer.step(closure)
    return weight.detach(), bias.detach()


def _accuracy(x, y, weight, bias) -> float:
    return float(((x @ weight + bias).argmax(1) == y).double().mean())


def linear_probe(
    train_x: torch.Tensor,
    train_y: torch.Tensor,
    test_x: torch.Tensor,
    test_y: torch.Tensor,
    num_classes: int,
    l2_grid: Sequence[float] = L2_GRID,
    holdout: float = 0.2,
    max_iter: int = 100,
    seed: int = 0,
) -> dict[str, float]:
    """How well a linear softmax probe predicts labels from representations (see the module docstring).

    :param train_x: ``(N, ...)`` representations the probe is trained on; ``train_y`` ``(N,)`` their labels.
    :param test_x: ``(M, ...)`` representations it is scored on; ``test_y`` ``(M,)``.
    :param l2_grid: penalties ``lambda`` to choose from, by accuracy on the held-out ``holdout`` fraction
        of the training examples (a random split drawn with ``seed``; ties go to the larger penalty).
    :returns: ``accuracy`` (on the test examples), ``train_accuracy``, ``chance`` (the test frequency of the
        most frequent training label) and the chosen ``l2``; accuracies are fractions.
    """
    if len(train_x) != len(train_y) or len(test_x) != len(test_y):
        raise ValueError(
            f"probe: {len(train_x)} training representations for {len(train_y)} labels, "
            f"{len(test_x)} test representations for {len(test_y)} labels"
        )
    if len(train_x) < 2 or not l2_grid:
        raise ValueError(f"probe: needs at least 2 training examples and a penalty (got {len(train_x)}, {l2_grid})")
    train_x = train_x.flatten(1).to(torch.float64)  # (N, D)
    test_x = test_x.flatten(1).to(torch.float64)  # (M, D)
    mean = train_x.mean(0)  # (D,)
    std = train_x.std(0, unbiased=False)  # (D,)
    std = torch.where(std > 1e-9 * std.max().clamp_min(1e-30), std, torch.ones_like(std))  # constant coordinates
    train_x = ((train_x - mean) / std).to(torch.float32)  # (N, D) standardised in float64, fitted in float32
    test_x = ((test_x - mean) / std).to(torch.float32)  # (M, D)
    train_y, test_y = train_y.long(), test_y.long()
    order = torch.randperm(len(train_x), generator=torch.Generator().manual_seed(seed)).to(train_x.device)
    n_val = min(max(1, round(holdout * len(train_x))), len(train_x) - 1)
    val, fit = order[:n_val], order[n_val:]
    best_l2, best, best_start, start = None, -1.0, None, None
    for l2 in sorted(l2_grid, reverse=True):  # the larger penalty first: it keeps ties, and starts the next
        start = _fit_softmax(train_x[fit], train_y[fit], num_classes, l2, max_iter, start)
        score = _accuracy(train_x[val], train_y[val], *start)
        if score > best:
            best_l2, best, best_start = l2, score, start
    weight, bias = _fit_softmax(train_x, train_y, num_classes, best_l2, max_iter, best_start)
    majority = int(torch.bincount(train_y, minlength=num_classes).argmax())
    return {
        "accuracy": _accuracy(test_x, test_y, weight, bias),
        "train_accuracy": _accuracy(train_x, train_y, weight, bias),
        "chance": float((test_y == majority).double().mean()),
        "l2": float(best_l2),
    }
