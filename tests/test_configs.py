"""Every shipped YAML config loads into its dataclass; the full-size model builds on meta with the paper's counts."""

from __future__ import annotations

import importlib
from pathlib import Path

import pytest
import torch

from tests.model.stab_init import assert_stab_starts_from_our_init
from videopanda.config import ConfigError, load_config
from videopanda.model import ModelConfig, build_model, parameter_counts

CONFIGS = Path(__file__).resolve().parents[1] / "configs"

# Top-level folder of configs/ -> "module:Class" its YAML files load into. A new folder must be added here.
LOADERS = {
    "model": "videopanda.model.config:ModelConfig",
    "ablations": "videopanda.model.config:ModelConfig",
    "eval": "videopanda.eval.judge.profiles:JudgeProfile",
    "train": "videopanda.train.config:TrainConfig",
}


def _yaml_files():
    return sorted(p.relative_to(CONFIGS).as_posix() for p in CONFIGS.rglob("*.yaml"))


@pytest.mark.parametrize("rel", _yaml_files())
def test_every_config_loads_into_its_dataclass(rel):
    folder = rel.split("/")[0]
    assert folder in LOADERS, f"configs/{rel}: no dataclass registered for configs/{folder}/ in tests/test_configs.py"
    module, cls = LOADERS[folder].split(":")
    load_config(getattr(importlib.import_module(module), cls), CONFIGS / rel)


def test_7b_stab_plus_projector_has_the_papers_45m_parameters():
    cfg = load_config(ModelConfig, CONFIGS / "model" / "videopanda-7b.yaml")
    model = build_model(cfg, device="meta")
    counts = parameter_counts(model)
    assert counts["stab+projector"] == 45_066_578  # reference §1.8: tower without lmhra2 + mlp2x_gelu projector
    assert counts["stab"] == 24_086_866
    assert counts["llm"] == 6_738_415_616  # LLaMA-2-7B / Vicuna-7B with an untied head
    assert next(model.parameters()).device.type == "meta"
    tokens = model.model.video_tokenizer
    assert tuple(tokens.patch_embedding.proj.weight.shape) == (1024, 3, 14, 14)
    assert tuple(tokens.lste.temporal[1].weight.shape) == (682, 1024, 1, 1, 1)
    assert tuple(tokens.gstra.in_proj_weight.shape) == (3072, 1024)
    assert tuple(model.model.projector[2].weight.shape) == (4096, 4096)


def test_unknown_keys_and_bad_types_are_rejected_with_the_dotted_key(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("include: " + str(CONFIGS / "model" / "tiny.yaml") + "\nvideo_tokenizer:\n  gstar: false\n")
    with pytest.raises(ConfigError, match=r"video_tokenizer\.gstar"):
        load_config(ModelConfig, bad)
    with pytest.raises(ConfigError, match=r"video_tokenizer\.width: expected an integer"):
        load_config(ModelConfig, CONFIGS / "model" / "tiny.yaml", ["video_tokenizer.width=wide"])
    with pytest.raises(ConfigError, match="fusion='learned' needs gstra: true"):
        load_config(ModelConfig, CONFIGS / "model" / "tiny.yaml", ["video_tokenizer.gstra=false"])


def test_dotted_overrides_and_includes_compose():
    cfg = load_config(ModelConfig, CONFIGS / "ablations" / "no_gstra.yaml", ["llm.num_hidden_layers=2"])
    assert cfg.video_tokenizer.gstra is False and cfg.video_tokenizer.fusion == "fsra_only"
    assert cfg.llm["num_hidden_layers"] == 2 and cfg.llm["hidden_size"] == 4096  # rest from the included base
    tiny = load_config(ModelConfig, CONFIGS / "model" / "tiny.yaml")
    assert tiny.video_tokenizer.image_size == 112 and tiny.video_tokenizer.chunk_size == 4


def test_exponent_floats_without_a_dot_are_numbers():
    """PyYAML reads ``3e-4`` as a string; a float field still takes it, and a real string is still refused."""
    from videopanda.train.config import TrainConfig

    cfg = load_config(TrainConfig, CONFIGS / "train" / "tiny_finetune.yaml", ["stage.lr_stab=3e-3", "stage.lr=2E-4"])
    assert cfg.stage.lr_stab == pytest.approx(3e-3) and cfg.stage.lr == pytest.approx(2e-4)
    with pytest.raises(ConfigError, match=r"stage\.lr_stab"):
        load_config(TrainConfig, CONFIGS / "train" / "tiny_finetune.yaml", ["stage.lr_stab=fast"])


def test_override_values_that_yaml_would_cut_or_nest_stay_plain_paths():
    from videopanda.train.config import TrainConfig

    finetune = CONFIGS / "train" / "tiny_finetune.yaml"
    cfg = load_config(TrainConfig, finetune, ["output_dir=runs/trial #2", "data.root=/data/set: v2"])
    assert cfg.output_dir == "runs/trial #2" and cfg.data.root == "/data/set: v2"
    # flow style and quotes are still YAML
    cfg = load_config(TrainConfig, finetune, ["stage.trainable=[stab, projector]", "output_dir='a #b'"])
    assert cfg.stage.trainable == ["stab", "projector"] and cfg.output_dir == "a #b"


def test_literal_options_spelled_like_yaml_booleans_are_accepted():
    """YAML 1.1 reads `no` as false: `distributed.mixed_precision=no` must still mean the option "no"."""
    from videopanda.train.config import TrainConfig

    prealign = CONFIGS / "train" / "prealign.yaml"  # sets bf16
    assert load_config(TrainConfig, prealign, ["distributed.mixed_precision=no"]).distributed.mixed_precision == "no"
    with pytest.raises(ConfigError, match=r"distributed\.mixed_precision: True is not one of"):
        load_config(TrainConfig, prealign, ["distributed.mixed_precision=yes"])


def test_tiny_model_initialises_every_generic_layer_with_its_width_scaled_std():
    """``llm.initializer_range`` of tiny.yaml (0.0625, of the order of 1/sqrt(width) rather than LLaMA's 0.02) reaches
    the LLM, the projector and the STAB alike."""
    cfg = load_config(ModelConfig, CONFIGS / "model" / "tiny.yaml")
    std = cfg.llm["initializer_range"]
    assert 0.5 * cfg.llm["hidden_size"] ** -0.5 <= std <= cfg.llm["hidden_size"] ** -0.5 and std > 2 * 0.02
    torch.manual_seed(0)
    model = build_model(cfg)
    layers = {
        "LLM q_proj": model.model.language_model.layers[0].self_attn.q_proj.weight,
        "LLM embeddings": model.model.language_model.embed_tokens.weight,
        "projector": model.model.projector[0].weight,
        "STAB patch embedding": model.model.video_tokenizer.patch_embedding.proj.weight,
        "STAB LSD": model.model.video_tokenizer.lsd.pool.q[1].weight,
    }
    for name, weight in layers.items():
        assert float(weight.detach().std()) == pytest.approx(std, rel=0.1), name
    assert_stab_starts_from_our_init(model.model.video_tokenizer)  # the blocks' own schemes still win (§1.6)
