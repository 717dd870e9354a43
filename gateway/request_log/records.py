"""What the request log stores, and the contract every request log keeps."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Protocol

from gateway.request_log.errors import InvalidFeedback

MAX_REQUEST_ID_CHARS = 200
MAX_LABEL_CHARS = 200
MAX_COMMENT_CHARS = 10_000


@dataclass(frozen=True, slots=True)
class RequestRecord:
    """One answered (or failed) completion request, as the gateway saw it."""

    request_id: str
    created_at: float  # unix seconds
    route: str
    model: str
    cluster: str | None
    alpha: float | None
    router_version: str | None
    prompt_tokens: int
    completion_tokens: int
    cost: float
    latency_s: float
    ttft_s: float | None
    status: int
    api_key_id: str | None = None  # a short, non-secret key id
    prompt: str | None = None  # stored only by a log opened with store_prompts=True


@dataclass(frozen=True, slots=True)
class StoredKey:
    """An API key as the database keeps it: its id, sha256 digest (hex) and limits, never the key."""

    id: str
    digest: str
    rpm: int | None
    tpm: int | None
    budget: float | None
    created_at: float
    revoked_at: float | None = None


@dataclass(frozen=True, slots=True)
class Feedback:
    """A client's judgement of one answer; invalid values raise :class:`InvalidFeedback` (a ValueError)."""

    request_id: str
    score: float
    label: str | None = None
    comment: str | None = None

    def __post_init__(self) -> None:
        if not self.request_id or len(self.request_id) > MAX_REQUEST_ID_CHARS:
            raise InvalidFeedback(
                f"request_id must be 1 to {MAX_REQUEST_ID_CHARS} characters", param="request_id"
            )
        score = self.score
        if isinstance(score, bool) or not isinstance(score, int | float):
            raise InvalidFeedback(f"score must be a number from 0 to 1, got {score!r}", param="score")
        if math.isnan(score) or not 0.0 <= score <= 1.0:
            raise InvalidFeedback(f"score must be from 0 to 1, got {score!r}", param="score")
        object.__setattr__(self, "score", float(score))
        if self.label is not None and len(self.label) > MAX_LABEL_CHARS:
            raise InvalidFeedback(f"label must be at most {MAX_LABEL_CHARS} characters", param="label")
        if self.comment is not None and len(self.comment) > MAX_COMMENT_CHARS:
            raise InvalidFeedback(f"comment must be at most {MAX_COMMENT_CHARS} characters", param="comment")


@dataclass(frozen=True, slots=True)
class FeedbackResult:
    record: RequestRecord
    duplicate: bool  # True when this very feedback was already stored


class RequestLog(Protocol):
    """Where the gateway logs requests and feedback; see :func:`gateway.request_log.open_request_log`."""

    dropped: int

    async def start(self) -> None:
        """Connect, run the schema migrations, start the background writer."""

    async def aclose(self) -> None:
        """Write everything pending, then close."""

    def record(self, record: RequestRecord) -> None:
        """Enqueue a record; never blocks (a full queue drops it and counts it in ``dropped``)."""

    async def flush(self) -> None:
        """Return once every record enqueued so far is committed."""

    async def add_feedback(self, feedback: Feedback) -> FeedbackResult:
        """Store feedback durably before returning; identical repeats are ``duplicate``.

        Raises :class:`UnknownRequest` for an id never logged and :class:`FeedbackConflict`
        when different feedback is already stored for it.
        """
        ...

    async def get(self, request_id: str) -> RequestRecord | None: ...

    async def feedback_rows(self, since: float | None = None) -> list[tuple[RequestRecord, Feedback]]:
        """Requests with feedback (created at or after ``since``), oldest first: training rows."""
        ...

    async def count(self) -> int: ...
