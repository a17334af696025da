"""The judge's chat client: the ``openai`` library's async client against any OpenAI-compatible endpoint.

Retries are ours, not the library's (it is built with ``max_retries=0``), so the backoff is configurable per
profile (tests use milliseconds), every wait goes through one injectable ``sleep``, and the number of attempts is
recorded with each judgment. The policy:

* retried: HTTP 429, 408, 409 and 5xx; timeouts and connection errors; a 200 whose body is not a chat completion;
* the wait before retry ``k`` (0-based) is ``min(backoff_max_s, backoff_base_s * 2**k)`` scaled by a random factor
  in [0.5, 1] (jitter, so clients that failed together do not retry together); a ``Retry-After`` (or
  ``retry-after-ms``) header replaces it with the server's delay plus up to 10 % jitter, never less;
* not retried: other 4xx (the request itself is wrong) -> :class:`JudgeRequestError` for that record;
  401, 403 and 404 (bad key, no access, unknown model) -> :class:`JudgeFatalError`, which stops the run, since
  every other request would fail the same way.

The API key is given to the client and nowhere else: it is never logged, never put in an error message and never
written to a file.
"""

from __future__ import annotations

import asyncio
import email.utils
import logging
import math
import random
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Protocol
from urllib.parse import urlsplit, urlunsplit

from .profiles import JudgeProfile

logger = logging.getLogger(__name__)

RETRY_AFTER_LIMIT_S = 600.0  # a server asking for a longer pause fails the record instead of stalling the run


class JudgeRequestError(RuntimeError):
    """One judge request failed for good (retries exhausted, or a non-retryable error). The run goes on."""

    def __init__(self, message: str, attempts: int) -> None:
        super().__init__(message)
        self.attempts = attempts


class JudgeFatalError(RuntimeError):
    """A failure every request would share (authentication, permission, unknown model): the run stops."""


@dataclass(frozen=True)
class ChatResult:
    """One successful chat completion.

    Attributes:
        content: the assistant message text (None when the server sent none).
        response_model: the ``model`` the server says answered (a snapshot may differ from the requested name).
        system_fingerprint: the backend fingerprint, when the server sends one.
        prompt_tokens, completion_tokens: usage of this call (0 when the server reports none).
        attempts: calls made, including the successful one.
        latency_s: seconds from the first attempt to the reply, waits included.
    """

    content: str | None
    response_model: str | None
    system_fingerprint: str | None
    prompt_tokens: int
    completion_tokens: int
    attempts: int
    latency_s: float


class ChatClient(Protocol):
    """What the judge runner needs from a client (the tests and the benchmark use the OpenAI one)."""

    async def complete(self, messages: list[dict[str, str]]) -> ChatResult: ...

    async def close(self) -> None: ...


@dataclass(frozen=True)
class RetryPolicy:
    """Backoff settings (see the module docstring)."""

    max_retries: int = 8
    backoff_base_s: float = 1.0
    backoff_max_s: float = 60.0

    def delay(self, retry: int, retry_after: float | None, rng: random.Random) -> float:
        """Seconds to wait before retry number ``retry`` (0-based)."""
        if retry_after is not None:
            return retry_after * (1.0 + 0.1 * rng.random())
        return min(self.backoff_max_s, self.backoff_base_s * 2.0**retry) * (0.5 + 0.5 * rng.random())


def parse_retry_after(headers) -> float | None:
    """Seconds a response asks the client to wait: ``retry-after-ms``, ``retry-after`` (seconds or HTTP date)."""
    if headers is None:
        return None
    value = headers.get("retry-after-ms")
    if value is not None:
        try:
            return max(0.0, float(value) / 1000.0)
        except ValueError:
            pass
    value = headers.get("retry-after")
    if value is None:
        return None
    try:
        seconds = float(value)
    except ValueError:
        parsed = email.utils.parsedate_tz(value)
        if parsed is None:
            return None
        seconds = email.utils.mktime_tz(parsed) - time.time()
    return max(0.0, seconds) if math.isfinite(seconds) else None


def redact_url(url: str | None) -> str | None:
    """``url`` without user info or query string (they can carry credentials), for logs and result rows."""
    if not url:
        return url
    parts = urlsplit(url)
    host = parts.hostname or ""
    netloc = f"{host}:{parts.port}" if parts.port else host
    return urlunsplit((parts.scheme, netloc, parts.path, "", ""))


