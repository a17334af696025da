"""Build a Video-Panda model from a :class:`ModelConfig` (YAML) or load one from a checkpoint folder."""

from __future__ import annotations

import dataclasses
import logging
from pathlib import Path

import torch
from transformers import LlamaConfig
from transformers.utils import is_flash_attn_2_available

from .config import ModelConfig
from .configuration_videopanda import VideoPandaConfig
from .modeling_videopanda import VideoPandaForConditionalGeneration

logger = logging.getLogger(__name__)


def resolve_attn_implementation(requested: str) -> str:
    """``auto`` -> ``flash_attention_2`` when flash-attn is installed and usable, else ``sdpa``."""
    if requested == "auto":
        return "flash_attention_2" if is_flash_attn_2_available() else "sdpa"
    if requested == "flash_attention_2" and not is_flash_attn_2_available():
        logger.warning("flash_attention_2 requested but flash-attn is not available; falling back to sdpa")
        return "sdpa"
    return requested


def to_hf_config(cfg: ModelConfig) -> VideoPandaConfig:
    """The transformers config of a model described by ``cfg``."""
    text_config = LlamaConfig(**cfg.llm)
    config = VideoPandaConfig(
        text_config=text_config,
        video_tokenizer=dataclasses.asdict(cfg.video_tokenizer),
        projector_type=cfg.projector,
        video_token_id=cfg.video_token_id,
        image_token_id=cfg.image_token_id,
    )
    impl = resolve_attn_implementation(cfg.attn_implementation)
    config._attn_implementation = impl
    config.text_config._attn_implementation = impl
    return config


def build_model(cfg: ModelConfig, device: str | torch.device | None = None) -> VideoPandaForConditionalGeneration:
    """A freshly initialised model; ``device="meta"`` builds shapes only (no memory)."""
    config = to_hf_config(cfg)
    dtype = getattr(torch, cfg.dtype)
    if device is not None and str(device) == "meta":
        with torch.device("meta"):
            return VideoPandaForConditionalGeneration(config).to(dtype)
    model = VideoPandaForConditionalGeneration(config).to(dtype)
    return model.to(device) if device is not None else model


def load_model(path: str | Path, dtype: torch.dtype | None = None, attn_implementation: str = "auto"):
    """Load a saved Video-Panda checkpoint folder (``save_pretrained`` layout)."""
    path = Path(path)
    if not (path / "config.json").is_file():
        raise FileNotFoundError(f"{path}: not a Video-Panda checkpoint folder (no config.json)")
    return VideoPandaForConditionalGeneration.from_pretrained(
        path, dtype=dtype, attn_implementation=resolve_attn_implementation(attn_implementation)
    )


def parameter_counts(model: VideoPandaForConditionalGeneration) -> dict[str, int]:
    """Parameters per part: STAB, projector, LLM (embeddings, layers, head) and total."""
    stab = sum(p.numel() for p in model.model.video_tokenizer.parameters())
    projector = sum(p.numel() for p in model.model.projector.parameters())
    llm = sum(p.numel() for p in model.model.language_model.parameters()) + model.lm_head.weight.numel()
    return {
        "stab": stab,
        "projector": projector,
        "stab+projector": stab + projector,
        "llm": llm,
        "total": stab + projector + llm,
    }
