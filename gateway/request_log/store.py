"""The request log's SQL, shared by SQLite and PostgreSQL; synchronous, one connection.

A :class:`SqlStore` is used from one thread only (the log's writer thread).
Its connection runs in autocommit mode and every write spells out its own
transaction, so "returned" means "committed".
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import fields
from typing import Any

from gateway.request_log.errors import FeedbackConflict, UnknownRequest
from gateway.request_log.migrations import MIGRATIONS, Cursor, Dialect, Migration, migrate
from gateway.request_log.records import Feedback, FeedbackResult, RequestRecord, StoredKey

REQUEST_COLUMNS = tuple(f.name for f in fields(RequestRecord))
FEEDBACK_COLUMNS = ("score", "label", "comment")
KEY_COLUMNS = tuple(f.name for f in fields(StoredKey))
# A batch is written in chunks of these sizes, largest first: a few statements per batch, each
# prepared once (64 rows of 15 columns: 960 parameters, under SQLite's oldest limit of 999).
ROWS_PER_STATEMENT = (64, 32, 16, 8, 4, 2, 1)


class SqlStore:
    def __init__(
        self,
        dialect: Dialect,
        connect: Callable[[], Any],
        *,
        store_prompts: bool,
        migrations: Sequence[Migration] = MIGRATIONS,
        is_broken: Callable[[Any], bool] = lambda conn: False,
    ) -> None:
        self.dialect = dialect
        self.store_prompts = store_prompts
        self._connect = connect
        self._is_broken = is_broken
        self._migrations = migrations
        self._conn: Any = None
        p = dialect.param
        cols = ", ".join(REQUEST_COLUMNS)
        marks = ", ".join([p] * len(REQUEST_COLUMNS))
        # one statement per chunk of a batch, of each size in ROWS_PER_STATEMENT
        self._insert_requests = {
            size: f"INSERT INTO requests ({cols}) VALUES {', '.join([f'({marks})'] * size)} "
            "ON CONFLICT (request_id) DO NOTHING"
            for size in ROWS_PER_STATEMENT
        }
        self._select_request = f"SELECT {cols} FROM requests WHERE request_id = {p}"
        self._select_feedback = f"SELECT score, label, comment FROM feedback WHERE request_id = {p}"
        self._insert_feedback = (
            "INSERT INTO feedback (request_id, score, label, comment, created_at) "
            f"VALUES ({p}, {p}, {p}, {p}, {p}) ON CONFLICT (request_id) DO NOTHING"
        )
        joined = ", ".join(f"r.{c}" for c in REQUEST_COLUMNS)
        self._select_rows = (
            f"SELECT {joined}, f.score, f.label, f.comment FROM requests r "
            "JOIN feedback f ON f.request_id = r.request_id "
            f"WHERE r.created_at >= {p} ORDER BY r.created_at, r.request_id"
        )

    # -- connection ----------------------------------------------------------------------

    def open(self) -> list[int]:
        """Connect and migrate; return the migration versions applied."""
        self.close()
        self._conn = self._connect()
        try:
            return migrate(self._conn.cursor(), self.dialect, self._migrations)
        except BaseException:
            self.close()
            raise

    def close(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None:
            conn.close()

    def _cursor(self) -> Cursor:
        if self._conn is None or self._is_broken(self._conn):
            self.close()
            self._conn = self._connect()  # migrated already, by open()
        cursor: Cursor = self._conn.cursor()
        return cursor

    @contextlib.contextmanager
    def _transaction(self) -> Iterator[Cursor]:
        cur = self._cursor()
        cur.execute(self.dialect.begin)
        try:
            yield cur
        except BaseException:
            with contextlib.suppress(Exception):  # the first error is the one worth reporting
                cur.execute("ROLLBACK")
            raise
        cur.execute("COMMIT")

    # -- operations ----------------------------------------------------------------------

    def insert(self, records: Sequence[RequestRecord]) -> None:
        """Commit a batch; a request id already logged keeps its first record.

        The rows go in chunks of up to 64, each one multi-row ``INSERT``, rather than one
        statement per row (``executemany``): the database driver lets go of the GIL for each
        statement it runs and must take it back after, and while the event loop thread is busy
        that wait is long. Row by row, the writer thread spent ~40 µs of CPU per row under load
        and fell behind the requests at c=16 (benchmarks/README.md, "The request log's writer")."""
        rows = [self._row(r) for r in records]
        with self._transaction() as cur:
            at = 0
            for size in ROWS_PER_STATEMENT:
                while len(rows) - at >= size:
                    chunk = rows[at : at + size]
                    cur.execute(self._insert_requests[size], [value for row in chunk for value in row])
                    at += size

    def _row(self, r: RequestRecord) -> tuple[Any, ...]:
        return (
            r.request_id, r.created_at, r.route, r.model, r.cluster, r.alpha, r.router_version,
            r.prompt_tokens, r.completion_tokens, r.cost, r.latency_s, r.ttft_s, r.status,
            r.api_key_id, r.prompt if self.store_prompts else None,
        )  # fmt: skip

    def add_feedback(self, feedback: Feedback) -> FeedbackResult:
        with self._transaction() as cur:
            row = cur.execute(self._select_request, (feedback.request_id,)).fetchone()
            if row is None:
                raise UnknownRequest(
                    f"no request with id {feedback.request_id!r} has been logged", param="request_id"
                )
            record = RequestRecord(*row)
            values = (feedback.score, feedback.label, feedback.comment)
            cur.execute(self._insert_feedback, (feedback.request_id, *values, time.time()))
            if cur.rowcount == 1:
                return FeedbackResult(record, duplicate=False)
            stored = tuple(cur.execute(self._select_feedback, (feedback.request_id,)).fetchone())
        if stored != values:
            raise FeedbackConflict(
                f"request {feedback.request_id!r} already has different feedback "
                f"(score={stored[0]!r}, label={stored[1]!r}); feedback cannot be changed",
                param="request_id",
            )
        return FeedbackResult(record, duplicate=True)

    def get(self, request_id: str) -> RequestRecord | None:
        row = self._cursor().execute(self._select_request, (request_id,)).fetchone()
        return None if row is None else RequestRecord(*row)

    def feedback_rows(self, since: float | None) -> list[tuple[RequestRecord, Feedback]]:
        start = float("-inf") if since is None else since
        rows = self._cursor().execute(self._select_rows, (start,)).fetchall()
        n = len(REQUEST_COLUMNS)
        return [(RequestRecord(*row[:n]), Feedback(row[0], *row[n:])) for row in rows]

    def count(self) -> int:
        return int(self._cursor().execute("SELECT COUNT(*) FROM requests").fetchone()[0])

    # -- API keys ------------------------------------------------------------------------

    def save_key(self, key: StoredKey) -> None:
        p = self.dialect.param
        cols = ", ".join(KEY_COLUMNS)
        with self._transaction() as cur:
            cur.execute(
                f"INSERT INTO api_keys ({cols}) VALUES ({', '.join([p] * len(KEY_COLUMNS))})",
                tuple(getattr(key, c) for c in KEY_COLUMNS),
            )

    def revoke_key(self, key_id: str, at: float) -> bool:
        p = self.dialect.param
        with self._transaction() as cur:
            cur.execute(
                f"UPDATE api_keys SET revoked_at = {p} WHERE id = {p} AND revoked_at IS NULL", (at, key_id)
            )
            return cur.rowcount == 1

    def keys(self) -> list[StoredKey]:
        rows = self._cursor().execute(f"SELECT {', '.join(KEY_COLUMNS)} FROM api_keys ORDER BY id").fetchall()
        return [StoredKey(*row) for row in rows]

    def spend_by_key(self) -> dict[str, tuple[int, float]]:
        """Per API key id: (tokens, cost) of every logged request."""
        rows = (
            self._cursor()
            .execute(
                "SELECT api_key_id, SUM(prompt_tokens + completion_tokens), SUM(cost) FROM requests "
                "WHERE api_key_id IS NOT NULL GROUP BY api_key_id"
            )
            .fetchall()
        )
        return {str(r[0]): (int(r[1] or 0), float(r[2] or 0.0)) for r in rows}
