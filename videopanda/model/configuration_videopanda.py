"""``VideoPandaConfig``: the transformers-side configuration (saved as ``config.json`` with every checkpoint)."""

from __future__ import annotations

import dataclasses

from transformers import AutoConfig, PreTrainedConfig
from transformers.configuration_utils import SubConfigSpec

from .config import VideoTokenizerConfig


class VideoPandaConfig(PreTrainedConfig):
    """Configuration of :class:`~videopanda.model.modeling_videopanda.VideoPandaForConditionalGeneration`.

    Args:
        text_config: the LLaMA-family LLM (a ``LlamaConfig`` or its dict).
        video_tokenizer: the STAB settings, a dict of :class:`VideoTokenizerConfig` fields.
        projector_type: ``linear`` | ``mlpNx_gelu`` | ``identity``.
        video_token_id: placeholder id of video-frame tokens in ``input_ids`` (never embedded).
        image_token_id: placeholder id of image tokens.
    """

    model_type = "videopanda"
    sub_configs_defaults = {"text_config": SubConfigSpec(config_class=AutoConfig, model_type="llama")}

    text_config: dict | PreTrainedConfig | None = None
    video_tokenizer: dict | None = None
    projector_type: str = "mlp2x_gelu"
    video_token_id: int = -200
    image_token_id: int = -201
    tie_word_embeddings: bool = False

    def __post_init__(self, **kwargs):
        super().__post_init__(**kwargs)
        # Validate (and fill defaults of) the STAB settings once, here, so a bad config.json fails on load.
        self.video_tokenizer = dataclasses.asdict(VideoTokenizerConfig(**(self.video_tokenizer or {})))

    @property
    def stab(self) -> VideoTokenizerConfig:
        """The STAB settings as a typed dataclass."""
        return VideoTokenizerConfig(**self.video_tokenizer)


__all__ = ["VideoPandaConfig"]
