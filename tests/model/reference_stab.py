"""A slow, literal per-frame STAB written from reference.md §1.4, used as an independent check of the batched one.

It reads the weights of a :class:`videopanda.model.VideoTokenizer` but none of its modules' forward methods:
every step is spelled out with functional ops, one chunk and one frame at a time, in the reference's order.
BatchNorm uses running statistics (eval mode); dropout is off. The benchmark ``benchmarks/stab_speed.py``
imports it as the "per-frame loop" baseline.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


def _ln(x: torch.Tensor, ln: torch.nn.LayerNorm) -> torch.Tensor:
    return F.layer_norm(x, ln.normalized_shape, ln.weight, ln.bias, ln.eps)


def reference_lste(lste, x0: torch.Tensor, training: bool = False) -> torch.Tensor:
    """LSTE with functional ops on the default (channels-first) layout: x0 (B*K, C, T, gh, gw) -> x2, same shape.

    ``training`` normalises with the batch's statistics (and updates no running statistics), as training mode does.
    """
    bn, c1, c2, c3 = lste.temporal
    mean, var = (None, None) if training else (bn.running_mean, bn.running_var)
    y = F.batch_norm(x0, mean, var, bn.weight, bn.bias, training, 0.0, bn.eps)
    y = F.conv3d(y, c1.weight, c1.bias)
    y = F.conv3d(y, c2.weight, c2.bias, padding=(1, 0, 0), groups=c2.groups)
    x1 = x0 + F.conv3d(y, c3.weight, c3.bias)
    dpe = lste.dpe
    return x1 + F.conv3d(x1, dpe.weight, dpe.bias, padding=1, groups=dpe.groups) if dpe is not None else x1


def _pool_attention(pool, query: torch.Tensor, context: torch.Tensor, heads: int, scale: float) -> torch.Tensor:
    """EVE local/global attention for one query set: query (Q, C), context (Q, M, C) -> (Q, C)."""
    c = query.shape[-1]
    hd = c // heads
    q = _ln(query, pool.q[0]) @ pool.q[1].weight.T  # (Q, C)
    kv = _ln(context, pool.kv[0]) @ pool.kv[1].weight.T  # (Q, M, 2C)
    k, v = kv[..., :c], kv[..., c:]
    out = torch.empty_like(query)
    for h in range(heads):
        sl = slice(h * hd, (h + 1) * hd)
        logits = (q[:, None, sl] * scale * k[..., sl]).sum(-1)  # (Q, M)
        out[:, sl] = (logits.softmax(-1)[..., None] * v[..., sl]).sum(1)
    return query + out @ pool.proj.weight.T + pool.proj.bias


def _gstra(g, seq: torch.Tensor, heads: int) -> torch.Tensor:
    """UniFormerV2 Extractor with one query: seq (S, C) -> (C,)."""
    c = seq.shape[-1]
    hd = c // heads
    cls = g.query[0]  # (1, C)
    wq, wk, wv = g.in_proj_weight.split(c)
    bq, bk, bv = g.in_proj_bias.split(c)
    q = _ln(cls, g.ln_1) @ wq.T + bq  # (1, C)
    xs = _ln(seq, g.ln_3)
    k = xs @ wk.T + bk  # (S, C)
    v = xs @ wv.T + bv
    att = torch.empty_like(q)
    for h in range(heads):
        sl = slice(h * hd, (h + 1) * hd)
        a = (q[:, sl] @ k[:, sl].T / hd**0.5).softmax(-1)  # (1, S)
        att[:, sl] = a @ v[:, sl]
    cls = cls + att @ g.out_proj.weight.T + g.out_proj.bias
    hidden = _ln(cls, g.ln_2) @ g.mlp.c_fc.weight.T + g.mlp.c_fc.bias
    hidden = hidden * torch.sigmoid(1.702 * hidden)
    cls = cls + hidden @ g.mlp.c_proj.weight.T + g.mlp.c_proj.bias
    return cls[0]


@torch.no_grad()
def reference_stab_forward(stab, frames: torch.Tensor) -> list[torch.Tensor]:
    """Tokens of every frame, in (sample, frame) order, each (L, C) before the projector.

    Args:
        stab: a ``VideoTokenizer`` in eval mode (its weights are read, its forward is not used).
        frames: (B, F, 4, H, W).
    """
    cfg = stab.cfg
    heads, p = cfg.num_heads, cfg.patch_size
    # EVE's local/global attention scale the logits by width^-0.5, not head_dim^-0.5 (reference §1.2);
    # attn_scale: head_dim is the opt-in alternative.
    scale = cfg.width**-0.5 if cfg.attn_scale == "width" else (cfg.width // heads) ** -0.5
    b_, f_ = frames.shape[:2]
    t_ = cfg.chunk_size if f_ > 1 else 1
    outputs = []
    for b in range(b_):
        for k in range(f_ // t_):
            chunk = frames[b, k * t_ : (k + 1) * t_]  # (T, 4, H, W)
            pe = F.conv2d(chunk[:, :3], stab.patch_embedding.proj.weight, stride=p)  # (T, C, gh, gw)
            pm = F.avg_pool2d(chunk[:, 3:4], p, p)  # (T, 1, gh, gw)
            g = None
            if t_ > 1 and stab.lste is not None:
                x0 = pe.permute(1, 0, 2, 3)[None]  # (1, C, T, gh, gw)
                x2 = reference_lste(stab.lste, x0)
            elif t_ > 1:
                x0 = x2 = pe.permute(1, 0, 2, 3)[None]
            if t_ > 1 and stab.gstra is not None:
                g = _gstra(stab.gstra, x2[0].flatten(1).T, heads)  # (C,)
            if t_ > 1 and stab.lste is not None:
                pe = (x2 + x0)[0].permute(1, 0, 2, 3)  # (T, C, gh, gw)
            for t in range(t_):
                m = pm[t, 0]
                if m.sum() == 0:
                    crop = pe[t, :, : cfg.padded_crop, : cfg.padded_crop]
                else:
                    nz = m.flatten().nonzero()[:, 0]
                    h1, w1 = divmod(int(nz[0]), m.shape[1])
                    h2, w2 = divmod(int(nz[-1]), m.shape[1])
                    crop = pe[t, :, h1 : h2 + 1, w1 : w2 + 1]
                c, hc, wc = crop.shape
                h, w = hc // 2, wc // 2
                r = F.avg_pool2d(crop[None], 2, 2)[0].flatten(1).T  # (h*w, C)
                windows = F.unfold(crop[None], kernel_size=2, stride=2)[0]  # (C*4, h*w)
                windows = windows.view(c, 4, h * w).permute(2, 1, 0)  # (h*w, 4, C)
                grid = _pool_attention(stab.lsd.pool, r, windows, heads, scale)  # (h*w, C)
                f = None
                if stab.fsra is not None:
                    f = _pool_attention(stab.fsra.pool, stab.fsra.query[None], grid[None], heads, scale)[0]
                if t_ > 1:
                    fusion = stab.fusion
                    if fusion.mode == "fsra_only":
                        mixed = f
                    elif fusion.mode == "gstra_only":
                        mixed = g
                    else:
                        alpha = torch.sigmoid(fusion.balance)
                        mixed = (1 - alpha) * g + alpha * f
                    ln, lin = fusion.proj[0], fusion.proj[2]
                    cls = _ln(mixed, ln) @ lin.weight.T + lin.bias
                else:
                    cls = f
                if stab.split_embedding is not None:
                    g2 = grid.T.reshape(c, h, w)
                    g2 = torch.cat([g2, stab.split_embedding[:, None, None].expand(c, h, 1)], dim=2)
                    grid = g2.flatten(1).T  # (h*(w+1), C)
                outputs.append(torch.cat([cls[None], grid], dim=0))
    return outputs
