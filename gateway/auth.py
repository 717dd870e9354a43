"""API keys on the wire (DESIGN.md): ``Authorization: Bearer <key>`` on every ``/v1/`` request.

With no active key (none in ``SMALLFLEET_API_KEYS``, none made through
``/admin/keys``) the gateway runs open, which the CLI allows only on a loopback
address unless told ``--insecure-no-auth``; open on loopback means open to local
clients only, those on this machine that reach it directly rather than through a
proxy (:mod:`gateway.access`). With keys, every ``/v1/`` request needs one;
``/health``, ``/metrics`` and ``/openapi.json`` stay open for probes, scrapers and tools.
A key is never logged: only its id travels on, in ``scope["state"]["api_key_id"]``.
Keys themselves live in :mod:`gateway.keys`.
"""

from __future__ import annotations

from collections.abc import Sequence

from starlette.types import ASGIApp, Receive, Scope, Send

from backends.errors import SmallfleetError
from gateway.access import AccessPolicy
from gateway.errors import error_bytes
from gateway.keys import ADMIN_KEYS_ENV, API_KEYS_ENV, KeyStore

__all__ = ["ADMIN_KEYS_ENV", "API_KEYS_ENV", "ApiKeyMiddleware", "KeyStore", "Unauthorized", "bearer_key",
           "key_refusal"]


class Unauthorized(SmallfleetError):
    status_code = 401
    error_type = "invalid_request_error"
    code = "invalid_api_key"


def bearer_key(scope: Scope) -> str | None:
    """The key of an ``Authorization: Bearer`` header; "" for another scheme; None without one."""
    for name, value in scope["headers"]:
        if name == b"authorization":
            scheme, _, key = value.decode("latin-1").partition(" ")
            return key.strip() if scheme.lower() == "bearer" else ""
    return None


async def send_error(send: Send, error: SmallfleetError, headers: Sequence[tuple[bytes, bytes]] = ()) -> None:
    status, body = error_bytes(error)
    head = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode()), *headers]
    await send({"type": "http.response.start", "status": status, "headers": head})
    await send({"type": "http.response.body", "body": body})


def key_refusal(scope: Scope, keys: KeyStore, access: AccessPolicy) -> Unauthorized | None:
    """Why a ``/v1/`` request is refused, or None when it may go on (with its key's id, if it
    has a key, in ``scope["state"]["api_key_id"]``)."""
    if not keys:
        if access.keyless == "local" and not access.origin(scope).local:
            return Unauthorized(
                f"this gateway has no API keys, so it answers only clients on its own machine that "
                f"reach it directly, not through a proxy; set {API_KEYS_ENV} to serve others"
            )
        return None
    secret = bearer_key(scope)
    if secret is None:
        return Unauthorized("missing API key: send 'Authorization: Bearer <key>'")
    key = keys.authenticate(secret) if secret else None
    if key is None:
        return Unauthorized("invalid API key")
    scope.setdefault("state", {})["api_key_id"] = key.id
    return None


class ApiKeyMiddleware:
    def __init__(self, app: ASGIApp, keys: KeyStore, access: AccessPolicy | None = None) -> None:
        self.app = app
        self.keys = keys
        self.access = access or AccessPolicy()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or not scope["path"].startswith("/v1/"):
            await self.app(scope, receive, send)
            return
        refusal = key_refusal(scope, self.keys, self.access)
        if refusal is not None:
            await send_error(send, refusal)
            return
        await self.app(scope, receive, send)
