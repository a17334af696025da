"""Video-Panda at the transformers boundary: STAB + projector spliced into a LLaMA-family LLM.

``input_ids`` carry one placeholder id per visual token (``video_token_id`` for video frames, ``image_token_id``
for images); the data collator places exactly as many as the STAB produces (see
:func:`videopanda.model.geometry.frame_token_counts`). The forward pass embeds the text, computes the visual
tokens, and writes them into the placeholder positions with one ``masked_scatter`` per modality. Placeholder
ids are never looked up in the embedding table, so they may lie outside the vocabulary (the reference's -200).
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass

import torch
from torch import nn
from transformers import AutoModel, GenerationMixin, PreTrainedModel
from transformers import initialization as init
from transformers.modeling_outputs import ModelOutput

from .configuration_videopanda import VideoPandaConfig
from .fsra import FSRA
from .fusion import ContextFusion
from .gstra import GSTRA
from .projector import build_projector
from .video_tokenizer import VideoTokenizer, VisualTokens

logger = logging.getLogger(__name__)

IGNORE_INDEX = -100


@dataclass
class VideoPandaModelOutput(ModelOutput):
    """Output of :class:`VideoPandaModel`.

    Attributes:
        last_hidden_state: (B, S, D) final hidden states (after the LLM's final norm).
        cache: the KV cache when ``use_cache``.
        hidden_states: per-layer hidden states when ``output_hidden_states``.
        video_tokens: STAB output for the videos of the batch (per-frame counts and boxes), or None.
        image_tokens: STAB output for the images of the batch, or None.
    """

    last_hidden_state: torch.Tensor | None = None
    cache: object | None = None
    hidden_states: tuple[torch.Tensor, ...] | None = None
    attentions: tuple[torch.Tensor, ...] | None = None
    video_tokens: VisualTokens | None = None
    image_tokens: VisualTokens | None = None


@dataclass
class VideoPandaCausalLMOutput(ModelOutput):
    """Output of :class:`VideoPandaForConditionalGeneration` (``loss`` is the LM cross-entropy)."""

    loss: torch.Tensor | None = None
    logits: torch.Tensor | None = None
    cache: object | None = None
    hidden_states: tuple[torch.Tensor, ...] | None = None
    attentions: tuple[torch.Tensor, ...] | None = None
    last_hidden_state: torch.Tensor | None = None
    video_tokens: VisualTokens | None = None
    image_tokens: VisualTokens | None = None


class VideoPandaPreTrainedModel(PreTrainedModel):
    config: VideoPandaConfig
    config_class = VideoPandaConfig
    base_model_prefix = "model"
    input_modalities = ("video", "image", "text")
    supports_gradient_checkpointing = True
    _no_split_modules = ["LlamaDecoderLayer"]
    _supports_flash_attn = True
    _supports_sdpa = True
    _supports_attention_backend = True

    @torch.no_grad()
    def _init_weights(self, module: nn.Module) -> None:
        """Initialise STAB blocks; runs after the generic init of their children (Linear/Conv N(0, 0.02)).

        Blocks mark layers that need a special init with an ``init_scheme`` attribute. The zero-inits are the ones
        the paper and the reference's module code intend (DECISIONS.md): LSTE's output conv and GSTRA's output
        projections start at zero, so at init both blocks pass features through. The DPE keeps torch's kaiming-uniform
        weight with a zero bias, and LSTE's bottleneck and depthwise temporal convs keep torch's whole default
        (kaiming-uniform weight, uniform bias), as the reference run had them (§1.6: its init touched no Conv3d).
        Parameters loaded from a checkpoint are flagged by transformers and left untouched.
        """
        super()._init_weights(module)
        scheme = getattr(module, "init_scheme", None)  # set by the blocks on the layers they own
        if scheme == "zeros":
            init.zeros_(module.weight)
            init.zeros_(module.bias)
        elif scheme == "torch_default":
            init.kaiming_uniform_(module.weight, a=math.sqrt(5))
            init.zeros_(module.bias)
        elif scheme == "torch_conv":  # nn.Conv3d.reset_parameters
            init.kaiming_uniform_(module.weight, a=math.sqrt(5))
            bound = module.weight[0].numel() ** -0.5  # 1 / sqrt(fan_in)
            init.uniform_(module.bias, -bound, bound)
        elif isinstance(module, GSTRA):
            init.zeros_(module.query)
            init.xavier_uniform_(module.in_proj_weight)
            init.zeros_(module.in_proj_bias)
        elif isinstance(module, ContextFusion):
            init.zeros_(module.balance)  # alpha = sigmoid(0) = 0.5
        elif isinstance(module, FSRA):
            init.normal_(module.query)
        elif isinstance(module, VideoTokenizer) and module.split_embedding is not None:
            init.normal_(module.split_embedding)


class VideoPandaModel(VideoPandaPreTrainedModel):
    """STAB + projector + LLM body (no LM head)."""

    def __init__(self, config: VideoPandaConfig) -> None:
        super().__init__(config)
        stab = config.stab
        self.video_tokenizer = VideoTokenizer(stab)
        self.projector = build_projector(config.projector_type, stab.width, config.text_config.hidden_size)
        self.language_model = AutoModel.from_config(config.text_config)
        self.post_init()

    def get_input_embeddings(self) -> nn.Module:
        return self.language_model.get_input_embeddings()

    def set_input_embeddings(self, value: nn.Module) -> None:
        self.language_model.set_input_embeddings(value)

    def encode_visual(self, frames: torch.Tensor) -> tuple[torch.Tensor, VisualTokens]:
        """Run the STAB and the projector.

        Args:
            frames: (B, F, 4, H, W) videos (F > 1) or images (F == 1).

        Returns:
            ``(features (sum L, D), visual_tokens)`` with features in (sample, frame, token) order.
        """
        visual = self.video_tokenizer(frames)
        return self.projector(visual.tokens), visual  # (sum L, D)

    def get_video_features(self, pixel_values_videos: torch.Tensor) -> list[torch.Tensor]:
        """Visual tokens of each video after the projector, in the reference's order.

        Args:
            pixel_values_videos: (B, F, 4, H, W).

        Returns:
            B tensors of shape (num_tokens, D): per frame ``[context, row_0, split, row_1, split, ...]``.
        """
        features, visual = self.encode_visual(pixel_values_videos)
        per_sample = visual.frame_token_counts.view(pixel_values_videos.shape[0], -1).sum(dim=1)  # (B,)
        return list(torch.split(features, per_sample.tolist()))

    def get_image_features(self, pixel_values_images: torch.Tensor) -> list[torch.Tensor]:
        """Visual tokens of each image (T=1: no LSTE, no GSTRA). ``pixel_values_images``: (B, 4, H, W)."""
        return self.get_video_features(_as_images(pixel_values_images))

    def get_placeholder_mask(self, input_ids: torch.Tensor, token_id: int, num_features: int, kind: str):
        """Positions of ``token_id`` in ``input_ids``; raises if their count differs from ``num_features``."""
        mask = input_ids == token_id  # (B, S)
        n_tokens = int(mask.sum())
        if n_tokens != num_features:
            raise ValueError(
                f"{kind} placeholders and {kind} features do not match: {kind} tokens: {n_tokens}, "
                f"features: {num_features}. Build input_ids with as many placeholders as the STAB produces "
                f"(videopanda.model.geometry.frame_token_counts)."
            )
        return mask

    def forward(
        self,
        input_ids: torch.LongTensor | None = None,
        pixel_values_videos: torch.Tensor | None = None,
        pixel_values_images: torch.Tensor | None = None,
        attention_mask: torch.Tensor | None = None,
        position_ids: torch.LongTensor | None = None,
        cache=None,
        inputs_embeds: torch.Tensor | None = None,
        use_cache: bool | None = None,
        **kwargs,
    ) -> VideoPandaModelOutput:
        """Splice visual tokens into the text embeddings and run the LLM.

        Args:
            input_ids: (B, S) token ids with placeholders at visual positions.
            pixel_values_videos: (Bv, F, 4, H, W) frames of the Bv samples that hold a video, in batch order.
            pixel_values_images: (Bi, 4, H, W) images of the Bi samples that hold an image, in batch order.
            attention_mask: (B, S) 1 on real tokens (left or right padding).
            inputs_embeds: (B, S, D) instead of ``input_ids`` (no splicing then).
        """
        if (input_ids is None) == (inputs_embeds is None):
            raise ValueError("pass exactly one of input_ids or inputs_embeds")
        video_tokens = image_tokens = None
        if inputs_embeds is None:
            cfg = self.config
            visual = (input_ids == cfg.video_token_id) | (input_ids == cfg.image_token_id)  # (B, S)
            pad_id = cfg.text_config.pad_token_id or 0
            inputs_embeds = self.get_input_embeddings()(input_ids.masked_fill(visual, pad_id))  # (B, S, D)
            for frames, token_id, kind in (
                (pixel_values_videos, cfg.video_token_id, "video"),
                (None if pixel_values_images is None else _as_images(pixel_values_images), cfg.image_token_id, "image"),
            ):
                if frames is None:
                    if bool((input_ids == token_id).any()):
                        raise ValueError(f"input_ids hold {kind} placeholders but no {kind} pixel values were given")
                    continue
                features, tokens = self.encode_visual(frames)
                mask = self.get_placeholder_mask(input_ids, token_id, features.shape[0], kind)
                inputs_embeds = inputs_embeds.masked_scatter(mask[..., None], features.to(inputs_embeds.dtype))
                if kind == "video":
                    video_tokens = tokens
                else:
                    image_tokens = tokens
        limit = self.config.text_config.max_position_embeddings
        length = (cache.get_seq_length() if cache is not None else 0) + inputs_embeds.shape[1]
        if length > limit:  # RoPE would run past the positions the LLM was trained on, silently
            raise ValueError(
                f"a sequence of {length} tokens is longer than the LLM's context (max_position_embeddings={limit}); "
                "use fewer frames or a shorter prompt"
            )
        outputs = self.language_model(
            inputs_embeds=inputs_embeds,
            attention_mask=attention_mask,
            position_ids=position_ids,
            cache=cache,
            use_cache=use_cache,
            **kwargs,
        )
        return VideoPandaModelOutput(
            last_hidden_state=outputs.last_hidden_state,
            cache=outputs.cache,
            hidden_states=outputs.hidden_states,
            attentions=outputs.attentions,
            video_tokens=video_tokens,
            image_tokens=image_tokens,
        )


class VideoPandaForConditionalGeneration(VideoPandaPreTrainedModel, GenerationMixin):
    """Video-Panda: the inference model (no teacher, no distillation head; those live in ``videopanda.train``)."""

    def __init__(self, config: VideoPandaConfig) -> None:
        super().__init__(config)
        self.model = VideoPandaModel(config)
        self.lm_head = nn.Linear(config.text_config.hidden_size, config.text_config.vocab_size, bias=False)
        self.post_init()

    def get_input_embeddings(self) -> nn.Module:
        return self.model.get_input_embeddings()

    def set_input_embeddings(self, value: nn.Module) -> None:
        self.model.set_input_embeddings(value)

    def get_output_embeddings(self) -> nn.Module:
        return self.lm_head

    def get_video_features(self, pixel_values_videos: torch.Tensor) -> list[torch.Tensor]:
        """See :meth:`VideoPandaModel.get_video_features`."""
        return self.model.get_video_features(pixel_values_videos)

    def get_image_features(self, pixel_values_images: torch.Tensor) -> list[torch.Tensor]:
        """See :meth:`VideoPandaModel.get_image_features`."""
        return self.model.get_image_features(pixel_values_images)

    def forward(
        self,
        input_ids: torch.LongTensor | None = None,
        pixel_values_videos: torch.Tensor | None = None,
        pixel_values_images: torch.Tensor | None = None,
        attention_mask: torch.Tensor | None = None,
        position_ids: torch.LongTensor | None = None,
        cache=None,
        inputs_embeds: torch.Tensor | None = None,
        labels: torch.LongTensor | None = None,
        use_cache: bool | None = None,
        logits_to_keep: int = 0,
        full_logits: bool = True,
        **kwargs,
    ) -> VideoPandaCausalLMOutput:
        """Forward pass with an optional next-token loss.

        Args:
            labels: (B, S) target ids, ``-100`` where no loss is taken; visual positions are always ignored.
            logits_to_keep: if > 0, compute logits only for the last ``logits_to_keep`` positions.
            full_logits: ``False`` (training): with ``labels``, run the LM head only at the positions whose next token
                is supervised and return ``logits=None``. Same loss; at the tiny config's width the head over every
                (mostly visual) position costs about two thirds of an LLM layer.
            Others: see :meth:`VideoPandaModel.forward`.
        """
        legacy_cache = kwargs.pop("past_key_values", None)  # transformers' older name for `cache`, still accepted
        if cache is None:
            cache = legacy_cache
        outputs = self.model(
            input_ids=input_ids,
            pixel_values_videos=pixel_values_videos,
            pixel_values_images=pixel_values_images,
            attention_mask=attention_mask,
            position_ids=position_ids,
            cache=cache,
            inputs_embeds=inputs_embeds,
            use_cache=use_cache,
            **kwargs,
        )
        hidden = outputs.last_hidden_state  # (B, S, D)
        if labels is not None and input_ids is not None:
            visual = (input_ids == self.config.video_token_id) | (input_ids == self.config.image_token_id)
            labels = labels.masked_fill(visual, IGNORE_INDEX)
        logits = loss = None
        if labels is not None and not full_logits:
            target = labels[:, 1:]  # (B, S-1): position t predicts token t+1
            keep = target != IGNORE_INDEX  # (B, S-1)
            picked = self.lm_head(hidden[:, :-1][keep]).float()  # (N, V), N supervised positions
            loss = nn.functional.cross_entropy(picked, target[keep], reduction="sum") / keep.sum().clamp(min=1)
        else:
            logits = self.lm_head(hidden[:, -logits_to_keep:] if logits_to_keep else hidden)  # (B, S', V)
            if labels is not None:
                loss = self.loss_function(logits=logits, labels=labels, vocab_size=self.config.text_config.vocab_size)
        return VideoPandaCausalLMOutput(
            loss=loss,
            logits=logits,
            cache=outputs.cache,
            hidden_states=outputs.hidden_states,
            attentions=outputs.attentions,
            last_hidden_state=hidden,
            video_tokens=outputs.video_tokens,
            image_tokens=outputs.image_tokens,
        )


def _as_images(pixel_values_images: torch.Tensor) -> torch.Tensor:
    """(B, 4, H, W) or (B, 1, 4, H, W) images -> (B, 1, 4, H, W)."""
    if pixel_values_images.dim() == 4:
        return pixel_values_images[:, None]
    if pixel_values_images.dim() == 5 and pixel_values_images.shape[1] == 1:
        return pixel_values_images
    raise ValueError(f"expected images of shape (B, 4, H, W), got {tuple(pixel_values_images.shape)}")


__all__ = ["VideoPandaForConditionalGeneration", "VideoPandaModel", "VideoPandaPreTrainedModel"]
