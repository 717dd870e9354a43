"""The one error tree of smallfleet.

Every error a client can see is a :class:`SmallfleetError`. Each class carries
the HTTP status, OpenAI error ``type`` and ``code`` it maps to; the gateway
turns any of them into OpenAI's error JSON in exactly one place
(``gateway.errors.error_response``). Backends translate foreign exceptions
(httpx, llama.cpp) into this tree at their own boundary.

    SmallfleetError
    ├── RequestError                      400 invalid_request_error
    │   ├── ContextLengthExceeded         400 code=context_length_exceeded
    │   ├── ContentPolicyViolation        400 code=content_policy_violation
    │   ├── UnsupportedParameter          400 code=unsupported_parameter (a field not honoured)
    │   ├── ModelNotFound                 404 code=model_not_found
    │   └── PayloadTooLarge               413
    ├── Overloaded                        429 (a model's queue is full)
    └── BackendError                      502 (the model failed)
        ├── BackendUnavailable            503 (cannot reach the model)
        │   └── CircuitOpen               503 code=circuit_open (the model is resting)
        └── BackendTimeout                504
            └── DeadlineExceeded          504 code=deadline_exceeded (no first token in its share)

Two attributes tell :class:`backends.resilience.ResilientBackend` whether a
failure before the first token is worth another try: ``retryable`` (a class
default, overridable per instance: a 500 is, a malformed answer is not) and
``retry_after`` (seconds the upstream asked us to wait, from ``Retry-After``).
"""

from __future__ import annotations


class SmallfleetError(Exception):
    status_code: int = 500
    error_type: str = "server_error"
    code: str | None = None
    retryable: bool = False

    def __init__(
        self,
        message: str,
        *,
        param: str | None = None,
        retryable: bool | None = None,
        retry_after: float | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.param = param
        if retryable is not None:
            self.retryable = retryable
        self.retry_after = retry_after


class RequestError(SmallfleetError):
    status_code = 400
    error_type = "invalid_request_error"


class ContextLengthExceeded(RequestError):
    code = "context_length_exceeded"


class UnsupportedParameter(RequestError):
    """A request field that the answering model (or smallfleet) cannot honour: refused, never
    silently dropped. ``param`` names the field."""

    code = "unsupported_parameter"


class ContentPolicyViolation(RequestError):
    """The upstream refused the request on content policy; retrying elsewhere would not help."""

    code = "content_policy_violation"


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
    retryable = True


class BackendError(SmallfleetError):
    status_code = 502
    error_type = "upstream_error"
    code = "backend_error"


class BackendUnavailable(BackendError):
    status_code = 503
    code = "backend_unavailable"
    retryable = True


class CircuitOpen(BackendUnavailable):
    """The model failed repeatedly; no traffic is sent to it until its cool-down ends."""

    code = "circuit_open"
    retryable = False


class BackendTimeout(BackendError):
    status_code = 504
    code = "backend_timeout"
    retryable = True


class DeadlineExceeded(BackendTimeout):
    """No first token within the model's share of the request's first-token deadline: the
    gateway tries the next candidate, or answers this when there is none (docs/resilience.md)."""

    code = "deadline_exceeded"
    retryable = False
