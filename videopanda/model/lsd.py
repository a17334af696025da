"""LSD: Local Spatial Downsampling (paper §3.4; EVE's local attention).

Halves the patch grid with *learned* 2x2 pooling: the 2x2 average of every window is the query, and it attends
the four tokens of its window. A frame's h x w content patches become (h/2) x (w/2) tokens.
"""

from __future__ import annotations

import torch
from torch import nn

from .attention_pool import AttentionPool


class LSD(nn.Module):
    """Local Spatial Downsampling by 2x2 attention pooling.

    Args:
        width: channels C.
        num_heads: heads.
        scale: logit scale (width^-0.5 in the reference).
    """

    def __init__(self, width: int, num_heads: int, scale: float) -> None:
        super().__init__()
        self.pool = AttentionPool(width, num_heads, scale)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Downsample.

        Args:
            x: (n, C, hc, wc) cropped content patches of n frames (hc, wc even).

        Returns:
            (n, h*w, C) pooled tokens in row-major order, h = hc/2, w = wc/2.
        """
        n, c, hc, wc = x.shape
        h, w = hc // 2, wc // 2
        windows = x.view(n, c, h, 2, w, 2).permute(0, 2, 4, 3, 5, 1).reshape(n * h * w, 4, c)  # (n*h*w, 4, C)
        query = windows.mean(dim=1)  # (n*h*w, C) == avg_pool2d(k=2, s=2)
        return self.pool(query, windows).view(n, h * w, c)  # (n, h*w, C)
