"""The strict reply parser and the exact-match judge."""

from __future__ import annotations

import pytest

from videopanda.eval.judge.exact import exact_match, normalise
from videopanda.eval.judge.parse import ReplyParseError, parse_reply


@pytest.mark.parametrize(
    ("reply", "pred", "score", "clamped"),
    [
        ("{'pred': 'yes', 'score': 4}", "yes", 4.0, False),
        ('{"pred": "no", "score": 0}', "no", 0.0, False),
        ("  {'pred': ' YES ', 'score': 4.8}\n", "yes", 4.8, False),  # not truncated to 4 as the reference did
        ("{'pred': 'no', 'score': '3'}", "no", 3.0, False),
        ("{'pred': 'yes', 'score': 7}", "yes", 5.0, True),
        ("{'pred': 'no', 'score': -1}", "no", 0.0, True),
        ('```json\n{"pred": "yes", "score": 5}\n```', "yes", 5.0, False),
        ("```\n{'pred': 'no', 'score': 1, 'reason': 'x'}\n```", "no", 1.0, False),
    ],
)
def test_valid_qa_replies(reply, pred, score, clamped):
    parsed = parse_reply(reply, "qa")
    assert (parsed.pred, parsed.score, parsed.clamped) == (pred, score, clamped)


@pytest.mark.parametrize(
    ("reply", "message"),
    [
        ("", "empty reply"),
        (None, "empty reply"),
        ("The answer is yes, score 4.", "not a single dict"),
        ("Sure! {'pred': 'yes', 'score': 4}", "not a single dict"),
        ("{'pred': 'yes', 'score': 4} {'pred': 'no', 'score': 0}", "neither JSON nor a Python literal"),
        ("{'pred': 'not sure', 'score': 2}", "neither 'yes' nor 'no'"),  # the reference's substring test said "no"
        ("{'pred': 'yes'}", "no 'score'"),
        ("{'score': 4}", "no 'pred'"),
        ("{'pred': 'yes', 'score': 'high'}", "not a number"),
        ("{'pred': 'yes', 'score': True}", "not a number"),
        ("{'pred': 'yes', 'score': float('nan')}", "neither JSON nor a Python literal"),  # no calls, ever
        ('{"pred": "yes", "score": NaN}', "not finite"),
        ("{'pred': __import__('os').getcwd(), 'score': 1}", "neither JSON nor a Python literal"),
        ("{1, 2}", "not a dict"),
        ('{"pred": "yes", "score": 1' + "0" * 400 + "}", "integer too large"),  # float() overflows on it
    ],
)
def test_invalid_replies_raise_with_the_reason(reply, message):
    with pytest.raises(ReplyParseError, match=message.replace("(", "\\(").replace(")", "\\)")):
        parse_reply(reply, "qa")


def test_score_replies_need_only_a_score():
    assert parse_reply("{'score': 3}", "score").score == 3.0
    assert parse_reply("{'score': 3}", "score").pred is None
    with pytest.raises(ReplyParseError, match="neither JSON nor a Python literal"):
        parse_reply("{''score': 4.8}", "score")  # the typo of the reference's example prompt does not parse


def test_exact_match_normalises_case_punctuation_and_articles():
    assert normalise("  The Red  Ball!</s>") == "red ball"
    assert exact_match("red ball", "A red ball.").pred == "yes"
    assert exact_match("red ball", "A red ball.").score == 5.0
    assert exact_match("red", "red ball").pred == "no"
    assert exact_match("red", "red ball").score == 0.0
    assert exact_match("two", "2").pred == "no"  # no number words: a real normalised match, nothing smarter
