"""A trivial, fast OpenAI-compatible upstream server for tests and benchmarks.

It answers every completion with the same short text, so that a benchmark
measures the cost of whatever sits in front of it and not the cost of a model.

Run it as a script::

    python benchmarks/stub_upstream.py --host 127.0.0.1 --port 8001 [--model stub]

``--port 0`` binds a free port; the real one is printed once the socket
listens, as ``stub upstream listening on http://HOST:PORT`` (flushed), so a
test can start it as a subprocess and read the first line of its stdout.

Endpoints:

* ``GET /health`` -> ``{"status": "ok"}``
* ``GET /v1/models`` -> the one configured model
* ``POST /v1/chat/completions`` and ``POST /v1/completions``, with
  ``stream: false`` (one JSON body) or ``stream: true`` (server-sent events,
  one chunk per word, an optional usage chunk when
  ``stream_options.include_usage`` is set, then ``data: [DONE]``).

The answer is ``"Hello from the stub upstream."``, cut to ``max_tokens``
words when that is smaller (``finish_reason`` is then ``"length"``).
``prompt_tokens`` counts the whitespace-separated words of the input and
``completion_tokens`` the words of the answer. ``model`` echoes the request.
Errors use OpenAI's shape ``{"error": {"message", "type", "param", "code"}}``.

It is a raw asyncio protocol with httptools' parser (and uvloop when
installed), both shipped with ``uvicorn[standard]``; orjson is used when
installed. Nothing else is needed.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import itertools
import signal
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
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

_REASONS = {
    200: b"OK",
    400: b"Bad Request",
    404: b"Not Found",
    405: b"Method Not Allowed",
    413: b"Payload Too Large",
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
class Response:
    """A complete HTTP response, or the start of a streamed one."""

    status: int
    body: bytes = b""
    content_type: bytes = b"application/json"
    chunks: list[bytes] | None = None  # set for SSE: each item is one event


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


def chat_events(model: str, words: list[str], finish: str, prompt_tokens: int,
                include_usage: bool) -> list[bytes]:
    """SSE events of a streamed chat completion, ``[DONE]`` included."""
    base = {"id": f"chatcmpl-stub{next(_ids)}", "object": "chat.completion.chunk",
            "created": int(time.time()), "model": model}
    events = [_sse({**base, "choices": [{"index": 0, "delta": {"role": "assistant", "content": ""},
                                         "logprobs": None, "finish_reason": None}]})]
    for i, word in enumerate(words):
        text = word if i == 0 else " " + word
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
    last = len(words) - 1
    for i, word in enumerate(words):
        text = word if i == 0 else " " + word
        events.append(_sse({**base, "choices": [{"index": 0, "text": text, "logprobs": None,
                                                 "finish_reason": finish if i == last else None}]}))
    if not words:
        events.append(_sse({**base, "choices": [{"index": 0, "text": "", "logprobs": None,
                                                 "finish_reason": finish}]}))
    if include_usage:
        events.append(_sse({**base, "choices": [], "usage": usage(prompt_tokens, len(words))}))
    events.append(b"data: [DONE]\n\n")
    return events


def models_body(cfg: StubConfig) -> bytes:
    return _dumps({"object": "list", "data": [
        {"id": cfg.model, "object": "model", "created": 0, "owned_by": "stub"}]})


def handle_completion(cfg: StubConfig, body: bytes, chat: bool) -> Response:
    """Answer POST /v1/chat/completions (``chat``) or POST /v1/completions."""
    try:
        payload = _loads(body)
    except ValueError:
        return error_response(400, "We could not parse the JSON body of your request.")
    if not isinstance(payload, dict):
        return error_response(400, "The request body must be a JSON object.")
    field = "messages" if chat else "prompt"
    if field not in payload:
        return error_response(400, f"Missing required parameter: '{field}'.", param=field,
                              code="missing_required_parameter")
    model = payload.get("model") or cfg.model
    prompt_tokens = count_words(payload[field])
    words, finish = answer_words(cfg, payload)
    if payload.get("stream"):
        options = payload.get("stream_options") or {}
        include_usage = bool(isinstance(options, dict) and options.get("include_usage"))
        make = chat_events if chat else completion_events
        return Response(200, content_type=b"text/event-stream",
                        chunks=make(model, words, finish, prompt_tokens, include_usage))
    make_body = chat_body if chat else completion_body
    return Response(200, make_body(model, words, finish, prompt_tokens))


def route(cfg: StubConfig, method: bytes, path: bytes, body: bytes) -> Response:
    """Dispatch one request."""
    path = path.split(b"?", 1)[0].rstrip(b"/") or b"/"
    if path == b"/v1/chat/completions" or path == b"/chat/completions":
        return handle_completion(cfg, body, chat=True) if method == b"POST" else _not_allowed()
    if path == b"/v1/completions" or path == b"/completions":
        return handle_completion(cfg, body, chat=False) if method == b"POST" else _not_allowed()
    if path == b"/health":
        return Response(200, b'{"status":"ok"}') if method in (b"GET", b"HEAD") else _not_allowed()
    if path == b"/v1/models" or path == b"/models":
        return Response(200, models_body(cfg)) if method in (b"GET", b"HEAD") else _not_allowed()
    return error_response(404, f"Unknown path: {path.decode('latin-1')}", code="not_found")


def _not_allowed() -> Response:
    return error_response(405, "Method not allowed.", code="method_not_allowed")


# --------------------------------------------------------------------------
# HTTP/1.1 over asyncio
# --------------------------------------------------------------------------


def head_bytes(status: int, content_type: bytes, keep_alive: bool,
               length: int | None) -> bytes:
    """The status line and headers; ``length=None`` means chunked encoding."""
    parts = [b"HTTP/1.1 %d %s\r\n" % (status, _REASONS.get(status, b"Error")),
             b"content-type: " + content_type + b"\r\n"]
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

    def __init__(self, cfg: StubConfig) -> None:
        self.cfg = cfg
        self.parser = httptools.HttpRequestParser(self)
        self.transport: asyncio.Transport | None = None
        self.url = b""
        self.body: list[bytes] = []
        self.body_size = 0
        self.pending: asyncio.Task[None] | None = None  # last delayed/streamed answer
        self.closing = False

    # asyncio callbacks -----------------------------------------------------
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def connection_lost(self, exc: Exception | None) -> None:
        self.closing = True
        self.transport = None

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
            response = route(self.cfg, method, self.url, b"".join(self.body))
        if method == b"HEAD":
            response = Response(response.status, b"", response.content_type)
        needs_task = (self.pending is not None or self.cfg.delay_ms > 0
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
                                       len(response.body)) + response.body)
        else:
            transport.write(head_bytes(response.status, response.content_type, keep_alive, None))
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
        if self.cfg.delay_ms > 0:
            await asyncio.sleep(self.cfg.delay_ms / 1000)
        if response.chunks is None or self.cfg.chunk_delay_ms <= 0:
            self._write_now(response, keep_alive)
        else:
            await self._stream_slowly(response, keep_alive)
        if self.pending is asyncio.current_task():
            self.pending = None

    async def _stream_slowly(self, response: Response, keep_alive: bool) -> None:
        assert response.chunks is not None
        if self.transport is None or self.closing:
            return
        self.transport.write(head_bytes(response.status, response.content_type, keep_alive, None))
        for event in response.chunks:
            await asyncio.sleep(self.cfg.chunk_delay_ms / 1000)
            if self.transport is None or self.closing:
                return
            self.transport.write(_chunk(event))
        self.transport.write(b"0\r\n\r\n")
        if not keep_alive:
            self.closing = True
            self.transport.close()


async def start_stub(cfg: StubConfig, host: str = "127.0.0.1", port: int = 0) -> asyncio.Server:
    """Start listening (in the running loop) and return the server.

    The bound port is ``server.sockets[0].getsockname()[1]``.
    """
    loop = asyncio.get_running_loop()
    return await loop.create_server(lambda: StubProtocol(cfg), host, port, backlog=2048,
                                    reuse_address=True)


async def serve(cfg: StubConfig, host: str, port: int) -> None:
    """Serve until SIGINT/SIGTERM, printing the listening line once ready."""
    server = await start_stub(cfg, host, port)
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
    parser = argparse.ArgumentParser(description="Trivial OpenAI-compatible upstream server.")
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
