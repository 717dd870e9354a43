"""The completion endpoints served without Starlette's layers, for speed.

Every completion request (``POST /v1/chat/completions``, ``/v1/completions``, ``/v1/responses``)
would otherwise pass through seven ASGI layers before its endpoint: Starlette's
``ServerErrorMiddleware``, the three middleware (request id, API key, key limits), Starlette's
``ExceptionMiddleware``, its router and the route's own exception wrapper, each an await and most
of them a wrapper around ``send``. :class:`CompletionFastPath` does the same work in one layer,
as plain calls (``request_id_of``, ``key_refusal``, ``admit``) and one wrapper of ``send``: in a
profile of the benchmark (issue 14) Starlette and the middleware fell from 16.5% to 11.8% of the
event loop's CPU. Every other request takes the Starlette stack, which keeps the three middleware.

What a client sees is what the layers made: the same headers in the same order (the answer's,
then the key's ``x-ratelimit-*``, then ``x-request-id``), the same refusals (401, 429), the same
error answers from the app's exception handlers, and an unexpected exception answered as
``ServerErrorMiddleware`` answers it (a 500 sent outside the middleware, so without their
headers) and raised on for the server to log.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from typing import Any

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.types import Message, Receive, Scope, Send

from gateway.access import AccessPolicy
from gateway.auth import key_refusal, send_error
from gateway.keys import ApiKey, KeyStore
from gateway.limits import Limiter, admit, key_of
from gateway.request_id import REQUEST_ID_HEADER, request_id_of

Endpoint = Callable[[Request], Awaitable[Any]]
ErrorHandler = Callable[[Request, Exception], Awaitable[Response]]


class CompletionFastPath:
    """Serves ``endpoints`` (path -> endpoint, POST only) as the full stack would."""

    def __init__(
        self,
        endpoints: Mapping[str, Endpoint],
        *,
        keys: KeyStore,
        access: AccessPolicy,
        limiter: Limiter,
        handlers: Mapping[type[Exception], ErrorHandler],
        on_unexpected: ErrorHandler,
    ) -> None:
        self.endpoints = dict(endpoints)
        self.keys = keys
        self.access = access
        self.limiter = limiter
        self.handlers = handlers  # the app's exception handlers, but the one for Exception
        self.on_unexpected = on_unexpected  # the app's handler for Exception

    def endpoint_for(self, scope: Scope) -> Endpoint | None:
        """The endpoint this path serves ``scope`` with; None for a request it leaves to Starlette
        (another path or method, a websocket, a ``root_path`` the router would strip)."""
        if scope["type"] != "http" or scope["method"] != "POST" or scope.get("root_path"):
            return None
        return self.endpoints.get(scope["path"])

    async def __call__(self, scope: Scope, receive: Receive, send: Send, endpoint: Endpoint) -> None:
        limiter = self.limiter
        started = False  # whether the answer has started going out
        id_header = (REQUEST_ID_HEADER, b"")
        admitted: ApiKey | None = None  # once admitted, its limit headers go on the answer

        async def send_answer(message: Message) -> None:
            # the three middleware's wrappers of ``send`` in one: the answer's own headers, then
            # the key's limit headers (as they stand when the answer starts), then the request id
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
                extra = [*limiter.headers(admitted), id_header] if admitted is not None else [id_header]
                message["headers"] = [*message.get("headers", ()), *extra]
            await send(message)

        try:
            request_id = scope.setdefault("state", {})["request_id"] = request_id_of(scope)
            id_header = (REQUEST_ID_HEADER, request_id.encode("latin-1"))
            unauthorized = key_refusal(scope, self.keys, self.access)
            if unauthorized is not None:
                await send_error(send_answer, unauthorized)
                return
            key = key_of(scope, limiter)
            if key is not None:
                refused = await admit(limiter, key)
                if refused is not None:
                    await send_error(send_answer, *refused)
                    return
            admitted = key
            request = Request(scope, receive, send)
            try:  # Starlette's ExceptionMiddleware and the route's exception wrapper, in one
                response = await endpoint(request)
                await response(scope, receive, send_answer)
            except Exception as exc:
                handler = self._handler(exc)
                if handler is None:
                    raise
                if started:
                    raise RuntimeError("Caught handled exception, but response already started.") from exc
                await (await handler(request, exc))(scope, receive, send_answer)
                exc.__traceback__ = None  # as Starlette: a reused exception would pile up tracebacks
        except Exception as exc:  # ServerErrorMiddleware: answered outside the middleware, raised on
            response = await self.on_unexpected(Request(scope), exc)
            if not started:
                await response(scope, receive, send)
            raise

    def _handler(self, exc: Exception) -> ErrorHandler | None:
        for kind in type(exc).__mro__:
            handler = self.handlers.get(kind)
            if handler is not None:
                return handler
        return None


class GatewayApp(Starlette):
    """Starlette, with the completion endpoints on :class:`CompletionFastPath`."""

    fast_path: CompletionFastPath | None = None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        fast_path = self.fast_path
        endpoint = fast_path.endpoint_for(scope) if fast_path is not None else None
        if endpoint is None:
            await super().__call__(scope, receive, send)
            return
        assert fast_path is not None
        scope["app"] = self
        await fast_path(scope, receive, send, endpoint)
