"""Data configuration: which annotation files, how frames are sampled and shaped, how text is templated.

Loaded with :func:`videopanda.config.load_config` (YAML with ``include:`` and ``key.sub=value`` overrides), or
nested as ``data:`` inside a training config. Example::

    root: /datasets/videopanda            # relative paths below resolve here (override: data.root=...)
    sources:
      - path: train/train_json/valley_.json
        media_root: train                 # the record's "video"/"image" paths are relative to this folder
        fraction: 0.5                     # prealign: a seeded half of the file, the same on every rank
    num_frames: 8
    template: v1
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Literal

if TYPE_CHECKING:
    from videopanda.model.config import VideoTokenizerConfig


@dataclass
class DataSource:
    """One annotation file (LLaVA-format JSON list or JSONL) and the folder its media paths are relative to."""

    path: str  # the JSON / JSONL annotation file (relative paths resolve under DataConfig.root)
    media_root: str = ""  # folder of the media; "" = the annotation file's own folder
    max_samples: int | None = None  # keep at most this many records (after `fraction`)
    fraction: float = 1.0  # keep a seeded random fraction of the records (prealign: 0.5, reference §5.3)

    def __post_init__(self) -> None:
        if not self.path:
            raise ValueError("data source: path is empty")
        if not 0.0 < self.fraction <= 1.0:
            raise ValueError(f"data source {self.path}: fraction={self.fraction} must be in (0, 1]")
        if self.max_samples is not None and self.max_samples < 1:
            raise ValueError(f"data source {self.path}: max_samples={self.max_samples} must be >= 1")


@dataclass
class DataConfig:
    """Everything between annotation files and a batch (reference §6, DECISIONS.md)."""

    sources: list[DataSource] = field(default_factory=list)  # mixed in order; each with its own media root
    root: str = ""  # base folder for relative `path` / `media_root` of the sources ("" = working directory)
    num_frames: int = 8  # frames per video given to the model (reference NUM_FRAMES, never an env variable)
    sample_fps: float = 1.0  # candidate frame rate before the uniform pick of `num_frames` (reference §6.4)
    frames_folder_fps: float = 1.0  # frame rate assumed for folders of frame images (they carry none)
    image_size: int = 448  # student canvas side; must equal the model's video_tokenizer.image_size
    patch_size: int = 14  # student patch; must equal video_tokenizer.patch_size
    teacher_image_size: int = 224  # teacher canvas side (one teacher patch per 2x2 student patches)
    teacher_patch_size: int = 14
    decoder: Literal["auto", "decord", "pyav"] = "auto"  # auto: decord when installed, PyAV otherwise
    template: Literal["v1", "plain"] = "v1"  # v1 = vicuna (training and inference); plain = LLaVA pre-alignment
    # v1 only: start every prompt with Vicuna's system prompt (the reference). Inference must do as training did:
    # `videopanda eval` and `videopanda chat` read it from the model's run folder (its config.yaml).
    system_prompt: bool = True
    max_length: int = 4096  # tokens per sample after the visual placeholders are expanded
    overlength: Literal["truncate", "skip"] = "truncate"  # truncate text after the visual tokens, or skip
    on_bad_sample: Literal["fail", "skip"] = "fail"  # skip: log, count and substitute a sample of the same modality
    short_video: Literal["pad", "repeat"] = "pad"  # fewer frames than num_frames: zero frames, or repeat frames
    teacher: bool = False  # also produce 224 px teacher frames (distillation on)
    flip: bool = True  # training-only random horizontal flip, shared by student, teacher and mask
    check_media: bool = True  # validation stats every media file up front (missing files are reported)
    num_workers: int = 0  # DataLoader worker processes
    # Keep every clip's decoded frames (resized for the canvases, uint8), its token counts and every tokenised
    # conversation in memory after their first use (each process keeps its own copy, so pair it with num_workers: 0
    # or persistent workers); only the flip-dependent canvas is rebuilt each epoch. For small sets trained for
    # several epochs on CPU, where decoding, resizing and tokenising cost about a sixth of a step: the tiny demo's
    # 3200 clips take about 1 GB.
    cache: bool = False
    # What the sampler sorts batches by (reference §5.5 and videopanda/data/sampler.py): `words`, the annotation's
    # word count (free, a rough proxy), or `tokens`, each sample's exact LLM length (visual tokens included), which
    # builds every sample once before training (so it needs `cache`: that work is then not repeated in epoch 1).
    group_by: Literal["words", "tokens"] = "words"
    # Batches per length-sorted block of the sampler (1 = the reference, which with one rank sorts only within a
    # batch); more puts samples of similar length together, so less of the LLM's work is padding.
    group_size: int = 1
    seed: int = 42  # source fractions, flips and the sampler's order all derive from it

    def __post_init__(self) -> None:
        if self.num_frames < 1:
            raise ValueError(f"num_frames={self.num_frames} must be >= 1")
        if self.sample_fps <= 0 or self.frames_folder_fps <= 0:
            raise ValueError("sample_fps and frames_folder_fps must be > 0")
        for name in ("image_size", "patch_size", "teacher_image_size", "teacher_patch_size", "max_length"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name}={getattr(self, name)} must be >= 1")
        if self.image_size % self.patch_size:
            raise ValueError(f"image_size={self.image_size} is not a multiple of patch_size={self.patch_size}")
        if (self.image_size // self.patch_size) % 2:
            raise ValueError(
                f"image_size/patch_size = {self.image_size // self.patch_size} patches must be even (2x2 LSD pooling)"
            )
        if self.teacher and self.teacher_grid != self.token_grid:
            raise ValueError(
                f"teacher frames need one teacher patch per 2x2 student patches: teacher_image_size/teacher_patch_size"
                f" = {self.teacher_image_size}/{self.teacher_patch_size} must give {self.token_grid} patches "
                f"(image_size/patch_size/2 = {self.image_size}/{self.patch_size}/2)"
            )
        if self.num_workers < 0:
            raise ValueError(f"num_workers={self.num_workers} must be >= 0")
        if self.group_size < 1:
            raise ValueError(f"group_size={self.group_size} must be >= 1")
        if self.group_by == "tokens" and not self.cache:
            raise ValueError(
                "group_by: tokens builds every sample before training and needs cache: true (without the cache "
                "every clip would be decoded twice); use group_by: words for large sets"
            )

    @property
    def grid(self) -> int:
        """Student patches per canvas side (32 at 448/14)."""
        return self.image_size // self.patch_size

    @property
    def token_grid(self) -> int:
        """LLM tokens per canvas side after LSD's 2x2 pooling (16 at 448/14): the letterbox quantum."""
        return self.grid // 2

    @property
    def teacher_grid(self) -> int:
        """Teacher patches per canvas side (16 at 224/14)."""
        return self.teacher_image_size // self.teacher_patch_size

    def resolve(self, path: str) -> Path:
        """A source path as a filesystem path: absolute as is, relative under ``root`` (or the working dir)."""
        p = Path(path).expanduser()
        return p if p.is_absolute() or not self.root else Path(self.root).expanduser() / p

    @staticmethod
    def trained_prompt(model_dir: str | Path) -> dict:
        """The prompt settings a model was trained with (``{"system_prompt": ...}``), from its run folder's
        ``config.yaml`` (the resolved training config); empty for a folder without one (a converted checkpoint), which
        then takes the defaults, as the reference's models were trained."""
        path = Path(model_dir) / "config.yaml"
        if not path.is_file():
            return {}
        from videopanda.config import load_yaml

        data = load_yaml(path).get("data") or {}
        return {"system_prompt": bool(data["system_prompt"])} if "system_prompt" in data else {}

    def check_against(self, stab: VideoTokenizerConfig) -> None:
        """Raise a :class:`~videopanda.data.errors.DataError` if frames of this config cannot feed the STAB ``stab``.

        The canvas side and patch size must match, and the frame count must fill whole temporal chunks.
        """
        from .errors import DataError

        problems = []
        if self.image_size != stab.image_size:
            problems.append(f"data.image_size={self.image_size} but video_tokenizer.image_size={stab.image_size}")
        if self.patch_size != stab.patch_size:
            problems.append(f"data.patch_size={self.patch_size} but video_tokenizer.patch_size={stab.patch_size}")
        if self.num_frames > 1 and self.num_frames % stab.chunk_size:
            problems.append(
                f"data.num_frames={self.num_frames} is not a multiple of video_tokenizer.chunk_size={stab.chunk_size}"
            )
        if problems:
            raise DataError("data config does not fit the model: " + "; ".join(problems))
