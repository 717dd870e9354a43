"""API keys (DESIGN.md): from ``SMALLFLEET_API_KEYS``, kept only as sha256 digests.

With no keys configured the gateway runs open, which the CLI allows only on a
loopback address unless told ``--insecure-no-auth``. With keys, every ``/v1/``
request needs ``Authorization: Bearer <key>``; ``/health`` and ``/metrics``
stay open for probes and scrapers.
"""

from __future__ import annotations

import hashlib
import hmac
import os
from collections.abc import Iterable

from starlette.types import ASGIApp, Receive, Scope, Send

from backends.errors import SmallfleetError
from gateway.errors import error_bytes

API_KEYS_ENV = "SMALLFLEET_API_KEYS"
ADMIN_KEYS_ENV = "SMALLFLEET_ADMIN_KEYS"


class Unauthorized(SmallfleetError):
    status_code = 401
    error_type = "invalid_request_error"
    code = "invalid_api_key"


def _digest(key: str) -> bytes:
    return hashlib.sha256(key.encode()).digest()


class ApiKeys:
    """A set of key digests; the keys themselves are not kept."""

    def __init__(self, keys: Iterable[str] = ()) -> None:
        self._digests = frozenset(_digest(k) for k in keys if k)

    @classmethod
    def from_env(cls, environ: dict[str, str] | None = None, variable: str = API_KEYS_ENV) -> ApiKeys:
        raw = (environ if environ is not None else os.environ).get(variable, "")
        return cls(k.strip() for k in raw.split(","))

    def __bool__(self) -> bool:
        return bool(self._digests)

    def accepts(self, key: str) -> bool:
        digest = _digest(key)
        return any(hmac.compare_digest(digest, known) for known in self._digests)


class ApiKeyMiddleware:
    def __init__(self, app: ASGIApp, keys: ApiKeys) -> None:
        self.app = app
        self.keys = keys

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or not self.keys or not scope["path"].startswith("/v1/"):
            await self.app(scope, receive, send)
            return
        error = self._check(scope)
        if error is None:
            await self.app(scope, receive, send)
            return
        status, body = error_bytes(error)
        headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
        await send({"type": "http.response.start", "status": status, "headers": headers})
        await send({"type": "http.response.body", "body": body})

    def _check(self, scope: Scope) -> Unauthorized | None:
        for name, value in scope["headers"]:
            if name == b"authorization":
                scheme, _, key = value.decode("latin-1").partition(" ")
                if scheme.lower() == "bearer" and self.keys.accepts(key.strip()):
                    return None
                return Unauthorized("invalid API key")
        return Unauthorized("missing API key: send 'Authorization: Bearer <key>'")
