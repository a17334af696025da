"""Shared fixtures of the training tests: a small synthetic set, a micro model config for the loop, run helpers."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from videopanda.data.synth import SynthConfig, generate

REPO = Path(__file__).resolve().parents[2]

# The loop tests shrink the tiny model further: a 2-layer LLaMA of width 64, a STAB of width 32, a 2-layer teacher
# of width 32 (56 px, 4x4 patches, as the tiny config's 112 px student after LSD pooling).
MICRO = [
    "model.overrides=[llm.hidden_size=64,llm.intermediate_size=128,llm.num_hidden_layers=2,"
    "llm.num_attention_heads=4,llm.num_key_value_heads=4,video_tokenizer.width=32,video_tokenizer.num_heads=2]",
    "distill.teacher.width=32",
    "distill.teacher.mlp_dim=64",
    "distill.num_heads=2",
    "logging.progress=false",
    "data.num_workers=0",
]


@pytest.fixture(scope="session")
def synth_dir(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("synthetic")
    generate(out, SynthConfig(seed=3, train_videos=24, eval_videos=2))
    return out


@pytest.fixture(scope="session")
def torch_extensions_dir(tmp_path_factory) -> str:
    """Where DeepSpeed caches its JIT-built ops: $TORCH_EXTENSIONS_DIR (CI keeps it), else one folder per session."""
    return os.environ.get("TORCH_EXTENSIONS_DIR") or str(tmp_path_factory.mktemp("torch_extensions"))


def loop_overrides(synth_dir: Path, out: Path, *extra: str) -> list[str]:
    """Overrides that point the tiny fine-tuning config at the test's synthetic set, a fresh micro model, ``out``."""
    return [
        f"data.root={synth_dir}",
        f"model.tokenizer={synth_dir / 'tokenizer'}",
        "model.config=configs/model/tiny.yaml",
        "model.init_from=",
        f"output_dir={out}",
        *MICRO,
        *extra,
    ]
