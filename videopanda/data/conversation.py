"""Conversation templates, visual placeholders and label masking (reference §6.2-6.3).

Templates:

* ``v1`` (Vicuna v1.1, the reference's training template, also used for inference here; DECISIONS.md)::

      {system} USER: {q1} ASSISTANT: {a1}</s>USER: {q2} ASSISTANT: {a2}</s>

  ``system_prompt=False`` leaves out ``{system} `` (Vicuna's 29-token system prompt; DataConfig.system_prompt).

* ``plain`` (LLaVA's pre-alignment format): a human turn with media contributes only its visual tokens (its text
  is dropped); each answer follows directly and ends with ``\\n``.

Visual placeholders: a turn that *ends* with ``<video>`` / ``<image>`` has it moved to the front
(``"<video>\\n" + rest``, reference §6.2). ``<video>`` then becomes one placeholder id per visual token of every
frame (``sum(visual_token_counts)`` times ``VIDEO_TOKEN_ID``) and ``<image>`` one per token of the image
(``IMAGE_TOKEN_ID``). The placeholder text never reaches the tokenizer: the prompt is cut at the placeholders and
each text piece is tokenised on its own, as the reference's ``tokenizer_image_token`` does.

Labels: everything is ``IGNORE_INDEX`` except the assistant answers (with the space that separates them from
``ASSISTANT:``) and their end-of-turn token (``</s>`` for ``v1``, ``\\n`` for ``plain``). Each text piece is
tokenised in one call with character offsets, and a token is supervised when it overlaps an answer's characters,
so the result is exactly the tokenisation of the whole prompt (what the model sees at inference) for any fast HF
tokenizer, SentencePiece LLaMA or byte-level BPE; the inference prompt is the training prompt up to the first
supervised token.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

import numpy as np

from .errors import DataError

IGNORE_INDEX = -100
VIDEO_TOKEN_ID = -200  # one per visual token of a video frame (ModelConfig.video_token_id)
IMAGE_TOKEN_ID = -201  # one per visual token of an image (ModelConfig.image_token_id)
VIDEO_PLACEHOLDER = "<video>"
IMAGE_PLACEHOLDER = "<image>"
PLACEHOLDERS = {VIDEO_PLACEHOLDER: "video", IMAGE_PLACEHOLDER: "image"}
SYSTEM_V1 = (
    "A chat between a curious user and an artificial intelligence assistant. "
    "The assistant gives helpful, detailed, and polite answers to the user's questions."
)
TEMPLATES = ("v1", "plain")
Modality = Literal["video", "image", "text"]
Template = Literal["v1", "plain"]

_USER_ROLES = {"human", "user"}
_ASSISTANT_ROLES = {"gpt", "assistant", "model", "bot"}
_SPLIT = re.compile(r"(<video>|<image>)")


@dataclass
class _Text:
    text: str
    supervised: bool = False


@dataclass
class _Visual:
    kind: str  # "video" | "image"


def count_placeholders(text: str) -> dict[str, int]:
    """Number of ``<video>`` and ``<image>`` placeholders in ``text``: ``{"video": n, "image": m}``."""
    return {kind: text.count(tag) for tag, kind in PLACEHOLDERS.items()}


def move_trailing_placeholder(text: str) -> str:
    """Reference §6.2: a turn that ends with a placeholder gets it at the front, ``"<video>\\n" + rest``."""
    stripped = text.strip()
    for tag in PLACEHOLDERS:
        if stripped.endswith(tag) and stripped != tag:
            return tag + "\n" + stripped[: -len(tag)].strip()
    return text


def normalise_turns(turns: Sequence[dict]) -> list[tuple[str, str]]:
    """``[{"from": "human"|"gpt", "value": str}, ...]`` -> ``[(question, answer), ...]`` rounds.

    A leading assistant turn is dropped, as the reference does. Raises :class:`DataError` for unknown roles,
    turns that do not alternate, a conversation that ends on a question, or non-string values.
    """
    roles = []
    for i, turn in enumerate(turns):
        if not isinstance(turn, dict) or "from" not in turn or "value" not in turn:
            raise DataError(f"turn {i}: expected {{'from': ..., 'value': ...}}, got {_clip(turn)}")
        role = str(turn["from"]).lower()
        if role in _USER_ROLES:
            roles.append("user")
        elif role in _ASSISTANT_ROLES:
            roles.append("assistant")
        else:
            raise DataError(f"turn {i}: unknown role {turn['from']!r} (expected human/user or gpt/assistant)")
        if not isinstance(turn["value"], str):
            raise DataError(f"turn {i}: value must be a string, got {type(turn['value']).__name__}")
    start = 1 if roles and roles[0] == "assistant" else 0  # reference: a first turn not from the human is dropped
    body = roles[start:]
    if not body:
        raise DataError("conversation has no user turn")
    for j, role in enumerate(body):
        if role != ("user" if j % 2 == 0 else "assistant"):
            raise DataError(f"turn {start + j}: expected a {'user' if j % 2 == 0 else 'assistant'} turn, got {role}")
    if len(body) % 2:
        raise DataError(f"conversation ends with a user turn (turn {len(turns) - 1}) that has no answer")
    values = [turns[start + j]["value"] for j in range(len(body))]
    return list(zip(values[0::2], values[1::2], strict=True))


def _question_segments(text: str) -> list[_Text | _Visual]:
    """Split a question at its placeholders into text and visual segments."""
    out: list[_Text | _Visual] = []
    for part in _SPLIT.split(move_trailing_placeholder(text)):
        if part in PLACEHOLDERS:
            out.append(_Visual(PLACEHOLDERS[part]))
        elif part:
            out.append(_Text(part))
    return out


def _conversation_segments(
    rounds: list[tuple[str, str]], template: Template, eos: str, system_prompt: bool = True
) -> list[_Text | _Visual]:
    segs: list[_Text | _Visual] = []
    if template == "v1":
        if system_prompt:
            segs.append(_Text(SYSTEM_V1 + " "))
        for question, answer in rounds:
            segs.append(_Text("USER: "))
            segs += _question_segments(question)
            # The space before the answer is supervised with it: a tokenizer that does not merge it into the
            # answer's first token (byte-level BPE on an unseen word) must still learn to emit it after "ASSISTANT:",
            # where the inference prompt ends.
            segs.append(_Text(" ASSISTANT:"))
            segs += [_Text(" " + answer, True), _Text(eos, True)]
        return segs
    if template == "plain":
        for question, answer in rounds:
            q = _question_segments(question)
            visual = [s for s in q if isinstance(s, _Visual)]
            segs += visual if visual else [_Text(question + "\n")]
            segs += [_Text(answer, True), _Text("\n", True)]
        return segs
    raise DataError(f"unknown template {template!r} (known: {', '.join(TEMPLATES)})")


def _prompt_segments(
    question: str,
    template: Template,
    modality: Modality,
    history: Sequence[tuple[str, str]],
    eos: str,
    system_prompt: bool = True,
) -> list[_Text | _Visual]:
    """Segments of an inference prompt ending where the assistant's answer starts."""
    counts = count_placeholders(question) if not history else count_placeholders(history[0][0])
    needs = {"video": VIDEO_PLACEHOLDER, "image": IMAGE_PLACEHOLDER}.get(modality)
    if needs is not None and sum(counts.values()) == 0:
        if history:
            history = [(needs + "\n" + history[0][0], history[0][1]), *history[1:]]
        else:
            question = needs + "\n" + question  # the reference's "<image>x8\n{question}"
    segs = _conversation_segments(list(history), template, eos, system_prompt)  # v1: the system prompt first
    if template == "v1":
        segs.append(_Text("USER: "))
        segs += _question_segments(question)
        segs.append(_Text(" ASSISTANT:"))
    else:
        q = _question_segments(question)
        visual = [s for s in q if isinstance(s, _Visual)]
        segs += visual if visual else [_Text(question + "\n")]
    return segs


