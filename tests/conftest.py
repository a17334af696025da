"""Fixtures shared by every test folder: deterministic seeds and tiny model presets."""

from __future__ import annotations

import importlib.util
from pathlib import Path
from types import ModuleType

import pytest
import torch

from videopanda.model import ModelConfig, VideoTokenizerConfig

TINY_LLM = {
    "vocab_size": 128,
    "hidden_size": 64,
    "intermediate_size": 128,
    "num_hidden_layers": 2,
    "num_attention_heads": 4,
    "num_key_value_heads": 2,
    "max_position_embeddings": 1024,
    "bos_token_id": 1,
    "eos_token_id": 2,
    "pad_token_id": 0,
}


def tiny_model_config(**stab_changes) -> ModelConfig:
    """A 2-layer LLaMA (width 64) and a narrow STAB (width 32, 2 heads, 32 px canvas, patch 4 -> 8x8 grid)."""
    stab = VideoTokenizerConfig(width=32, num_heads=2, patch_size=4, image_size=32, chunk_size=4, **stab_changes)
    return ModelConfig(llm=dict(TINY_LLM), video_tokenizer=stab, projector="mlp2x_gelu", attn_implementation="sdpa")


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)
    yield


@pytest.fixture
def tiny_cfg() -> ModelConfig:
    return tiny_model_config()


def load_benchmark(name: str) -> ModuleType:
    """Import ``benchmarks/<name>.py`` (a script folder, not a package) as a module."""
    path = Path(__file__).resolve().parents[1] / "benchmarks" / f"{name}.py"
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module
