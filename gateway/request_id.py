"""Every request's id: the client's ``x-request-id`` when it is sane, else a fresh one, echoed
on the answer."""

from __future__ import annotations

import os

from starlette.types import ASGIApp, Message, Receive, Scope, Send

REQUEST_ID_HEADER = b"x-request-id"
_REQUEST_ID_MAX = 128
_IDS_PER_READ = 256  # fresh ids drawn from one os.urandom call
_VERSION_MASK = ~(0xF000 << 64) & ~(0xC000 << 48)  # clears uuid4's version and variant bits
_VERSION_BITS = (0x4000 << 64) | (0x8000 << 48)  # version 4, RFC 4122 variant


class _Uuid4Hex:
    """Random (version 4) UUIDs as 32 hex digits, as ``uuid.uuid4().hex`` gives them, from the
    same source (``os.urandom``), read 256 ids at a time instead of one system call and one UUID
    object per id. A forked child starts with fresh bytes, so it never repeats its parent's ids."""

    def __init__(self) -> None:
        self._bytes = b""
        self._at = 0
        os.register_at_fork(after_in_child=self._forget)

    def _forget(self) -> None:
        self._bytes, self._at = b"", 0

    def __call__(self) -> str:
        at = self._at
        if at >= len(self._bytes):
            self._bytes, at = os.urandom(16 * _IDS_PER_READ), 0
        self._at = at + 16
        value = int.from_bytes(self._bytes[at : at + 16], "big") & _VERSION_MASK | _VERSION_BITS
        return f"{value:032x}"


new_request_id = _Uuid4Hex()


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
