"""The loopback judge server for the tests, with scripted behaviours per judge prompt.

The server itself is :class:`videopanda.eval.fake_server.FakeJudgeServer` (the benchmark and users' dry runs use it
too); this module adds the scripts the tests need: each distinct prompt (one record and dimension) first gets a
fixed sequence of replies (429, 500, slow, malformed, ...) and then the protocol answer.
"""

from __future__ import annotations

import threading
from collections import Counter
from collections.abc import Callable

from videopanda.eval.fake_server import FakeJudgeServer, FakeReply, FakeRequest, protocol_reply

__all__ = ["FakeJudgeServer", "FakeReply", "FakeRequest", "per_prompt", "protocol_reply", "qa_reply"]


def per_prompt(
    first: list[FakeReply], then: Callable[[FakeRequest], FakeReply] = protocol_reply
) -> Callable[[FakeRequest], FakeReply]:
    """A responder that answers the n-th request for each distinct prompt with ``first[n]``, then with ``then``."""
    seen: Counter[str] = Counter()
    lock = threading.Lock()

    def responder(request: FakeRequest) -> FakeReply:
        with lock:
            n = seen[request.user_text]
            seen[request.user_text] += 1
        return first[n] if n < len(first) else then(request)

    return responder


def qa_reply(content: str) -> Callable[[FakeRequest], FakeReply]:
    """A responder that always answers with ``content``."""
    return lambda request: FakeReply(content=content)
