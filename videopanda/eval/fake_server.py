"""A loopback OpenAI-compatible judge: ``POST /v1/chat/completions`` on 127.0.0.1, scriptable per request.

It exists for three users: the tests (429 with ``Retry-After``, 500s, slow and malformed replies), the judge
throughput benchmark (simulated latency), and people who want a dry run of ``videopanda eval judge`` before paying
for a real one (``videopanda eval fake-judge``). It speaks just enough of the chat-completions API for the
``openai`` client: the response has ``id``, ``object``, ``created``, ``model``, ``choices`` and ``usage``.

The default reply follows the judge prompts of :mod:`videopanda.eval.judge.prompts`: for a QA-correctness prompt
it compares the ``Correct Answer:`` and ``Predicted Answer:`` lines (normalised) and answers
``{'pred': 'yes', 'score': 5}`` or ``{'pred': 'no', 'score': 0}``; for a score-only prompt it answers
``{'score': 3}``. Tests replace it with their own ``responder``.
"""

from __future__ import annotations

import json
import logging
import re
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

logger = logging.getLogger(__name__)


@dataclass
class FakeRequest:
    """One request the server received.

    Attributes:
        index: 0-based arrival order over the server's lifetime.
        body: the parsed JSON body (``None`` when it was not JSON).
        authorization: the ``Authorization`` header as sent (tests check the key travels only here).
    """

    index: int
    body: dict | None
    authorization: str | None

    @property
    def user_text(self) -> str:
        """The last user message (the judge prompt's user turn), or ``""``."""
        for message in reversed((self.body or {}).get("messages", [])):
            if message.get("role") == "user":
                return str(message.get("content", ""))
        return ""


@dataclass
class FakeReply:
    """What the server sends back for one request.

    Attributes:
        status: HTTP status code.
        content: the assistant message text of a 200 reply (``None`` sends ``"content": null``).
        raw_body: bytes sent verbatim instead of a chat completion (for malformed replies).
        headers: extra response headers (e.g. ``{"Retry-After": "1"}``).
        delay_s: seconds to wait before answering (a slow server, or simulated latency).
        model: the ``model`` field of the reply; default: the requested model.
    """

    status: int = 200
    content: str | None = "{'pred': 'yes', 'score': 5}"
    raw_body: bytes | None = None
    headers: dict[str, str] = field(default_factory=dict)
    delay_s: float = 0.0
    model: str | None = None


Responder = Callable[[FakeRequest], FakeReply]

# [ \t]*, not \s*: an empty field must not run on into the next line
_LINE = {key: re.compile(rf"^{key}:[ \t]*(.*)$", re.MULTILINE) for key in ("Correct Answer", "Predicted Answer")}


def _norm(text: str) -> str:
    return " ".join(re.sub(r"[^\w\s]", " ", text.lower()).split())


