"""Query attention pooling, the core shared by LSD and FSRA (EVE's local/global attention).

A query token attends a small set of context tokens; both are LayerNorm-ed and projected, attention weights are
``softmax(scale * q.k)`` per head over the context, and the result is added back to the query through ``proj``:

    out = query + proj(sum_m softmax_m(scale * <q, k_m>) v_m)

The scale is ``width^-0.5`` (not ``head_dim^-0.5``) in the reference; kept so released weights behave as
trained (reference §8.7).
"""

from __future__ import annotations

import torch
from torch import nn


class AttentionPool(nn.Module):
    """Multi-head attention of one query over M context tokens, with a residual to the query.

    Args:
        width: channels C.
        num_heads: heads.
        scale: logit scale.
    """

    def __init__(self, width: int, num_heads: int, scale: float) -> None:
        super().__init__()
        self.num_heads = num_heads
        self.scale = scale
        self.q = nn.Sequential(nn.LayerNorm(width), nn.Linear(width, width, bias=False))
        self.kv = nn.Sequential(nn.LayerNorm(width), nn.Linear(width, 2 * width, bias=False))
        self.proj = nn.Linear(width, width)

    def forward(self, query: torch.Tensor, context: torch.Tensor) -> torch.Tensor:
        """Pool.

        Args:
            query: (N, C) one query per pooling site.
            context: (N, M, C) the tokens each query attends.

        Returns:
            (N, C) ``query + proj(attended)``.
        """
        n, m, c = context.shape
        nh, hd = self.num_heads, c // self.num_heads
        q = self.q(query).view(n, nh, hd)  # (N, nh, hd)
        k, v = self.kv(context).view(n, m, 2, nh, hd).unbind(2)  # 2 x (N, M, nh, hd)
        attn = torch.einsum("nhd,nmhd->nhm", q * self.scale, k).softmax(dim=-1)  # (N, nh, M)
        out = torch.einsum("nhm,nmhd->nhd", attn, v).reshape(n, c)  # (N, C)
        return query + self.proj(out)