def _tokenize_segments(
    tokenizer, segments: list[_Text | _Visual], visual_token_counts: Sequence[int] | None, modality: Modality
) -> tuple[list[int], list[int]]:
    """Token ids and labels of a segment list (BOS first, when the tokenizer has one)."""
    if not getattr(tokenizer, "is_fast", False):
        raise DataError(
            f"{type(tokenizer).__name__} is a slow tokenizer; label masking needs character offsets. Load a fast "
            "tokenizer (AutoTokenizer.from_pretrained(folder) or videopanda.data.tokenizer.load_tokenizer)"
        )
    n_visual = sum(isinstance(s, _Visual) for s in segments)
    kinds = {s.kind for s in segments if isinstance(s, _Visual)}
    if n_visual:
        if modality == "text":
            raise DataError(f"the text has {n_visual} visual placeholder(s) but the sample has no media")
        if kinds != {modality} or n_visual > 1:
            found = ", ".join(f"{sum(isinstance(s, _Visual) and s.kind == k for s in segments)} <{k}>" for k in kinds)
            raise DataError(f"a {modality} sample needs exactly one <{modality}> placeholder, found {found}")
        if not visual_token_counts:
            raise DataError(f"a {modality} sample needs visual_token_counts")
    elif modality != "text":
        raise DataError(f"a {modality} sample has no <{modality}> placeholder in its text")

    ids: list[int] = []
    labels: list[int] = []
    if tokenizer.bos_token_id is not None:
        ids.append(tokenizer.bos_token_id)
        labels.append(IGNORE_INDEX)
    pending: list[_Text] = []

    def flush() -> None:
        if not pending:
            return
        text, ranges, pos = "", [], 0
        for seg in pending:
            if seg.supervised and seg.text:
                ranges.append((pos, pos + len(seg.text)))
            text += seg.text
            pos += len(seg.text)
        pending.clear()
        if not text:
            return
        enc = tokenizer(text, add_special_tokens=False, return_offsets_mapping=True)
        piece = list(enc["input_ids"])
        ids.extend(piece)
        if not ranges:
            labels.extend([IGNORE_INDEX] * len(piece))
            return
        offsets = np.asarray(enc["offset_mapping"], dtype=np.int64).reshape(-1, 2)  # (T, 2) character spans
        spans = np.asarray(ranges, dtype=np.int64)  # (R, 2) supervised character spans
        overlap = (offsets[:, None, 0] < spans[None, :, 1]) & (offsets[:, None, 1] > spans[None, :, 0])  # (T, R)
        keep = overlap.any(axis=1)
        labels.extend(t if k else IGNORE_INDEX for t, k in zip(piece, keep.tolist(), strict=True))

    for seg in segments:
        if isinstance(seg, _Text):
            pending.append(seg)
            continue
        flush()
        token_id = VIDEO_TOKEN_ID if seg.kind == "video" else IMAGE_TOKEN_ID
        n = int(sum(visual_token_counts)) if seg.kind == "video" else int(visual_token_counts[0])
        ids.extend([token_id] * n)
        labels.extend([IGNORE_INDEX] * n)
    flush()
    return ids, labels


