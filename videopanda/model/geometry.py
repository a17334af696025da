"""Letterbox geometry shared by the STAB and the data pipeline.

The student canvas is a square of ``grid x grid`` patches. The 4th input channel marks real pixels; after
pooling it to the patch grid, the content of a frame is a rectangle whose sides are even numbers of patches.
These helpers find that rectangle (the *content box*) and the number of LLM tokens a frame becomes, so the data
collator can place exactly as many placeholders as the STAB will produce features.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


def patch_mask(mask: torch.Tensor, patch_size: int) -> torch.Tensor:
    """Pool a pixel mask to the patch grid.

    Args:
        mask: (N, 1, H, W) or (N, H, W), 1 on content, 0 on padding.
        patch_size: patch stride in pixels.

    Returns:
        (N, H/p, W/p) bool, True where the patch is content.
    """
    if mask.dim() == 3:
        mask = mask.unsqueeze(1)
    pooled = F.avg_pool2d(mask.float(), kernel_size=patch_size, stride=patch_size)  # (N, 1, gh, gw)
    # The letterbox offsets are multiples of two patches, so the pooled mask is exactly 0/1 (reference §6.5).
    return pooled[:, 0] > 0.5


def content_boxes(pmask: torch.Tensor, padded_crop: int) -> torch.Tensor:
    """Content rectangle of every frame, in patches.

    A fully padded frame (no content at all) gets the top-left ``padded_crop x padded_crop`` block, as the
    reference does with its hard-coded 16x16 block.

    Args:
        pmask: (N, gh, gw) bool patch mask.
        padded_crop: side of the block used for fully padded frames.

    Returns:
        (N, 4) long tensor ``[top, bottom, left, right]`` with exclusive ``bottom``/``right``.
    """
    n, gh, gw = pmask.shape
    rows = pmask.any(dim=2)  # (N, gh)
    cols = pmask.any(dim=1)  # (N, gw)
    ar_h = torch.arange(gh, device=pmask.device)
    ar_w = torch.arange(gw, device=pmask.device)
    top = torch.where(rows, ar_h, gh).amin(dim=1)
    bottom = torch.where(rows, ar_h, -1).amax(dim=1) + 1
    left = torch.where(cols, ar_w, gw).amin(dim=1)
    right = torch.where(cols, ar_w, -1).amax(dim=1) + 1
    boxes = torch.stack([top, bottom, left, right], dim=1)  # (N, 4)
    empty = ~rows.any(dim=1)  # (N,) fully padded frames
    fallback = torch.tensor([0, padded_crop, 0, padded_crop], device=pmask.device)
    return torch.where(empty[:, None], fallback, boxes)


def tokens_per_frame(boxes: torch.Tensor, row_tokens: bool = True) -> torch.Tensor:
    """LLM tokens a frame becomes: 1 context token + h rows of w tokens (+1 split token per row).

    Args:
        boxes: (N, 4) content boxes from :func:`content_boxes`.
        row_tokens: whether every row ends with a split token.

    Returns:
        (N,) long token counts (273 for a square 448 px frame, reference §1.5).
    """
    h = (boxes[:, 1] - boxes[:, 0]) // 2  # LSD pools 2x2
    w = (boxes[:, 3] - boxes[:, 2]) // 2
    return 1 + h * (w + 1 if row_tokens else w)


def frame_token_counts(frames: torch.Tensor, patch_size: int, padded_crop: int, row_tokens: bool = True):
    """Token counts of student frames straight from their pixels.

    Args:
        frames: (..., 4, H, W) student frames whose 4th channel is the content mask.

    Returns:
        (...) long tensor of token counts, one per frame.
    """
    lead = frames.shape[:-3]
    mask = frames.reshape(-1, *frames.shape[-3:])[:, 3]  # (N, H, W)
    boxes = content_boxes(patch_mask(mask, patch_size), padded_crop)
    return tokens_per_frame(boxes, row_tokens).reshape(lead)
