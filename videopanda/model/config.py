"""Model configuration as typed dataclasses (what ``configs/model/*.yaml`` load into).

``ModelConfig`` is the researcher-facing description of a Video-Panda model. ``build_model`` turns it into a
transformers ``VideoPandaConfig`` and a model; the STAB settings travel inside that config as a plain dict so a
saved checkpoint is self-describing.
"""

from __future__ import annotations

import dataclasses
import re
from dataclasses import dataclass, field
from typing import Literal

FusionMode = Literal["learned", "fsra_only", "gstra_only"]


@dataclass
class VideoTokenizerConfig:
    """Settings of the STAB (Spatio-Temporal Alignment Block). Defaults are the paper's sizes (reference §1.1)."""

    width: int = 1024  # C: channel width of every STAB block
    num_heads: int = 8  # heads of GSTRA, LSD and FSRA (the reference picks 8 for C=1024)
    patch_size: int = 14  # student patch stride in pixels
    image_size: int = 448  # side of the square (letterboxed) student canvas
    chunk_size: int = 4  # frames per temporal chunk (T); LSTE and GSTRA never cross a chunk boundary
    dw_reduction: float = 1.5  # LSTE bottleneck: int(C // dw_reduction) channels (682 for C=1024)
    mlp_factor: int = 4  # GSTRA MLP hidden = mlp_factor * C
    mlp_dropout: float = 0.5  # dropout inside the GSTRA MLP (kept at 0.5 for fidelity, reference §8.6)
    fusion_dropout: float = 0.5  # dropout inside the fusion `proj` (reference cls_dropout)
    attn_scale: Literal["width", "head_dim"] = "width"  # LSD/FSRA scale: width^-0.5 as the reference (§8.7)
    padded_frame_crop: int = 0  # patch block taken from a fully padded frame; 0 = half the grid (16 at 448/14)
    # Ablation switches: each turns off one block of the STAB.
    lste: bool = True  # Local Spatio-Temporal Encoding (temporal convs + DPE + dense skip)
    dpe: bool = True  # the depthwise 3x3x3 dynamic position encoding inside LSTE
    gstra: bool = True  # Global Spatio-Temporal Relationship Aggregator (video-level context token)
    fsra: bool = True  # Frame-wise Spatial Relationship Aggregator (per-frame context token)
    row_tokens: bool = True  # learned split token at the end of every row
    fusion: FusionMode = "learned"  # how GSTRA and FSRA tokens combine into each frame's context token
    # Improvements that change outputs: off by default (DECISIONS.md rule 3).
    gstra_mask_padding: bool = False  # GSTRA ignores letterbox padding and padded frames

    def __post_init__(self) -> None:
        if self.width % self.num_heads:
            raise ValueError(f"video_tokenizer.width={self.width} is not divisible by num_heads={self.num_heads}")
        if self.image_size % self.patch_size:
            raise ValueError(
                f"video_tokenizer.image_size={self.image_size} is not a multiple of patch_size={self.patch_size}"
            )
        if self.grid_size % 2:
            raise ValueError(f"video_tokenizer: the patch grid ({self.grid_size}) must be even for 2x2 LSD pooling")
        if self.chunk_size < 1:
            raise ValueError("video_tokenizer.chunk_size must be >= 1")
        if self.fusion in ("learned", "gstra_only") and not self.gstra:
            raise ValueError(f"video_tokenizer.fusion={self.fusion!r} needs gstra: true (use fusion: fsra_only)")
        if self.fusion in ("learned", "fsra_only") and not self.fsra:
            raise ValueError(f"video_tokenizer.fusion={self.fusion!r} needs fsra: true (use fusion: gstra_only)")
        if self.padded_frame_crop % 2 or self.padded_frame_crop > self.grid_size:
            raise ValueError("video_tokenizer.padded_frame_crop must be even and at most the patch grid")

    @property
    def grid_size(self) -> int:
        """Patches per side of the canvas (32 at 448/14)."""
        return self.image_size // self.patch_size

    @property
    def padded_crop(self) -> int:
        """Side of the top-left patch block used for fully padded frames (reference: 16)."""
        return self.padded_frame_crop or (self.grid_size // 2) // 2 * 2

    @property
    def reduced_width(self) -> int:
        return int(self.width // self.dw_reduction)

    @property
    def attention_scale(self) -> float:
        dim = self.width if self.attn_scale == "width" else self.width // self.num_heads
        return dim**-0.5


_PROJECTOR_RE = re.compile(r"^mlp(\d+)x_gelu$")


@dataclass
class ModelConfig:
    """A whole Video-Panda model: STAB + projector + LLaMA-family LLM."""

    llm: dict = field(default_factory=dict)  # LlamaConfig keyword arguments (hidden_size, num_hidden_layers, ...)
    video_tokenizer: VideoTokenizerConfig = field(default_factory=VideoTokenizerConfig)
    projector: str = "mlp2x_gelu"  # linear | mlpNx_gelu | identity
    attn_implementation: Literal["auto", "sdpa", "eager", "flash_attention_2"] = "auto"  # auto: flash if installed
    video_token_id: int = -200  # placeholder id of a video frame's visual tokens in input_ids (reference: -200)
    image_token_id: int = -201  # placeholder id of an image's visual tokens
    dtype: Literal["float32", "bfloat16", "float16"] = "float32"

    def __post_init__(self) -> None:
        if self.projector not in ("linear", "identity") and not _PROJECTOR_RE.match(self.projector):
            raise ValueError(f"projector={self.projector!r}: expected linear, identity or mlpNx_gelu")
        if self.video_token_id == self.image_token_id:
            raise ValueError("video_token_id and image_token_id must differ")
        if self.projector == "identity" and self.llm.get("hidden_size", 4096) != self.video_tokenizer.width:
            raise ValueError("projector=identity needs llm.hidden_size == video_tokenizer.width")

    def replace(self, **changes) -> ModelConfig:
        return dataclasses.replace(self, **changes)
