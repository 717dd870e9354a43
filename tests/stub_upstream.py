"""The stub upstream: one OpenAI-compatible server for the tests and the benchmarks.

It answers every completion with the same short text, fast, so that a benchmark measures the
cost of whatever sits in front of it and not the cost of a model; and it fails on request, so
that one server serves every resilience scenario: the fault is chosen per request by the
requested ``model`` (table below).

Run it as a script::

    python tests/stub_upstream.py --port 0 [--host 127.0.0.1] [--model stub]
                                  [--delay-ms 50] [--chunk-delay-ms 10]

``--port 0`` binds a free port; the real one is printed once the socket listens, as
``stub upstream listening on http://HOST:PORT`` (flushed), so a test can start it as a
subprocess and read the first line of its stdout.

Endpoints:

* ``GET /health`` (and ``/v1/health``) -> ``{"status": "ok"}``
* ``GET /v1/models`` -> the one configured model (``--model``)
* ``POST /v1/chat/completions`` and ``POST /v1/completions``, with ``stream: false`` (one JSON
  body) or ``stream: true`` (server-sent events, one chunk per word, an optional usage chunk
  when ``stream_options.include_usage`` is set, then ``data: [DONE]``).
* ``GET /stats`` -> ``{"requests": {model: n}, "disconnects": {model: n}, "total": n}``:
  completion requests received per model name (tag included), and how many of them the client
  abandoned while the server was waiting (a hung, stalled or slow answer the gateway
  cancelled). ``POST /stats/reset`` zeroes the counters and with them the flap / fail-first
  state.

The answer is ``"Hello from the stub upstream."`` (``--answer``), cut to ``max_tokens`` /
``max_completion_tokens`` words when that is smaller (``finish_reason`` is then
``"length"``); streamed, each word is one chunk with its trailing space. ``prompt_tokens``
counts the whitespace-separated words of the input and ``completion_tokens`` the words of the
answer. ``model`` echoes the request (``--model`` when it names none). Errors use OpenAI's
shape ``{"error": {"message", "type", "param", "code"}}``; bad JSON, a non-object body or a
missing ``messages`` / ``prompt`` is a 400, an unknown path a 404, a wrong method a 405.
``--delay-ms`` sleeps before each answer, ``--chunk-delay-ms`` before each streamed event;
requests on one connection are answered in order.

Faults. A model name that starts with ``fault:`` names one; any other name is a plain answer
(``ok``, say). Anything after a ``#`` is a tag: it changes nothing but the counters, so each
test can keep its own (``fault:500#t1``).

==================================  ==========================================================
``fault:429``                       429 rate_limit_exceeded, no Retry-After
``fault:429-retry-after-<s>``       429 with ``Retry-After: <s>`` (seconds, may be fractional)
``fault:500`` / ``502`` / ``503``   that status with an OpenAI error body
``fault:reset``                     reads the request, then resets the connection (TCP RST)
``fault:hang``                      reads the request, never answers
``fault:slow-first-token-<ms>``     headers at once, the first token after ``<ms>`` ms
``fault:cut-after-<n>``             ``n`` chunks, then the connection is cut (no [DONE])
``fault:stall-after-<n>``           ``n`` chunks, then silence with the connection open
``fault:malformed-chunk``           one chunk, then a chunk that is not JSON, then the rest
``fault:no-done``                   every chunk (finish_reason stop) but no ``data: [DONE]``
``fault:context-length``            400 code=context_length_exceeded
``fault:content-policy``            400 code=content_policy_violation
``fault:flap-<k>``                  fails (503) the first ``k`` of every ``2k`` requests
``fault:fail-first-<n>[-<how>]``    fails the first ``n`` requests, then heals; ``<how>`` is any
                                    fault above (default ``503``), e.g.
                                    ``fail-first-1-429-retry-after-0.5``
==================================  ==========================================================

Whole (non-streamed) answers see the same faults: a cut or stalled answer is a truncated JSON
body (cut, or left hanging); a malformed one is not JSON.

It is a raw asyncio protocol with httptools' parser (and uvloop when installed), both shipped
with ``uvicorn[standard]``; orjson is used when installed. Nothing else is needed, and nothing
of the project is imported. In-process use: ``server, stats = await start_stub(StubConfig())``.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import itertools
import re
import signal
import socket
import struct
import sys
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import httptools

try:  # orjson is much faster; the standard library is the fallback.
    import orjson

    def _dumps(obj: Any) -> bytes:
        return orjson.dumps(obj)

    _loads: Callable[[bytes], Any] = orjson.loads
except ImportError:  # pragma: no cover - depends on the environment
    import json

    def _dumps(obj: Any) -> bytes:
        return json.dumps(obj, separators=(",", ":")).encode()

    _loads = json.loads


ANSWER = "Hello from the stub upstream."
DEFAULT_MODEL = "stub"
MAX_BODY_BYTES = 16 * 1024 * 1024
CUT_WHOLE_AT = 20  # bytes of a whole body sent before a cut or a stall
CUT_PAUSE_S = 0.05  # seconds between the last bytes of a cut answer and the cut

_REASONS = {
    200: b"OK",
    400: b"Bad Request",
    404: b"Not Found",
    405: b"Method Not Allowed",
    413: b"Payload Too Large",
    429: b"Too Many Requests",
    500: b"Internal Server Error",
    502: b"Bad Gateway",
    503: b"Service Unavailable",
}
_ids = itertools.count(1)


@dataclass(frozen=True)
class StubConfig:
    """How the stub behaves."""

    model: str = DEFAULT_MODEL
    answer: str = ANSWER
    delay_ms: float = 0.0
    chunk_delay_ms: float = 0.0


@dataclass
class Stats:
    """Completion requests received and abandoned, per model name (tag included)."""

    requests: Counter[str] = field(default_factory=Counter)
    disconnects: Counter[str] = field(default_factory=Counter)

    def as_json(self) -> bytes:
        return _dumps({"requests": dict(self.requests), "disconnects": dict(self.disconnects),
                       "total": sum(self.requests.values())})

    def reset(self) -> None:
        self.requests.clear()
        self.disconnects.clear()


@dataclass(slots=True)
class Response:
    """A complete HTTP response, or the start of a streamed one."""

    status: int
    body: bytes = b""
    content_type: bytes = b"application/json"
    chunks: list[bytes] | None = None  # set for SSE: each item is one event
    headers: bytes = b""  # extra header lines, each ending in CRLF
    fault: Faulty | None = None  # set when a fault delays it or stops it part-way


@dataclass
class Faulty:
    """How a fault delivers an answer.

    ``first_delay`` is slept before the first token: after the first ``lead`` events of a stream
    (the chat role chunk), before anything of a whole body. ``end`` is ``None`` for an answer
    sent whole; ``"cut"`` (the connection closed mid-body), ``"reset"`` (TCP RST) or ``"hang"``
    stop it after ``end_at`` events (streamed) or bytes of the body (whole; 0: nothing is sent,
    not even the head). Disconnects count for ``model``.
    """

    model: str
    lead: int = 0
    first_delay: float = 0.0
    end: str | None = None
    end_at: int = 0


# --------------------------------------------------------------------------
# OpenAI payloads
# --------------------------------------------------------------------------


def error_body(message: str, err_type: str = "invalid_request_error",
               param: str | None = None, code: str | None = None) -> bytes:
    """An OpenAI-shaped error body."""
    return _dumps({"error": {"message": message, "type": err_type,
                             "param": param, "code": code}})


def error_response(status: int, message: str, err_type: str = "invalid_request_error",
                   param: str | None = None, code: str | None = None) -> Response:
    return Response(status, error_body(message, err_type, param, code))


def count_words(value: Any) -> int:
    """Whitespace-separated words in a prompt, a message list or content parts."""
    if isinstance(value, str):
        return len(value.split())
    if isinstance(value, list):
        return sum(count_words(item) for item in value)
    if isinstance(value, dict):
        if "content" in value:
            return count_words(value["content"])
        if value.get("type") == "text":
            return count_words(value.get("text", ""))
    return 0


def answer_words(cfg: StubConfig, payload: dict[str, Any]) -> tuple[list[str], str]:
    """The words to answer with and the finish reason."""
    words = cfg.answer.split()
    limit = payload.get("max_completion_tokens") or payload.get("max_tokens")
    if isinstance(limit, int) and not isinstance(limit, bool) and 0 < limit < len(words):
        return words[:limit], "length"
    return words, "stop"


def usage(prompt_tokens: int, completion_tokens: int) -> dict[str, int]:
    return {"prompt_tokens": prompt_tokens, "completion_tokens": completion_tokens,
            "total_tokens": prompt_tokens + completion_tokens}


def chat_body(model: str, words: list[str], finish: str, prompt_tokens: int) -> bytes:
    return _dumps({
        "id": f"chatcmpl-stub{next(_ids)}",
        "object": "chat.completion",
        "created": int(time.time()),
        "model": model,
        "choices": [{"index": 0,
                     "message": {"role": "assistant", "content": " ".join(words)},
                     "logprobs": None,
                     "finish_reason": finish}],
        "usage": usage(prompt_tokens, len(words)),
    })


def completion_body(model: str, words: list[str], finish: str, prompt_tokens: int) -> bytes:
    return _dumps({
        "id": f"cmpl-stub{next(_ids)}",
        "object": "text_completion",
        "created": int(time.time()),
        "model": model,
        "choices": [{"index": 0, "text": " ".join(words), "logprobs": None,
                     "finish_reason": finish}],
        "usage": usage(prompt_tokens, len(words)),
    })


def _sse(obj: Any) -> bytes:
    return b"data: " + _dumps(obj) + b"\n\n"


def _pieces(words: list[str]) -> list[str]:
    """The streamed pieces: each word with its trailing space, the last without."""
    return [word + " " for word in words[:-1]] + words[-1:]


def chat_events(model: str, words: list[str], finish: str, prompt_tokens: int,
                include_usage: bool) -> list[bytes]:
    """SSE events of a streamed chat completion, ``[DONE]`` included."""
    base = {"id": f"chatcmpl-stub{next(_ids)}", "object": "chat.completion.chunk",
            "created": int(time.time()), "model": model}
    events = [_sse({**base, "choices": [{"index": 0, "delta": {"role": "assistant", "content": ""},
                                         "logprobs": None, "finish_reason": None}]})]
    for text in _pieces(words):
        events.append(_sse({**base, "choices": [{"index": 0, "delta": {"content": text},
                                                 "logprobs": None, "finish_reason": None}]}))
    events.append(_sse({**base, "choices": [{"index": 0, "delta": {}, "logprobs": None,
                                             "finish_reason": finish}]}))
    if include_usage:
        events.append(_sse({**base, "choices": [], "usage": usage(prompt_tokens, len(words))}))
    events.append(b"data: [DONE]\n\n")
    return events


def completion_events(model: str, words: list[str], finish: str, prompt_tokens: int,
                      include_usage: bool) -> list[bytes]:
    """SSE events of a streamed text completion, ``[DONE]`` included."""
    base = {"id": f"cmpl-stub{next(_ids)}", "object": "text_completion",
            "created": int(time.time()), "model": model}
    events = []
    pieces = _pieces(words)
    last = len(pieces) - 1
    for i, text in enumerate(pieces):
        events.append(_sse({**base, "choices": [{"index": 0, "text": text, "logprobs": None,
                                                 "finish_reason": finish if i == last else None}]}))
    if not pieces:
        events.append(_sse({**base, "choices": [{"index": 0, "text": "", "logprobs": None,
                                                 "finish_reason": finish}]}))
    if include_usage:
        events.append(_sse({**base, "choices": [], "usage": usage(prompt_tokens, len(words))}))
    events.append(b"data: [DONE]\n\n")
    return events


def streamed_chat_answer(payload: dict[str, Any], cfg: StubConfig | None = None) -> bytes:
    """The whole body the stub streams for a chat ``payload``, its usage included, in one piece:
    for benchmarks that parse an answer without a server."""
    cfg = cfg or StubConfig()
    words, finish = answer_words(cfg, payload)
    model = payload.get("model") or cfg.model
    return b"".join(chat_events(model, words, finish, count_words(payload["messages"]), True))


def models_body(cfg: StubConfig) -> bytes:
    return _dumps({"object": "list", "data": [
        {"id": cfg.model, "object": "model", "created": 0, "owned_by": "stub"}]})


# --------------------------------------------------------------------------
# Faults
# --------------------------------------------------------------------------

_RATE_LIMITED = re.compile(r"429(?:-retry-after-([\d.]+))?")
_FLAP = re.compile(r"flap-(\d+)")
_FAIL_FIRST = re.compile(r"fail-first-(\d+)(?:-(.+))?")
_SLOW = re.compile(r"slow-first-token-(\d+)")
_STOPS = re.compile(r"(cut|stall)-after-(\d+)")
_ALTERING = ("ok", "malformed-chunk", "no-done")  # faults that alter the plain answer


def scheduled_fault(fault: str, seen: int) -> str:
    """The fault this request gets: flap and fail-first turn into another fault or ``ok``
    by the count of earlier requests to the same name (``seen``)."""
    if (m := _FLAP.fullmatch(fault)) is not None:
        k = max(1, int(m[1]))
        return "503" if seen % (2 * k) < k else "ok"
    if (m := _FAIL_FIRST.fullmatch(fault)) is not None:
        return (m[2] or "503") if seen < int(m[1]) else "ok"
    return fault


def failure(fault: str, model: str) -> Response | None:
    """The answer a fault gives instead of the plain one; ``None`` when it only alters that one
    (slow, cut, stall, malformed, no [DONE])."""
    if (m := _RATE_LIMITED.fullmatch(fault)) is not None:
        headers = b"retry-after: %s\r\n" % m[1].encode() if m[1] else b""
        return Response(429, error_body("Rate limit reached; slow down.", "rate_limit_error",
                                        code="rate_limit_exceeded"), headers=headers)
    if fault in ("500", "502", "503"):
        return Response(int(fault), error_body(f"the model failed ({fault})", "server_error"))
    if fault == "context-length":
        return error_response(400, "This model's maximum context length is 16 tokens; your "
                              "messages are longer.", code="context_length_exceeded")
    if fault == "content-policy":
        return error_response(400, "Your request was rejected as a result of our safety system.",
                              code="content_policy_violation")
    if fault in ("reset", "hang"):
        return Response(200, fault=Faulty(model, end=fault))
    if fault in _ALTERING or _SLOW.fullmatch(fault) or _STOPS.fullmatch(fault):
        return None
    return error_response(400, f"unknown fault {fault!r}", code="unknown_fault")


def with_fault(response: Response, fault: str, model: str, chat: bool, n_words: int) -> Response:
    """The plain answer, altered by ``fault`` (slow, cut, stall, malformed, no [DONE])."""
    chunks = response.chunks
    how = response.fault = Faulty(model, lead=1 if chat and chunks is not None else 0)
    if (m := _SLOW.fullmatch(fault)) is not None:
        how.first_delay = int(m[1]) / 1000
    elif (m := _STOPS.fullmatch(fault)) is not None:
        after = int(m[2])
        if chunks is None:
            how.end, how.end_at = ("cut" if m[1] == "cut" else "hang"), CUT_WHOLE_AT
        elif after < n_words:
            how.end, how.end_at = ("cut" if m[1] == "cut" else "hang"), how.lead + after
    elif fault == "malformed-chunk":
        if chunks is None:
            response.body = b'{"id": "stub", "choices": [{"mess'
        else:
            chunks.insert(how.lead + 1, b'data: {"id": "stub", "choices": [{"delta": {"con\n\n')
    elif fault == "no-done" and chunks is not None:
        chunks.pop()
    return response


# --------------------------------------------------------------------------
# Routing
# --------------------------------------------------------------------------


def handle_completion(cfg: StubConfig, stats: Stats, body: bytes, chat: bool) -> Response:
    """Answer POST /v1/chat/completions (``chat``) or POST /v1/completions."""
    try:
        payload = _loads(body)
    except ValueError:
        return error_response(400, "We could not parse the JSON body of your request.")
    if not isinstance(payload, dict):
        return error_response(400, "The request body must be a JSON object.")
    model = payload.get("model") or cfg.model
    if not isinstance(model, str):
        model = str(model)
    requests = stats.requests
    seen = requests.get(model, 0)
    requests[model] = seen + 1
    fault = None
    if model.startswith("fault:"):
        fault = scheduled_fault(model.split("#", 1)[0][6:], seen)
        failed = failure(fault, model)
        if failed is not None:
            return failed
    key = "messages" if chat else "prompt"
    if key not in payload:
        return error_response(400, f"Missing required parameter: '{key}'.", param=key,
                              code="missing_required_parameter")
    prompt_tokens = count_words(payload[key])
    words, finish = answer_words(cfg, payload)
    if payload.get("stream"):
        options = payload.get("stream_options") or {}
        include_usage = bool(isinstance(options, dict) and options.get("include_usage"))
        make = chat_events if chat else completion_events
        response = Response(200, content_type=b"text/event-stream",
                            chunks=make(model, words, finish, prompt_tokens, include_usage))
    else:
        make_body = chat_body if chat else completion_body
        response = Response(200, make_body(model, words, finish, prompt_tokens))
    if fault is not None and fault != "ok":
        return with_fault(response, fault, model, chat, len(words))
    return response


def route(cfg: StubConfig, stats: Stats, method: bytes, path: bytes, body: bytes) -> Response:
    """Dispatch one request."""
    path = path.split(b"?", 1)[0].rstrip(b"/") or b"/"
    if path == b"/v1/chat/completions" or path == b"/chat/completions":
        return handle_completion(cfg, stats, body, chat=True) if method == b"POST" else _not_allowed()
    if path == b"/v1/completions" or path == b"/completions":
        return handle_completion(cfg, stats, body, chat=False) if method == b"POST" else _not_allowed()
    if path == b"/health" or path == b"/v1/health":
        return Response(200, b'{"status":"ok"}') if method in (b"GET", b"HEAD") else _not_allowed()
    if path == b"/v1/models" or path == b"/models":
        return Response(200, models_body(cfg)) if method in (b"GET", b"HEAD") else _not_allowed()
    if path == b"/stats":
        return Response(200, stats.as_json()) if method == b"GET" else _not_allowed()
    if path == b"/stats/reset":
        if method != b"POST":
            return _not_allowed()
        stats.reset()
        return Response(200, b"{}")
    return error_response(404, f"Unknown path: {path.decode('latin-1')}", code="not_found")


def _not_allowed() -> Response:
    return error_response(405, "Method not allowed.", code="method_not_allowed")


# --------------------------------------------------------------------------
# HTTP/1.1 over asyncio
# --------------------------------------------------------------------------


def head_bytes(status: int, content_type: bytes, keep_alive: bool,
               length: int | None, extra: bytes = b"") -> bytes:
    """The status line and headers; ``length=None`` means chunked encoding."""
    parts = [b"HTTP/1.1 %d %s\r\n" % (status, _REASONS.get(status, b"Error")),
             b"content-type: " + content_type + b"\r\n", extra]
    if length is None:
        parts.append(b"transfer-encoding: chunked\r\ncache-control: no-cache\r\n")
    else:
        parts.append(b"content-length: %d\r\n" % length)
    parts.append(b"connection: keep-alive\r\n\r\n" if keep_alive else b"connection: close\r\n\r\n")
    return b"".join(parts)


def _chunk(data: bytes) -> bytes:
    return b"%x\r\n%s\r\n" % (len(data), data)


class StubProtocol(asyncio.Protocol):
    """One client connection. Requests on a connection are answered in order."""

    def __init__(self, cfg: StubConfig, stats: Stats) -> None:
        self.cfg = cfg
        self.stats = stats
        self.parser = httptools.HttpRequestParser(self)
        self.transport: asyncio.Transport | None = None
        self.url = b""
        self.body: list[bytes] = []
        self.body_size = 0
        self.pending: asyncio.Task[None] | None = None  # last delayed/streamed/faulty answer
        self.closing = False
        self.gone: asyncio.Event | None = None  # made by the first wait, set when the client leaves

    # asyncio callbacks -----------------------------------------------------
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def connection_lost(self, exc: Exception | None) -> None:
        self.closing = True
        self.transport = None
        if self.gone is not None:
            self.gone.set()

    def data_received(self, data: bytes) -> None:
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserError:
            self._write_now(Response(400, error_body("Malformed HTTP request.")), False)

    # httptools callbacks ---------------------------------------------------
    def on_message_begin(self) -> None:
        self.url = b""
        self.body = []
        self.body_size = 0

    def on_url(self, url: bytes) -> None:
        self.url += url

    def on_body(self, body: bytes) -> None:
        self.body_size += len(body)
        if self.body_size <= MAX_BODY_BYTES:
            self.body.append(body)

    def on_message_complete(self) -> None:
        keep_alive = self.parser.should_keep_alive()
        method = self.parser.get_method()
        if self.body_size > MAX_BODY_BYTES:
            response = Response(413, error_body("Request body too large."))
            keep_alive = False
        else:
            response = route(self.cfg, self.stats, method, self.url, b"".join(self.body))
        if method == b"HEAD":
            response = Response(response.status, b"", response.content_type)
        needs_task = (self.pending is not None or self.cfg.delay_ms > 0
                      or response.fault is not None
                      or (response.chunks is not None and self.cfg.chunk_delay_ms > 0))
        if needs_task:
            self.pending = asyncio.ensure_future(
                self._write_later(self.pending, response, keep_alive))
        else:
            self._write_now(response, keep_alive)

    # writing ---------------------------------------------------------------
    def _write_now(self, response: Response, keep_alive: bool) -> None:
        transport = self.transport
        if transport is None or self.closing:
            return
        if response.chunks is None:
            transport.write(head_bytes(response.status, response.content_type, keep_alive,
                                       len(response.body), response.headers) + response.body)
        else:
            transport.write(head_bytes(response.status, response.content_type, keep_alive, None,
                                       response.headers))
            for event in response.chunks:
                transport.write(_chunk(event))
            transport.write(b"0\r\n\r\n")
        if not keep_alive:
            self.closing = True
            transport.close()

    async def _write_later(self, previous: asyncio.Task[None] | None, response: Response,
                           keep_alive: bool) -> None:
        if previous is not None:
            await previous
        try:
            await self._deliver(response, response.fault or Faulty(""), keep_alive)
        finally:
            if self.pending is asyncio.current_task():
                self.pending = None

    async def _deliver(self, response: Response, how: Faulty, keep_alive: bool) -> None:
        """Write a response that waits (delays) or fails part-way (faults)."""
        if not await self._wait(self.cfg.delay_ms / 1000, how.model):
            return
        chunks = response.chunks
        if chunks is None:
            if not await self._wait(how.first_delay, how.model):
                return
            if how.end is None:
                self._write_now(response, keep_alive)
                return
            if how.end_at and self.transport is not None and not self.closing:
                self.transport.write(head_bytes(response.status, response.content_type, keep_alive,
                                                len(response.body), response.headers)
                                     + response.body[:how.end_at])
            await self._stop(how)
            return
        if self.transport is None or self.closing:
            return
        self.transport.write(head_bytes(response.status, response.content_type, keep_alive, None,
                                        response.headers))
        chunk_delay = self.cfg.chunk_delay_ms / 1000
        for index, event in enumerate(chunks):
            if how.end is not None and index == how.end_at:
                await self._stop(how)
                return
            if index == how.lead and not await self._wait(how.first_delay, how.model):
                return
            if chunk_delay > 0:
                await asyncio.sleep(chunk_delay)
            if self.transport is None or self.closing:
                return
            self.transport.write(_chunk(event))
        self.transport.write(b"0\r\n\r\n")
        if not keep_alive:
            self.closing = True
            self.transport.close()

    async def _wait(self, seconds: float | None, model: str) -> bool:
        """Sleep ``seconds`` (``None``: until the client leaves); ``False`` when the client left
        meanwhile, counted as a disconnect of ``model``."""
        if seconds is not None and seconds <= 0:
            return True
        if self.transport is not None and not self.closing:
            if self.gone is None:
                self.gone = asyncio.Event()
            try:
                await asyncio.wait_for(self.gone.wait(), seconds)
            except TimeoutError:
                return True
        self.stats.disconnects[model] += 1
        return False

    async def _stop(self, how: Faulty) -> None:
        """End a faulty answer: cut or reset the connection, or hold it silent until the client
        leaves.

        A cut closes the connection mid-body (FIN, after what was written has gone out), so the
        client reads every byte sent and then an unfinished body; a reset (RST) would let the
        client's kernel drop bytes it had received but not yet read, so the part of the answer
        that reached the client would depend on timing."""
        if how.end == "cut":
            # Let the client read what was sent first: aiohttp (the gateway's HTTP client) raises
            # an unfinished body's error before handing over bytes that came with the close.
            await asyncio.sleep(CUT_PAUSE_S)
            self.closing = True
            if self.transport is not None:
                self.transport.close()
        elif how.end == "reset":
            self._reset()
        else:
            await self._wait(None, how.model)

    def _reset(self) -> None:
        transport = self.transport
        if transport is None:
            return
        sock = transport.get_extra_info("socket")
        if sock is not None:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        self.closing = True
        transport.abort()


async def start_stub(cfg: StubConfig | None = None, host: str = "127.0.0.1",
                     port: int = 0) -> tuple[asyncio.Server, Stats]:
    """Start listening (in the running loop); return the server and its counters.

    The bound port is ``server.sockets[0].getsockname()[1]``.
    """
    config = cfg or StubConfig()
    stats = Stats()
    loop = asyncio.get_running_loop()
    server = await loop.create_server(lambda: StubProtocol(config, stats), host, port,
                                      backlog=2048, reuse_address=True)
    return server, stats


async def serve(cfg: StubConfig, host: str, port: int) -> None:
    """Serve until SIGINT/SIGTERM, printing the listening line once ready."""
    server, _ = await start_stub(cfg, host, port)
    bound = server.sockets[0].getsockname()
    shown_host = f"[{bound[0]}]" if ":" in bound[0] else bound[0]
    print(f"stub upstream listening on http://{shown_host}:{bound[1]}", flush=True)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        with contextlib.suppress(NotImplementedError, RuntimeError):  # non-POSIX
            loop.add_signal_handler(sig, stop.set)
    async with server:
        await stop.wait()


def _install_uvloop() -> None:
    try:
        import uvloop
    except ImportError:  # pragma: no cover - depends on the environment
        return
    asyncio.set_event_loop_policy(uvloop.EventLoopPolicy())


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description="OpenAI-compatible stub upstream (faults by model name).")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8001, help="0 picks a free port")
    parser.add_argument("--model", default=DEFAULT_MODEL,
                        help="model listed by /v1/models and used when a request names none")
    parser.add_argument("--answer", default=ANSWER, help="the fixed answer text")
    parser.add_argument("--delay-ms", type=float, default=0.0,
                        help="sleep this long before each answer")
    parser.add_argument("--chunk-delay-ms", type=float, default=0.0,
                        help="sleep this long before each streamed event")
    parser.add_argument("--no-uvloop", action="store_true", help="use the default asyncio loop")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    if not args.no_uvloop:
        _install_uvloop()
    cfg = StubConfig(model=args.model, answer=args.answer, delay_ms=args.delay_ms,
                     chunk_delay_ms=args.chunk_delay_ms)
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(serve(cfg, args.host, args.port))
    sys.exit(0)


if __name__ == "__main__":
    main()
