"""Muon for the hidden weight matrices, AdamW for everything else, as one ``torch.optim.Optimizer``.

Muon (Jordan et al., 2024) takes SGD momentum (Nesterov) of a weight matrix's gradient and replaces it with the
nearest semi-orthogonal matrix, found with a few Newton-Schulz iterations, so that every direction of the update
moves at the same speed. Small transformers trained from scratch need fewer steps with it than with AdamW. It suits
hidden matrices: embeddings, the LM head, norms and biases stay on AdamW (convolutions too, unless muon_convs).

One optimizer rather than two, so that the learning-rate schedule, accelerate, gradient clipping and checkpoints
see a single object: each param group carries ``muon: True`` or ``False``. The Muon update is scaled to AdamW's
typical update RMS (``0.2 * sqrt(max(rows, cols))``, Liu et al., 2025), so a group keeps the learning rate it
would have with AdamW.
"""

from __future__ import annotations

import math

import torch
from torch.optim.adamw import adamw

# The quintic Newton-Schulz coefficients of the Muon reference: they push singular values into about [0.7, 1.2]
# in 5 iterations, which is as orthogonal as the update needs.
NS_COEFFICIENTS = (3.4445, -4.7750, 2.0315)


def orthogonalize(
    update: torch.Tensor, steps: int = 5, eps: float = 1e-7, dtype: torch.dtype = torch.bfloat16
) -> torch.Tensor:
    """The approximate ``U V^T`` of ``update = U S V^T``, by Newton-Schulz iteration, in ``update``'s dtype.

    ``update`` is (..., rows, cols): a stack of same-shaped matrices is orthogonalised in one batched pass. The
    iteration runs in ``dtype``: bf16, as in the Muon reference, is accurate enough for an update direction and
    halves the cost on a CPU too (for the tiny model these products are a fifth of a training step's FLOPs).
    """
    a, b, c = NS_COEFFICIENTS
    x = (update / (torch.linalg.matrix_norm(update, keepdim=True) + eps)).to(dtype)  # singular values <= 1
    tall = x.shape[-2] > x.shape[-1]
    if tall:
        x = x.mT  # (..., r, c) with r <= c: the Gram matrix below is the small one
    for _ in range(steps):
        gram = x @ x.mT  # (..., r, r)
        x = a * x + (b * gram + c * gram @ gram) @ x
    return (x.mT if tall else x).to(update.dtype)


class MuonAdamW(torch.optim.Optimizer):
    """Muon on the groups with ``muon: True`` (matrices; a convolution as out x in * kernel), AdamW on the rest.

    Args:
        params: param groups (dicts); each may set ``lr``, ``weight_decay`` and ``muon``.
        lr: default learning rate.
        betas, eps: AdamW's.
        momentum: Muon's momentum (Nesterov).
        weight_decay: default decoupled weight decay (both kinds of group).
        ns_steps: Newton-Schulz iterations.
    """

    def __init__(
        self,
        params,
        lr: float = 1e-3,
        betas: tuple[float, float] = (0.9, 0.999),
        eps: float = 1e-8,
        momentum: float = 0.95,
        weight_decay: float = 0.0,
        ns_steps: int = 5,
    ):
        defaults = dict(
            lr=lr, betas=tuple(betas), eps=eps, momentum=momentum, weight_decay=weight_decay, ns_steps=ns_steps
        )
        defaults["muon"] = False
        super().__init__(params, defaults)
        for group in self.param_groups:
            if group["muon"]:
                bad = [tuple(p.shape) for p in group["params"] if p.dim() < 2]
                if bad:
                    raise ValueError(f"Muon takes weight matrices only; group {group.get('name', '?')} has {bad}")

    @torch.no_grad()
    def step(self, closure=None):
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        for group in self.param_groups:
            params = [p for p in group["params"] if p.grad is not None]
            if not params:
                continue
            if group["muon"]:
                self._muon(group, params)
            else:
                self._adamw(group, params)
        return loss

    def _muon(self, group, params) -> None:
        lr, wd, mu = group["lr"], group["weight_decay"], group["momentum"]
        by_shape: dict[torch.Size, list[torch.Tensor]] = {}
        for p in params:
            by_shape.setdefault(p.shape, []).append(p)
        for shape, same in by_shape.items():  # one batched Newton-Schulz per weight shape (the step's hot loop)
            bufs = []
            for p in same:
                state = self.state[p]
                if not state:
                    state["momentum_buffer"] = torch.zeros_like(p)
                bufs.append(state["momentum_buffer"])
            grads = [p.grad for p in same]
            torch._foreach_mul_(bufs, mu)
            torch._foreach_add_(bufs, grads)
            nesterov = torch.stack(grads).add_(torch.stack(bufs), alpha=mu)  # (n, *shape)
            # a convolution's (out, in, *kernel) weight is the matrix (out, in * kernel)
            update = orthogonalize(nesterov.flatten(2), group["ns_steps"]).view_as(nesterov)
            if wd:
                torch._foreach_mul_(same, 1 - lr * wd)
            scale = 0.2 * math.sqrt(max(shape[0], math.prod(shape[1:])))  # AdamW's update RMS for this shape
            torch._foreach_add_(same, list(update.unbind(0)), alpha=-lr * scale)

    def _adamw(self, group, params) -> None:
        """torch's own AdamW update (its functional form), with the state keys ``torch.optim.AdamW`` keeps."""
        for p in params:
            state = self.state[p]
            if not state:
                state["step"] = torch.zeros((), dtype=torch.float32)
                state["exp_avg"] = torch.zeros_like(p)
                state["exp_avg_sq"] = torch.zeros_like(p)
        states = [self.state[p] for p in params]
        beta1, beta2 = group["betas"]
        adamw(
            params,
            [p.grad for p in params],
            [s["exp_avg"] for s in states],
            [s["exp_avg_sq"] for s in states],
            [],
            [s["step"] for s in states],
            amsgrad=False,
            beta1=beta1,
            beta2=beta2,
            lr=group["lr"],
            weight_decay=group["weight_decay"],
            eps=group["eps"],
            maximize=False,
            foreach=True,  # one multi-tensor kernel per op, not a loop over the tensors (the CPU default)
        )
