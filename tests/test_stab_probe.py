"""benchmarks/stab_probe.py: its pooling heads compute what they say, and every encoder/head combination runs."""

from __future__ import annotations

import sys

import pytest
import torch

from tests.conftest import load_benchmark
from videopanda.data.synth import SynthConfig, generate
from videopanda.model import VideoTokenizer, VideoTokenizerConfig


@pytest.fixture(scope="module")
def stab_probe():
    return load_benchmark("stab_probe")


def test_max_pooling_is_the_channel_wise_maximum_of_each_video(stab_probe):
    torch.manual_seed(0)
    probe = stab_probe.Probe(width=6, classes=3, pool="max")
    tokens = torch.randn(7, 6)
    video = torch.tensor([0, 0, 1, 1, 1, 2, 2])
    expected = torch.stack([tokens[video == v].max(dim=0).values for v in range(3)])  # (3, 6)
    torch.testing.assert_close(probe(tokens, video, 3), probe.head(expected))


def test_attention_pooling_is_a_softmax_average_within_each_video(stab_probe):
    torch.manual_seed(0)
    probe = stab_probe.Probe(width=6, classes=3, pool="attention", token_mlp=True)
    tokens = torch.randn(5, 6)
    video = torch.tensor([0, 0, 0, 1, 1])
    mixed = tokens + probe.mlp(tokens)
    rows = []
    for v in range(2):
        t = mixed[video == v]
        weight = torch.softmax(probe.key(t) @ probe.query / 6**0.5, dim=0)
        rows.append((weight[:, None] * t).sum(0))
    torch.testing.assert_close(probe(tokens, video, 2), probe.head(torch.stack(rows)))


def test_mean_pooling_is_the_plain_average_of_each_video(stab_probe):
    torch.manual_seed(0)
    probe = stab_probe.Probe(width=6, classes=3, pool="mean")
    tokens = torch.randn(6, 6)
    video = torch.tensor([0, 1, 1, 2, 2, 2])
    expected = torch.stack([tokens[video == v].mean(dim=0) for v in range(3)])  # (3, 6)
    torch.testing.assert_close(probe(tokens, video, 3), probe.head(expected))


def test_object_pooling_averages_only_the_selected_tokens_of_each_video(stab_probe):
    torch.manual_seed(0)
    probe = stab_probe.Probe(width=6, classes=3, pool="object")
    tokens = torch.randn(6, 6)
    video = torch.tensor([0, 0, 0, 1, 1, 1])
    select = torch.tensor([True, False, True, False, False, True])
    expected = torch.stack([tokens[[0, 2]].mean(dim=0), tokens[5]])  # (2, 6)
    torch.testing.assert_close(probe(tokens, video, 2, select), probe.head(expected))
    with pytest.raises(ValueError, match="needs the selected tokens"):
        probe(tokens, video, 2)


def test_object_tokens_are_the_windows_that_show_a_saturated_shape(stab_probe):
    from videopanda.data.transforms import preprocess_frames

    grey = torch.full((1, 56, 56, 3), 120, dtype=torch.uint8)  # (F, H, W, 3) a grey frame ...
    grey[0, 30:40, 5:15] = torch.tensor([220, 30, 30], dtype=torch.uint8)  # ... with a red square, lower left
    frames = preprocess_frames(grey, 1, 56, 14)[None]  # (1, 1, 4, 56, 56)
    select = stab_probe.object_tokens(frames, per_frame=4)  # a 2x2 grid of 28 px windows
    assert select.tolist() == [False, False, True, False]
    with pytest.raises(ValueError, match="not a square grid"):
        stab_probe.object_tokens(frames, per_frame=3)


def test_frame_encoders_give_one_token_per_output_pixel(stab_probe):
    frames = torch.randn(2, 8, 4, 56, 56)
    tokens, video = stab_probe.FrameEncoder("patches", width=16, patch_size=14)(frames)
    assert tokens.shape == (2 * 8 * 16, 16) and video.tolist() == [0] * 128 + [1] * 128
    tokens, video = stab_probe.FrameEncoder("cnn", width=16, patch_size=14)(frames)
    assert tokens.shape == (2 * 8 * 49, 16) and int(video.max()) == 1


def test_stab_stages_cut_the_stab_after_its_patch_embedding_average_or_lsd(stab_probe):
    stab = VideoTokenizer(VideoTokenizerConfig(width=16, num_heads=2, patch_size=14, image_size=56))
    frames = torch.randn(2, 8, 4, 56, 56)  # 4x4 patches of 14 px per frame
    patches, video = stab_probe.StabStages(stab, "patches")(frames)
    assert patches.shape == (2 * 8 * 16, 16) and video.tolist() == [0] * 128 + [1] * 128
    grid = patches.view(16, 4, 4, 16)  # (frame, row, column, C)
    averaged, video = stab_probe.StabStages(stab, "avg")(frames)
    first = grid[:, :2, :2].mean(dim=(1, 2))  # (frame, C): the top-left 2x2 window of every frame
    torch.testing.assert_close(averaged.view(16, 4, 16)[:, 0], first)
    assert video.tolist() == [0] * 32 + [1] * 32
    lsd = stab_probe.StabStages(stab, "lsd")
    pooled, _ = lsd(frames)
    assert pooled.shape == averaged.shape and not torch.allclose(pooled, averaged)  # LSD adds its attention term
    assert lsd.lsd is stab.lsd and lsd.patch_embedding is stab.patch_embedding  # the STAB's own modules, shared
    with pytest.raises(ValueError, match="unknown STAB stage"):
        stab_probe.StabStages(stab, "fsra")


@pytest.mark.parametrize(
    "extra",
    [
        ["--encoder", "stab"],
        ["--encoder", "patches", "--token-mlp", "--pool", "max"],
        ["--encoder", "cnn"],
        ["--encoder", "stab-lsd", "--pool", "max"],
        ["--frozen", "random", "--pool", "mean", "--token-mlp"],
        ["--frozen", "random", "--encoder", "stab-lsd", "--pool", "object"],
    ],
)
def test_the_probe_runs_and_prints_its_table(stab_probe, tmp_path_factory, monkeypatch, capsys, extra):
    data = tmp_path_factory.getbasetemp() / "probe_synth"
    if not (data / "manifest.json").is_file():
        generate(data, SynthConfig(seed=1, train_videos=8, eval_videos=3))
    argv = ["stab_probe", "--data", str(data), "--type", "shape", "--steps", "2", "--clips", "8", *extra]
    monkeypatch.setattr(sys, "argv", argv)
    assert stab_probe.main() == 0
    out = capsys.readouterr().out
    assert "held-out shape %" in out and "| 2 |" in out


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--encoder", "cnn", "--save", "x"], "--save keeps a probe-trained STAB"),
        (["--frozen", "random", "--save", "x"], "--save keeps a probe-trained STAB"),
        (["--frozen", "random", "--encoder", "cnn"], "--frozen freezes a STAB"),
        (["--pool", "object"], "--pool object needs a full-canvas token grid"),
    ],
)
def test_contradictory_options_are_refused(stab_probe, monkeypatch, capsys, argv, message):
    monkeypatch.setattr(sys, "argv", ["stab_probe", *argv])
    with pytest.raises(SystemExit):
        stab_probe.main()
    assert message in capsys.readouterr().err


def test_unknown_pooling_or_encoder_is_an_error(stab_probe):
    with pytest.raises(ValueError, match="unknown pooling"):
        stab_probe.Probe(8, 2, pool="median")
    with pytest.raises(ValueError, match="unknown frame encoder"):
        stab_probe.FrameEncoder("vit", 8, 4)
