"""Optimizer and schedule: AdamW with one learning rate per trainable group, warmup then cosine to zero."""

from __future__ import annotations

import math

import torch
from torch.optim.lr_scheduler import LambdaLR

from .config import OptimConfig, StageConfig
from .stages import parameter_groups


def build_optimizer(task, stage: StageConfig, optim: OptimConfig) -> torch.optim.AdamW:
    """AdamW over the trainable parameters, one (decay, no-decay) pair of param groups per trainable group.

    Biases and 1-D parameters (norms, embeddings-as-vectors) get no weight decay. Each param group carries a
    ``name`` (``stab``, ``projector``, ``distill_head``, ``llm``, with ``/no_decay`` for the second half) for logging.
    """
    param_groups = []
    for name, params in parameter_groups(task).items():
        params = [p for p in params if p.requires_grad]
        if not params:
            continue
        lr = stage.group_lr(name)
        decay = [p for p in params if p.dim() >= 2]
        no_decay = [p for p in params if p.dim() < 2]
        if decay:
            param_groups.append({"params": decay, "lr": lr, "weight_decay": optim.weight_decay, "name": name})
        if no_decay:
            param_groups.append({"params": no_decay, "lr": lr, "weight_decay": 0.0, "name": f"{name}/no_decay"})
    if not param_groups:
        raise ValueError("no trainable parameters: check stage.trainable")
    return torch.optim.AdamW(param_groups, betas=tuple(optim.betas), eps=optim.eps)


def lr_lambda(total_steps: int, warmup_ratio: float, schedule: str):
    """HF's schedule: linear warmup over ceil(ratio * total) steps, then half-cosine to 0 (or constant)."""
    warmup = math.ceil(warmup_ratio * total_steps)

    def factor(step: int) -> float:
        if step < warmup:
            return (step + 1) / max(1, warmup)
        if schedule == "constant":
            return 1.0
        progress = (step - warmup) / max(1, total_steps - warmup)
        return max(0.0, 0.5 * (1.0 + math.cos(math.pi * progress)))

    return factor


def build_scheduler(optimizer, total_steps: int, optim: OptimConfig) -> LambdaLR:
    return LambdaLR(optimizer, lr_lambda(total_steps, optim.warmup_ratio, optim.schedule))
