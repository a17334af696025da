"""``videopanda summary``: the tiny model runs a forward pass and prints its counts; the 7B one is counted on meta."""

from __future__ import annotations

import re
from pathlib import Path

from videopanda.config import load_config
from videopanda.model import ModelConfig, build_model, parameter_counts
from videopanda.model.summary import letterbox_box, main

CONFIGS = Path(__file__).resolve().parents[2] / "configs" / "model"


def _count(out: str, label: str) -> int:
    match = re.search(rf"^\s*{re.escape(label)}\s+([\d,]+)$", out, re.MULTILINE)
    assert match, f"no {label!r} row in:\n{out}"
    return int(match.group(1).replace(",", ""))


def test_tiny_summary_runs_a_forward_pass_and_prints_the_counts(capsys):
    assert main(["--model-config", str(CONFIGS / "tiny.yaml")]) == 0
    out = capsys.readouterr().out
    counts = parameter_counts(build_model(load_config(ModelConfig, CONFIGS / "tiny.yaml")))
    assert _count(out, "STAB (video tokenizer)") == counts["stab"]
    assert _count(out, "STAB + projector") == counts["stab+projector"]
    assert _count(out, "total") == counts["total"]
    blocks = ("patch_embedding", "lste", "gstra", "lsd", "fsra", "fusion", "split_embedding")
    assert sum(_count(out, b) for b in blocks) == counts["stab"]
    # 112 px canvas, patch 14: a 16:9 frame keeps 6 of 8 patch rows -> 3 x 4 tokens + 3 split + 1 context = 16
    assert "16:9 letterbox): 16 16 16 16 16 16 16 16" in out
    assert "a square frame is 21 tokens" in out
    assert re.search(r"Forward pass: 1 video x 8 frames .* logits \(1, 147, 1024\)", out)


def test_7b_summary_counts_on_meta_without_a_forward_pass(capsys):
    assert main(["--model-config", str(CONFIGS / "videopanda-7b.yaml")]) == 0
    out = capsys.readouterr().out
    assert _count(out, "STAB + projector") == 45_066_578  # the paper's "45M" (reference §1.8)
    assert _count(out, "STAB (video tokenizer)") == 24_086_866
    assert "154 154 154 154 154 154 154 154" in out  # 640x360 -> (9, 16) tokens grid (reference §1.5)
    assert "a square frame is 273 tokens" in out
    assert "meta device" in out and "Forward pass" not in out


def test_letterbox_matches_the_reference_token_table():
    stab = load_config(ModelConfig, CONFIGS / "videopanda-7b.yaml").video_tokenizer
    # reference §6.5: 640x360 pads 84 px top (and 112 px bottom); 360x640 pads 84 px left; 320x240 pads 56 / 56
    assert letterbox_box(stab, (16, 9)) == (84, 336, 0, 448)
    assert letterbox_box(stab, (9, 16)) == (0, 448, 84, 336)
    assert letterbox_box(stab, (4, 3)) == (56, 392, 0, 448)


def test_bad_frame_count_and_config_key_are_clear_errors(capsys):
    assert main(["--model-config", str(CONFIGS / "tiny.yaml"), "--frames", "6"]) == 2
    assert "not a multiple of video_tokenizer.chunk_size=4" in capsys.readouterr().err
    assert main(["--model-config", str(CONFIGS / "tiny.yaml"), "--set", "video_tokenizer.widht=8"]) == 2
    assert "video_tokenizer.widht" in capsys.readouterr().err
