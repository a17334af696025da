"""Test media written at test time: videos whose frames identify themselves, images, annotation files."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

CODECS = {".mp4": "libx264", ".mov": "libx264", ".mkv": "libx264", ".avi": "mpeg4", ".webm": "libvpx", ".gif": "gif"}


def level(k: int) -> int:
    """Grey level that marks frame ``k`` (k < 60; 4 levels apart, which lossy codecs keep for flat frames)."""
    return 16 + 4 * k


def indexed_frames(n: int, height: int = 48, width: int = 64) -> np.ndarray:
    """(n, H, W, 3) uint8 frames; frame k is a flat grey of ``level(k)`` (decoded mean identifies the frame)."""
    return np.stack([np.full((height, width, 3), level(k), dtype=np.uint8) for k in range(n)])


def frame_ids(frames) -> list[int]:
    """Indices of decoded ``indexed_frames`` (nearest level), from (n, H, W, 3) uint8."""
    means = np.asarray(frames, dtype=np.float64).reshape(len(frames), -1).mean(axis=1)
    levels = np.array([level(k) for k in range(60)])
    return [int(np.argmin(np.abs(levels - m))) for m in means]


def write_video(path: str | Path, frames: np.ndarray, fps: int = 8, faststart: bool = False) -> Path:
    """Encode frames with the codec that suits the extension (see ``CODECS``)."""
    import av

    path = Path(path)
    codec = CODECS[path.suffix.lower()]
    options = {"movflags": "faststart"} if faststart else {}
    with av.open(str(path), "w", options=options) as container:
        stream = container.add_stream(codec, rate=fps)
        stream.height, stream.width = frames.shape[1:3]
        stream.pix_fmt = "rgb8" if codec == "gif" else "yuv420p"
        if codec in ("mpeg4", "libvpx"):
            stream.bit_rate = 4_000_000  # their default rates blur the 4-level steps between frames
        for frame in frames:
            for packet in stream.encode(av.VideoFrame.from_ndarray(frame, format="rgb24")):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    return path


def write_image(path: str | Path, height: int = 40, width: int = 56, color=(200, 30, 30)) -> Path:
    from PIL import Image

    path = Path(path)
    Image.fromarray(np.full((height, width, 3), color, dtype=np.uint8)).save(path)
    return path


def write_json(path: str | Path, data) -> Path:
    path = Path(path)
    path.write_text(json.dumps(data, indent=1))
    return path


def video_record(rid: str, video: str, question: str = "<video>\nWhat color is it?", answer: str = "red") -> dict:
    return {
        "id": rid,
        "video": video,
        "conversations": [{"from": "human", "value": question}, {"from": "gpt", "value": answer}],
    }


def image_record(rid: str, image: str, question: str = "<image>\nWhat is shown?", answer: str = "a square") -> dict:
    return {
        "id": rid,
        "image": image,
        "conversations": [{"from": "human", "value": question}, {"from": "gpt", "value": answer}],
    }


def text_record(rid: str, question: str = "Say hi.", answer: str = "hi") -> dict:
    return {"id": rid, "conversations": [{"from": "human", "value": question}, {"from": "gpt", "value": answer}]}
