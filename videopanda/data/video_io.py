"""Reading videos and images: decoding, frame selection, and errors that say what is wrong with which file.

Frame selection follows reference §6.4 (the VideoGPT+ rule Video-Panda uses for training and inference):

1. Candidates at ``sample_fps`` (1 fps): every ``round(fps / sample_fps)``-th frame.
2. More candidates than ``num_frames``: pick ``num_frames`` of them at ``linspace(0, len - 1, num_frames)``.
   Fewer: ``min(num_frames, total)`` frames spaced ``(total - 1) // (n - 1)`` apart from frame 0.
   Exactly as many: all of them.

Fixed (DECISIONS.md): a frame rate below ``sample_fps / 2`` no longer gives a zero stride, a one-frame video no
longer divides by zero, and a video with fewer frames than asked is explicit: ``short_video="pad"`` returns only
the real frames (the transform appends zero frames with an all-zero mask), ``"repeat"`` repeats frames in order.

Backends, chosen by ``decoder``:

* ``decord`` (the reference's decoder): random access with ``get_batch``.
* ``pyav``: sequential decode up to the last wanted frame, converting only the wanted ones to RGB.
* ``auto``: decord when installed, PyAV otherwise; GIFs (TGIF-QA) always go to PyAV (decord cannot read them),
  and a file decord fails on is retried with PyAV before giving up.
* A folder of frame images (jpg/png/...) is read directly, frames sorted by the numbers in their names.
"""

from __future__ import annotations

import importlib.util
import logging
import math
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import numpy as np
import torch

from .errors import ImageReadError, VideoReadError

logger = logging.getLogger(__name__)

Decoder = Literal["auto", "decord", "pyav"]
VIDEO_EXTENSIONS = (".mp4", ".avi", ".mov", ".mkv", ".webm", ".gif", ".m4v", ".mpg", ".mpeg", ".flv", ".wmv")
IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".webp", ".gif", ".tif", ".tiff")
# A header may over-count frames by a few (a last packet that does not decode). Up to this share of missing frames
# at the end of a file is tolerated (the last decoded frame stands in); more is reported as a truncated video.
_HEADER_SLACK = 0.05

__all__ = [
    "DecodedVideo",
    "ImageReadError",
    "VideoReadError",
    "available_decoders",
    "read_image",
    "read_video",
    "sample_frame_indices",
]


@dataclass
class DecodedVideo:
    """Frames selected from one video.

    Attributes:
        frames: (n, H, W, 3) uint8 RGB, n <= num_frames (n == num_frames with ``short_video="repeat"``).
        num_real: n, the number of frames that carry content (the rest are padded later with zero frames).
        path: the file or folder read.
        fps: the frame rate used for selection.
        indices: (n,) frame indices taken from the video.
        total_frames: frames in the video.
        decoder: backend that read it (``decord``, ``pyav`` or ``folder``).
    """

    frames: torch.Tensor
    num_real: int
    path: str
    fps: float
    indices: np.ndarray
    total_frames: int
    decoder: str


def available_decoders() -> list[str]:
    """Installed video decoders, preferred first."""
    return [name for name, module in (("decord", "decord"), ("pyav", "av")) if importlib.util.find_spec(module)]


