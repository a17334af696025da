"""Strict parsing of a judge's reply: one Python-dict or JSON object with ``pred`` and/or ``score``.

The reference ran ``ast.literal_eval`` on the reply, truncated the score with ``int()`` and read yes/no by
substring search ("not sure" counted as no), and a failed parse dropped the record from the accuracy but not from
the score's denominator (reference §7.4, §8.31-8.32). Here:

* the reply, after stripping whitespace and one optional Markdown code fence, must be exactly one object literal,
  read with :func:`json.loads` or else :func:`ast.literal_eval` (literals only; never ``eval``);
* ``pred`` must be ``yes`` or ``no`` (any case, surrounding spaces ignored);
* ``score`` must be a finite number (or a string holding only one); it is kept as a float and clamped to 0..5,
  and a clamped score is flagged;
* anything else raises :class:`ReplyParseError`, and the caller keeps the raw reply as an ``unparseable`` row.
"""

from __future__ import annotations

import ast
import json
import math
import re
from dataclasses import dataclass

SCORE_MIN, SCORE_MAX = 0.0, 5.0
_FENCE = re.compile(r"^```[A-Za-z]*\s*\n?(.*?)\n?\s*```$", re.DOTALL)
_NUMBER = re.compile(r"^[+-]?(\d+(\.\d*)?|\.\d+)$")


class ReplyParseError(ValueError):
    """The judge's reply is not a well-formed answer; the message says what is wrong."""


@dataclass(frozen=True)
class ParsedReply:
    """A judge reply that passed the parser.

    Attributes:
        pred: ``"yes"`` or ``"no"`` for QA correctness, None for score-only dimensions.
        score: the score in [0, 5].
        clamped: the reply's score was outside [0, 5] and was clamped.
    """

    pred: str | None
    score: float
    clamped: bool = False


def _as_object(text: str) -> dict:
    body = text.strip()
    fence = _FENCE.match(body)
    if fence:
        body = fence.group(1).strip()
    if not body:
        raise ReplyParseError("empty reply")
    if not (body.startswith("{") and body.endswith("}")):
        raise ReplyParseError("reply is not a single dict/object literal")
    try:
        value = json.loads(body)
    except ValueError:
        try:
            value = ast.literal_eval(body)
        except (ValueError, SyntaxError, MemoryError, RecursionError) as err:
            raise ReplyParseError(f"reply is neither JSON nor a Python literal ({type(err).__name__})") from None
    if not isinstance(value, dict):
        raise ReplyParseError(f"reply is a {type(value).__name__}, not a dict")
    return value


def _score(value) -> tuple[float, bool]:
    if isinstance(value, bool):
        raise ReplyParseError(f"score {value!r} is not a number")
    if isinstance(value, str):
        if not _NUMBER.match(value.strip()):
            raise ReplyParseError(f"score {value!r} is not a number")
        value = float(value)
    if not isinstance(value, (int, float)):
        raise ReplyParseError(f"score {value!r} is not a number")
    try:
        value = float(value)
    except OverflowError:  # an int too large for a float (a JSON integer of hundreds of digits)
        raise ReplyParseError("score is an integer too large to be a number of points") from None
    if not math.isfinite(value):
        raise ReplyParseError(f"score {value!r} is not finite")
    clamped = min(max(value, SCORE_MIN), SCORE_MAX)
    return clamped, clamped != value


def parse_reply(text: str | None, kind: str) -> ParsedReply:
    """Parse one reply.

    Args:
        text: the assistant message content (None counts as empty).
        kind: ``qa`` (needs ``pred`` and ``score``) or ``score`` (needs ``score``).

    Raises:
        ReplyParseError: the reply is empty, not one object literal, or lacks a valid ``pred``/``score``.
    """
    if kind not in ("qa", "score"):
        raise ValueError(f"kind must be 'qa' or 'score', got {kind!r}")
    obj = _as_object(text or "")
    if "score" not in obj:
        raise ReplyParseError(f"reply has no 'score' key (keys: {sorted(map(str, obj))})")
    score, clamped = _score(obj["score"])
    pred = None
    if kind == "qa":
        if "pred" not in obj:
            raise ReplyParseError(f"reply has no 'pred' key (keys: {sorted(map(str, obj))})")
        raw = obj["pred"]
        pred = raw.strip().lower() if isinstance(raw, str) else None
        if pred not in ("yes", "no"):
            raise ReplyParseError(f"pred {raw!r} is neither 'yes' nor 'no'")
    return ParsedReply(pred=pred, score=score, clamped=clamped)
