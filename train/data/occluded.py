"""Occluded CIFAR: a CIFAR-10 image with an MNIST digit painted over part of it.

The task label is the CIFAR-10 class; the digit's class is a nuisance (``nuisance``) that a minimal
representation should forget. Each example: the 28x28 MNIST frame is resized (bilinear, antialiased)
to ``digit_size`` pixels (default 24, so the stroke, the frame's central 20x20, covers about half the
image side), placed at a uniform position inside the 32x32 image, and painted in a random bright
colour (uniform RGB rescaled so its largest channel is 255) with the digit's intensity as opacity:
``out = (img * (255 - a) + colour * a) / 255`` rounded, ``a`` the resized digit in 0..255. Digits are
taken in a random order without repeats (fresh permutations when more are needed).

All randomness comes from a CPU generator seeded with ``seed`` and the resizing is done on the CPU,
then the composition is integer arithmetic on ``device``: the same seed gives the same images on
every device. ``boxes`` holds the pasted frame ``(x0, y0, x1, y1)``, ends exclusive.
"""

from __future__ import annotations

import math
from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch import Tensor

DIGIT_SIZE = 24
CHUNK = 8192  # examples composed per step


class Occluded(NamedTuple):
    """Generated examples: images ``(n, 3, H, W)`` uint8, CIFAR labels ``(n,)``, digit labels
    ``(n,)`` (the nuisance), boxes ``(n, 4)`` and the index ``(n,)`` of each digit in its source."""

    images: Tensor
    labels: Tensor
    nuisance: Tensor
    boxes: Tensor
    digit_index: Tensor


def make_occluded(
    images: Tensor,
    labels: Tensor,
    digits: Tensor,
    digit_labels: Tensor,
    seed: int = 0,
    digit_size: int = DIGIT_SIZE,
    device: torch.device | str = "cpu",
) -> Occluded:
    """Occlude every image of ``images`` ``(n, 3, H, W)`` uint8 with a digit of ``digits``
    ``(M, 28, 28)`` uint8 (see the module docstring)."""
    n, channels, height, width = images.shape
    if channels != 3 or not 1 <= digit_size <= min(height, width):
        raise ValueError(f"need RGB images at least {digit_size} px wide, got {tuple(images.shape)}")
    g = torch.Generator().manual_seed(seed)
    count = len(digits)
    rounds = math.ceil(n / count)
    source = torch.cat([torch.randperm(count, generator=g) for _ in range(rounds)])[:n]  # (n,)
    x0 = torch.randint(0, width - digit_size + 1, (n,), generator=g)  # (n,)
    y0 = torch.randint(0, height - digit_size + 1, (n,), generator=g)  # (n,)
    hue = torch.rand(n, 3, generator=g)  # (n, 3)
    colour = (255 * hue / hue.amax(1, keepdim=True)).round().to(torch.int32)  # (n, 3) max 255

    out = torch.empty(n, 3, height, width, dtype=torch.uint8, device=device)
    ar = torch.arange(digit_size)
    for start in range(0, n, CHUNK):
        sl = slice(start, min(start + CHUNK, n))
        b = sl.stop - sl.start
        small = F.interpolate(
            digits[source[sl]][:, None].float(),
            size=(digit_size, digit_size),
            mode="bilinear",
            antialias=True,
            align_corners=False,
        )  # (b, 1, s, s)
        alpha_small = small.round().clamp(0, 255).to(torch.int32)  # (b, 1, s, s) in 0..255
        rows = (y0[sl, None] + ar)[:, :, None]  # (b, s, 1)
        cols = (x0[sl, None] + ar)[:, None, :]  # (b, 1, s)
        target = torch.arange(b)[:, None, None] * (height * width) + rows * width + cols  # (b, s, s)
        alpha = torch.zeros(b * height * width, dtype=torch.int32)
        alpha[target.reshape(-1)] = alpha_small.reshape(-1)  # frames do not overlap within a sample
        a = alpha.reshape(b, 1, height, width).to(device)  # (b, 1, H, W)
        img = images[sl].to(device).to(torch.int32)  # (b, 3, H, W)
        col = colour[sl].to(device)[:, :, None, None]  # (b, 3, 1, 1)
        mixed = (img * (255 - a) + col * a + 127) // 255  # (b, 3, H, W) rounded
        out[sl] = mixed.to(torch.uint8)
    boxes = torch.stack([x0, y0, x0 + digit_size, y0 + digit_size], dim=1)  # (n, 4)
    return Occluded(
        out,
        labels.to(device),
        digit_labels[source].to(device),
        boxes.to(device),
        source.to(device),
    )
