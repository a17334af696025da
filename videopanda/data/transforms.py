"""Anypixel frames: aspect-preserving letterbox, content mask, CLIP normalisation (reference §6.5-6.6).

Geometry (computed once per video from its first frame, as the reference does):

* The canvas is a square of ``image_size`` pixels. Content is quantised in *cells*: for the student a cell is
  2x2 patches (one LLM token after LSD's 2x2 pooling, 28 px at 448/14), for the teacher it is one teacher patch
  (14 px at 224/14). Both canvases have the same number of cells per side (16), so the student's content covers
  exactly 2x the teacher's content in patches: one teacher patch per LSD token.
* The long side fills the canvas; the short side becomes ``ceil(cells * short / long)`` cells; the content is
  placed ``(cells - n) // 2`` cells from the top (landscape) or the left (portrait). Offsets are whole cells, so
  the pooled patch mask is exactly 0/1 and the content box has even patch counts.
* The rest of the canvas is the CLIP-mean colour (122, 116, 104), the 4th channel is 1 on content and 0 on the
  letterbox; padded frames (a video shorter than ``num_frames``) are all zero, mask included.

Fixed (DECISIONS.md): the random horizontal flip is training-only and one decision per video, applied to the
student frames, the teacher frames and the mask alike. It mirrors the content inside its box, so the box (and
hence every token count) is the same flipped or not; the reference flipped the canvas but not the mask.

Everything runs on the whole clip at once: one ``interpolate`` for all frames, one canvas write, one normalise.
The resize (:func:`fit_frames`, :func:`fit_clip`) and the canvas (``.canvas(flip)``) are separate steps, so that
training with ``data.cache`` keeps each clip resized (uint8) and redoes only the flip-dependent canvas every epoch.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import torch
import torch.nn.functional as F

if TYPE_CHECKING:
    from .config import DataConfig

CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)
CLIP_STD = (0.26862954, 0.26130258, 0.27577711)
BACKGROUND = tuple(int(255 * m) for m in CLIP_MEAN)  # (122, 116, 104): letterbox colour before normalisation


@dataclass(frozen=True)
class LetterboxGeometry:
    """Where a frame's content lands on the square canvas (pixels; ``bottom``/``right`` exclusive)."""

    canvas: int  # canvas side
    top: int
    left: int
    height: int  # content height after resizing
    width: int  # content width after resizing

    @property
    def bottom(self) -> int:
        return self.top + self.height

    @property
    def right(self) -> int:
        return self.left + self.width

    def box_in_patches(self, patch_size: int) -> tuple[int, int, int, int]:
        """Content box ``(top, bottom, left, right)`` in patches, as ``videopanda.model.geometry`` finds it."""
        return (self.top // patch_size, self.bottom // patch_size, self.left // patch_size, self.right // patch_size)


def letterbox_geometry(height: int, width: int, image_size: int, patch_size: int, cells: int | None = None):
    """Letterbox geometry of an ``height x width`` frame on an ``image_size`` canvas (reference ``compute_basehw``).

    Args:
        height, width: source frame size in pixels.
        image_size: canvas side in pixels.
        patch_size: patch side in pixels.
        cells: content quantum, in cells per canvas side; default ``grid // 2`` (student: one cell = 2x2 patches
            = one LSD token). The teacher passes its patch grid (one cell = one patch).

    Returns:
        :class:`LetterboxGeometry`.
    """
    if height < 1 or width < 1:
        raise ValueError(f"frame size {height}x{width} is empty")
    grid = image_size // patch_size
    cells = grid // 2 if cells is None else cells
    if image_size % patch_size or grid % cells:
        raise ValueError(f"canvas {image_size}px / patch {patch_size}px does not split into {cells} cells")
    cell = image_size // cells  # pixels per cell (28 student, 14 teacher)
    if width > height:  # landscape: full width, height rounded up to whole cells, padding top and bottom
        n = -(-cells * height // width)  # ceil(cells * h / w) in exact integer arithmetic
        return LetterboxGeometry(image_size, (cells - n) // 2 * cell, 0, n * cell, image_size)
    n = -(-cells * width // height)  # portrait or square: full height, padding left and right
    return LetterboxGeometry(image_size, 0, (cells - n) // 2 * cell, image_size, n * cell)


def preprocess_frames(
    frames: torch.Tensor,
    num_frames: int,
    image_size: int,
    patch_size: int,
    flip: bool = False,
    *,
    teacher: bool = False,
    cells: int | None = None,
) -> torch.Tensor:
    """Letterbox, normalise and mask a clip, then pad it with zero frames.

    Args:
        frames: (n, H, W, 3) uint8 RGB, n <= num_frames (a single image is n = 1).
        num_frames: frames in the output; frames n..num_frames-1 are zeros (mask 0).
        image_size: canvas side (student 448, teacher 224).
        patch_size: patch side (14).
        flip: mirror the content horizontally (a training-time decision drawn once per video by the caller).
        teacher: the teacher canvas (content quantised per patch); the default is the student canvas (per 2x2
            patches). With ``teacher_image_size = image_size / 2`` both give the same geometry.
        cells: override the content quantum (cells per side); see :func:`letterbox_geometry`.

    Returns:
        (num_frames, 4, image_size, image_size) float32: CLIP-normalised RGB and the content mask.
    """
    return fit_frames(frames, num_frames, image_size, patch_size, teacher=teacher, cells=cells).canvas(flip)


@dataclass(frozen=True)
class FittedFrames:
    """A clip resized into its letterbox box, still uint8: the flip-independent half of :func:`preprocess_frames`.

    Training caches this (``data.cache``) and builds the canvas of each epoch's flip decision from it.
    """

    content: torch.Tensor  # (n, 3, h', w') uint8, contiguous
    geometry: LetterboxGeometry
    num_frames: int

    def canvas(self, flip: bool = False) -> torch.Tensor:
        """(num_frames, 4, S, S) float32: CLIP-normalised RGB on the letterbox colour, the content mask channel."""
        geo, x = self.geometry, self.content
        n = x.shape[0]
        if flip:
            x = x.flip(-1)  # mirror inside the content box; the box (and the mask) stay where they are
        # CLIP normalisation (v / 255 - mean) / std as one scale and shift per channel
        std = torch.tensor(CLIP_STD).view(1, 3, 1, 1)
        scale = 1.0 / (255.0 * std)  # (1, 3, 1, 1)
        shift = -torch.tensor(CLIP_MEAN).view(1, 3, 1, 1) / std
        size = geo.canvas
        out = torch.empty(self.num_frames, 4, size, size)  # (F, 4, S, S)
        rgb = out[:n, :3]  # (n, 3, S, S)
        rgb.copy_((torch.tensor(BACKGROUND).view(1, 3, 1, 1) * scale + shift).expand_as(rgb))  # letterbox colour
        content = rgb[:, :, geo.top : geo.bottom, geo.left : geo.right]  # (n, 3, h', w') view of the canvas
        content.copy_(x)  # uint8 -> float
        content.mul_(scale).add_(shift)
        out[:n, 3] = 0.0
        out[:n, 3, geo.top : geo.bottom, geo.left : geo.right] = 1.0  # the content mask
        out[n:] = 0.0  # padded frames are all zero, mask included
        return out


def fit_frames(
    frames: torch.Tensor,
    num_frames: int,
    image_size: int,
    patch_size: int,
    *,
    teacher: bool = False,
    cells: int | None = None,
) -> FittedFrames:
    """Resize a clip into its letterbox box (arguments as :func:`preprocess_frames`, which is ``.canvas(flip)``)."""
    if frames.dim() != 4 or frames.shape[-1] != 3:
        raise ValueError(f"expected frames of shape (n, H, W, 3), got {tuple(frames.shape)}")
    n, h, w, _ = frames.shape
    if not 1 <= n <= num_frames:
        raise ValueError(f"got {n} frames for num_frames={num_frames}")
    if teacher and cells is None:
        cells = image_size // patch_size
    geo = letterbox_geometry(h, w, image_size, patch_size, cells)
    x = frames.permute(0, 3, 1, 2)  # (n, 3, H, W) uint8 (a channels-last view)
    if (h, w) != (geo.height, geo.width):
        # One batched resize for the clip: bicubic with antialiasing on uint8, as the reference's per-frame PIL
        # bicubic resize (torch's uint8 path is ~20x faster than the float one).
        x = F.interpolate(x, size=(geo.height, geo.width), mode="bicubic", antialias=True, align_corners=False)
    return FittedFrames(x.contiguous(), geo, num_frames)


def unnormalize_rgb(pixels: torch.Tensor) -> torch.Tensor:
    """Undo the CLIP normalisation of :func:`preprocess_frames` output (for diagnostics that look at the pixels).

    Args:
        pixels: (..., C, S, S) with C >= 3: CLIP-normalised RGB in channels 0-2 (a 4th mask channel is dropped).

    Returns:
        (..., 3, S, S) RGB in [0, 1] (the letterbox is the CLIP-mean colour).
    """
    mean = torch.tensor(CLIP_MEAN, dtype=pixels.dtype).view(3, 1, 1)
    std = torch.tensor(CLIP_STD, dtype=pixels.dtype).view(3, 1, 1)
    return pixels[..., :3, :, :] * std + mean


def preprocess_clip(
    frames: torch.Tensor, cfg: DataConfig, flip: bool = False, teacher: bool | None = None
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Student frames and (when ``cfg.teacher``) teacher frames of one clip, with one shared flip decision.

    Args:
        frames: (n, H, W, 3) uint8.
        cfg: sizes and frame count.
        flip: the flip decision for this clip (training only).
        teacher: produce teacher frames; defaults to ``cfg.teacher``.

    Returns:
        ``(student (F, 4, S, S), teacher (F, 4, St, St) or None)`` with ``F = cfg.num_frames``.
    """
    return fit_clip(frames, cfg, teacher).canvases(flip)


@dataclass(frozen=True)
class FittedClip:
    """A clip resized for the student and (optionally) the teacher canvas: what ``data.cache`` keeps per video."""

    student: FittedFrames
    teacher: FittedFrames | None

    def canvases(self, flip: bool = False) -> tuple[torch.Tensor, torch.Tensor | None]:
        """``(student (F, 4, S, S), teacher (F, 4, St, St) or None)``, both mirrored when ``flip``."""
        return self.student.canvas(flip), None if self.teacher is None else self.teacher.canvas(flip)


def fit_clip(frames: torch.Tensor, cfg: DataConfig, teacher: bool | None = None) -> FittedClip:
    """The flip-independent half of :func:`preprocess_clip` (same arguments but ``flip``)."""
    student = fit_frames(frames, cfg.num_frames, cfg.image_size, cfg.patch_size)
    want_teacher = cfg.teacher if teacher is None else teacher
    if not want_teacher:
        return FittedClip(student, None)
    return FittedClip(
        student,
        fit_frames(frames, cfg.num_frames, cfg.teacher_image_size, cfg.teacher_patch_size, cells=cfg.token_grid),
    )


def preprocess_image(image: torch.Tensor, image_size: int, patch_size: int, flip: bool = False) -> torch.Tensor:
    """One image as a one-frame clip: (H, W, 3) uint8 -> (4, S, S)."""
    return preprocess_frames(image[None], 1, image_size, patch_size, flip)[0]
