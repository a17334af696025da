"""Distillation head and loss: LLM hidden states at visual positions predict a frozen teacher's patch features.

Reference §3.2-3.3 (``VideoCompressor``). For every *grid* token of every *real* video frame (not the context
token, not the row-split tokens, not padded frames), the hidden states of the selected LLM layers
``[L, L - r, ..., 0]`` (index 0 = the spliced input embeddings, L = the output after the final norm) are
projected to the teacher width, fused by a single-query attention across layers (the query is the last layer,
scale ``teacher_width^-0.5``, kept from the reference), and added to a linear map of the last layer. The loss of a
frame is ``1 - mean cosine(prediction, teacher token)`` over its tokens, averaged over the real frames of the batch.

Fixed (DECISIONS.md): only the selected layers and only the visual positions are gathered (the reference stacked
all 33 layers for the whole batch), with index tensors and no per-frame loop; padded frames contribute nothing.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from videopanda.model.geometry import patch_mask
from videopanda.model.video_tokenizer import VisualTokens


def select_layers(num_layers: int, rate: int) -> list[int]:
    """Hidden-state indices the head reads: ``[L, L - rate, ..., 0]`` ([32, 28, ..., 0] for LLaMA-7B)."""
    return [num_layers - i for i in range(0, num_layers + 1, rate)]


class DistillHead(nn.Module):
    """Predict teacher patch features from several LLM layers (reference ``VideoCompressor``).

    State-dict names follow the reference (``norm_layer.{j}.{0,1}``, ``input_layer``, ``output_layer``), so EVE's
    and Video-Panda's released heads load directly.

    Args:
        llm_width: D.
        teacher_width: Dt.
        num_layers: J selected layers (index 0 is the query layer).
        num_heads: heads of the cross-layer attention.
    """

    def __init__(self, llm_width: int, teacher_width: int, num_layers: int, num_heads: int = 8) -> None:
        super().__init__()
        if teacher_width % num_heads:
            raise ValueError(f"teacher width {teacher_width} is not divisible by distill.num_heads={num_heads}")
        self.num_heads = num_heads
        self.scale = teacher_width**-0.5  # full width, as the reference (§3.2)
        self.norm_layer = nn.ModuleList(
            nn.Sequential(nn.LayerNorm(llm_width), nn.Linear(llm_width, teacher_width, bias=False))
            for _ in range(num_layers)
        )
        self.input_layer = nn.Linear(llm_width, teacher_width)
        self.output_layer = nn.Linear(teacher_width, teacher_width)

    def forward(self, states: torch.Tensor) -> torch.Tensor:
        """Args: states: (N, J, D) hidden states of N tokens (N may be 0), layer j=0 is the query. Returns (N, Dt)."""
        v = torch.stack([norm(states[:, j]) for j, norm in enumerate(self.norm_layer)], dim=1)  # (N, J, Dt)
        n, j, dt = v.shape
        nh, hd = self.num_heads, dt // self.num_heads
        q = v[:, 0].reshape(n, nh, hd)  # (N, nh, hd)
        kv = v[:, 1:].reshape(n, j - 1, nh, hd)  # (N, J-1, nh, hd)
        attn = torch.einsum("nhd,njhd->nhj", q * self.scale, kv).softmax(dim=-1)  # (N, nh, J-1)
        fused = torch.einsum("nhj,njhd->nhd", attn, kv).reshape(n, dt)  # (N, Dt)
        return self.input_layer(states[:, 0]) + self.output_layer(fused)


def grid_token_positions(
    input_ids: torch.Tensor,
    video_token_id: int,
    visual: VisualTokens,
    row_tokens: bool,
    real_frames: torch.Tensor,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Sequence positions of the grid tokens of real frames, in (video, frame, row, column) order.

    Args:
        input_ids: (B, S) with ``video_token_id`` placeholders (videos' rows in batch order).
        visual: the STAB output of the batch's videos (per-frame token counts and content boxes).
        row_tokens: whether rows end with a split token.
        real_frames: (Nf,) bool, False for padded frames.

    Returns:
        ``(rows, cols, frame)`` long tensors (N,): batch row, sequence position and frame index of each token.
    """
    rows, cols = (input_ids == video_token_id).nonzero(as_tuple=True)  # (T,) in row-major = feature order
    counts = visual.frame_token_counts.to(rows.device)  # (Nf,)
    if rows.numel() != int(counts.sum()):
        raise ValueError(f"video placeholders: {rows.numel()}, STAB tokens: {int(counts.sum())}")
    frame = torch.repeat_interleave(torch.arange(len(counts), device=rows.device), counts)  # (T,)
    offset = torch.arange(len(frame), device=rows.device) - (counts.cumsum(0) - counts)[frame]  # (T,) within frame
    keep = offset > 0  # drop the context token
    if row_tokens:
        w = ((visual.boxes[:, 3] - visual.boxes[:, 2]) // 2).to(rows.device)[frame]  # (T,) tokens per row
        keep &= (offset - 1) % (w + 1) != w  # drop the split token that ends each row
    keep &= real_frames.to(rows.device)[frame]
    return rows[keep], cols[keep], frame[keep]


def teacher_targets(
    teacher_features: torch.Tensor, teacher_frames: torch.Tensor, teacher_patch: int
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Teacher tokens inside each frame's content, in (video, frame, row, column) order.

    Args:
        teacher_features: (Bv, F, G*G, Dt) patch features.
        teacher_frames: (Bv, F, 4, St, St) the teacher's input (4th channel = content mask).
        teacher_patch: the teacher's patch size.

    Returns:
        ``(targets (N, Dt), frame (N,), real_frames (Bv*F,) bool)``.
    """
    mask = patch_mask(teacher_frames.flatten(0, 1)[:, 3], teacher_patch).flatten(1)  # (Bv*F, G*G)
    feats = teacher_features.flatten(0, 1)  # (Bv*F, G*G, Dt)
    frame = torch.arange(len(mask), device=mask.device)[:, None].expand_as(mask)[mask]  # (N,)
    return feats[mask], frame, mask.any(dim=1)


def distillation_loss(
    head: DistillHead,
    hidden_states: tuple[torch.Tensor, ...],
    layers: list[int],
    input_ids: torch.Tensor,
    video_token_id: int,
    visual: VisualTokens,
    row_tokens: bool,
    teacher_features: torch.Tensor,
    teacher_frames: torch.Tensor,
    teacher_patch: int,
) -> tuple[torch.Tensor, int]:
    """Mean over real frames of ``1 - mean cosine(head(hidden states), teacher token)``.

    Args:
        hidden_states: the LLM's L+1 hidden states (index 0 = input embeddings, L = after the final norm).
        layers: indices to read (:func:`select_layers`); ``layers[0]`` is the query layer.
        Others: see :func:`grid_token_positions` and :func:`teacher_targets`.

    Returns:
        ``(loss, number of real frames)``; with no real frame the loss is an exact zero that still ran the head.
    """
    targets, target_frame, real = teacher_targets(teacher_features, teacher_frames, teacher_patch)
    rows, cols, frame = grid_token_positions(input_ids, video_token_id, visual, row_tokens, real)
    if rows.numel() != targets.shape[0] or not torch.equal(frame, target_frame.to(frame.device)):
        raise ValueError(
            f"student grid tokens ({rows.numel()}) and teacher tokens inside the content mask ({targets.shape[0]}) "
            "do not line up: the teacher frames must share the student's letterbox (DataConfig.teacher_image_size)"
        )
    num_real = int(real.sum())
    states = torch.stack([hidden_states[i][rows, cols] for i in layers], dim=1)  # (N, J, D)
    pred = head(states)  # (N, Dt); also when N == 0, so every rank runs the head (DDP, ZeRO-3)
    if num_real == 0:
        return pred.sum() * 0.0, 0
    cos = F.cosine_similarity(pred.float(), targets.float().to(pred.device), dim=-1)  # (N,)
    nf = len(real)
    per_frame = torch.zeros(nf, device=cos.device).index_add(0, frame, cos)  # (Nf,) sums
    tokens = torch.zeros(nf, device=cos.device).index_add(0, frame, torch.ones_like(cos))  # (Nf,)
    real = real.to(cos.device)
    return (1.0 - per_frame[real] / tokens[real]).mean(), num_real
