"""The LLM judge: pinned profiles, versioned prompts, an async OpenAI-compatible client, a strict reply parser.

Importing this package does not import ``openai``; :class:`~videopanda.eval.judge.client.OpenAIChatClient` does.
"""

from .client import ChatResult, JudgeFatalError, JudgeRequestError, OpenAIChatClient, RetryPolicy
from .exact import exact_match, normalise
from .parse import ParsedReply, ReplyParseError, parse_reply
from .profiles import JudgeProfile, available_profiles, load_profile
from .prompts import PromptTemplate, builtin_template, load_template, templates_for
from .runner import Judge, JudgeItem, JudgeSummary, build_items, run_judge

__all__ = [
    "ChatResult",
    "Judge",
    "JudgeFatalError",
    "JudgeItem",
    "JudgeProfile",
    "JudgeRequestError",
    "JudgeSummary",
    "OpenAIChatClient",
    "ParsedReply",
    "PromptTemplate",
    "ReplyParseError",
    "RetryPolicy",
    "available_profiles",
    "build_items",
    "builtin_template",
    "exact_match",
    "load_profile",
    "load_template",
    "normalise",
    "parse_reply",
    "run_judge",
    "templates_for",
]
