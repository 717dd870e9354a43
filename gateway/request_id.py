"""Every request's id: the client's ``x-request-id`` when it is sane, else a fresh one, echoed
on the answer."""

from __future__ import annotations

import uuid

from starlette.types import ASGIApp, Message, Receive, Scope, Send

REQUEST_ID_HEADER = b"x-request-id"
_REQUEST_ID_MAX = 128


def request_id_of(scope: Scope) -> str:
    """The client's ``x-request-id`` if it is printable and at most 128 characters, else a new id."""
    for key, value in scope["headers"]:
        if key == REQUEST_ID_HEADER:
            candidate = value.decode("latin-1")
            if 0 < len(candidate) <= _REQUEST_ID_MAX and candidate.isprintable():
                return candidate
            break
    return uuid.uuid4().hex


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
