"""Cluttered MNIST: one MNIST digit at a random place on a 96x96 canvas among 8x8 pieces of others.

Each example, as in the cluttered-MNIST generator of Mnih et al. (2014) that the Information
Dropout paper uses: a black ``96 x 96`` canvas; ``num_clutter`` (21) crops of ``8 x 8`` pixels, each
cut at a uniform offset from a uniformly drawn *other* digit and added at a uniform position; then the
28x28 digit added at a uniform position (fully inside); sums saturate at 255. Digits are taken in a
random order without repeats (cycling through fresh permutations if more examples than digits are
asked for). The label is the digit's; ``boxes`` is the tight box ``(x0, y0, x1, y1)`` (ends
exclusive, canvas pixels) of the digit's nonzero pixels, for scoring where a model looks.

All randomness is drawn from a CPU generator seeded with ``seed``, then the canvases are composed
on ``device``: the same seed gives the same images on every device.
"""

from __future__ import annotations

import math
from typing import NamedTuple

import torch
from torch import Tensor

CANVAS = 96
NUM_CLUTTER = 21
CLUTTER_SIZE = 8
MAX_CLUTTER = 127  # so that 1 + num_clutter pieces of <= 255 sum below 2^15 (int16 canvas)
CHUNK = 4096  # examples composed per step


class Cluttered(NamedTuple):
    """Generated examples: images ``(n, 1, S, S)`` uint8, labels ``(n,)``, boxes ``(n, 4)``
    (x0, y0, x1, y1), and the index ``(n,)`` of each example's digit in the source set."""

    images: Tensor
    labels: Tensor
    boxes: Tensor
    source: Tensor


def digit_boxes(digits: Tensor) -> Tensor:
    """Tight boxes ``(N, 4)`` = (x0, y0, x1, y1), ends exclusive, of the nonzero pixels of
    ``(N, H, W)`` images (an empty image gets ``(0, 0, 0, 0)``)."""
    rows = (digits > 0).any(2)  # (N, H)
    cols = (digits > 0).any(1)  # (N, W)

    def span(mask: Tensor) -> tuple[Tensor, Tensor]:
        n = mask.shape[1]
        first = mask.int().argmax(1)  # (N,) first True
        last = n - mask.flip(1).int().argmax(1)  # (N,) one past the last True
        empty = ~mask.any(1)
        return first.masked_fill(empty, 0), last.masked_fill(empty, 0)

    x0, x1 = span(cols)
    y0, y1 = span(rows)
    return torch.stack([x0, y0, x1, y1], dim=1).long()  # (N, 4)


class ClutterLayout(NamedTuple):
    """Where everything goes, for ``n`` examples and ``k`` clutter pieces each (CPU int64):
    ``source`` ``(n,)`` digit index; ``pos`` ``(n, 2)`` digit (x, y) on the canvas; ``other``
    ``(n, k)`` clutter source digits; ``cut`` ``(n, k, 2)`` (x, y) of each crop in its digit;
    ``put`` ``(n, k, 2)`` (x, y) of each crop on the canvas."""

    source: Tensor
    pos: Tensor
    other: Tensor
    cut: Tensor
    put: Tensor


def draw_layout(
    count: int,
    n: int,
    seed: int,
    digit_shape: tuple[int, int] = (28, 28),
    canvas: int = CANVAS,
    num_clutter: int = NUM_CLUTTER,
    clutter_size: int = CLUTTER_SIZE,
) -> ClutterLayout:
    """Draw a layout from a CPU generator seeded with ``seed`` (see the module docstring): digits
    of a ``count``-digit source in random order, positions and crops uniform, clutter sources
    uniform among the *other* digits. The digit draws come first, so ``num_clutter`` does not
    change where the digits go."""
    h, w = digit_shape
    if count < 2 or canvas < max(h, w) or clutter_size > min(h, w):
        raise ValueError(f"need >= 2 digits of {h}x{w} <= canvas {canvas} >= clutter {clutter_size}")
    if not 0 <= num_clutter <= MAX_CLUTTER:
        raise ValueError(f"num_clutter must be in 0..{MAX_CLUTTER}, got {num_clutter}")
    g = torch.Generator().manual_seed(seed)
    rounds = math.ceil(n / count)
    source = torch.cat([torch.randperm(count, generator=g) for _ in range(rounds)])[:n]  # (n,)
    pos_x = torch.randint(0, canvas - w + 1, (n,), generator=g)  # (n,)
    pos_y = torch.randint(0, canvas - h + 1, (n,), generator=g)  # (n,)
    k, c = num_clutter, clutter_size
    other = (source[:, None] + torch.randint(1, count, (n, k), generator=g)) % count  # (n, k)
    cut_x = torch.randint(0, w - c + 1, (n, k), generator=g)  # (n, k)
    cut_y = torch.randint(0, h - c + 1, (n, k), generator=g)  # (n, k)
    put_x = torch.randint(0, canvas - c + 1, (n, k), generator=g)  # (n, k)
    put_y = torch.randint(0, canvas - c + 1, (n, k), generator=g)  # (n, k)
    return ClutterLayout(
        source,
        torch.stack([pos_x, pos_y], dim=1),
        other,
        torch.stack([cut_x, cut_y], dim=2),
        torch.stack([put_x, put_y], dim=2),
    )


