"""Projector from the STAB width into the LLM width (reference §2): ``linear``, ``mlpNx_gelu`` or ``identity``."""

from __future__ import annotations

import re

from torch import nn


def build_projector(kind: str, in_dim: int, out_dim: int) -> nn.Module:
    """Build a projector.

    ``mlpNx_gelu`` is Linear(in, out), then (N-1) x [GELU (exact), Linear(out, out)]; ``mlp2x_gelu`` is the paper's.
    Indices match the reference's ``nn.Sequential`` so state-dict keys are ``0.weight``, ``2.weight``, ...
    """
    if kind == "linear":
        return nn.Linear(in_dim, out_dim)
    if kind == "identity":
        return nn.Identity()
    match = re.match(r"^mlp(\d+)x_gelu$", kind)
    if not match:
        raise ValueError(f"unknown projector type {kind!r} (expected linear, identity or mlpNx_gelu)")
    layers: list[nn.Module] = [nn.Linear(in_dim, out_dim)]
    for _ in range(int(match.group(1)) - 1):
        layers += [nn.GELU(), nn.Linear(out_dim, out_dim)]
    return nn.Sequential(*layers)