def _eos(tokenizer) -> str:
    if tokenizer.eos_token is None:
        raise DataError(f"{type(tokenizer).__name__} has no eos_token; the v1 template ends every answer with it")
    return tokenizer.eos_token


def tokenize_conversation(
    tokenizer,
    turns: Sequence[dict],
    template: Template = "v1",
    visual_token_counts: Sequence[int] | None = None,
    modality: Modality = "video",
    system_prompt: bool = True,
) -> tuple[list[int], list[int]]:
    """Token ids and labels of a training conversation.

    Args:
        tokenizer: a fast HF tokenizer with an eos token.
        turns: LLaVA-format turns ``[{"from": "human", "value": "<video>\\n..."}, {"from": "gpt", ...}, ...]``.
        template: ``v1`` or ``plain``.
        visual_token_counts: LLM tokens of each frame (video) or of the image (one entry); from
            :func:`videopanda.model.geometry.frame_token_counts`.
        modality: ``video`` | ``image`` | ``text``; the text must hold exactly one matching placeholder
            (none for text).
        system_prompt: ``v1`` only: start with Vicuna's system prompt (the reference), or not.

    Returns:
        ``(input_ids, labels)``, equal length; placeholders ``VIDEO_TOKEN_ID`` / ``IMAGE_TOKEN_ID`` and every
        non-answer token carry the label ``IGNORE_INDEX``.

    Raises:
        DataError: malformed turns, placeholders that do not match the modality, or an unusable tokenizer.
    """
    rounds = normalise_turns(turns)
    for _, answer in rounds:
        if sum(count_placeholders(answer).values()):
            raise DataError("an assistant turn holds a visual placeholder")
    segments = _conversation_segments(rounds, template, _eos(tokenizer) if template == "v1" else "", system_prompt)
    return _tokenize_segments(tokenizer, segments, visual_token_counts, modality)


def build_inference_prompt(
    tokenizer,
    question: str,
    template: Template = "v1",
    visual_token_counts: Sequence[int] | None = None,
    modality: Modality = "video",
    history: Sequence[tuple[str, str]] = (),
    system_prompt: bool = True,
) -> list[int]:
    """Input ids of a generation prompt, ending with ``ASSISTANT:`` (``v1``) for the model to continue.

    A question without a placeholder gets ``<video>\\n`` (or ``<image>\\n``) in front when the sample has media.

    Args:
        question: the user's question.
        history: earlier ``(question, answer)`` rounds of a chat; the placeholder goes in the first one.
        Others: as :func:`tokenize_conversation`.
    """
    eos = _eos(tokenizer) if template == "v1" else ""
    segments = _prompt_segments(question, template, modality, history, eos, system_prompt)
    ids, _ = _tokenize_segments(tokenizer, segments, visual_token_counts, modality)
    return ids


def _clip(value, n: int = 80) -> str:
    text = repr(value)
    return text if len(text) <= n else text[: n - 3] + "..."
