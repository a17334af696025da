"""LSTE's channels-last CPU path computes exactly what the default-layout convolutions compute, gradients included."""

from __future__ import annotations

import pytest
import torch

from tests.model.reference_stab import reference_lste
from videopanda.model.lste import LSTE


@pytest.mark.parametrize("use_dpe", [True, False])
def test_channels_last_path_matches_default_layout_in_values_and_gradients(use_dpe):
    torch.manual_seed(0)
    m = LSTE(24, 16, use_dpe=use_dpe).train()
    with torch.no_grad():
        for p in m.parameters():
            p.normal_(0, 0.3)  # the zero-initialised output conv would hide a wrong temporal branch
    x = torch.randn(3, 24, 4, 5, 6, requires_grad=True)  # (B*K, C, T, gh, gw), a non-square grid
    g = torch.randn(3, 24, 4, 5, 6)

    out = m(x)
    assert out.shape == x.shape and out.is_contiguous()
    grads = torch.autograd.grad((out * g).sum(), [x, *m.parameters()])
    ref = reference_lste(m, x, training=True)
    ref_grads = torch.autograd.grad((ref * g).sum(), [x, *m.parameters()])

    torch.testing.assert_close(out, ref, rtol=1e-5, atol=1e-5)
    for got, want in zip(grads, ref_grads, strict=True):
        assert want.abs().sum() > 0  # every parameter takes part
        torch.testing.assert_close(got, want, rtol=1e-4, atol=1e-4)
