"""The STAB (Spatio-Temporal Alignment Block): raw frames in, visual tokens for the LLM out.

Pipeline (reference §1.4; paper Fig. 2)::

    frames -> PatchEmbedding -> LSTE (video) -> GSTRA (video: one token per chunk)
           -> crop letterbox padding -> LSD (2x2 learned pooling) -> FSRA (one token per frame)
           -> ContextFusion(GSTRA, FSRA) -> [context, row_0, split, row_1, split, ...]

Notation used for tensor shapes in this package:

* ``B`` samples (videos or images) in a batch, ``F`` frames per sample, ``K = F / T`` chunks per video
* ``T`` frames per chunk (``chunk_size``; 1 for images), ``N = B * F`` frames in the batch
* ``C`` STAB width, ``gh, gw`` patch grid of the canvas, ``hc, wc`` cropped content grid
* ``h, w`` token grid after LSD (``hc/2, wc/2``), ``L`` tokens of one frame = ``1 + h * (w + 1)``
* ``D`` LLM width, ``S`` sequence length

Batching (DECISIONS.md "Shape of the code"): every frame of the batch is folded into one tensor for the patch
embedding, LSTE and GSTRA, which run on the full padded grid. Frames are then grouped by content box (all frames
of a letterboxed video share one; fully padded frames share the fallback block), and LSD, FSRA and fusion run
once per group. The output is one flat token tensor in (sample, frame, token) order, so the splice into the LLM
is a single ``masked_scatter``. No Python loop runs per frame or per sample.
"""

from __future__ import annotations

from typing import NamedTuple

import torch
from torch import nn

from .config import VideoTokenizerConfig
from .fsra import FSRA
from .fusion import ContextFusion
from .geometry import content_boxes, tokens_per_frame
from .gstra import GSTRA
from .lsd import LSD
from .lste import LSTE
from .patch_embed import PatchEmbedding


class VisualTokens(NamedTuple):
    """Output of the STAB for a batch of N = B * F frames."""

    tokens: torch.Tensor  # (sum of L over frames, C), frames in (sample, frame) order
    frame_token_counts: torch.Tensor  # (N,) long: L of each frame
    boxes: torch.Tensor  # (N, 4) long: content box [top, bottom, left, right) in patches


