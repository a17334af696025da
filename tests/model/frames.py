"""Synthetic student frames with a letterbox mask, for model tests."""

from __future__ import annotations

import torch


def letterboxed(
    b: int, f: int, size: int, box: tuple[int, int, int, int] | None = None, padded_from: int | None = None
):
    """Random (b, f, 4, size, size) frames; content only inside ``box`` (pixels, [top, bottom, left, right)).

    Frames from index ``padded_from`` on are fully padded (all zero, mask 0), as the data pipeline pads short videos.
    """
    x = torch.randn(b, f, 4, size, size)
    x[:, :, 3] = 0
    top, bottom, left, right = box or (0, size, 0, size)
    x[:, :, 3, top:bottom, left:right] = 1
    x[:, :, :3] *= x[:, :, 3:4]  # padding pixels are background (any value works; zero keeps it simple)
    if padded_from is not None:
        x[:, padded_from:] = 0
    return x
