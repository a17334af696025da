"""The STAB's documented initialisation (reference §1.6), asserted by several model tests."""

from __future__ import annotations

import torch


def assert_stab_starts_from_our_init(stab) -> None:
    """Identity LSTE and GSTRA outputs, alpha = 0.5 (zero tensors), kaiming-uniform DPE, torch-default LSTE bottleneck
    convs, random GSTRA input."""
    for zero in (
        stab.lste.temporal[3].weight,
        stab.lste.temporal[3].bias,
        stab.gstra.out_proj.weight,
        stab.gstra.mlp.c_proj.weight,
        stab.gstra.query,
        stab.fusion.balance,
        stab.lste.dpe.bias,
    ):
        assert torch.count_nonzero(zero) == 0
    assert stab.lste.dpe.weight.std() > 0.05  # torch's kaiming-uniform, not N(0, 0.02)
    for conv in (stab.lste.temporal[1], stab.lste.temporal[2]):  # torch's default Conv3d init, bias included
        bound = conv.weight[0].numel() ** -0.5
        assert conv.weight.abs().max() <= bound and conv.weight.std() > 0.4 * bound  # uniform(-b, b): std b/sqrt(3)
        assert conv.bias.abs().max() <= bound and torch.count_nonzero(conv.bias) == conv.bias.numel()
    assert torch.count_nonzero(stab.gstra.in_proj_weight) > 0
