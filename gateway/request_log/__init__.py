"""The request log: every answered request, and the feedback clients give on it.

SQLite (WAL) by default, PostgreSQL when given a ``postgresql://`` URL; both
behind one :class:`RequestLog` contract with versioned schema migrations. The
request path only enqueues (:meth:`RequestLog.record`); a writer thread commits
in batches. Feedback is stored durably before :meth:`RequestLog.add_feedback`
returns, and :meth:`RequestLog.feedback_rows` gives the router's retraining job
its rows.

    log = open_request_log("sqlite:///var/lib/smallfleet/requests.db")
    await log.start()
    log.record(RequestRecord(...))
    await log.add_feedback(Feedback(request_id, score=0.8))
    await log.aclose()
"""

from __future__ import annotations

from gateway.request_log.errors import (
    FeedbackConflict,
    InvalidFeedback,
    RequestLogUnavailable,
    SchemaTooNew,
    UnknownRequest,
)
from gateway.request_log.migrations import MIGRATIONS, Migration
from gateway.request_log.records import Feedback, FeedbackResult, RequestLog, RequestRecord, StoredKey

__all__ = [
    "DEFAULT_SQLITE_PATH",
    "MIGRATIONS",
    "Feedback",
    "FeedbackConflict",
    "FeedbackResult",
    "InvalidFeedback",
    "Migration",
    "RequestLog",
    "RequestLogUnavailable",
    "RequestRecord",
    "SchemaTooNew",
    "StoredKey",
    "UnknownRequest",
    "open_request_log",
]

DEFAULT_SQLITE_PATH = "smallfleet-requests.db"  # relative to the working directory
SQLITE_PREFIX = "sqlite://"
POSTGRES_PREFIXES = ("postgresql://", "postgres://")


def open_request_log(url: str | None, *, store_prompts: bool = False) -> RequestLog:
    """A request log for ``url``, not yet started (``await log.start()``).

    - ``None``: SQLite in :data:`DEFAULT_SQLITE_PATH`;
    - ``sqlite://PATH``: SQLite; PATH is everything after ``sqlite://``, so
      ``sqlite:///var/x.db`` is absolute, ``sqlite://x.db`` relative, and
      ``sqlite://:memory:`` a private in-memory database (tests);
    - ``postgresql://user:pass@host:port/db`` (or ``postgres://``): PostgreSQL.

    Prompts are written only with ``store_prompts=True``; otherwise they are
    dropped before anything reaches the database.
    """
    if url is None:
        url = SQLITE_PREFIX + DEFAULT_SQLITE_PATH
    if url.startswith(SQLITE_PREFIX):
        from gateway.request_log.sqlite import open_sqlite_log

        path = url[len(SQLITE_PREFIX) :]
        if not path:
            raise ValueError(
                "a sqlite:// request log URL needs a path, e.g. sqlite:///var/lib/smallfleet/requests.db"
            )
        return open_sqlite_log(path, store_prompts=store_prompts)
    if url.startswith(POSTGRES_PREFIXES):
        from gateway.request_log.postgres import open_postgres_log

        return open_postgres_log(url, store_prompts=store_prompts)
    scheme = url.split("://", 1)[0] if "://" in url else url
    raise ValueError(
        f"unsupported request log URL scheme {scheme!r}: use sqlite:///PATH or postgresql://USER@HOST/DB"
    )
