"""Video-Panda model: the STAB blocks, the projector and the transformers model classes.

Importing this package registers ``videopanda`` with transformers' Auto classes, so
``AutoModelForImageTextToText.from_pretrained(folder)`` and ``AutoConfig.from_pretrained(folder)`` work, and
registers the LLM attention that keeps fp32 under CPU autocast (:mod:`videopanda.model.precision`).
"""

from transformers import AttentionInterface, AutoConfig, AutoModel, AutoModelForImageTextToText
from transformers.masking_utils import ALL_MASK_ATTENTION_FUNCTIONS, AttentionMaskInterface

from .build import build_model, load_model, parameter_counts, to_hf_config
from .config import ModelConfig, VideoTokenizerConfig
from .configuration_videopanda import VideoPandaConfig
from .modeling_videopanda import VideoPandaForConditionalGeneration, VideoPandaModel
from .precision import CPU_MIXED_SDPA, sdpa_attention
from .video_tokenizer import VideoTokenizer, VisualTokens

AutoConfig.register("videopanda", VideoPandaConfig, exist_ok=True)
AutoModel.register(VideoPandaConfig, VideoPandaModel, exist_ok=True)
AutoModelForImageTextToText.register(VideoPandaConfig, VideoPandaForConditionalGeneration, exist_ok=True)
AttentionInterface.register(CPU_MIXED_SDPA, sdpa_attention)
AttentionMaskInterface.register(CPU_MIXED_SDPA, ALL_MASK_ATTENTION_FUNCTIONS["sdpa"])  # the masks SDPA takes

__all__ = [
    "ModelConfig",
    "VideoPandaConfig",
    "VideoPandaForConditionalGeneration",
    "VideoPandaModel",
    "VideoTokenizer",
    "VideoTokenizerConfig",
    "VisualTokens",
    "build_model",
    "load_model",
    "parameter_counts",
    "to_hf_config",
]
