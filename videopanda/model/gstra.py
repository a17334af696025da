"""GSTRA: Global Spatio-Temporal Relationship Aggregator (paper §3.3; UniFormerV2's "Extractor").

One learned query cross-attends every token of a chunk (T x gh x gw tokens) and is refined by an MLP, giving one
video-level context token per chunk:

    q = query + out_proj(MHA(ln_1(query), ln_3(x)));  q = q + mlp(ln_2(q))

Standard multi-head scaling (head_dim^-0.5), QuickGELU and dropout 0.5 in the MLP; the output projections of the
attention and the MLP are zero-initialised so the token starts as the learned query.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from .precision import fp32_on_cpu


class QuickGELU(nn.Module):
    """x * sigmoid(1.702 x), the CLIP activation."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * torch.sigmoid(1.702 * x)


class GSTRA(nn.Module):
    """Global Spatio-Temporal Relationship Aggregator.

    Args:
        width: channels C.
        num_heads: attention heads.
        mlp_factor: MLP hidden = mlp_factor * C.
        mlp_dropout: dropout between the MLP layers.
    """

    def __init__(self, width: int, num_heads: int, mlp_factor: int = 4, mlp_dropout: float = 0.5) -> None:
        super().__init__()
        self.num_heads = num_heads
        self.query = nn.Parameter(torch.zeros(1, 1, width))  # reference: temporal_cls_token, zeros
        self.in_proj_weight = nn.Parameter(torch.empty(3 * width, width))  # q, k, v stacked as nn.MultiheadAttention
        self.in_proj_bias = nn.Parameter(torch.zeros(3 * width))
        self.out_proj = nn.Linear(width, width)
        self.ln_1 = nn.LayerNorm(width)
        self.ln_2 = nn.LayerNorm(width)
        self.ln_3 = nn.LayerNorm(width)
        self.mlp = nn.Sequential()
        self.mlp.add_module("c_fc", nn.Linear(width, mlp_factor * width))
        self.mlp.add_module("gelu", QuickGELU())
        self.mlp.add_module("dropout", nn.Dropout(mlp_dropout))
        self.mlp.add_module("c_proj", nn.Linear(mlp_factor * width, width))
        for lin in (self.out_proj, self.mlp.c_proj):
            lin.init_scheme = "zeros"  # read by VideoPandaPreTrainedModel._init_weights
        self.reset_parameters()

    def reset_parameters(self) -> None:
        nn.init.xavier_uniform_(self.in_proj_weight)
        for lin in (self.out_proj, self.mlp.c_proj):
            nn.init.zeros_(lin.weight)
            nn.init.zeros_(lin.bias)

    def forward(self, tokens: torch.Tensor, key_padding_mask: torch.Tensor | None = None) -> torch.Tensor:
        """Aggregate a chunk into one token.

        Args:
            tokens: (B*K, S, C) every token of each chunk, S = T*gh*gw in (t, h, w) order.
            key_padding_mask: optional (B*K, S) bool, True on tokens to ignore (off by default).

        Returns:
            (B*K, C) one context token per chunk.
        """
        n, s, c = tokens.shape
        nh, hd = self.num_heads, c // self.num_heads
        query = self.query.expand(n, 1, c)  # (B*K, 1, C)
        w_q, w_kv = self.in_proj_weight.split([c, 2 * c])
        b_q, b_kv = self.in_proj_bias.split([c, 2 * c])
        q = F.linear(self.ln_1(query), w_q, b_q).view(n, 1, nh, hd).transpose(1, 2)  # (B*K, nh, 1, hd)
        kv = F.linear(self.ln_3(tokens), w_kv, b_kv)  # (B*K, S, 2C)
        k, v = kv.view(n, s, 2, nh, hd).permute(2, 0, 3, 1, 4)  # 2 x (B*K, nh, S, hd)
        attn_mask = None
        if key_padding_mask is not None:
            attn_mask = ~key_padding_mask[:, None, None, :]  # (B*K, 1, 1, S) True = attend
        out = fp32_on_cpu(F.scaled_dot_product_attention, q, k, v, attn_mask=attn_mask)  # (B*K, nh, 1, hd)
        query = query + self.out_proj(out.transpose(1, 2).reshape(n, 1, c))  # (B*K, 1, C)
        query = query + self.mlp(self.ln_2(query))
        return query[:, 0]  # (B*K, C)