def compose_cluttered(
    digits: Tensor,
    layout: ClutterLayout,
    canvas: int = CANVAS,
    clutter_size: int = CLUTTER_SIZE,
    device: torch.device | str = "cpu",
) -> Tensor:
    """Canvases ``(n, 1, canvas, canvas)`` uint8 for ``layout``: every crop and the digit added
    into an int16 canvas with ``scatter_add_`` (see :data:`MAX_CLUTTER`), then
    saturated at 255 (the same as saturating after each piece, the values being non-negative)."""
    count, h, w = digits.shape
    n, c = len(layout.source), clutter_size
    flat_digits = digits.to(device).reshape(-1)  # (N * h * w,)
    images = torch.empty(n, 1, canvas, canvas, dtype=torch.uint8, device=device)
    ar_c = torch.arange(c, device=device)
    ar_h, ar_w = torch.arange(h, device=device), torch.arange(w, device=device)
    crop_offsets = ar_c[:, None] * w + ar_c  # (c, c) within a digit
    crop_targets = ar_c[:, None] * canvas + ar_c  # (c, c) within the canvas
    digit_offsets = ar_h[:, None] * w + ar_w  # (h, w) within a digit
    digit_targets = ar_h[:, None] * canvas + ar_w  # (h, w) within the canvas
    for start in range(0, n, CHUNK):
        sl = slice(start, min(start + CHUNK, n))
        b = sl.stop - sl.start
        cut, put, pos = layout.cut[sl], layout.put[sl], layout.pos[sl]
        base = torch.arange(b, device=device)[:, None] * (canvas * canvas)  # (b, 1) canvas starts
        crop_at = (layout.other[sl] * (h * w) + cut[..., 1] * w + cut[..., 0]).to(device)  # (b, k)
        put_at = base + (put[..., 1] * canvas + put[..., 0]).to(device)  # (b, k)
        patches = flat_digits.take(crop_at[..., None, None] + crop_offsets)  # (b, k, c, c)
        digit_from = layout.source[sl].to(device) * (h * w)  # (b,)
        digit = flat_digits.take(digit_from[:, None, None] + digit_offsets)  # (b, h, w)
        digit_at = base[:, 0] + (pos[:, 1] * canvas + pos[:, 0]).to(device)  # (b,)
        flat = torch.zeros(b * canvas * canvas, dtype=torch.int16, device=device)
        crop_index = (put_at[..., None, None] + crop_targets).reshape(-1)  # (b * k * c * c,)
        flat.scatter_add_(0, crop_index, patches.reshape(-1).short())
        digit_index = (digit_at[:, None, None] + digit_targets).reshape(-1)  # (b * h * w,)
        flat.scatter_add_(0, digit_index, digit.reshape(-1).short())
        images[sl] = flat.clamp_max(255).to(torch.uint8).reshape(b, 1, canvas, canvas)
    return images


def make_cluttered(
    digits: Tensor,
    labels: Tensor,
    n: int,
    seed: int = 0,
    canvas: int = CANVAS,
    num_clutter: int = NUM_CLUTTER,
    clutter_size: int = CLUTTER_SIZE,
    device: torch.device | str = "cpu",
    index: Tensor | None = None,
) -> Cluttered:
    """Generate ``n`` cluttered examples from ``digits`` ``(N, H, W)`` uint8 and ``labels`` ``(N,)``
    (see the module docstring): :func:`draw_layout`, then :func:`compose_cluttered`.

    With ``index`` (``(m,)`` positions in ``0 .. n - 1``) only those examples are composed, in that order:
    the layout of all ``n`` is drawn (integers: cheap), so each is the very image that generating all ``n``
    and then indexing gives, for a fraction of the time and memory."""
    layout = draw_layout(len(digits), n, seed, tuple(digits.shape[1:]), canvas, num_clutter, clutter_size)
    if index is not None:
        index = torch.as_tensor(index, dtype=torch.long)
        if index.numel() and not (0 <= int(index.min()) and int(index.max()) < n):
            raise ValueError(f"index: expected positions in 0..{n - 1}")
        layout = ClutterLayout(*(t[index] for t in layout))
    images = compose_cluttered(digits, layout, canvas, clutter_size, device)
    boxes = digit_boxes(digits[layout.source]) + layout.pos.repeat(1, 2)  # (n, 4) canvas pixels
    return Cluttered(images, labels[layout.source].to(device), boxes.to(device), layout.source.to(device))
