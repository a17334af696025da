"""Patch embedding of the STAB: a strided convolution over RGB, and the content mask pooled to the same grid."""

from __future__ import annotations

import torch
from torch import nn

from .geometry import patch_mask
from .precision import fp32_on_cpu


class PatchEmbedding(nn.Module):
    """Split each frame into ``patch_size`` patches and embed them (Conv2d 3 -> C, no bias, as EVE).

    Args:
        width: output channels C.
        patch_size: kernel and stride in pixels.
    """

    def __init__(self, width: int, patch_size: int) -> None:
        super().__init__()
        self.patch_size = patch_size
        self.proj = nn.Conv2d(3, width, kernel_size=patch_size, stride=patch_size, bias=False)

    def forward(self, frames: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Embed frames.

        Args:
            frames: (N, 4, H, W): normalised RGB plus the content mask channel.

        Returns:
            ``(patches (N, C, gh, gw), pmask (N, gh, gw) bool)``.
        """
        # Contiguous once here: the convolution would copy the strided view in forward and again in backward.
        rgb = frames[:, :3].to(self.proj.weight.dtype).contiguous()  # (N, 3, H, W)
        patches = fp32_on_cpu(self.proj, rgb)  # (N, C, gh, gw)
        return patches, patch_mask(frames[:, 3:4], self.patch_size)
