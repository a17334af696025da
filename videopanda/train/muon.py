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
        updates: list[tuple[dict, torch.Tensor, torch.Tensor]] = []  # (group, param, Nesterov momentum)
        for group in self.param_groups:
            params = [p for p in group["params"] if p.grad is not None]
            if not params:
                continue
            if group["muon"]:
                updates += self._nesterov(group, params)
            else:
                self._adamw(group, params)
        self._muon(updates)
        return loss

    def _nesterov(self, group, params) -> list[tuple[dict, torch.Tensor, torch.Tensor]]:
        """Advance the momentum buffers of one Muon group; the Nesterov momentum ``g + mu * buf`` of each param."""
        bufs = []
        for p in params:
            state = self.state[p]
            if not state:
                state["momentum_buffer"] = torch.zeros_like(p)
            bufs.append(state["momentum_buffer"])
        grads = [p.grad for p in params]
        torch._foreach_mul_(bufs, group["momentum"])
        torch._foreach_add_(bufs, grads)
        nesterov = torch._foreach_add(grads, bufs, alpha=group["momentum"])
        return [(group, p, n) for p, n in zip(params, nesterov, strict=True)]

    def _muon(self, updates: list[tuple[dict, torch.Tensor, torch.Tensor]]) -> None:
        """Orthogonalise every Muon param's momentum, one batched Newton-Schulz per matrix shape over all groups
        (a tall matrix joins the wide ones of its transposed shape: the step's hot loop), then apply each update
        with its group's learning rate and weight decay."""
        buckets: dict[tuple, list[tuple[dict, torch.Tensor, torch.Tensor]]] = {}
        for group, p, n in updates:
            rows, cols = p.shape[0], math.prod(p.shape[1:])  # a convolution's (out, in, *kernel) is (out, in * k)
            buckets.setdefault((group["ns_steps"], min(rows, cols), max(rows, cols)), []).append((group, p, n))
        for (ns_steps, small, large), items in buckets.items():
            # (n, small, large): every matrix wide, as orthogonalize() would turn it
            wide = torch.stack([n.reshape(small, large) if n.shape[0] == small else n.reshape(large, small).mT
                                for _, _, n in items])  # fmt: skip
            ortho = orthogonalize(wide, ns_steps)
            scale = 0.2 * math.sqrt(large)  # AdamW's update RMS for this shape
            for (group, p, _), o in zip(items, ortho, strict=True):
                o = o if p.shape[0] == small else o.mT
                if group["weight_decay"]:
                    p.mul_(1 - group["lr"] * group["weight_decay"])
                p.add_(o.reshape(p.shape), alpha=-group["lr"] * scale)

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
