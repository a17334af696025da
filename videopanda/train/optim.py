"""Optimizer and schedule: AdamW (or Muon) with one learning rate per trainable group, warmup then cosine to zero."""

from __future__ import annotations

import math

import torch
from torch.optim.lr_scheduler import LambdaLR

from .config import OptimConfig, StageConfig
from .muon import MuonAdamW
from .stages import parameter_groups


def build_optimizer(task, stage: StageConfig, optim: OptimConfig) -> torch.optim.Optimizer:
    """AdamW over the trainable parameters, one (decay, no-decay) pair of param groups per trainable group.

    Biases and 1-D parameters (norms, embeddings-as-vectors) get no weight decay. Each param group carries a
    ``name`` (``stab``, ``projector``, ``distill_head``, ``llm``, with ``/no_decay`` for the second half) for logging.
    With ``optim.optimizer: muon`` the weights of Linear layers (but the LM head) move to a third group per
    trainable group, ``NAME/muon``, updated by Muon (:class:`MuonAdamW`) at the group's learning rate times
    ``optim.muon_lr_scale``.
    """
    muon_ids = set()
    if optim.optimizer == "muon":
        head = task.model.get_output_embeddings()
        muon_ids = {id(m.weight) for m in task.modules() if isinstance(m, torch.nn.Linear) and m is not head}
        if optim.muon_convs:
            convs = (torch.nn.Conv1d, torch.nn.Conv2d, torch.nn.Conv3d)
            muon_ids |= {id(m.weight) for m in task.modules() if isinstance(m, convs) and m.groups == 1}
    param_groups = []
    for name, params in parameter_groups(task).items():
        params = [p for p in params if p.requires_grad]
        if not params:
            continue
        lr = stage.group_lr(name)
        muon = [p for p in params if id(p) in muon_ids]
        decay = [p for p in params if p.dim() >= 2 and id(p) not in muon_ids]
        no_decay = [p for p in params if p.dim() < 2]
        if muon:
            param_groups.append(
                {
                    "params": muon,
                    "lr": lr * optim.muon_lr_scale,
                    "weight_decay": optim.weight_decay,
                    "name": f"{name}/muon",
                    "muon": True,
                }
            )
        if decay:
            param_groups.append({"params": decay, "lr": lr, "weight_decay": optim.weight_decay, "name": name})
        if no_decay:
            param_groups.append({"params": no_decay, "lr": lr, "weight_decay": 0.0, "name": f"{name}/no_decay"})
    if not param_groups:
        raise ValueError("no trainable parameters: check stage.trainable")
    if optim.optimizer == "muon":
        return MuonAdamW(
            param_groups,
            betas=tuple(optim.betas),
            eps=optim.eps,
            momentum=optim.muon_momentum,
            ns_steps=optim.muon_ns_steps,
        )
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