def sample_frame_indices(total: int, fps: float, num_frames: int, sample_fps: float = 1.0) -> np.ndarray:
    """Frame indices to decode (reference §6.4, without its crashes).

    Args:
        total: frames in the video (>= 1).
        fps: the video's average frame rate (<= 0 or NaN when unknown: every frame is a candidate).
        num_frames: frames wanted.
        sample_fps: rate of the candidate frames (1 fps in the reference).

    Returns:
        (n,) int64 increasing indices, n = min(num_frames, total).
    """
    if total < 1:
        raise ValueError(f"a video needs at least one frame, got total={total}")
    last = total - 1
    # Reference: t_stride = round(fps / 1); an fps below 0.5 rounded to 0 and crashed range(). Clamp to 1.
    stride = max(1, round(fps / sample_fps)) if fps and math.isfinite(fps) and fps > 0 else 1
    candidates = np.arange(0, last + 1, stride, dtype=np.int64)
    if len(candidates) > num_frames:
        return candidates[np.linspace(0, len(candidates) - 1, num_frames, dtype=np.int64)]
    if len(candidates) == num_frames:
        return candidates
    n = min(num_frames, total)
    if n == 1:  # reference: (f_end - f_start) // (n - 1) divided by zero here
        return np.zeros(1, dtype=np.int64)
    step = max(1, last // (n - 1))
    return np.arange(n, dtype=np.int64) * step


def _repeat_to(indices: np.ndarray, num_frames: int) -> np.ndarray:
    """Repeat ``indices`` in order to length ``num_frames`` ([0, 5, 9] -> [0, 0, 0, 5, 5, 5, 9, 9] for 8)."""
    pick = (np.arange(num_frames) * len(indices)) // num_frames
    return indices[pick]


def read_video(
    path: str | Path,
    num_frames: int,
    decoder: Decoder = "auto",
    short_video: Literal["pad", "repeat"] = "pad",
    sample_fps: float = 1.0,
    frames_folder_fps: float = 1.0,
    num_threads: int = 1,
) -> DecodedVideo:
    """Decode the frames of a video chosen by :func:`sample_frame_indices`.

    Args:
        path: a video file (mp4/avi/mov/mkv/webm/...), a GIF, or a folder of frame images.
        num_frames: frames wanted.
        decoder: ``auto`` | ``decord`` | ``pyav`` (ignored for folders of frames).
        short_video: with fewer frames than ``num_frames``, ``pad`` returns only the real frames, ``repeat``
            repeats them in order to ``num_frames``.
        sample_fps: candidate rate of the selection rule.
        frames_folder_fps: frame rate assumed for a folder of frames.
        num_threads: decoder threads (per DataLoader worker; the reference used 1).

    Returns:
        :class:`DecodedVideo`.

    Raises:
        VideoReadError: the file is missing, empty, truncated, corrupt, or has no video stream; the message names
            the file and the reason.
    """
    path = Path(path)
    if num_frames < 1:
        raise ValueError(f"num_frames={num_frames} must be >= 1")
    if short_video not in ("pad", "repeat"):
        raise ValueError(f"short_video={short_video!r}: expected 'pad' or 'repeat'")
    if not path.exists():
        raise VideoReadError(path, "file not found")
    if path.is_dir():
        video = _read_folder(path, num_frames, frames_folder_fps, sample_fps)
    else:
        if path.stat().st_size == 0:
            raise VideoReadError(path, "file is empty (0 bytes)")
        video = _read_file(path, num_frames, decoder, sample_fps, num_threads)
    if short_video == "repeat" and video.num_real < num_frames:
        pick = _repeat_to(np.arange(video.num_real), num_frames)
        video.frames = video.frames[torch.from_numpy(pick)]  # (num_frames, H, W, 3)
        video.indices = video.indices[pick]
        video.num_real = num_frames
    return video


def _read_file(path: Path, num_frames: int, decoder: Decoder, sample_fps: float, num_threads: int) -> DecodedVideo:
    """Pick a backend for a video file and read it, falling back from decord to PyAV under ``auto``."""
    if decoder not in ("auto", "decord", "pyav"):
        raise ValueError(f"decoder={decoder!r}: expected auto, decord or pyav")
    installed = available_decoders()
    is_gif = path.suffix.lower() == ".gif"
    if decoder == "auto":
        order = [d for d in ("decord", "pyav") if d in installed and not (is_gif and d == "decord")]
        if not order:
            raise VideoReadError(path, "no video decoder installed (pip install decord or av)")
    else:
        if decoder not in installed:
            raise VideoReadError(path, f"decoder {decoder!r} is not installed (pip install {_PIP[decoder]})")
        if is_gif and decoder == "decord":
            raise VideoReadError(path, "decord cannot read GIFs; use decoder 'pyav' or 'auto'")
        order = [decoder]
    failures = []
    for name in order:
        try:
            return _BACKENDS[name](path, num_frames, sample_fps, num_threads)
        except VideoReadError as err:
            failures.append(f"{name}: {err.reason}")
            if len(order) > 1 and name != order[-1]:
                logger.debug("%s: %s failed (%s); trying the next decoder", path, name, err.reason)
    raise VideoReadError(path, "; ".join(failures))


_PIP = {"decord": "decord", "pyav": "av"}


def _read_decord(path: Path, num_frames: int, sample_fps: float, num_threads: int) -> DecodedVideo:
    import decord

    try:
        reader = decord.VideoReader(str(path), num_threads=num_threads)
        total = len(reader)
        fps = float(reader.get_avg_fps())
    except Exception as err:  # decord raises RuntimeError / DECORDError with C++ log text
        # decord indexes every packet when it opens a file, so missing data fails here already
        kind = "truncated or corrupt" if "av_read_frame" in str(err) else "not a readable video"
        raise VideoReadError(path, f"{kind} ({_short(err)})") from err
    if total < 1:
        raise VideoReadError(path, "the video stream has no frames")
    indices = sample_frame_indices(total, fps, num_frames, sample_fps)
    try:
        frames = reader.get_batch(indices.tolist()).asnumpy()  # (n, H, W, 3) uint8
    except Exception as err:
        reason = f"truncated or corrupt: decoding frames {indices.tolist()} failed ({_short(err)})"
        raise VideoReadError(path, reason) from err
    return DecodedVideo(torch.from_numpy(frames), len(indices), str(path), fps, indices, total, "decord")


def _read_pyav(path: Path, num_frames: int, sample_fps: float, num_threads: int) -> DecodedVideo:
    import av

    try:
        container = av.open(str(path))
    except Exception as err:  # av.error.FFmpegError subclasses, OSError
        raise VideoReadError(path, f"not a readable video ({_short(err)})") from err
    with container:
        if not container.streams.video:
            raise VideoReadError(path, "the file has no video stream")
        stream = container.streams.video[0]
        stream.thread_type = "AUTO"
        stream.codec_context.thread_count = num_threads
        rate = stream.average_rate or stream.guessed_rate
        fps = float(rate) if rate else 0.0
        total = stream.frames
        if total <= 0:  # mkv/webm carry no frame count: count packets (no decoding)
            try:
                total = sum(1 for packet in container.demux(stream) if packet.size)
                container.seek(0, stream=stream)
            except Exception as err:
                raise VideoReadError(path, f"corrupt container ({_short(err)})") from err
        if total < 1:
            raise VideoReadError(path, "the video stream has no frames")
        if not fps and container.duration:
            fps = total / (container.duration / 1_000_000)
        indices = sample_frame_indices(total, fps, num_frames, sample_fps)
        wanted = {int(i): k for k, i in enumerate(indices)}
        last_wanted = int(indices[-1])
        picked: dict[int, object] = {}
        decoded, last_frame, error, size = 0, None, None, None
        try:
            for frame in container.decode(stream):
                # Every frame at the first frame's size, as decord does: a stream can change resolution midway.
                size = size or {"width": frame.width, "height": frame.height}
                if decoded in wanted:
                    picked[decoded] = frame.to_ndarray(format="rgb24", **size)  # (H, W, 3) uint8
                last_frame = frame
                decoded += 1
                if decoded > last_wanted:
                    break
        except Exception as err:  # a truncated or corrupt packet stops the decoder
            error = err
    if len(picked) < len(indices):
        shortfall = total - decoded
        if decoded == 0:
            reason = "truncated or corrupt: no frame could be decoded" + (f" ({_short(error)})" if error else "")
            raise VideoReadError(path, reason)
        if error is not None or shortfall > max(1, int(_HEADER_SLACK * total)):
            detail = f": {_short(error)}" if error else ""
            reason = f"truncated or corrupt: the header says {total} frames, decoding stopped after {decoded}{detail}"
            raise VideoReadError(path, reason)
        # A header that over-counts by a frame or two: the last decoded frame stands in for the missing ones.
        fill = last_frame.to_ndarray(format="rgb24", **size)
        logger.debug("%s: header says %d frames, %d decoded; last frame repeated", path, total, decoded)
        for i in indices:
            picked.setdefault(int(i), fill)
    frames = np.stack([picked[int(i)] for i in indices])  # (n, H, W, 3)
    return DecodedVideo(torch.from_numpy(frames), len(indices), str(path), fps, indices, total, "pyav")


_BACKENDS = {"decord": _read_decord, "pyav": _read_pyav}


def _natural_key(name: str) -> list:
    """Sort key that orders ``frame_2.jpg`` before ``frame_10.jpg``."""
    return [int(part) if part.isdigit() else part.lower() for part in re.split(r"(\d+)", name)]


def _read_folder(path: Path, num_frames: int, fps: float, sample_fps: float) -> DecodedVideo:
    files = sorted(
        (p for p in path.iterdir() if p.suffix.lower() in IMAGE_EXTENSIONS and p.is_file()),
        key=lambda p: _natural_key(p.name),
    )
    if not files:
        raise VideoReadError(path, f"folder holds no frame images ({', '.join(IMAGE_EXTENSIONS)})")
    indices = sample_frame_indices(len(files), fps, num_frames, sample_fps)
    frames = []
    for i in indices:
        try:
            frames.append(read_image(files[i]))  # (H, W, 3)
        except ImageReadError as err:
            raise VideoReadError(path, f"frame {files[i].name}: {err.reason}") from err
    shapes = {tuple(f.shape) for f in frames}
    if len(shapes) > 1:
        raise VideoReadError(path, f"frames have different sizes {sorted(shapes)}")
    return DecodedVideo(torch.stack(frames), len(indices), str(path), fps, indices, len(files), "folder")


def read_image(path: str | Path) -> torch.Tensor:
    """Read an image as RGB.

    Returns:
        (H, W, 3) uint8 tensor.

    Raises:
        ImageReadError: missing, empty, truncated or not an image.
    """
    from PIL import Image, UnidentifiedImageError

    path = Path(path)
    if not path.is_file():
        raise ImageReadError(path, "file not found")
    if path.stat().st_size == 0:
        raise ImageReadError(path, "file is empty (0 bytes)")
    try:
        with Image.open(path) as img:
            img.load()  # raises on truncated data (PIL.ImageFile.LOAD_TRUNCATED_IMAGES stays off)
            array = np.asarray(img.convert("RGB"))
    except UnidentifiedImageError as err:
        raise ImageReadError(path, "not an image file (unknown format)") from err
    except (OSError, SyntaxError, ValueError) as err:
        raise ImageReadError(path, f"truncated or corrupt ({_short(err)})") from err
    return torch.from_numpy(array.copy())


def _short(err: BaseException | None) -> str:
    """First line of an exception message, without decord's C++ log prefix, at most 200 characters."""
    if err is None:
        return ""
    text = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
    text = re.sub(r"^\[[\d:]+\] \S+:\d+: ", "", text)
    return text[:200]
