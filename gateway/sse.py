"""Server-sent events, and racing work against a client that goes away.

Only the gateway speaks SSE: backends yield typed chunks, and
:class:`EventStreamResponse` sends them as ``data: ...\\n\\n`` events. Like
Starlette's ``StreamingResponse`` it races the stream against the client's
disconnect, but it always closes the event iterator when it stops, so the
backend's generation is cancelled at once rather than when garbage is collected.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Awaitable, Mapping
from typing import Any, TypeVar

import orjson
from starlette.types import Receive, Scope, Send

T = TypeVar("T")
DONE_EVENT = b"data: [DONE]\n\n"


class ClientDisconnected(Exception):
    """The client closed the connection before the answer was ready."""


def sse_event(payload: Any) -> bytes:
    return b"data: " + orjson.dumps(payload) + b"\n\n"


async def wait_for_disconnect(receive: Receive) -> None:
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            return


WATCH_AFTER = 0.05  # seconds of work before a watcher starts listening for the client's leaving


async def until_disconnect(work: Awaitable[T], receive: Receive) -> T:
    """Await ``work``; if the client disconnects first, cancel it and raise ClientDisconnected.

    ``work`` runs in the calling task. A watcher task that cancels it when the client leaves is
    started only once ``work`` has run :data:`WATCH_AFTER` seconds: most answers of a nearby
    upstream are done by then, and a task made, started and cancelled per request was a
    measurable share of the gateway's CPU (a timer is not). A client that leaves sooner is
    noticed then. A cancellation that is not the watcher's (a server shutting down) goes through
    unchanged."""
    current = asyncio.current_task()
    assert current is not None
    watch = _Watch(current, receive)
    timer = asyncio.get_running_loop().call_later(WATCH_AFTER, watch.start)
    try:
        result = await work
    except asyncio.CancelledError:
        if watch.left and current.uncancel() == 0:
            raise ClientDisconnected from None
        raise
    finally:
        timer.cancel()
        if watch.task is not None:
            watch.task.cancel()
    if watch.left:  # the client left, but ``work`` finished anyway (it swallowed the cancellation)
        current.uncancel()
        raise ClientDisconnected
    return result


class _Watch:
    """Cancels ``current`` when the client leaves, once started (a timer's callback)."""

    __slots__ = ("current", "left", "receive", "task")

    def __init__(self, current: asyncio.Task[Any], receive: Receive) -> None:
        self.current = current
        self.receive = receive
        self.left = False
        self.task: asyncio.Future[None] | None = None

    def start(self) -> None:
        self.task = asyncio.ensure_future(self._watch())

    async def _watch(self) -> None:
        await wait_for_disconnect(self.receive)
        self.left = True
        self.current.cancel()


class EventStreamResponse:
    """An ASGI response sending ``events`` (already SSE-encoded bytes) as they come."""

    def __init__(self, events: AsyncIterator[bytes], headers: Mapping[str, str]) -> None:
        self._events = events
        self._headers = [
            (b"content-type", b"text/event-stream; charset=utf-8"),
            (b"cache-control", b"no-cache"),
            (b"x-accel-buffering", b"no"),
            *((k.encode("latin-1"), v.encode("latin-1")) for k, v in headers.items()),
        ]

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        with contextlib.suppress(ClientDisconnected, OSError):
            await until_disconnect(self._send_all(send), receive)

    async def _send_all(self, send: Send) -> None:
        try:
            await send({"type": "http.response.start", "status": 200, "headers": self._headers})
            async for event in self._events:
                await send({"type": "http.response.body", "body": event, "more_body": True})
            await send({"type": "http.response.body", "body": b"", "more_body": False})
        finally:
            await self._events.aclose()  # type: ignore[attr-defined]
