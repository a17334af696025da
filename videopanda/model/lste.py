"""LSTE: Local Spatio-Temporal Encoding (paper §3.2, "stacked convs" + DPE).

Within a chunk of T frames, every patch is refined by its temporal neighbours (a bottleneck of 1x1x1 convs
around a depthwise temporal conv, after a BatchNorm; UniFormerV2's local MHRA), then given a dynamic position
encoding (DPE, a depthwise 3x3x3 conv). Both are residual:

    x1 = x0 + temporal(x0);  x2 = x1 + dpe(x1)

GSTRA reads ``x2``; the STAB then adds the dense skip ``x2 + x0`` (reference §1.4 step 3d), so the frame
tokens see ``2*x0 + temporal(x0) + dpe(x1)``.

Everything runs over the full padded patch grid, BatchNorm included, as in the reference (§1.4 step 3).

On CPU the block runs channels-last (``torch.channels_last_3d``): torch's depthwise Conv3d backward on the default
layout takes most of the STAB's backward there (the DPE's alone about a tenth of a tiny training step), and the
channels-last (oneDNN) kernels take about half as long for the same numbers at the tiny config's size
(``benchmarks/lste_layout.py``: 23 against 45 ms forward+backward for a micro-batch of 8 videos, 2 threads). At the
paper's size the channels-last backward is slower on CPU (1.4 against 1.05 s a video) and the forward a little
faster; nobody trains that size on a CPU, and GPUs keep the default layout. The output is contiguous again,
whatever the layout inside. Under bf16 autocast on a CPU both convolutions stay fp32 (:mod:`.precision`).
"""

from __future__ import annotations

import torch
from torch import nn

from .precision import fp32_on_cpu


class LSTE(nn.Module):
    """Local Spatio-Temporal Encoding.

    Args:
        width: channels C.
        reduced_width: bottleneck channels (``int(C // 1.5)``, 682 for C=1024).
        use_dpe: build and apply the dynamic position encoding.
    """

    def __init__(self, width: int, reduced_width: int, use_dpe: bool = True) -> None:
        super().__init__()
        self.temporal = nn.Sequential(
            nn.BatchNorm3d(width),
            nn.Conv3d(width, reduced_width, kernel_size=1),
            nn.Conv3d(reduced_width, reduced_width, kernel_size=(3, 1, 1), padding=(1, 0, 0), groups=reduced_width),
            nn.Conv3d(reduced_width, width, kernel_size=1),  # zero-initialised: the block starts as identity
        )
        self.temporal[1].init_scheme = "torch_conv"  # read by VideoPandaPreTrainedModel._init_weights: the
        self.temporal[2].init_scheme = "torch_conv"  # reference never re-initialises these two (§1.6)
        self.temporal[3].init_scheme = "zeros"
        self.dpe = nn.Conv3d(width, width, kernel_size=3, padding=1, groups=width) if use_dpe else None
        if self.dpe is not None:
            self.dpe.init_scheme = "torch_default"  # torch's kaiming-uniform weight, zero bias (§1.6)

    def forward(self, x0: torch.Tensor) -> torch.Tensor:
        """Args: x0: (B*K, C, T, gh, gw) patch embeddings of every chunk. Returns the same shape (contiguous)."""
        if x0.device.type == "cpu":
            x0 = x0.contiguous(memory_format=torch.channels_last_3d)  # same values, faster depthwise convs on CPU
        x1 = x0 + fp32_on_cpu(self.temporal, x0)  # (B*K, C, T, gh, gw)
        x2 = x1 + fp32_on_cpu(self.dpe, x1) if self.dpe is not None else x1
        return x2.contiguous()
