"""The one error tree of smallfleet.

Every error a client can see is a :class:`SmallfleetError`. Each class carries
the HTTP status, OpenAI error ``type`` and ``code`` it maps to; the gateway
turns any of them into OpenAI's error JSON in exactly one place
(``gateway.errors.error_response``). Backends translate foreign exceptions
(httpx, llama.cpp) into this tree at their own boundary.

    SmallfleetError
    ├── RequestError                      400 invalid_request_error
    │   ├── ContextLengthExceeded         400 code=context_length_exceeded
    │   ├── ModelNotFound                 404 code=model_not_found
    │   └── PayloadTooLarge               413
    ├── Overloaded                        429 (a model's queue is full)
    └── BackendError                      502 (the model failed)
        ├── BackendUnavailable            503 (cannot reach the model)
        └── BackendTimeout                504
"""

from __future__ import annotations


class SmallfleetError(Exception):
    status_code: int = 500
    error_type: str = "server_error"
    code: str | None = None

    def __init__(self, message: str, *, param: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.param = param


class RequestError(SmallfleetError):
    status_code = 400
    error_type = "invalid_request_error"


class ContextLengthExceeded(RequestError):
    code = "context_length_exceeded"


class ModelNotFound(RequestError):
    status_code = 404
    code = "model_not_found"


class PayloadTooLarge(RequestError):
    status_code = 413
    code = "payload_too_large"


class Overloaded(SmallfleetError):
    status_code = 429
    error_type = "rate_limit_error"
    code = "queue_full"


class BackendError(SmallfleetError):
    status_code = 502
    error_type = "upstream_error"
    code = "backend_error"


class BackendUnavailable(BackendError):
    status_code = 503
    code = "backend_unavailable"


class BackendTimeout(BackendError):
    status_code = 504
    code = "backend_timeout"
