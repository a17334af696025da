"""Context fusion: the learned sigmoid mix (alpha) of the GSTRA and FSRA tokens (paper §3.3 "Conditioning").

    alpha = sigmoid(balance)                       # per channel, 0.5 at init
    ctx   = proj((1 - alpha) * g_chunk + alpha * f_frame),   proj = LayerNorm -> Dropout(0.5) -> Linear

As in the reference code, alpha weighs the FSRA (frame) token. ``fsra_only`` and ``gstra_only`` are the ablation
modes: ``proj`` is still applied to the single remaining token.
"""

from __future__ import annotations

import torch
from torch import nn


class ContextFusion(nn.Module):
    """Fuse a chunk-level (GSTRA) and a frame-level (FSRA) token into a frame's context token.

    Args:
        width: channels C.
        dropout: dropout inside ``proj`` (0.5 in the reference).
        mode: ``learned`` | ``fsra_only`` | ``gstra_only``.
    """

    def __init__(self, width: int, dropout: float = 0.5, mode: str = "learned") -> None:
        super().__init__()
        self.mode = mode
        self.balance = nn.Parameter(torch.zeros(width))
        self.proj = nn.Sequential(nn.LayerNorm(width), nn.Dropout(dropout), nn.Linear(width, width))

    def forward(self, g: torch.Tensor | None, f: torch.Tensor | None) -> torch.Tensor:
        """Args: g, f: (n, C) GSTRA and FSRA tokens of n frames. Returns: (n, C) context tokens."""
        if self.mode == "fsra_only":
            mixed = f
        elif self.mode == "gstra_only":
            mixed = g
        else:
            alpha = torch.sigmoid(self.balance)  # (C,)
            mixed = (1 - alpha) * g + alpha * f
        return self.proj(mixed)
