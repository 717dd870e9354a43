"""Every error a client sees, in OpenAI's shape, decided here and only here.

The error tree itself lives in :mod:`backends.errors` (backends raise it too);
this module adds the gateway's own leaves and the single function that turns
any exception into ``{"error": {"message", "type", "param", "code"}}``.
"""

from __future__ import annotations

from typing import Any

import orjson
from pydantic import ValidationError

from backends.errors import RequestError, SmallfleetError


class MethodNotAllowed(RequestError):
    status_code = 405
    code = "method_not_allowed"


class NotFound(RequestError):
    status_code = 404
    code = "not_found"


class StateUnavailable(SmallfleetError):
    """The shared state store (Redis) did not answer in time; see gateway/shared."""

    status_code = 503
    code = "state_unavailable"


def _loc(loc: tuple[int | str, ...]) -> str:
    path = ""
    for part in loc:
        path += f"[{part}]" if isinstance(part, int) else (f".{part}" if path else str(part))
    return path


def request_error_from_validation(exc: ValidationError) -> RequestError:
    """A pydantic error on a request body, as a 400 naming the first bad field."""
    errors = exc.errors(include_url=False)
    first = errors[0]
    if first["type"] == "json_invalid":
        return RequestError(f"request body is not valid JSON: {first['msg']}")
    if first["type"] == "model_type" and not first["loc"]:
        return RequestError("request body must be a JSON object")
    details = []
    for error in errors[:5]:
        where = _loc(tuple(error["loc"]))
        details.append(f"{where}: {error['msg']}" if where else error["msg"])
    param = _loc(tuple(first["loc"])) or None
    return RequestError("invalid request: " + "; ".join(details), param=param)


def error_payload(exc: BaseException) -> tuple[int, dict[str, Any]]:
    """(HTTP status, OpenAI error JSON) for any exception."""
    if not isinstance(exc, SmallfleetError):
        exc = SmallfleetError("internal error in the gateway; see its log")
    body = {
        "error": {
            "message": exc.message,
            "type": exc.error_type,
            "param": exc.param,
            "code": exc.code,
        }
    }
    return exc.status_code, body


def error_bytes(exc: BaseException) -> tuple[int, bytes]:
    status, body = error_payload(exc)
    return status, orjson.dumps(body)
