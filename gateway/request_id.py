"""Every request's id: the client's ``x-request-id`` when it is sane, else a fresh one, echoed
on the answer."""

from __future__ import annotations

import os
import time

from starlette.types import ASGIApp, Message, Receive, Scope, Send

REQUEST_ID_HEADER = b"x-request-id"
_REQUEST_ID_MAX = 128
_IDS_PER_READ = 256  # fresh ids' random bits drawn from one os.urandom call
_RANDOM_BYTES = 10  # per id: 80 bits, 74 of them kept beside the version and variant
_VERSION_MASK = ~(0xF << 76) & ~(0x3 << 62)  # clears the version and variant bits of those 80
_VERSION_BITS = (0x7 << 76) | (0x2 << 62)  # version 7, RFC 9562's variant


class _Uuid7Hex:
    """Time-ordered (version 7, RFC 9562) UUIDs as 32 hex digits: the first 48 bits are the Unix
    time in milliseconds, 74 of the other 80 are random (``os.urandom``, read 256 ids at a time
    instead of one system call per id). Ids made later sort later (those of one millisecond among
    themselves at random), so each new row of the request log, keyed by its id, goes at the end
    of the key's index instead of into a random page of it: SQLite writes a few pages per batch
    instead of one per row (benchmarks/request_log_ids.py). A forked child starts with fresh
    bytes, so it never repeats its parent's ids."""

    def __init__(self) -> None:
        self._bytes = b""
        self._at = 0
        os.register_at_fork(after_in_child=self._forget)

    def _forget(self) -> None:
        self._bytes, self._at = b"", 0

    def __call__(self) -> str:
        at = self._at
        if at >= len(self._bytes):
            self._bytes, at = os.urandom(_RANDOM_BYTES * _IDS_PER_READ), 0
        self._at = at + _RANDOM_BYTES
        random = int.from_bytes(self._bytes[at : at + _RANDOM_BYTES], "big") & _VERSION_MASK
        milliseconds = time.time_ns() // 1_000_000
        return f"{milliseconds << 80 | random | _VERSION_BITS:032x}"


new_request_id = _Uuid7Hex()


def request_id_of(scope: Scope) -> str:
    """The client's ``x-request-id`` if it is printable and at most 128 characters, else a new id."""
    for key, value in scope["headers"]:
        if key == REQUEST_ID_HEADER:
            candidate = value.decode("latin-1")
            if 0 < len(candidate) <= _REQUEST_ID_MAX and candidate.isprintable():
                return candidate
            break
    return new_request_id()


class RequestIdMiddleware:
    """Gives every request an id (``scope["state"]["request_id"]``) and echoes it."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        request_id = request_id_of(scope)
        scope.setdefault("state", {})["request_id"] = request_id
        header = (REQUEST_ID_HEADER, request_id.encode("latin-1"))

        async def send_with_id(message: Message) -> None:
            if message["type"] == "http.response.start":
                message["headers"] = [*message.get("headers", ()), header]
            await send(message)

        await self.app(scope, receive, send_with_id)
