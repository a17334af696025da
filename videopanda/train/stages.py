"""Which parameters train in a stage: one function applies ``stage.trainable`` and logs the counts per group."""

from __future__ import annotations

import logging

from torch import nn

logger = logging.getLogger(__name__)


def parameter_groups(task) -> dict[str, list[nn.Parameter]]:
    """The trainable groups of a :class:`~videopanda.train.task.TrainingTask`, by name.

    ``stab`` = the STAB (``model.model.video_tokenizer``), ``projector``, ``llm`` = the language model with its
    embeddings and LM head, ``distill_head`` = the distillation head (empty without distillation).
    """
    model = task.model
    groups = {
        "stab": list(model.model.video_tokenizer.parameters()),
        "projector": list(model.model.projector.parameters()),
        "llm": list(model.model.language_model.parameters()) + list(model.lm_head.parameters()),
        "distill_head": list(task.head.parameters()) if task.head is not None else [],
    }
    seen = {id(p) for ps in groups.values() for p in ps}
    stray = [n for n, p in task.named_parameters() if id(p) not in seen]
    if stray:
        raise RuntimeError(f"parameters outside every trainable group: {stray[:5]}")
    return groups


def apply_trainable(task, trainable: list[str]) -> dict[str, tuple[int, int]]:
    """Freeze everything, then unfreeze the named groups.

    Returns:
        ``{group: (trainable parameters, total parameters)}``, also logged.
    """
    groups = parameter_groups(task)
    counts = {}
    for name, params in groups.items():
        on = name in trainable
        for p in params:
            p.requires_grad_(on)
        total = sum(p.numel() for p in params)
        counts[name] = (total if on else 0, total)
    for name, (n_train, total) in counts.items():
        logger.info("%-12s %14s / %14s parameters trainable", name, f"{n_train:,}", f"{total:,}")
    logger.info("trainable in total: %s", f"{sum(c[0] for c in counts.values()):,}")
    return counts
