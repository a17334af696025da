"""The offline ``exact`` judge: normalised exact match of prediction and answer (QA tasks only).

Normalisation (SQuAD-style): lower case, punctuation to spaces, the articles ``a``/``an``/``the`` dropped,
whitespace collapsed, and a trailing ``</s>`` removed. A match is scored ``yes`` / 5, anything else ``no`` / 0,
so its "accuracy" is exact-match accuracy and its mean score is 5x that. A correct paraphrase counts as wrong:
use it for the synthetic set (whose answers are short and fixed) and for runs without an API, not to compare with
GPT-judged numbers.
"""

from __future__ import annotations

import re
import unicodedata

from .parse import SCORE_MAX, ParsedReply

EXACT_VERSION = "exact_match@v1"
_ARTICLES = re.compile(r"\b(a|an|the)\b")
_PUNCT = re.compile(r"[^\w\s]")


def normalise(text: str) -> str:
    """The comparison form of an answer (see the module docstring)."""
    text = unicodedata.normalize("NFKC", text).strip()
    if text.endswith("</s>"):
        text = text[: -len("</s>")]
    text = _PUNCT.sub(" ", text.lower())
    text = _ARTICLES.sub(" ", text)
    return " ".join(text.split())


def exact_match(answer: str, pred: str) -> ParsedReply:
    """``yes``/5 when the normalised prediction equals the normalised answer, else ``no``/0."""
    same = normalise(answer) == normalise(pred)
    return ParsedReply(pred="yes" if same else "no", score=SCORE_MAX if same else 0.0)