class VideoTokenizer(nn.Module):
    """STAB: the encoder-free visual front end of Video-Panda (about 24M parameters at full size).

    Args:
        cfg: STAB settings; each block can be switched off for ablations.
    """

    def __init__(self, cfg: VideoTokenizerConfig) -> None:
        super().__init__()
        self.cfg = cfg
        c = cfg.width
        self.patch_embedding = PatchEmbedding(c, cfg.patch_size)
        self.lste = LSTE(c, cfg.reduced_width, use_dpe=cfg.dpe) if cfg.lste else None
        self.gstra = GSTRA(c, cfg.num_heads, cfg.mlp_factor, cfg.mlp_dropout) if cfg.gstra else None
        self.lsd = LSD(c, cfg.num_heads, cfg.attention_scale)
        self.fsra = FSRA(c, cfg.num_heads, cfg.attention_scale) if cfg.fsra else None
        self.fusion = ContextFusion(c, cfg.fusion_dropout, cfg.fusion)
        self.split_embedding = nn.Parameter(torch.randn(c)) if cfg.row_tokens else None

    def forward(self, frames: torch.Tensor) -> VisualTokens:
        """Tokenise videos (F > 1, run in chunks of ``chunk_size``) or images (F == 1).

        Args:
            frames: (B, F, 4, H, W) normalised RGB plus the content mask as 4th channel.

        Returns:
            :class:`VisualTokens` with the tokens of every frame, before the projector.
        """
        if frames.dim() != 5 or frames.shape[2] != 4:
            raise ValueError(f"expected frames of shape (B, F, 4, H, W), got {tuple(frames.shape)}")
        b, f = frames.shape[:2]
        is_video = f > 1
        t = self.cfg.chunk_size if is_video else 1
        if f % t:
            raise ValueError(f"a video has {f} frames, not a multiple of chunk_size={t}; pad it to a multiple")
        patches, pmask = self.patch_embedding(frames.flatten(0, 1))  # (N, C, gh, gw), (N, gh, gw)
        n, c, gh, gw = patches.shape

        chunk_tokens = None  # (N/T, C) one GSTRA token per chunk
        if is_video and (self.lste is not None or self.gstra is not None):
            x0 = patches.view(n // t, t, c, gh, gw).transpose(1, 2)  # (B*K, C, T, gh, gw)
            x2 = self.lste(x0) if self.lste is not None else x0  # (B*K, C, T, gh, gw)
            if self.gstra is not None:
                seq = x2.flatten(2).transpose(1, 2)  # (B*K, T*gh*gw, C) in (t, h, w) order
                chunk_tokens = self.gstra(seq, self._gstra_padding(pmask, n // t))  # (B*K, C)
            if self.lste is not None:
                patches = (x2 + x0).transpose(1, 2).reshape(n, c, gh, gw)  # dense skip, (N, C, gh, gw)

        boxes = content_boxes(pmask, self.cfg.padded_crop)  # (N, 4)
        counts = tokens_per_frame(boxes, self.split_embedding is not None)  # (N,)
        groups, inverse = torch.unique(boxes, dim=0, return_inverse=True)
        pieces, positions = [], []
        starts = counts.cumsum(0) - counts  # (N,) first token of each frame in the flat output
        for gi, (top, bottom, left, right) in enumerate(groups.tolist()):
            idx = (inverse == gi).nonzero().squeeze(1)  # frames sharing this content box
            crop = patches[idx, :, top:bottom, left:right]  # (n_g, C, hc, wc)
            frame_tokens = self._frame_tokens(crop, idx, t, chunk_tokens, is_video)  # (n_g, L, C)
            pieces.append(frame_tokens.reshape(-1, c))
            positions.append((starts[idx, None] + torch.arange(frame_tokens.shape[1], device=idx.device)).flatten())
        tokens = torch.cat(pieces)  # (sum L, C), grouped by content box
        if len(pieces) > 1:
            tokens = tokens[torch.argsort(torch.cat(positions))]  # back to (sample, frame, token) order
        return VisualTokens(tokens, counts, boxes)

    def _gstra_padding(self, pmask: torch.Tensor, num_chunks: int) -> torch.Tensor | None:
        """Key padding mask for GSTRA when ``gstra_mask_padding`` is on (off by default, as the reference)."""
        if not self.cfg.gstra_mask_padding:
            return None
        padding = ~pmask.reshape(num_chunks, -1)  # (B*K, T*gh*gw) True on padding
        return padding & ~padding.all(dim=1, keepdim=True)  # a fully padded chunk attends everything

    def _frame_tokens(
        self,
        crop: torch.Tensor,
        idx: torch.Tensor,
        t: int,
        chunk_tokens: torch.Tensor | None,
        is_video: bool,
    ) -> torch.Tensor:
        """LSD, FSRA, context fusion and row layout for frames that share one content box.

        Args:
            crop: (n, C, hc, wc) content patches.
            idx: (n,) frame indices in the batch (to find each frame's chunk).
            t: frames per chunk.
            chunk_tokens: (N/T, C) GSTRA tokens, or None.
            is_video: videos fuse GSTRA and FSRA; images use the FSRA token as is (reference §1.4 step 4e).

        Returns:
            (n, L, C) tokens ``[context, row_0, split, row_1, split, ...]``.
        """
        n, c, hc, wc = crop.shape
        h, w = hc // 2, wc // 2
        grid = self.lsd(crop)  # (n, h*w, C)
        frame_ctx = self.fsra(grid) if self.fsra is not None else None  # (n, C)
        if is_video:
            chunk_ctx = chunk_tokens[idx // t] if chunk_tokens is not None else None  # (n, C)
            context = self.fusion(chunk_ctx, frame_ctx)  # (n, C)
        elif frame_ctx is not None:
            context = frame_ctx
        else:
            raise ValueError("images need the FSRA context token: video_tokenizer.fsra is off")
        if self.split_embedding is not None:
            split = self.split_embedding.expand(n, h, 1, c)  # (n, h, 1, C)
            grid = torch.cat([grid.view(n, h, w, c), split], dim=2).view(n, h * (w + 1), c)  # (n, h*(w+1), C)
        return torch.cat([context[:, None], grid], dim=1)  # (n, L, C)
