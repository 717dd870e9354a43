"""Versioned schema migrations, applied in order, in one transaction, at start.

The database's version is the highest row of ``schema_version``. Start-up
applies every newer migration in one transaction (SQLite and PostgreSQL both
have transactional DDL, so a failed migration leaves nothing half-done) and
refuses a database whose version is newer than any migration known here.

Append new migrations to :data:`MIGRATIONS`; never edit one that has shipped.
A migration gives one list of statements, or one per dialect where they differ.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from gateway.request_log.errors import SchemaTooNew

SCHEMA_VERSION_DDL = (
    "CREATE TABLE IF NOT EXISTS schema_version ("
    "version INTEGER PRIMARY KEY, applied_at DOUBLE PRECISION NOT NULL)"
)


class Cursor(Protocol):
    """The DB-API cursor subset both sqlite3 and psycopg provide."""

    rowcount: int

    def execute(self, sql: Any, params: Any = ..., /) -> Any: ...
    def executemany(self, sql: Any, params: Any, /) -> Any: ...
    def fetchone(self) -> Any: ...
    def fetchall(self) -> list[Any]: ...


@dataclass(frozen=True, slots=True)
class Dialect:
    """How one database spells what the request log needs."""

    name: str  # "sqlite" or "postgresql"
    param: str  # the placeholder: "?" or "%s"
    begin: str  # starts a write transaction
    migration_lock: str | None = None  # serialises concurrent start-ups (several gateways)


@dataclass(frozen=True, slots=True)
class Migration:
    version: int
    description: str
    statements: Sequence[str] | Mapping[str, Sequence[str]]

    def for_dialect(self, dialect: str) -> Sequence[str]:
        if isinstance(self.statements, Mapping):
            return self.statements[dialect]
        return self.statements


_REQUESTS_COLUMNS = """
    request_id TEXT PRIMARY KEY,
    created_at DOUBLE PRECISION NOT NULL,
    route TEXT NOT NULL,
    model TEXT NOT NULL,
    cluster TEXT,
    alpha DOUBLE PRECISION,
    router_version TEXT,
    prompt_tokens {int} NOT NULL,
    completion_tokens {int} NOT NULL,
    cost DOUBLE PRECISION NOT NULL,
    latency_s DOUBLE PRECISION NOT NULL,
    ttft_s DOUBLE PRECISION,
    status INTEGER NOT NULL,
    api_key_id TEXT,
    prompt TEXT
"""
_FEEDBACK_DDL = """CREATE TABLE feedback (
    request_id TEXT PRIMARY KEY REFERENCES requests (request_id),
    score DOUBLE PRECISION NOT NULL CHECK (score >= 0 AND score <= 1),
    label TEXT,
    comment TEXT,
    created_at DOUBLE PRECISION NOT NULL
)"""
_V1_INDEX = "CREATE INDEX requests_created_at ON requests (created_at)"
_API_KEYS_DDL = """CREATE TABLE api_keys (
    id TEXT PRIMARY KEY,
    digest TEXT NOT NULL UNIQUE,
    rpm BIGINT,
    tpm BIGINT,
    budget DOUBLE PRECISION,
    created_at DOUBLE PRECISION NOT NULL,
    revoked_at DOUBLE PRECISION
)"""

MIGRATIONS: tuple[Migration, ...] = (
    Migration(
        1,
        "requests and their feedback",
        {
            "sqlite": [
                f"CREATE TABLE requests ({_REQUESTS_COLUMNS.format(int='INTEGER')})",
                _V1_INDEX,
                _FEEDBACK_DDL,
            ],
            "postgresql": [
                f"CREATE TABLE requests ({_REQUESTS_COLUMNS.format(int='BIGINT')})",
                _V1_INDEX,
                _FEEDBACK_DDL,
            ],
        },
    ),
    Migration(
        2,
        "API keys created through the admin endpoints (sha256 digests only, never the keys)",
        [_API_KEYS_DDL],
    ),
)


def _check_order(migrations: Sequence[Migration]) -> None:
    versions = [m.version for m in migrations]
    if versions != list(range(1, len(versions) + 1)):
        raise ValueError(f"migration versions must be 1, 2, 3, ... in order, got {versions}")


def current_version(cur: Cursor) -> int:
    row = cur.execute("SELECT COALESCE(MAX(version), 0) FROM schema_version").fetchone()
    return int(row[0])


def migrate(cur: Cursor, dialect: Dialect, migrations: Sequence[Migration] = MIGRATIONS) -> list[int]:
    """Bring the schema up to date in one transaction; return the versions applied.

    ``cur`` must be in autocommit mode (the transaction is spelled out here).
    Raises :class:`SchemaTooNew` when the database is ahead of ``migrations``.
    """
    _check_order(migrations)
    known = migrations[-1].version if migrations else 0
    cur.execute(dialect.begin)
    try:
        if dialect.migration_lock:
            cur.execute(dialect.migration_lock)
        cur.execute(SCHEMA_VERSION_DDL)
        found = current_version(cur)
        if found > known:
            raise SchemaTooNew(found, known)
        applied = []
        for migration in migrations[found:]:
            for statement in migration.for_dialect(dialect.name):
                cur.execute(statement)
            cur.execute(
                f"INSERT INTO schema_version (version, applied_at) VALUES ({dialect.param}, {dialect.param})",
                (migration.version, time.time()),
            )
            applied.append(migration.version)
        cur.execute("COMMIT")
    except BaseException:
        with contextlib.suppress(Exception):  # the first error is the one worth reporting
            cur.execute("ROLLBACK")
        raise
    return applied
