"""Batching samples of :class:`~videopanda.data.dataset.VideoPandaDataset` into model inputs.

Text is padded (right for training, left for generation); the frames of the samples that hold a video are
stacked in batch order, and likewise images, which is the order the model's splice expects. Visual positions
already hold one placeholder per visual token, so nothing here depends on the model.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal

import torch

from .conversation import IGNORE_INDEX

MODEL_KEYS = ("input_ids", "attention_mask", "labels", "pixel_values_videos", "pixel_values_images")


def model_inputs(batch: dict) -> dict:
    """The keys of a collated batch that go straight into the model's ``forward`` (drops ids, teacher frames...)."""
    return {k: batch[k] for k in MODEL_KEYS if k in batch}


def pad_sequences(seqs: Sequence[torch.Tensor], value: int, side: Literal["left", "right"] = "right") -> torch.Tensor:
    """Stack 1-D tensors of different lengths into (B, max_len), padding with ``value`` on ``side``."""
    if side not in ("left", "right"):
        raise ValueError(f"padding side {side!r}: expected 'left' or 'right'")
    if side == "right":
        return torch.nn.utils.rnn.pad_sequence(list(seqs), batch_first=True, padding_value=value)
    flipped = torch.nn.utils.rnn.pad_sequence([s.flip(0) for s in seqs], batch_first=True, padding_value=value)
    return flipped.flip(1)


class DataCollator:
    """Collate dataset items into a batch.

    Args:
        pad_token_id: id written at padded positions of ``input_ids`` (the tokenizer's pad; ``<unk>`` = 0 in the
            reference).
        padding_side: ``right`` (training) or ``left`` (batched generation).

    Returns (``__call__``) a dict:

    * ``input_ids`` (B, S) long, ``attention_mask`` (B, S) long (1 on real tokens), ``labels`` (B, S) with
      ``-100`` on padding;
    * ``pixel_values_videos`` (Bv, F, 4, H, W) or None; ``pixel_values_images`` (Bi, 4, H, W) or None;
    * ``teacher_pixel_values_videos`` (Bv, F, 4, Ht, Wt) or None (present when every video carries teacher frames);
    * ``ids`` (list of B str), ``modalities`` (list of B str), ``skipped`` (ids of bad records replaced in this
      batch, for the training loop's count).

    Use :func:`model_inputs` to pass the model only what its ``forward`` takes.
    """

    def __init__(self, pad_token_id: int, padding_side: Literal["left", "right"] = "right") -> None:
        if pad_token_id is None or pad_token_id < 0:
            raise ValueError(f"pad_token_id must be a vocabulary id, got {pad_token_id!r}")
        if padding_side not in ("left", "right"):
            raise ValueError(f"padding_side {padding_side!r}: expected 'left' or 'right'")
        self.pad_token_id = pad_token_id
        self.padding_side = padding_side

    def __call__(self, items: Sequence[dict]) -> dict:
        if not items:
            raise ValueError("cannot collate an empty batch")
        side = self.padding_side
        input_ids = pad_sequences([it["input_ids"] for it in items], self.pad_token_id, side)  # (B, S)
        lengths = torch.tensor([len(it["input_ids"]) for it in items])
        positions = torch.arange(input_ids.shape[1])[None]  # (1, S)
        if side == "right":
            attention_mask = (positions < lengths[:, None]).long()  # (B, S)
        else:
            attention_mask = (positions >= input_ids.shape[1] - lengths[:, None]).long()
        batch = {"input_ids": input_ids, "attention_mask": attention_mask}
        if all(it.get("labels") is not None for it in items):
            batch["labels"] = pad_sequences([it["labels"] for it in items], IGNORE_INDEX, side)  # (B, S)

        videos = [it for it in items if it.get("modality") == "video"]
        images = [it for it in items if it.get("modality") == "image"]
        batch["pixel_values_videos"] = _stack([it["pixel_values"] for it in videos], "video") if videos else None
        batch["pixel_values_images"] = (
            _stack([it["pixel_values"].reshape(it["pixel_values"].shape[-3:]) for it in images], "image")
            if images
            else None
        )
        teacher = [it.get("teacher_pixel_values") for it in videos]
        batch["teacher_pixel_values_videos"] = (
            _stack(teacher, "teacher video") if videos and all(t is not None for t in teacher) else None
        )
        batch["ids"] = [it.get("id") for it in items]
        batch["modalities"] = [it.get("modality", "text") for it in items]
        batch["skipped"] = [sid for it in items for sid in it.get("skipped", ())]
        return batch


def _stack(tensors: list[torch.Tensor], what: str) -> torch.Tensor:
    shapes = {tuple(t.shape) for t in tensors}
    if len(shapes) > 1:
        raise ValueError(f"{what} frames of one batch must share a shape, got {sorted(shapes)}")
    return torch.stack(tensors)