class OpenAIChatClient:
    """Chat completions through ``openai.AsyncOpenAI`` with the retry policy of the module docstring.

    Args:
        profile: model, temperature, max tokens, seed, timeout and retry settings.
        api_key: the key (from ``OPENAI_API_KEY``, read by the CLI); None sends a placeholder for keyless servers.
        base_url: endpoint override; default ``profile.base_url`` (None = OpenAI).
        sleep: awaitable sleep used between retries (tests record the delays).
        rng: source of the jitter.
    """

    def __init__(
        self,
        profile: JudgeProfile,
        api_key: str | None,
        base_url: str | None = None,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
        rng: random.Random | None = None,
    ) -> None:
        import openai  # imported here: only API judges need the package

        self._openai = openai
        self.profile = profile
        self.base_url = base_url or profile.base_url
        self.policy = RetryPolicy(profile.max_retries, profile.backoff_base_s, profile.backoff_max_s)
        self._sleep = sleep
        self._rng = rng or random.Random()
        self._client = openai.AsyncOpenAI(
            api_key=api_key or "no-key", base_url=self.base_url, timeout=profile.timeout_s, max_retries=0
        )

    async def close(self) -> None:
        await self._client.close()

    def _classify(self, err: Exception) -> tuple[bool, float | None, str]:
        """``(retryable, retry_after, description)`` of a failed call; raises :class:`JudgeFatalError`."""
        openai = self._openai
        if isinstance(err, openai.APIStatusError):
            status = err.status_code
            what = f"HTTP {status}"
            if status in (401, 403, 404):
                hint = {401: "check OPENAI_API_KEY", 403: "no access to this model", 404: "unknown model or URL"}
                raise JudgeFatalError(
                    f"judge endpoint {redact_url(self.base_url) or 'api.openai.com'} answered {what} for model "
                    f"{self.profile.model!r} ({hint[status]}); stopping"
                ) from None
            retryable = status in (408, 409, 429) or status >= 500
            return retryable, parse_retry_after(err.response.headers) if retryable else None, what
        if isinstance(err, openai.APITimeoutError):
            return True, None, f"timeout after {self.profile.timeout_s:g} s"
        if isinstance(err, openai.APIConnectionError):
            return True, None, "connection error"
        if isinstance(err, (ValueError, openai.APIResponseValidationError)):
            return True, None, f"malformed response ({type(err).__name__})"
        raise err

    async def complete(self, messages: list[dict[str, str]]) -> ChatResult:
        """One chat completion, retried per the policy.

        Raises:
            JudgeRequestError: retries exhausted or a non-retryable error.
            JudgeFatalError: authentication, permission or unknown model.
        """
        p = self.profile
        extra = {"seed": p.seed} if p.seed is not None else {}
        start = time.monotonic()
        for attempt in range(p.max_retries + 1):
            try:
                response = await self._client.chat.completions.create(
                    model=p.model, messages=messages, temperature=p.temperature, max_tokens=p.max_tokens, **extra
                )
                choices = getattr(response, "choices", None)
                message = getattr(choices[0], "message", None) if isinstance(choices, list) and choices else None
                if message is None:
                    raise ValueError("no choices[0].message in the response")
            except Exception as err:  # noqa: BLE001 (classified below; unknown errors are re-raised)
                retryable, retry_after, what = self._classify(err)
                if not retryable:
                    raise JudgeRequestError(f"judge request failed: {what} (not retried)", attempt + 1) from None
                if retry_after is not None and retry_after > RETRY_AFTER_LIMIT_S:
                    raise JudgeRequestError(
                        f"judge request failed: {what}, server asks to wait {retry_after:.0f} s", attempt + 1
                    ) from None
                if attempt == p.max_retries:
                    raise JudgeRequestError(
                        f"judge request failed after {attempt + 1} attempts; last: {what}", attempt + 1
                    ) from None
                delay = self.policy.delay(attempt, retry_after, self._rng)
                logger.debug("judge: %s; retry %d/%d in %.2f s", what, attempt + 1, p.max_retries, delay)
                await self._sleep(delay)
                continue
            usage = getattr(response, "usage", None)
            return ChatResult(
                content=message.content,
                response_model=getattr(response, "model", None),
                system_fingerprint=getattr(response, "system_fingerprint", None),
                prompt_tokens=int(getattr(usage, "prompt_tokens", 0) or 0),
                completion_tokens=int(getattr(usage, "completion_tokens", 0) or 0),
                attempts=attempt + 1,
                latency_s=time.monotonic() - start,
            )
        raise AssertionError("unreachable")
