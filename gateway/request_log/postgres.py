"""The PostgreSQL request log, through psycopg 3 (imported only when a log is opened).

The writer thread holds one synchronous connection in autocommit mode and
spells out each transaction; PostgreSQL's default ``synchronous_commit=on``
makes every acknowledged commit durable. A broken connection is replaced on
the next operation. Several gateways may share one database: start-up
migrations take a transaction-scoped advisory lock, and feedback uses
``INSERT ... ON CONFLICT`` so concurrent duplicates stay idempotent.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from gateway.request_log.migrations import MIGRATIONS, Dialect, Migration
from gateway.request_log.store import SqlStore
from gateway.request_log.writer import BatchingRequestLog

MIGRATION_LOCK_ID = 0x736D616C6C666C74  # "smallflt"; any constant shared by every gateway
POSTGRESQL = Dialect(
    name="postgresql",
    param="%s",
    begin="BEGIN",
    migration_lock=f"SELECT pg_advisory_xact_lock({MIGRATION_LOCK_ID})",
)
CONNECT_TIMEOUT_S = 10


def _import_psycopg() -> Any:
    try:
        import psycopg
    except ImportError as exc:  # pragma: no cover - depends on the install
        raise RuntimeError(
            "a postgresql:// request log needs psycopg 3: pip install 'psycopg[binary]'"
        ) from exc
    return psycopg


def postgres_store(
    url: str, *, store_prompts: bool, migrations: Sequence[Migration] = MIGRATIONS
) -> SqlStore:
    psycopg = _import_psycopg()

    def connect() -> Any:
        return psycopg.connect(url, autocommit=True, connect_timeout=CONNECT_TIMEOUT_S)

    def is_broken(conn: Any) -> bool:
        return bool(conn.closed or conn.broken)

    return SqlStore(
        POSTGRESQL, connect, store_prompts=store_prompts, migrations=migrations, is_broken=is_broken
    )


def open_postgres_log(url: str, *, store_prompts: bool) -> BatchingRequestLog:
    store = postgres_store(url, store_prompts=store_prompts)
    return BatchingRequestLog(store, database_errors=(_import_psycopg().Error,))
