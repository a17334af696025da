"""Templates, placeholder expansion and label masking, token by token, with a BPE and a real LLaMA tokenizer."""

from __future__ import annotations

import pytest

from videopanda.data.conversation import (
    IGNORE_INDEX,
    IMAGE_TOKEN_ID,
    SYSTEM_V1,
    VIDEO_TOKEN_ID,
    build_inference_prompt,
    tokenize_conversation,
)
from videopanda.data.errors import DataError

TWO_TURNS = [
    {"from": "human", "value": "<video>\nWhat color is the circle?"},
    {"from": "gpt", "value": "Red"},
    {"from": "human", "value": "And the square?"},
    {"from": "gpt", "value": "Blue"},
]
COUNTS = [3, 3, 2]  # tokens of three frames


def _encode(tok, text):
    return tok(text, add_special_tokens=False)["input_ids"]


def _expected_labels(tok, ids):
    """Independent label rule: after the ':' of 'ASSISTANT:', everything up to and including the eos is trained."""
    labels, training = [], False
    pieces = [tok.convert_ids_to_tokens(i) if i >= 0 else None for i in ids]
    for k, (i, piece) in enumerate(zip(ids, pieces, strict=True)):
        labels.append(i if training else IGNORE_INDEX)
        if training and i == tok.eos_token_id:
            training = False
        elif piece == ":" and k > 0 and pieces[k - 1].endswith(("ANT", "ASSISTANT")):
            training = True
    return labels


@pytest.mark.parametrize("system_prompt", [True, False])
@pytest.mark.parametrize("which", ["llama_tokenizer", "bpe_tokenizer"])
def test_two_turn_conversation_token_by_token(request, which, system_prompt):
    tok = request.getfixturevalue(which)
    ids, labels = tokenize_conversation(tok, TWO_TURNS, "v1", COUNTS, "video", system_prompt)
    head = [tok.bos_token_id, *_encode(tok, (SYSTEM_V1 + " " if system_prompt else "") + "USER: ")]
    tail = _encode(tok, "\nWhat color is the circle? ASSISTANT: Red</s>USER: And the square? ASSISTANT: Blue</s>")
    assert ids == head + [VIDEO_TOKEN_ID] * sum(COUNTS) + tail
    assert labels == _expected_labels(tok, ids)
    trained = [i for i, label in zip(ids, labels, strict=True) if label != IGNORE_INDEX]
    assert tok.decode(trained) == " Red</s> Blue</s>" or tok.decode(trained) == "Red</s> Blue</s>"
    assert trained.count(tok.eos_token_id) == 2


@pytest.mark.parametrize("system_prompt", [True, False])
@pytest.mark.parametrize("which", ["llama_tokenizer", "bpe_tokenizer"])
def test_inference_prompt_is_the_training_prompt_up_to_the_answer(request, which, system_prompt):
    tok = request.getfixturevalue(which)
    ids, labels = tokenize_conversation(tok, TWO_TURNS[:2], "v1", COUNTS, "video", system_prompt)
    first_answer = next(k for k, label in enumerate(labels) if label != IGNORE_INDEX)
    prompt = build_inference_prompt(
        tok, "What color is the circle?", "v1", COUNTS, "video", system_prompt=system_prompt
    )
    assert prompt == ids[:first_answer]
    assert ("A chat between" in tok.decode([i for i in prompt if i >= 0])) == system_prompt
    assert tok.decode([i for i in prompt if i >= 0], skip_special_tokens=True).endswith("ASSISTANT:")


def test_trailing_placeholder_moves_to_the_front_and_placeholder_text_never_reaches_the_tokenizer(bpe_tokenizer):
    seen = []

    class Spy:
        """Forwards to the real tokenizer and records every text it is asked to encode."""

        def __getattr__(self, name):
            return getattr(bpe_tokenizer, name)

        def __call__(self, text, **kwargs):
            seen.append(text)
            return bpe_tokenizer(text, **kwargs)

    front = tokenize_conversation(Spy(), TWO_TURNS, "v1", COUNTS, "video")
    back_turns = [dict(TWO_TURNS[0], value="What color is the circle?\n<video>"), *TWO_TURNS[1:]]
    back = tokenize_conversation(Spy(), back_turns, "v1", COUNTS, "video")
    assert front == back
    assert seen and not any("<video>" in text or "<image>" in text for text in seen)


def test_images_text_only_and_plain_template(bpe_tokenizer):
    tok = bpe_tokenizer
    turns = [{"from": "human", "value": "<image>\nWhat is shown?"}, {"from": "gpt", "value": "a square"}]
    ids, labels = tokenize_conversation(tok, turns, "v1", [5], "image")
    assert ids.count(IMAGE_TOKEN_ID) == 5 and VIDEO_TOKEN_ID not in ids
    text = [{"from": "human", "value": "Say hi."}, {"from": "gpt", "value": "hi"}]
    ids, labels = tokenize_conversation(tok, text, "v1", None, "text")
    assert all(i >= 0 for i in ids) and sum(label != IGNORE_INDEX for label in labels) >= 2
    # plain: BOS, the visual tokens (question text dropped), then the answer and "\n", both trained
    ids, labels = tokenize_conversation(tok, TWO_TURNS[:2], "plain", COUNTS, "video")
    answer = _encode(tok, "Red\n")
    assert ids == [tok.bos_token_id] + [VIDEO_TOKEN_ID] * 8 + answer
    assert labels == [IGNORE_INDEX] * 9 + answer
    prompt = build_inference_prompt(tok, "ignored question", "plain", COUNTS, "video")
    assert prompt == [tok.bos_token_id] + [VIDEO_TOKEN_ID] * 8


def test_leading_assistant_turn_is_dropped_as_in_the_reference(bpe_tokenizer):
    with_lead = [{"from": "gpt", "value": "hello"}, *TWO_TURNS]
    assert tokenize_conversation(bpe_tokenizer, with_lead, "v1", COUNTS) == tokenize_conversation(
        bpe_tokenizer, TWO_TURNS, "v1", COUNTS
    )


@pytest.mark.parametrize(
    ("turns", "modality", "message"),
    [
        ([{"from": "human", "value": "No video here"}, {"from": "gpt", "value": "x"}], "video", "no <video>"),
        ([{"from": "human", "value": "<video><video>"}, {"from": "gpt", "value": "x"}], "video", "exactly one"),
        ([{"from": "human", "value": "<image> hi"}, {"from": "gpt", "value": "x"}], "text", "has no media"),
        ([{"from": "human", "value": "<image> hi"}, {"from": "gpt", "value": "x"}], "video", "exactly one <video>"),
        ([{"from": "human", "value": "<video>"}, {"from": "gpt", "value": "<video>"}], "video", "assistant turn"),
        ([{"from": "human", "value": "<video>"}], "video", "has no answer"),
        ([{"from": "robot", "value": "<video>"}, {"from": "gpt", "value": "x"}], "video", "unknown role"),
        ([{"from": "human", "value": "<video>"}, {"from": "human", "value": "x"}], "video", "expected a assistant"),
    ],
)
def test_malformed_conversations_raise_clear_errors(bpe_tokenizer, turns, modality, message):
    with pytest.raises(DataError, match=message):
        tokenize_conversation(bpe_tokenizer, turns, "v1", COUNTS, modality)
