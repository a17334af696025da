"""``TrainingTask``: the model plus the training-only distillation head, with both losses, as one module.

The frozen teacher is *not* part of this module: the loop runs it under ``no_grad`` and passes its features in,
so it is never wrapped by DDP/DeepSpeed, never in an optimizer and never in a checkpoint (DECISIONS.md). The
inference model (``task.model``) is saved on its own; the head is saved beside it as ``distill_head.safetensors``.
"""

from __future__ import annotations

import torch
from torch import nn

from videopanda.data.collate import model_inputs
from videopanda.model import VideoPandaForConditionalGeneration

from .distill import DistillHead, distillation_loss


class TrainingTask(nn.Module):
    """Model + optional distillation head; ``forward(batch)`` returns the losses.

    Args:
        model: the Video-Panda model being trained.
        head: the distillation head, or None when distillation is off.
        layers: LLM hidden-state indices the head reads (:func:`videopanda.train.distill.select_layers`).
        distill_weight: weight of the distillation loss in the total.
        teacher_patch: the teacher's patch size (to pool its content mask).
    """

    def __init__(
        self,
        model: VideoPandaForConditionalGeneration,
        head: DistillHead | None = None,
        layers: list[int] | None = None,
        distill_weight: float = 1.0,
        teacher_patch: int = 14,
    ) -> None:
        super().__init__()
        self.model = model
        self.head = head
        self.layers = layers or []
        self.distill_weight = distill_weight
        self.teacher_patch = teacher_patch

    def forward(self, batch: dict, teacher_features: torch.Tensor | None = None) -> dict[str, torch.Tensor]:
        """Losses of one batch.

        Args:
            batch: a collated batch (``videopanda.data.DataCollator``).
            teacher_features: (Bv, F, G*G, Dt) the frozen teacher's features of the batch's videos, or None.

        Returns:
            ``loss`` (to backpropagate), ``lm_loss`` and ``distill_loss`` (detached), ``real_frames``.
        """
        distill = self.head is not None and teacher_features is not None
        out = self.model(**model_inputs(batch), output_hidden_states=distill, full_logits=False)
        lm_loss = out.loss
        if distill:
            cfg = self.model.config
            distill_loss, real = distillation_loss(
                self.head,
                out.hidden_states,
                self.layers,
                batch["input_ids"],
                cfg.video_token_id,
                out.video_tokens,
                cfg.stab.row_tokens,
                teacher_features,
                batch["teacher_pixel_values_videos"],
                self.teacher_patch,
            )
        else:
            distill_loss, real = lm_loss.new_zeros(()), 0
            if self.head is not None:
                # No video in this batch: run the head on zero tokens anyway, so that its parameters take part in
                # this step on every rank (DDP's reducer, ZeRO-3's parameter gathers) with a zero gradient.
                width = self.model.config.text_config.hidden_size
                empty = lm_loss.new_zeros((0, len(self.layers), width))  # (0, J, D)
                distill_loss = self.head(empty).sum() * 0.0
        loss = lm_loss + self.distill_weight * distill_loss
        return {
            "loss": loss,
            "lm_loss": lm_loss.detach(),
            "distill_loss": distill_loss.detach(),
            "real_frames": torch.tensor(real),
        }
