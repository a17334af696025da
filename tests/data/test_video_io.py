"""Decoding and frame selection: every container, both decoders, GIFs, frame folders, short videos, bad files."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from videopanda.data import video_io
from videopanda.data.video_io import ImageReadError, VideoReadError, read_image, read_video, sample_frame_indices

from .media import frame_ids, indexed_frames, write_video


@pytest.mark.parametrize(
    ("total", "fps", "expected"),
    [
        (300, 30.0, [0, 30, 60, 90, 150, 180, 210, 270]),  # 10 one-second candidates -> linspace picks 8
        (240, 30.0, [0, 30, 60, 90, 120, 150, 180, 210]),  # exactly 8 candidates
        (16, 8.0, [0, 2, 4, 6, 8, 10, 12, 14]),  # 2 candidates -> 8 frames spaced (16 - 1) // 7 = 2 apart
        (132, 25.0, [0, 18, 36, 54, 72, 90, 108, 126]),  # Big Buck Bunny
        (5, 25.0, [0, 1, 2, 3, 4]),  # fewer frames than asked: all of them
        (1, 25.0, [0]),  # reference: division by zero
        (20, 0.3, [0, 2, 5, 8, 10, 13, 16, 19]),  # reference: stride round(0.3) = 0 crashed range()
        (10, float("nan"), [0, 1, 2, 3, 5, 6, 7, 9]),  # unknown fps: every frame is a candidate
    ],
)
def test_frame_selection_follows_the_reference_rule_without_its_crashes(total, fps, expected):
    assert sample_frame_indices(total, fps, 8).tolist() == expected


@pytest.mark.parametrize("ext", [".mp4", ".avi", ".mov", ".mkv", ".webm"])
@pytest.mark.parametrize("decoder", ["decord", "pyav"])
def test_every_container_decodes_the_selected_frames(tmp_path, ext, decoder):
    path = write_video(tmp_path / f"clip{ext}", indexed_frames(16), fps=8)
    video = read_video(path, 8, decoder=decoder)
    assert video.decoder == decoder and video.total_frames == 16 and video.fps == pytest.approx(8.0, rel=0.05)
    assert video.frames.dtype.is_floating_point is False and tuple(video.frames.shape) == (8, 48, 64, 3)
    assert frame_ids(video.frames) == [0, 2, 4, 6, 8, 10, 12, 14] == video.indices.tolist()


def test_auto_prefers_decord_uses_pyav_without_it_and_the_choice_can_be_overridden(tmp_path, monkeypatch):
    path = write_video(tmp_path / "clip.mp4", indexed_frames(16), fps=8)
    assert video_io.available_decoders() == ["decord", "pyav"]  # the test environment has both
    assert read_video(path, 8).decoder == "decord"
    assert read_video(path, 8, decoder="pyav").decoder == "pyav"
    monkeypatch.setattr(video_io, "available_decoders", lambda: ["pyav"])  # decord not installed
    video = read_video(path, 8)
    assert video.decoder == "pyav" and frame_ids(video.frames) == [0, 2, 4, 6, 8, 10, 12, 14]
    with pytest.raises(VideoReadError, match=r"clip\.mp4.*decoder 'decord' is not installed"):
        read_video(path, 8, decoder="decord")
    monkeypatch.setattr(video_io, "available_decoders", lambda: [])
    with pytest.raises(VideoReadError, match="no video decoder installed"):
        read_video(path, 8)


def test_auto_retries_a_file_decord_fails_on_with_pyav(tmp_path, monkeypatch):
    path = write_video(tmp_path / "clip.mp4", indexed_frames(16), fps=8)

    def decord_fails(p, *args):
        raise VideoReadError(p, "decord says no")

    monkeypatch.setitem(video_io._BACKENDS, "decord", decord_fails)
    video = read_video(path, 8)
    assert video.decoder == "pyav" and frame_ids(video.frames) == [0, 2, 4, 6, 8, 10, 12, 14]
    with pytest.raises(VideoReadError, match="decord says no"):  # an explicit choice is not second-guessed
        read_video(path, 8, decoder="decord")


def test_gif_goes_to_pyav_under_auto_and_decord_refuses_it_clearly(tmp_path):
    path = write_video(tmp_path / "tgif.gif", indexed_frames(12), fps=8)
    video = read_video(path, 4)
    assert video.decoder == "pyav" and video.num_real == 4
    assert frame_ids(video.frames) == video.indices.tolist()
    with pytest.raises(VideoReadError, match=r"tgif\.gif.*decord cannot read GIFs"):
        read_video(path, 4, decoder="decord")


def test_pyav_reads_a_stream_that_changes_resolution_at_the_first_frame_size(tmp_path):
    """Two MPEG-TS streams joined (64x48, then 128x96): every frame comes out at 64x48, as decord returns it."""
    import av

    parts = []
    for name, (h, w), level in (("a.ts", (48, 64), 40), ("b.ts", (96, 128), 200)):
        with av.open(str(tmp_path / name), "w", format="mpegts") as container:
            stream = container.add_stream("mpeg2video", rate=8)
            stream.height, stream.width, stream.pix_fmt = h, w, "yuv420p"
            for _ in range(16):
                frame = av.VideoFrame.from_ndarray(np.full((h, w, 3), level, np.uint8), format="rgb24")
                for packet in stream.encode(frame):
                    container.mux(packet)
            for packet in stream.encode():
                container.mux(packet)
        parts.append((tmp_path / name).read_bytes())
    (tmp_path / "mixed.ts").write_bytes(b"".join(parts))
    video = read_video(tmp_path / "mixed.ts", 8, decoder="pyav")
    assert tuple(video.frames.shape) == (8, 48, 64, 3)
    levels = video.frames.float().mean(dim=(1, 2, 3))
    assert levels[0] < 80 and levels[-1] > 160  # frames from both parts


def test_folder_of_frames_is_read_in_natural_order(tmp_path):
    folder = tmp_path / "frames"
    folder.mkdir()
    for k, frame in enumerate(indexed_frames(12)):
        Image.fromarray(frame).save(folder / f"img_{k}.png")  # img_10 must come after img_9
    video = read_video(folder, 4, frames_folder_fps=1.0)
    assert video.decoder == "folder" and video.total_frames == 12
    assert video.indices.tolist() == [0, 3, 7, 11]  # linspace(0, 11, 4) = 0, 3.67, 7.33, 11
    assert frame_ids(video.frames) == [0, 3, 7, 11]


def test_short_videos_pad_or_repeat_as_configured(tmp_path):
    path = write_video(tmp_path / "short.mp4", indexed_frames(3), fps=8)
    padded = read_video(path, 8, short_video="pad")
    assert padded.num_real == 3 and frame_ids(padded.frames) == [0, 1, 2]
    repeated = read_video(path, 8, short_video="repeat")
    assert repeated.num_real == 8 and frame_ids(repeated.frames) == [0, 0, 0, 1, 1, 1, 2, 2]
    single = read_video(write_video(tmp_path / "one.mp4", indexed_frames(1)), 8)
    assert single.num_real == 1 and single.indices.tolist() == [0]


def test_decord_and_pyav_agree_on_big_buck_bunny(bbb_path):
    a = read_video(bbb_path, 8, decoder="decord")
    b = read_video(bbb_path, 8, decoder="pyav")
    assert a.indices.tolist() == b.indices.tolist() == [0, 18, 36, 54, 72, 90, 108, 126]
    assert tuple(a.frames.shape) == (8, 720, 1280, 3) and a.fps == pytest.approx(25.0)
    diff = (a.frames.float() - b.frames.float()).abs().mean()
    assert diff < 2.0  # same frames; only the YUV->RGB conversion may differ by a level or so


def _bad_files(tmp_path):
    good = write_video(tmp_path / "good.mp4", indexed_frames(48, 96, 128), fps=8)
    data = good.read_bytes()
    (tmp_path / "empty.mp4").write_bytes(b"")
    (tmp_path / "cut.mp4").write_bytes(data[: len(data) // 2])  # index (moov) at the end: lost
    rng = np.random.default_rng(0)
    noise = rng.integers(0, 256, (48, 96, 128, 3), dtype=np.uint8)  # incompressible: every frame is big
    fast = write_video(tmp_path / "fast.mp4", noise, fps=8, faststart=True).read_bytes()
    (tmp_path / "truncated.mp4").write_bytes(fast[: len(fast) // 2])  # index first: the later frames are missing
    (tmp_path / "corrupt.mp4").write_bytes(rng.integers(0, 256, 4000, dtype=np.uint8).tobytes())
    (tmp_path / "notes.avi").write_text("this is not a video\n")


@pytest.mark.parametrize("decoder", ["auto", "decord", "pyav"])
@pytest.mark.parametrize(
    ("name", "reason"),
    [
        ("missing.mp4", "file not found"),
        ("empty.mp4", "empty"),
        ("cut.mp4", "not a readable video"),
        ("truncated.mp4", "truncated or corrupt"),
        ("corrupt.mp4", "not a readable video"),
        ("notes.avi", "not a readable video"),
    ],
)
def test_bad_videos_raise_an_error_naming_the_file_and_the_problem(tmp_path, decoder, name, reason):
    _bad_files(tmp_path)
    with pytest.raises(VideoReadError) as info:
        read_video(tmp_path / name, 8, decoder=decoder)
    assert info.value.path == str(tmp_path / name)
    assert str(tmp_path / name) in str(info.value) and reason in str(info.value)


def test_images_read_as_rgb_and_bad_images_name_the_file(tmp_path):
    Image.fromarray(np.full((5, 7), 200, dtype=np.uint8)).save(tmp_path / "grey.png")  # greyscale -> RGB
    image = read_image(tmp_path / "grey.png")
    assert tuple(image.shape) == (5, 7, 3) and int(image[0, 0, 1]) == 200
    Image.fromarray(np.zeros((64, 64, 3), dtype=np.uint8) + 9).save(tmp_path / "full.png")
    data = (tmp_path / "full.png").read_bytes()
    (tmp_path / "cut.png").write_bytes(data[: len(data) // 2])
    (tmp_path / "empty.jpg").write_bytes(b"")
    (tmp_path / "text.jpg").write_text("hello")
    for name, reason in [
        ("nope.png", "file not found"),
        ("empty.jpg", "empty"),
        ("cut.png", "truncated or corrupt"),
        ("text.jpg", "not an image"),
    ]:
        with pytest.raises(ImageReadError, match=reason) as info:
            read_image(tmp_path / name)
        assert str(tmp_path / name) in str(info.value)
