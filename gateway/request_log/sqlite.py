"""The SQLite request log: one file in WAL mode, ``synchronous=FULL``.

Durability: a commit returns only after its WAL frames are fsynced
(``synchronous=FULL``), so a record or feedback acknowledged (``flush()`` or
``add_feedback()`` returned) survives a killed process and a power cut alike;
a transaction cut short by a crash is simply absent after recovery. The cost is
one fsync per committed batch (at most ``BATCH_SIZE`` rows, every 50 ms under
load) and per feedback, far below what the gateway's request rate needs.
``synchronous=NORMAL`` would survive a killed process but could lose the last
commits on power loss, which "acknowledged" does not allow.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Sequence
from pathlib import Path

from gateway.request_log.migrations import MIGRATIONS, Dialect, Migration
from gateway.request_log.store import SqlStore
from gateway.request_log.writer import BatchingRequestLog

SQLITE = Dialect(name="sqlite", param="?", begin="BEGIN IMMEDIATE")
MEMORY = ":memory:"
BUSY_TIMEOUT_MS = 10_000


def connect(path: str) -> sqlite3.Connection:
    if path != MEMORY:
        Path(path).parent.mkdir(parents=True, exist_ok=True)
    # autocommit (isolation_level=None): the store spells out every transaction itself
    conn = sqlite3.connect(path, isolation_level=None, timeout=BUSY_TIMEOUT_MS / 1000)
    try:
        if path != MEMORY:
            mode = conn.execute("PRAGMA journal_mode=WAL").fetchone()[0]
            if mode.lower() != "wal":
                raise sqlite3.OperationalError(f"{path}: cannot use WAL mode (journal_mode is {mode})")
        conn.execute("PRAGMA synchronous=FULL")
        conn.execute("PRAGMA foreign_keys=ON")
    except BaseException:
        conn.close()
        raise
    return conn


def sqlite_store(path: str, *, store_prompts: bool, migrations: Sequence[Migration] = MIGRATIONS) -> SqlStore:
    return SqlStore(SQLITE, lambda: connect(path), store_prompts=store_prompts, migrations=migrations)


def open_sqlite_log(path: str, *, store_prompts: bool) -> BatchingRequestLog:
    return BatchingRequestLog(
        sqlite_store(path, store_prompts=store_prompts), database_errors=(sqlite3.Error,)
    )
