"""The STAB's documented initialisation (reference §1.6), asserted by several model tests."""

from __future__ import annotations

import torch


def assert_stab_starts_from_our_init(stab) -> None:
    """Identity LSTE and GSTRA outputs, alpha = 0.5 (zero tensors), kaiming-uniform DPE, random GSTRA input."""
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
    assert torch.count_nonzero(stab.gstra.in_proj_weight) > 0
