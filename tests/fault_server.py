"""A fault-injecting OpenAI-compatible server, for resilience tests.

Run it as a script::

    python tests/fault_server.py --port 0

It prints ``fault server listening on http://127.0.0.1:PORT`` (flushed) once the
socket listens, so a test can start it as a subprocess and read its first line.

The fault is chosen per request by the requested ``model``, so one server
serves every scenario. Anything after a ``#`` in the name is a tag: it changes
nothing but the counters, so each test can keep its own (``fault:500#t1``).

==============================  ==========================================================
``ok``                          a normal answer (any name without ``fault:`` is ``ok``)
``fault:429``                   429 rate_limit_exceeded, no Retry-After
``fault:429-retry-after-<s>``   429 with ``Retry-After: <s>`` (seconds, may be fractional)
``fault:500`` / ``502`` / ``503``  that status with an OpenAI error body
``fault:reset``                 reads the request, then resets the connection (TCP RST)
``fault:hang``                  reads the request, never answers
``fault:slow-first-token-<ms>`` headers at once, the first token after ``<ms>`` ms
``fault:cut-after-<n>``         ``n`` chunks, then the connection is cut (no [DONE])
``fault:stall-after-<n>``       ``n`` chunks, then silence with the connection open
``fault:malformed-chunk``       one chunk, then a chunk that is not JSON, then the rest
``fault:no-done``               every chunk (finish_reason stop) but no ``data: [DONE]``
``fault:context-length``        400 code=context_length_exceeded
``fault:content-policy``        400 code=content_policy_violation
``fault:flap-<k>``              fails (503) the first ``k`` of every ``2k`` requests
``fault:fail-first-<n>[-<how>]``  fails the first ``n`` requests, then heals; ``<how>`` is any
                                fault above (default ``503``), e.g. ``fail-first-1-429-retry-after-0.5``
==============================  ==========================================================

Non-streamed requests see the same faults: a cut or stalled answer is a
truncated JSON body (cut, or left hanging); a malformed one is not JSON.

``GET /stats`` answers ``{"requests": {model: n}, "disconnects": {model: n}, "total": n}``:
completion requests received per model name (tag included), and how many of
them the client abandoned before the server had finished (a hung, stalled or
slow answer the gateway cancelled). ``POST /stats/reset`` zeroes the counters
and the flap / fail-first state.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import itertools
import json
import re
import signal
import socket
import struct
import time
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

ANSWER = "Hello from the fault server."
MAX_BODY_BYTES = 16 * 1024 * 1024
_REASONS = {
    200: "OK",
    400: "Bad Request",
    404: "Not Found",
    429: "Too Many Requests",
    500: "Internal Server Error",
    502: "Bad Gateway",
    503: "Service Unavailable",
}
_ids = itertools.count(1)


@dataclass
class State:
    requests: Counter[str] = field(default_factory=Counter)
    disconnects: Counter[str] = field(default_factory=Counter)

    def stats(self) -> dict[str, Any]:
        return {
            "requests": dict(self.requests),
            "disconnects": dict(self.disconnects),
            "total": sum(self.requests.values()),
        }

    def reset(self) -> None:
        self.requests.clear()
        self.disconnects.clear()


class ClientGone(Exception):
    """The client closed its side while we were answering."""


def _dumps(obj: Any) -> bytes:
    return json.dumps(obj, separators=(",", ":")).encode()


def error_body(message: str, err_type: str, code: str | None) -> bytes:
    return _dumps({"error": {"message": message, "type": err_type, "param": None, "code": code}})


def _words(payload: dict[str, Any]) -> tuple[list[str], str]:
    words = [w + " " for w in ANSWER.split(" ")]
    words[-1] = words[-1].rstrip()
    limit = payload.get("max_tokens")
    if isinstance(limit, int) and 0 < limit < len(words):
        return words[:limit], "length"
    return words, "stop"


def _chunk_event(model: str, chat: bool, text: str | None, finish: str | None, ident: str) -> bytes:
    if chat:
        delta = {} if text is None else {"content": text}
        choice: dict[str, Any] = {"index": 0, "delta": delta, "finish_reason": finish}
        obj = "chat.completion.chunk"
    else:
        choice = {"index": 0, "text": text or "", "finish_reason": finish}
        obj = "text_completion"
    body = {"id": ident, "object": obj, "created": int(time.time()), "model": model, "choices": [choice]}
    return b"data: " + _dumps(body) + b"\n\n"


def _whole_body(model: str, chat: bool, words: list[str], finish: str) -> bytes:
    text = "".join(words)
    choice: dict[str, Any] = {"index": 0, "finish_reason": finish}
    if chat:
        choice["message"] = {"role": "assistant", "content": text}
    else:
        choice["text"] = text
    return _dumps(
        {
            "id": f"fault-{next(_ids)}",
            "object": "chat.completion" if chat else "text_completion",
            "created": int(time.time()),
            "model": model,
            "choices": [choice],
            "usage": {"prompt_tokens": 1, "completion_tokens": len(words), "total_tokens": 1 + len(words)},
        }
    )


# --------------------------------------------------------------------------
# The connection
# --------------------------------------------------------------------------


class Connection:
    def __init__(self, state: State, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.state = state
        self.reader = reader
        self.writer = writer

    async def serve(self) -> None:
        with contextlib.suppress(ConnectionError, asyncio.IncompleteReadError, ClientGone):
            while True:
                request = await self._read_request()
                if request is None:
                    return
                method, path, body = request
                keep_open = await self._route(method, path, body)
                if not keep_open:
                    return

    async def _read_request(self) -> tuple[str, str, bytes] | None:
        try:
            head = await self.reader.readuntil(b"\r\n\r\n")
        except asyncio.IncompleteReadError:
            return None
        lines = head.decode("latin-1").split("\r\n")
        method, path, _ = lines[0].split(" ", 2)
        length = 0
        for line in lines[1:]:
            name, _, value = line.partition(":")
            if name.strip().lower() == "content-length":
                length = int(value.strip())
        if length > MAX_BODY_BYTES:
            raise ClientGone
        body = await self.reader.readexactly(length) if length else b""
        return method, path.split("?", 1)[0], body

    # -- writing ----------------------------------------------------------
    def _head(self, status: int, content_type: str, *, length: int | None, extra: dict[str, str]) -> bytes:
        lines = [f"HTTP/1.1 {status} {_REASONS.get(status, 'Error')}", f"content-type: {content_type}"]
        if length is None:
            lines.append("transfer-encoding: chunked")
        else:
            lines.append(f"content-length: {length}")
        lines += [f"{k}: {v}" for k, v in extra.items()]
        return ("\r\n".join(lines) + "\r\n\r\n").encode()

    async def _send(self, status: int, body: bytes, extra: dict[str, str] | None = None) -> bool:
        self.writer.write(self._head(status, "application/json", length=len(body), extra=extra or {}) + body)
        await self.writer.drain()
        return True

    async def _send_chunk(self, data: bytes) -> None:
        self.writer.write(b"%x\r\n%s\r\n" % (len(data), data))
        await self.writer.drain()

    async def _end_chunks(self) -> None:
        self.writer.write(b"0\r\n\r\n")
        await self.writer.drain()

    def _reset(self) -> None:
        sock = self.writer.get_extra_info("socket")
        if sock is not None:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        self.writer.transport.abort()

    async def _wait_for_client_to_leave(self, model: str) -> None:
        """Hold the connection open, answering nothing, until the client closes it."""
        with contextlib.suppress(ConnectionError):
            while await self.reader.read(65536):
                pass
        self.state.disconnects[model] += 1
        raise ClientGone

    async def _sleep_or_leave(self, model: str, seconds: float) -> None:
        """Sleep, but notice (and count) a client that goes away meanwhile."""
        eof = asyncio.ensure_future(self.reader.read(65536))
        try:
            done, _ = await asyncio.wait({eof}, timeout=seconds)
        finally:
            if not eof.done():
                eof.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await eof
        if done and not eof.result():
            self.state.disconnects[model] += 1
            raise ClientGone

    # -- routing ----------------------------------------------------------
    async def _route(self, method: str, path: str, body: bytes) -> bool:
        if path in ("/health", "/v1/health") and method == "GET":
            return await self._send(200, b'{"status":"ok"}')
        if path == "/v1/models" and method == "GET":
            return await self._send(
                200,
                _dumps(
                    {
                        "object": "list",
                        "data": [{"id": "ok", "object": "model", "created": 0, "owned_by": "fault-server"}],
                    }
                ),
            )
        if path == "/stats" and method == "GET":
            return await self._send(200, _dumps(self.state.stats()))
        if path == "/stats/reset" and method == "POST":
            self.state.reset()
            return await self._send(200, b"{}")
        if path in ("/v1/chat/completions", "/v1/completions") and method == "POST":
            try:
                payload = json.loads(body)
                assert isinstance(payload, dict)
            except (ValueError, AssertionError):
                return await self._send(
                    400, error_body("body is not a JSON object", "invalid_request_error", None)
                )
            return await self._completion(payload, chat=path.endswith("chat/completions"))
        return await self._send(404, error_body(f"no route {method} {path}", "invalid_request_error", None))

    async def _completion(self, payload: dict[str, Any], *, chat: bool) -> bool:
        model = str(payload.get("model") or "ok")
        seen = self.state.requests[model]  # requests to this name before this one
        self.state.requests[model] += 1
        fault = model.split("#", 1)[0]
        fault = fault.removeprefix("fault:") if fault.startswith("fault:") else "ok"
        stream = bool(payload.get("stream"))
        if (m := re.fullmatch(r"flap-(\d+)", fault)) is not None:
            k = max(1, int(m[1]))
            fault = "503" if seen % (2 * k) < k else "ok"
        elif (m := re.fullmatch(r"fail-first-(\d+)(?:-(.+))?", fault)) is not None:
            fault = (m[2] or "503") if seen < int(m[1]) else "ok"
        return await self._answer(fault, model, payload, chat=chat, stream=stream)

    async def _answer(
        self, fault: str, model: str, payload: dict[str, Any], *, chat: bool, stream: bool
    ) -> bool:
        if fault in ("429", "500", "502", "503") or re.fullmatch(r"429-retry-after-[\d.]+", fault):
            return await self._error_status(fault, model)
        if fault == "context-length":
            message = "This model's maximum context length is 16 tokens; your messages are longer."
            return await self._send(
                400, error_body(message, "invalid_request_error", "context_length_exceeded")
            )
        if fault == "content-policy":
            message = "Your request was rejected as a result of our safety system."
            return await self._send(
                400, error_body(message, "invalid_request_error", "content_policy_violation")
            )
        if fault == "reset":
            self._reset()
            return False
        if fault == "hang":
            await self._wait_for_client_to_leave(model)
            return False
        first_delay = 0.0
        if (m := re.fullmatch(r"slow-first-token-(\d+)", fault)) is not None:
            first_delay = int(m[1]) / 1000
        elif fault not in ("ok", "malformed-chunk", "no-done") and not re.fullmatch(
            r"(cut|stall)-after-\d+", fault
        ):
            return await self._send(
                400, error_body(f"unknown fault {fault!r}", "invalid_request_error", "unknown_fault")
            )
        if stream:
            return await self._stream(fault, model, payload, chat=chat, first_delay=first_delay)
        return await self._whole(fault, model, payload, chat=chat, first_delay=first_delay)

    async def _error_status(self, fault: str, model: str) -> bool:
        if fault.startswith("429"):
            extra = {}
            if fault != "429":
                extra["retry-after"] = fault.rsplit("-", 1)[1]
            return await self._send(
                429,
                error_body("Rate limit reached; slow down.", "rate_limit_error", "rate_limit_exceeded"),
                extra,
            )
        status = int(fault)
        return await self._send(status, error_body(f"the model failed ({status})", "server_error", None))

    async def _whole(
        self, fault: str, model: str, payload: dict[str, Any], *, chat: bool, first_delay: float
    ) -> bool:
        if first_delay:
            await self._sleep_or_leave(model, first_delay)
        words, finish = _words(payload)
        body = _whole_body(model, chat, words, finish)
        if fault == "malformed-chunk":
            return await self._send(200, b'{"id": "fault", "choices": [{"mess')
        if fault.startswith(("cut-after", "stall-after")):
            self.writer.write(self._head(200, "application/json", length=len(body), extra={}) + body[:20])
            await self.writer.drain()
            if fault.startswith("cut"):
                self._reset()
                return False
            await self._wait_for_client_to_leave(model)
        return await self._send(200, body)

    async def _stream(
        self, fault: str, model: str, payload: dict[str, Any], *, chat: bool, first_delay: float
    ) -> bool:
        words, finish = _words(payload)
        ident = f"fault-{next(_ids)}"
        self.writer.write(
            self._head(200, "text/event-stream", length=None, extra={"cache-control": "no-cache"})
        )
        await self.writer.drain()
        if chat:
            await self._send_chunk(
                _chunk_event(model, chat, None, None, ident).replace(
                    b'"delta":{}', b'"delta":{"role":"assistant","content":""}'
                )
            )
        if first_delay:
            await self._sleep_or_leave(model, first_delay)
        limit = m_int(r"(?:cut|stall)-after-(\d+)", fault)
        for index, word in enumerate(words):
            if limit is not None and index == limit:
                if fault.startswith("cut"):
                    self._reset()
                    return False
                await self._wait_for_client_to_leave(model)
            if fault == "malformed-chunk" and index == 1:
                await self._send_chunk(
                    b'data: {"id": "' + ident.encode() + b'", "choices": [{"delta": {"con\n\n'
                )
            await self._send_chunk(_chunk_event(model, chat, word, None, ident))
        await self._send_chunk(_chunk_event(model, chat, None if chat else "", finish, ident))
        if (payload.get("stream_options") or {}).get("include_usage"):
            usage = {"prompt_tokens": 1, "completion_tokens": len(words), "total_tokens": 1 + len(words)}
            await self._send_chunk(
                b"data: "
                + _dumps(
                    {
                        "id": ident,
                        "object": "chat.completion.chunk",
                        "model": model,
                        "choices": [],
                        "usage": usage,
                    }
                )
                + b"\n\n"
            )
        if fault != "no-done":
            await self._send_chunk(b"data: [DONE]\n\n")
        await self._end_chunks()
        return True


def m_int(pattern: str, text: str) -> int | None:
    match = re.fullmatch(pattern, text)
    return None if match is None else int(match[1])


# --------------------------------------------------------------------------
# Running it
# --------------------------------------------------------------------------


async def start_fault_server(host: str = "127.0.0.1", port: int = 0) -> tuple[asyncio.Server, State]:
    state = State()

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            await Connection(state, reader, writer).serve()
        finally:
            with contextlib.suppress(Exception):
                writer.close()

    server = await asyncio.start_server(handle, host, port)
    return server, state


async def serve(host: str, port: int) -> None:
    server, _ = await start_fault_server(host, port)
    bound = server.sockets[0].getsockname()
    print(f"fault server listening on http://{bound[0]}:{bound[1]}", flush=True)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        with contextlib.suppress(NotImplementedError):
            loop.add_signal_handler(sig, stop.set)
    async with server:
        await stop.wait()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--host", default="127.0.0.1", help="loopback by default")
    parser.add_argument("--port", type=int, default=0, help="0 picks a free port")
    args = parser.parse_args(argv)
    asyncio.run(serve(args.host, args.port))


if __name__ == "__main__":
    main()
