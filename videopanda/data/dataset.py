"""The training dataset: annotation records in, model-ready samples out (lazily, one record at a time).

``VideoPandaDataset`` mixes several annotation files (``DataConfig.sources``), each with its own media root. At
construction it reads and validates every record (:mod:`videopanda.data.records`) and logs a report: how many
videos, images and text-only records, and every problem with the file and record named. With
``on_bad_sample: fail`` any problem is an error; with ``skip`` the invalid records are left out and counted in
the report (the epoch size is the number of valid records, logged).

``__getitem__`` decodes the media, builds student (and teacher) frames, counts each frame's visual tokens
exactly as the STAB will (:func:`videopanda.model.geometry.frame_token_counts`), and tokenises the conversation
with one placeholder per visual token. A sample that fails at this point (unreadable video, over-long text under
``overlength: skip``) raises under ``fail``; under ``skip`` it is logged, counted, and replaced by the next
record of the same modality, so the epoch size never changes. The replaced ids travel with the sample
(``skipped``) so a training loop can report a total across DataLoader workers.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

import numpy as np
import torch
from torch.utils.data import Dataset

from videopanda.model.geometry import frame_token_counts

from .config import DataConfig
from .conversation import IGNORE_INDEX, IMAGE_TOKEN_ID, VIDEO_TOKEN_ID, tokenize_conversation
from .errors import DataError, SampleError
from .records import Record, ValidationReport, load_records
from .transforms import FittedClip, fit_clip, preprocess_frames
from .video_io import read_image, read_video

if TYPE_CHECKING:
    from videopanda.model.config import VideoTokenizerConfig

logger = logging.getLogger(__name__)

_MAX_SUBSTITUTES = 32  # consecutive bad records tried before a skip gives up


class _Overlength(DataError):
    """A sample longer than ``max_length`` under ``overlength: skip`` (or whose visual tokens alone are too long)."""


class VideoPandaDataset(Dataset):
    """LLaVA-format annotation files as Video-Panda training samples.

    Args:
        data_cfg: sources, frame and text settings.
        tokenizer: a fast HF tokenizer (``load_tokenizer``).
        stab_cfg: the model's STAB config (canvas, patch, chunk size, padded-frame crop, row tokens).
        train: training mode (random flips when ``data_cfg.flip``, except for records marked
            ``"allow_flip": false``); evaluation never flips.

    Items are dicts:

    * ``input_ids`` (L,) long, with ``VIDEO_TOKEN_ID`` / ``IMAGE_TOKEN_ID`` placeholders;
    * ``labels`` (L,) long, ``-100`` except on answer tokens;
    * ``pixel_values``: (F, 4, S, S) for a video, (1, 4, S, S) for an image, None for text;
    * ``teacher_pixel_values``: (F, 4, St, St) for a video when ``data_cfg.teacher``, else None;
    * ``modality`` ("video" | "image" | "text"), ``id`` (str), ``skipped`` (ids replaced by this sample).
    """

    def __init__(self, data_cfg: DataConfig, tokenizer, stab_cfg: VideoTokenizerConfig, train: bool = True) -> None:
        data_cfg.check_against(stab_cfg)
        if not data_cfg.sources:
            raise DataError("data config has no sources (data.sources is empty)")
        self.cfg = data_cfg
        self.tokenizer = tokenizer
        self.stab_cfg = stab_cfg
        self.train = train
        self.epoch = 0
        self.skipped = 0  # samples substituted in this process (DataLoader workers count their own)
        self.overlength = 0  # samples longer than max_length seen in this process (once each when cached)
        self.records, self.report = self._load(data_cfg)
        # data_cfg.cache: media path -> decoded and resized clip (uint8) and its token counts per frame, and
        # (index, token counts) -> tokenised conversation
        self._videos: dict | None = {} if data_cfg.cache else None
        self._counts: dict | None = {} if data_cfg.cache else None
        self._texts: dict | None = {} if data_cfg.cache else None
        self._by_modality = {
            m: np.array([i for i, r in enumerate(self.records) if r.modality == m], dtype=np.int64)
            for m in ("video", "image", "text")
        }

    # ----------------------------------------------------------------------------------------------- records
    @staticmethod
    def _load(cfg: DataConfig) -> tuple[list[Record], ValidationReport]:
        report = ValidationReport()
        records: list[Record] = []
        for k, source in enumerate(cfg.sources):
            path = cfg.resolve(source.path)
            media_root = cfg.resolve(source.media_root) if source.media_root else None
            recs, rep = load_records(path, media_root, cfg.check_media)
            report.merge(rep)
            keep = np.arange(len(recs))
            if source.fraction < 1.0:
                # Seeded from the config alone, so every rank keeps the same records (fixes reference §8.16).
                order = np.random.default_rng([cfg.seed, k]).permutation(len(recs))
                keep = np.sort(order[: int(len(recs) * source.fraction)])
            if source.max_samples is not None:
                keep = keep[: source.max_samples]
            if len(keep) < len(recs):
                logger.info(
                    "%s: using %d of %d valid records (fraction %.3g, max_samples %s)",
                    path,
                    len(keep),
                    len(recs),
                    source.fraction,
                    source.max_samples,
                )
            records += [recs[i] for i in keep]
        if report.problems:
            if cfg.on_bad_sample == "fail":
                raise DataError(
                    "annotation validation failed (set data.on_bad_sample=skip to leave bad records out):\n"
                    + report.format()
                )
            logger.warning(
                "annotation validation: %d invalid record(s) left out (on_bad_sample=skip):\n%s",
                report.total - report.valid,
                report.format(),
            )
        else:
            logger.info("annotation validation:\n%s", report.format())
        if not records:
            raise DataError("no valid records in " + ", ".join(report.files))
        logger.info("dataset: %d samples", len(records))
        return records, report

    def __len__(self) -> int:
        return len(self.records)

    @property
    def lengths(self) -> list[int]:
        """Per-record length proxy for the sampler: word count, negative for videos (reference §5.5)."""
        return [-max(r.words, 1) if r.modality == "video" else r.words for r in self.records]

    def token_lengths(self, progress=None) -> list[int]:
        """Exact per-sample LLM lengths (visual tokens included), negative for videos, for the sampler.

        Builds every sample once (with ``cache`` on, this is epoch 1's decoding and tokenising done up front);
        ``progress`` is an optional callable ``(done, total)``.
        """
        lengths = []
        for index, record in enumerate(self.records):
            n = len(self[index]["input_ids"])
            lengths.append(-n if record.modality == "video" else n)
            if progress is not None:
                progress(index + 1, len(self.records))
        return lengths

    @property
    def modalities(self) -> list[str]:
        return [r.modality for r in self.records]

    def set_epoch(self, epoch: int) -> None:
        """Flip decisions are a function of (seed, epoch, index); set the epoch before iterating."""
        self.epoch = epoch

    # ----------------------------------------------------------------------------------------------- samples
    def __getitem__(self, index: int) -> dict:
        record = self.records[index]
        try:
            return self._build(record, index)
        except DataError as err:
            if self.cfg.on_bad_sample == "fail" and not isinstance(err, _Overlength):
                raise SampleError(record.file, record.where, err) from err
            first_error = err
        # skip: substitute the next records of the same modality, deterministically
        skipped = [record.id]
        self._log_skip(record, first_error)
        pool = self._by_modality[record.modality]
        start = int(np.searchsorted(pool, index))
        for step in range(1, min(len(pool), _MAX_SUBSTITUTES + 1)):
            other = int(pool[(start + step) % len(pool)])
            try:
                item = self._build(self.records[other], other)
            except DataError as err:
                if self.cfg.on_bad_sample == "fail" and not isinstance(err, _Overlength):
                    raise SampleError(self.records[other].file, self.records[other].where, err) from err
                skipped.append(self.records[other].id)
                self._log_skip(self.records[other], err)
                continue
            item["skipped"] = skipped
            return item
        raise SampleError(
            record.file,
            record.where,
            f"{first_error}; and no usable substitute among the next {_MAX_SUBSTITUTES} {record.modality} records",
        )

    def _log_skip(self, record: Record, err: Exception) -> None:
        self.skipped += 1
        logger.warning(
            "skipping %s: %s: %s (%d skipped so far in this process)", record.file, record.where, err, self.skipped
        )

    def _flip(self, index: int) -> bool:
        if not (self.train and self.cfg.flip):
            return False
        return bool(np.random.default_rng([self.cfg.seed, self.epoch, index]).random() < 0.5)

    def _build(self, record: Record, index: int) -> dict:
        cfg = self.cfg
        pixel_values = teacher = None
        counts = None
        if record.modality == "video":
            clip = self._fitted_clip(record)
            flip = self._flip(index) and record.allow_flip
            pixel_values, teacher = clip.canvases(flip)  # (F, 4, S, S), (F, 4, St, St) or None
            # the content box, hence every count, is the same flipped or not
            counts = _memo(self._counts, record.media, lambda: self.visual_token_counts(pixel_values))
        elif record.modality == "image":
            image = read_image(record.media)  # (H, W, 3)
            flip = self._flip(index) and record.allow_flip
            pixel_values = preprocess_frames(image[None], 1, cfg.image_size, cfg.patch_size, flip)
            counts = self.visual_token_counts(pixel_values)  # (1,)
        ids, labels = self._tokenize(record, index, counts)
        return {
            "input_ids": torch.tensor(ids, dtype=torch.long),
            "labels": torch.tensor(labels, dtype=torch.long),
            "pixel_values": pixel_values,
            "teacher_pixel_values": teacher,
            "modality": record.modality,
            "id": record.id,
            "skipped": [],
        }

    def _fitted_clip(self, record: Record) -> FittedClip:
        """The record's sampled frames resized for the canvases, once per process when ``cache`` is on (failures are
        never cached)."""
        cfg = self.cfg

        def fit() -> FittedClip:
            video = read_video(
                record.media,
                cfg.num_frames,
                decoder=cfg.decoder,
                short_video=cfg.short_video,
                sample_fps=cfg.sample_fps,
                frames_folder_fps=cfg.frames_folder_fps,
            )
            return fit_clip(video.frames, cfg)

        return _memo(self._videos, record.media, fit)

    def _tokenize(self, record: Record, index: int, counts: list[int] | None) -> tuple[list[int], list[int]]:
        """Token ids and labels of the record's conversation, fitted to ``max_length`` (cached when ``cache``)."""

        def build() -> tuple[list[int], list[int]]:
            ids, labels = tokenize_conversation(
                self.tokenizer,
                record.conversations,
                self.cfg.template,
                counts,
                record.modality,
                self.cfg.system_prompt,
            )
            return self._fit_length(record, ids, labels)

        return _memo(self._texts, (index, None if counts is None else tuple(counts)), build)

    def visual_token_counts(self, pixel_values: torch.Tensor) -> list[int]:
        """LLM tokens of each frame, computed from the mask channel exactly as the STAB does."""
        counts = frame_token_counts(
            pixel_values, self.stab_cfg.patch_size, self.stab_cfg.padded_crop, self.stab_cfg.row_tokens
        )  # (F,)
        return counts.tolist()

    def _fit_length(self, record: Record, ids: list[int], labels: list[int]) -> tuple[list[int], list[int]]:
        limit = self.cfg.max_length
        if len(ids) <= limit:
            return ids, labels
        self.overlength += 1
        visual = np.flatnonzero(np.isin(np.asarray(ids), (VIDEO_TOKEN_ID, IMAGE_TOKEN_ID)))
        end_visual = int(visual[-1]) + 1 if len(visual) else 0
        if end_visual > limit:  # cannot be truncated: a config problem, handled by on_bad_sample
            raise DataError(f"{len(ids)} tokens > max_length={limit}, and the visual tokens alone end at {end_visual}")
        if self.cfg.overlength == "skip":
            raise _Overlength(f"{len(ids)} tokens > max_length={limit} (overlength=skip)")
        kept = sum(1 for x in labels[:limit] if x != IGNORE_INDEX)
        logger.warning(
            "%s: %s: %d tokens > max_length=%d: text after the visual tokens truncated (%d supervised tokens kept; "
            "%d over-long samples so far in this process)",
            record.file,
            record.where,
            len(ids),
            limit,
            kept,
            self.overlength,
        )
        return ids[:limit], labels[:limit]


def _memo(store: dict | None, key, make):
    """``make()``, kept in ``store`` under ``key`` when ``store`` is a dict (a failing ``make`` stores nothing)."""
    if store is None:
        return make()
    if key not in store:
        store[key] = make()
    return store[key]
