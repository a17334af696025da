"""Data pipeline throughput: decode + select 8 frames + anypixel preprocessing, decord vs PyAV.

Makes its own h264 test clips (a textured, moving scene with noise, so the codec has real work; a keyframe every
2 s) at 240p, 480p and 720p, then measures videos per second through ``read_video`` + ``preprocess_frames``
(448 px student canvas, as in the paper), in the main process and with 2 DataLoader workers. A second table times
what ``data.cache`` leaves per sample and epoch: the canvas of an already resized clip (``fit_frames(...).canvas``)
against the whole ``preprocess_frames`` of its decoded frames.

    python benchmarks/data_speed.py [--clips 4] [--videos 24] [--seconds 10] [--fps 30] [--workers 0 2]

Prints a table; nothing is asserted (timings depend on the machine).
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset

from videopanda.data.transforms import fit_frames, preprocess_frames
from videopanda.data.video_io import available_decoders, read_video

RESOLUTIONS = {"240p": (426, 240), "480p": (854, 480), "720p": (1280, 720)}


def make_clip(path: Path, width: int, height: int, seconds: float, fps: int, seed: int, gop: int) -> None:
    """A drifting colour pattern with a bouncing square and fixed light noise, encoded with libx264."""
    import av

    rng = np.random.default_rng(seed)
    n = int(seconds * fps)
    x = np.arange(width, dtype=np.float32)
    y = np.arange(height, dtype=np.float32)
    noise = rng.normal(0, 4, size=(height, width, 1)).astype(np.float32)
    options = {"preset": "veryfast", "crf": "23", "g": str(gop)}
    with av.open(str(path), "w") as container:
        stream = container.add_stream("libx264", rate=fps, options=options)
        stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
        for t in range(n):
            phase = t / fps
            cols = 60 * np.sin(x / 37 + phase)  # (W,) separable pattern: cheap to draw at 720p
            rows = 40 * np.cos(y / 23 - 2 * phase)  # (H,)
            frame = 127 + rows[:, None, None] + cols[None, :, None] * np.array([1.0, -0.5, 0.3], dtype=np.float32)
            frame = frame + np.roll(noise, t * 3, axis=1)
            s = height // 4
            x0 = int((width - s) * (0.5 + 0.5 * np.sin(phase)))
            y0 = int((height - s) * (0.5 + 0.5 * np.cos(1.3 * phase)))
            frame[y0 : y0 + s, x0 : x0 + s] = (230, 40, 40)
            image = np.clip(frame, 0, 255).astype(np.uint8)
            for packet in stream.encode(av.VideoFrame.from_ndarray(image, format="rgb24")):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)


class ClipSet(Dataset):
    """``length`` samples cycling over ``paths``: decode 8 frames and preprocess them to the 448 canvas."""

    def __init__(self, paths: list[Path], length: int, decoder: str, image_size: int) -> None:
        self.paths, self.length, self.decoder, self.image_size = paths, length, decoder, image_size

    def __len__(self) -> int:
        return self.length

    def __getitem__(self, i: int) -> torch.Tensor:
        video = read_video(self.paths[i % len(self.paths)], 8, decoder=self.decoder)
        return preprocess_frames(video.frames, 8, self.image_size, 14)  # (8, 4, S, S)


def measure(paths: list[Path], decoder: str, workers: int, videos: int, image_size: int) -> float:
    """Videos per second through a DataLoader (batch 1), after one warm-up video per worker."""
    data = ClipSet(paths, videos + max(workers, 1), decoder, image_size)
    loader = DataLoader(data, batch_size=1, num_workers=workers, collate_fn=lambda x: x[0])
    it = iter(loader)
    for _ in range(max(workers, 1)):  # warm up: worker start-up and first-open costs
        next(it)
    start = time.perf_counter()
    count = sum(1 for _ in it)
    return count / (time.perf_counter() - start)


def measure_cached(path: Path, decoder: str, image_size: int, repeats: int = 20) -> tuple[float, float]:
    """Milliseconds per call: ``preprocess_frames`` of decoded frames, and the canvas of the cached resized clip."""
    frames = read_video(path, 8, decoder=decoder).frames
    fitted = fit_frames(frames, 8, image_size, 14)
    timings = []
    for work in (lambda flip: preprocess_frames(frames, 8, image_size, 14, flip), fitted.canvas):
        work(False)  # warm up
        start = time.perf_counter()
        for k in range(repeats):
            work(k % 2 == 1)  # half of the calls flipped, as in training
        timings.append(1000 * (time.perf_counter() - start) / repeats)
    return timings[0], timings[1]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clips", type=int, default=4, help="distinct clips per resolution")
    parser.add_argument("--videos", type=int, default=24, help="videos timed per configuration")
    parser.add_argument("--seconds", type=float, default=10.0, help="clip length")
    parser.add_argument("--fps", type=int, default=30, help="clip frame rate")
    parser.add_argument("--gop", type=int, default=60, help="keyframe interval in frames (x264's default is 250)")
    parser.add_argument("--workers", type=int, nargs="+", default=[0, 2], help="DataLoader worker counts")
    parser.add_argument("--image-size", type=int, default=448, help="student canvas")
    parser.add_argument("--resolutions", nargs="+", default=list(RESOLUTIONS), choices=list(RESOLUTIONS))
    args = parser.parse_args(argv)
    decoders = [d for d in ("decord", "pyav") if d in available_decoders()]
    print(
        f"decoders: {', '.join(decoders)}; torch threads {torch.get_num_threads()}; clips {args.seconds:g} s at "
        f"{args.fps} fps; 8 frames -> {args.image_size} px canvas"
    )
    rows, cached = [], []
    with tempfile.TemporaryDirectory() as tmp:
        for name in args.resolutions:
            w, h = RESOLUTIONS[name]
            paths = [Path(tmp) / f"{name}_{k}.mp4" for k in range(args.clips)]
            t0 = time.perf_counter()
            for k, path in enumerate(paths):
                make_clip(path, w, h, args.seconds, args.fps, k, args.gop)
            print(f"made {args.clips} {name} clips in {time.perf_counter() - t0:.1f} s")
            for decoder in decoders:
                for workers in args.workers:
                    rate = measure(paths, decoder, workers, args.videos, args.image_size)
                    rows.append((name, decoder, workers, rate))
                    print(f"  {name} {decoder:6s} workers={workers}: {rate:6.2f} videos/s", flush=True)
            cached.append((name, *measure_cached(paths[0], decoders[0], args.image_size)))
    print()
    print("| resolution | decoder | workers | videos/s | ms/video |")
    print("|---|---|---|---|---|")
    for name, decoder, workers, rate in rows:
        print(f"| {name} | {decoder} | {workers} | {rate:.2f} | {1000 / rate:.0f} |")
    print()
    print("| resolution | preprocess_frames ms | cached canvas ms (data.cache) |")
    print("|---|---|---|")
    for name, full, canvas in cached:
        print(f"| {name} | {full:.2f} | {canvas:.2f} |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
