"""FSRA: Frame-wise Spatial Relationship Aggregator (paper §3.3; EVE's global attention).

One learned query per frame (the reference's ``class_embedding``) attends all LSD tokens of that frame, giving a
frame-level context token that summarises its spatial layout.
"""

from __future__ import annotations

import torch
from torch import nn

from .attention_pool import AttentionPool


class FSRA(nn.Module):
    """Frame-wise Spatial Relationship Aggregator.

    Args:
        width: channels C.
        num_heads: heads.
        scale: logit scale (width^-0.5 in the reference).
    """

    def __init__(self, width: int, num_heads: int, scale: float) -> None:
        super().__init__()
        self.query = nn.Parameter(torch.randn(width))  # reference: class_embedding
        self.pool = AttentionPool(width, num_heads, scale)

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        """Args: tokens: (n, L, C) LSD tokens of n frames. Returns: (n, C) one context token per frame."""
        n = tokens.shape[0]
        return self.pool(self.query.expand(n, -1), tokens)  # (n, C)