def protocol_reply(request: FakeRequest) -> FakeReply:
    """The default responder: a plausible judge that needs no model (see the module docstring)."""
    text = request.user_text
    if "'pred'" in text or '"pred"' in text:
        found = {key: pattern.search(text) for key, pattern in _LINE.items()}
        if all(found.values()):
            same = _norm(found["Correct Answer"].group(1)) == _norm(found["Predicted Answer"].group(1))
            return FakeReply(content="{'pred': 'yes', 'score': 5}" if same else "{'pred': 'no', 'score': 0}")
        return FakeReply(content="{'pred': 'no', 'score': 0}")
    return FakeReply(content="{'score': 3}")


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive, so concurrency is not limited by connection set-up
    disable_nagle_algorithm = True  # headers and body go out as two writes: without this, +40 ms per reply
    server: _Server

    def log_message(self, format: str, *args) -> None:  # noqa: A002 (the stdlib's signature)
        logger.debug("fake judge: " + format, *args)

    def _send(self, status: int, body: bytes, headers: dict[str, str]) -> None:
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        for key, value in headers.items():
            self.send_header(key, value)
        self.end_headers()
        try:
            self.wfile.write(body)
        except (BrokenPipeError, ConnectionResetError):  # the client gave up (timeout test)
            pass

    def do_POST(self) -> None:  # noqa: N802 (the stdlib's name)
        length = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(length) if length else b""
        if self.path.rstrip("/") != "/v1/chat/completions":
            self._send(404, json.dumps({"error": {"message": f"no route {self.path}"}}).encode(), {})
            return
        try:
            body = json.loads(raw)
        except ValueError:
            body = None
        request = self.server.record(body, self.headers.get("Authorization"))
        try:
            reply = self.server.responder(request)
            delay = reply.delay_s + self.server.latency_s
            if delay > 0:
                time.sleep(delay)
        finally:
            self.server.finish()
        if reply.raw_body is not None:
            self._send(reply.status, reply.raw_body, reply.headers)
            return
        if reply.status != 200:
            error = {"error": {"message": f"fake judge: HTTP {reply.status}", "type": "server_error", "code": None}}
            self._send(reply.status, json.dumps(error).encode(), reply.headers)
            return
        prompt_chars = sum(len(str(m.get("content", ""))) for m in (body or {}).get("messages", []))
        completion = {
            "id": f"chatcmpl-fake-{request.index}",
            "object": "chat.completion",
            "created": int(time.time()),
            "model": reply.model or (body or {}).get("model", "fake"),
            "system_fingerprint": "fp_fake",
            "choices": [
                {
                    "index": 0,
                    "message": {"role": "assistant", "content": reply.content},
                    "finish_reason": "stop",
                }
            ],
            # Roughly 4 characters a token: enough for the usage sums to be checked.
            "usage": {
                "prompt_tokens": prompt_chars // 4,
                "completion_tokens": len(reply.content or "") // 4,
                "total_tokens": prompt_chars // 4 + len(reply.content or "") // 4,
            },
        }
        self._send(200, json.dumps(completion).encode(), reply.headers)


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True
    request_queue_size = 128  # the benchmark opens 32+ connections at once

    def __init__(self, address, responder: Responder, latency_s: float) -> None:
        super().__init__(address, _Handler)
        self.responder = responder
        self.latency_s = latency_s
        self.requests: list[FakeRequest] = []
        self.in_flight = 0
        self.max_in_flight = 0
        self._lock = threading.Lock()

    def record(self, body: dict | None, authorization: str | None) -> FakeRequest:
        with self._lock:
            request = FakeRequest(index=len(self.requests), body=body, authorization=authorization)
            self.requests.append(request)
            self.in_flight += 1
            self.max_in_flight = max(self.max_in_flight, self.in_flight)
        return request

    def finish(self) -> None:
        with self._lock:
            self.in_flight -= 1


class FakeJudgeServer:
    """A threaded chat-completions server on 127.0.0.1 with an ephemeral port; a context manager.

    Args:
        responder: maps each request to a :class:`FakeReply`; default :func:`protocol_reply`.
        latency_s: extra delay added to every reply (simulated network + model latency).
        host: interface to bind (loopback by default; the server has no authentication).
        port: 0 picks a free port.

    Example:
        >>> with FakeJudgeServer(latency_s=0.2) as server:  # doctest: +SKIP
        ...     client = openai.OpenAI(base_url=server.base_url, api_key="unused")
    """

    def __init__(
        self, responder: Responder | None = None, latency_s: float = 0.0, host: str = "127.0.0.1", port: int = 0
    ) -> None:
        self._server = _Server((host, port), responder or protocol_reply, latency_s)
        self._thread: threading.Thread | None = None

    @property
    def base_url(self) -> str:
        """The ``--base-url`` for the judge: ``http://127.0.0.1:PORT/v1``."""
        host, port = self._server.server_address[:2]
        return f"http://{host}:{port}/v1"

    @property
    def requests(self) -> list[FakeRequest]:
        """A snapshot of every request received so far, in arrival order."""
        with self._server._lock:
            return list(self._server.requests)

    @property
    def max_in_flight(self) -> int:
        """The most requests the server was working on at once (sleeping included)."""
        return self._server.max_in_flight

    def set_responder(self, responder: Responder) -> None:
        """Change the behaviour for the requests that arrive from now on."""
        self._server.responder = responder

    def start(self) -> FakeJudgeServer:
        self._thread = threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.05}, name="fake-judge", daemon=True
        )
        self._thread.start()
        logger.info("fake judge listening on %s", self.base_url)
        return self

    def serve_forever(self) -> None:
        """Serve in the calling thread until interrupted (the ``fake-judge`` CLI)."""
        self._server.serve_forever()

    def close(self) -> None:
        """Release the socket (after :meth:`serve_forever` returned)."""
        self._server.server_close()

    def stop(self) -> None:
        """Stop the thread started by :meth:`start` and release the socket."""
        self._server.shutdown()
        self._server.server_close()
        if self._thread is not None:
            self._thread.join(timeout=5)

    def __enter__(self) -> FakeJudgeServer:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()
