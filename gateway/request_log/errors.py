"""The request log's errors, as leaves of smallfleet's one error tree.

Client-visible failures of ``POST /v1/feedback`` are :class:`SmallfleetError`
leaves, so the gateway's single error mapper turns them into OpenAI's error
JSON with the right status; the schema error is an operator's problem at
start-up and stays outside the tree.

    SmallfleetError
    ├── RequestError
    │   ├── InvalidFeedback      400 (also a ValueError: score outside [0, 1], NaN, ...)
    │   ├── UnknownRequest       404 code=request_not_found
    │   └── FeedbackConflict     409 code=feedback_conflict
    └── RequestLogUnavailable    503 (the database failed)
    SchemaTooNew (RuntimeError)  the database was migrated by a newer smallfleet
"""

from __future__ import annotations

from backends.errors import RequestError, SmallfleetError


class InvalidFeedback(RequestError, ValueError):
    code = "invalid_feedback"


class UnknownRequest(RequestError):
    status_code = 404
    code = "request_not_found"


class FeedbackConflict(RequestError):
    status_code = 409
    code = "feedback_conflict"


class RequestLogUnavailable(SmallfleetError):
    status_code = 503
    code = "request_log_unavailable"


class SchemaTooNew(RuntimeError):
    def __init__(self, found: int, known: int) -> None:
        super().__init__(
            f"the request log's schema is at version {found}, but this smallfleet knows versions up to "
            f"{known}; upgrade smallfleet, or point it at another database"
        )
        self.found = found
        self.known = known
