"""Mixed precision on CPU: bf16 matrix products, fp32 attention and convolutions.

Under ``torch.autocast("cpu", dtype=torch.bfloat16)`` (``distributed.mixed_precision: bf16`` on a CPU) every
matrix product runs in bf16, 2-3x faster than in fp32 on CPUs with AVX512-BF16. But at the tiny model's sizes
oneDNN's bf16 kernels for SDPA's backward and for the STAB's depthwise 3D convolutions are slower than the fp32
ones, so the blocks that run them call :func:`fp32_on_cpu`, and the LLM's attention is :func:`sdpa_attention`
(registered with transformers as :data:`CPU_MIXED_SDPA`). Anywhere else (no autocast, or autocast on a GPU, whose
bf16 attention and convolutions are fast) both change nothing.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from transformers.integrations.sdpa_attention import sdpa_attention_forward

# The name under which :func:`sdpa_attention` is registered in transformers' attention (and mask) interfaces.
CPU_MIXED_SDPA = "videopanda_sdpa"


def fp32_on_cpu(fn: Callable, *args, **kwargs):
    """``fn(*args, **kwargs)``; on a CPU under autocast, with autocast off and the floating tensor args in fp32.

    The device is that of the first tensor argument. The result is fp32 there; the next autocast op casts it.
    """
    device = next((a.device for a in args if torch.is_tensor(a)), None)
    if device is None or device.type != "cpu" or not torch.is_autocast_enabled("cpu"):
        return fn(*args, **kwargs)
    args = tuple(a.float() if torch.is_tensor(a) and a.is_floating_point() else a for a in args)
    with torch.autocast("cpu", enabled=False):
        return fn(*args, **kwargs)


def cpu_has_fast_bf16() -> bool:
    """Whether this CPU multiplies bf16 matrices natively (AVX512-BF16 or AMX, as oneDNN sees it); without, bf16
    autocast makes a CPU step slower, not faster."""
    try:
        return bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())
    except (AttributeError, RuntimeError):  # a torch built without oneDNN
        return False


def sdpa_attention(module: torch.nn.Module, query, key, value, attention_mask, **kwargs):
    """transformers' SDPA attention (same arguments and result), in fp32 on a CPU under autocast."""
    return fp32_on_cpu(sdpa_attention_forward, module, query, key, value, attention_mask, **kwargs)
