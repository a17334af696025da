"""Inference inputs: questions and videos in, ``model.generate(**inputs)`` arguments out.

Uses the training template and system prompt (DECISIONS.md: the reference's inference prompt said "curious
human", the training prompt "curious user"), the same frame selection and letterbox as training, and never flips.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Literal

import torch

from videopanda.model.geometry import frame_token_counts

from .collate import pad_sequences
from .config import DataConfig
from .conversation import build_inference_prompt
from .transforms import preprocess_frames
from .video_io import DecodedVideo, read_image, read_video

if TYPE_CHECKING:
    from videopanda.model.config import VideoTokenizerConfig

logger = logging.getLogger(__name__)


class VideoPandaProcessor:
    """Turn (question, video) pairs into model inputs for generation.

    Args:
        tokenizer: the model's fast tokenizer (with a pad token; see ``load_tokenizer``).
        stab_cfg: the model's STAB config (``VideoTokenizerConfig``).
        data_cfg: frame count, sizes, decoder and template; defaults to ``DataConfig()`` sized to ``stab_cfg``.
    """

    def __init__(self, tokenizer, stab_cfg: VideoTokenizerConfig, data_cfg: DataConfig | None = None) -> None:
        if data_cfg is None:
            data_cfg = DataConfig(image_size=stab_cfg.image_size, patch_size=stab_cfg.patch_size)
        data_cfg.check_against(stab_cfg)
        if tokenizer.pad_token_id is None:
            raise ValueError("the tokenizer has no pad token; load it with videopanda.data.tokenizer.load_tokenizer")
        self.tokenizer = tokenizer
        self.stab_cfg = stab_cfg
        self.data_cfg = data_cfg

    def load_video(self, path: str | Path) -> tuple[torch.Tensor, list[int]]:
        """Decode and preprocess one video.

        Returns:
            ``(frames (F, 4, S, S), tokens per frame)``.

        Raises:
            VideoReadError: the video cannot be read (the message names the file and the problem).
        """
        cfg = self.data_cfg
        video: DecodedVideo = read_video(
            path,
            cfg.num_frames,
            decoder=cfg.decoder,
            short_video=cfg.short_video,
            sample_fps=cfg.sample_fps,
            frames_folder_fps=cfg.frames_folder_fps,
        )
        frames = preprocess_frames(video.frames, cfg.num_frames, cfg.image_size, cfg.patch_size)  # (F, 4, S, S)
        return frames, self._counts(frames)

    def load_image(self, path: str | Path) -> tuple[torch.Tensor, list[int]]:
        """Read and preprocess one image: ``(frames (1, 4, S, S), [tokens])``."""
        frames = preprocess_frames(read_image(path)[None], 1, self.data_cfg.image_size, self.data_cfg.patch_size)
        return frames, self._counts(frames)

    def _counts(self, frames: torch.Tensor) -> list[int]:
        stab = self.stab_cfg
        return frame_token_counts(frames, stab.patch_size, stab.padded_crop, stab.row_tokens).tolist()

    def __call__(
        self,
        questions: Sequence[str],
        videos: Sequence[str | Path | None] | None = None,
        padding_side: Literal["left", "right"] = "left",
        images: Sequence[str | Path | None] | None = None,
        return_tensors: str = "pt",
    ) -> dict:
        """Build a batch of generation inputs.

        Args:
            questions: B questions (a ``<video>`` placeholder in the text is optional; it goes in front otherwise).
            videos: B video paths, or None entries for questions without a video.
            padding_side: ``left`` for batched generation.
            images: B image paths or None (a sample has at most one of video and image).

        Returns:
            ``input_ids`` (B, S), ``attention_mask`` (B, S), and ``pixel_values_videos`` (Bv, F, 4, S, S) /
            ``pixel_values_images`` (Bi, 4, S, S) when any sample has one, in batch order.

        Raises:
            VideoReadError / ImageReadError: a medium cannot be read.
        """
        if return_tensors != "pt":
            raise ValueError("only return_tensors='pt' is supported")
        n = len(questions)
        videos = list(videos) if videos is not None else [None] * n
        images = list(images) if images is not None else [None] * n
        if len(videos) != n or len(images) != n:
            raise ValueError(f"{n} questions but {len(videos)} videos and {len(images)} images")
        ids, video_frames, image_frames = [], [], []
        for question, video, image in zip(questions, videos, images, strict=True):
            if video is not None and image is not None:
                raise ValueError("a sample can hold a video or an image, not both")
            if video is not None:
                frames, counts = self.load_video(video)
                video_frames.append(frames)
                modality = "video"
            elif image is not None:
                frames, counts = self.load_image(image)
                image_frames.append(frames[0])
                modality = "image"
            else:
                counts, modality = None, "text"
            cfg = self.data_cfg
            prompt = build_inference_prompt(
                self.tokenizer, question, cfg.template, counts, modality, system_prompt=cfg.system_prompt
            )
            ids.append(torch.tensor(prompt, dtype=torch.long))
        input_ids = pad_sequences(ids, self.tokenizer.pad_token_id, padding_side)  # (B, S)
        lengths = torch.tensor([len(x) for x in ids])
        positions = torch.arange(input_ids.shape[1])[None]  # (1, S)
        if padding_side == "left":
            attention_mask = (positions >= input_ids.shape[1] - lengths[:, None]).long()
        else:
            attention_mask = (positions < lengths[:, None]).long()
        out = {"input_ids": input_ids, "attention_mask": attention_mask}
        if video_frames:
            out["pixel_values_videos"] = torch.stack(video_frames)  # (Bv, F, 4, S, S)
        if image_frames:
            out["pixel_values_images"] = torch.stack(image_frames)  # (Bi, 4, S, S)
        return out

    def batch_decode(self, sequences, **kwargs) -> list[str]:
        """Decode generated ids (``skip_special_tokens=True`` by default), stripped."""
        kwargs.setdefault("skip_special_tokens", True)
        return [text.strip() for text in self.tokenizer.batch_decode(sequences, **kwargs)]
