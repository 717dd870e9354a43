"""Versioned schema migrations, on SQLite and PostgreSQL."""

from __future__ import annotations

from collections.abc import Callable, Sequence

import pytest

from gateway.request_log import MIGRATIONS, Migration, SchemaTooNew, open_request_log
from gateway.request_log.migrations import current_version
from gateway.request_log.postgres import postgres_store
from gateway.request_log.sqlite import sqlite_store
from gateway.request_log.store import SqlStore
from tests.gateway.request_log.factories import make_record

MakeStore = Callable[[Sequence[Migration]], SqlStore]
LATEST = MIGRATIONS[-1].version
V2 = Migration(LATEST + 1, "a column for tests", ["ALTER TABLE requests ADD COLUMN note TEXT"])


@pytest.fixture
def make_store(log_url: str) -> MakeStore:
    def make(migrations: Sequence[Migration]) -> SqlStore:
        if log_url.startswith("sqlite://"):
            return sqlite_store(log_url.removeprefix("sqlite://"), store_prompts=False, migrations=migrations)
        return postgres_store(log_url, store_prompts=False, migrations=migrations)

    return make


def version_of(store: SqlStore) -> int:
    return current_version(store._cursor())


def test_an_empty_database_is_migrated_to_the_latest_version(make_store: MakeStore) -> None:
    store = make_store(MIGRATIONS)
    try:
        assert store.open() == [m.version for m in MIGRATIONS]
        assert version_of(store) == MIGRATIONS[-1].version
        assert store.count() == 0
    finally:
        store.close()


def test_reopening_a_migrated_database_changes_nothing(make_store: MakeStore) -> None:
    store = make_store(MIGRATIONS)
    try:
        store.open()
        record = make_record(1, prompt=None)
        store.insert([record])
        assert store.open() == []
        assert store.get("req-1") == record
        assert version_of(store) == MIGRATIONS[-1].version
    finally:
        store.close()


def test_only_the_newer_migrations_are_applied(make_store: MakeStore) -> None:
    old, new = make_store(MIGRATIONS), make_store([*MIGRATIONS, V2])
    try:
        old.open()
        old.insert([make_record(1)])
        assert new.open() == [LATEST + 1]
        cur = new._cursor()
        cur.execute("UPDATE requests SET note = 'kept' WHERE request_id = 'req-1'")
        assert cur.execute("SELECT note FROM requests").fetchall() == [("kept",)]
    finally:
        old.close()
        new.close()


def test_a_failing_migration_leaves_nothing_half_done(make_store: MakeStore) -> None:
    broken = Migration(LATEST + 1, "fails halfway", ["CREATE TABLE half (x INTEGER)", "THIS IS NOT SQL"])
    store = make_store([*MIGRATIONS, broken])
    try:
        with pytest.raises(Exception, match="(?i)syntax"):
            store.open()
        store = make_store(MIGRATIONS)
        store.open()
        assert version_of(store) == LATEST
        cur = store._cursor()
        with pytest.raises(Exception, match="half"):
            cur.execute("SELECT x FROM half")
    finally:
        store.close()


async def test_a_database_from_a_newer_smallfleet_is_refused(log_url: str, make_store: MakeStore) -> None:
    newer = make_store([*MIGRATIONS, V2])
    newer.open()
    newer.close()
    log = open_request_log(log_url)
    with pytest.raises(SchemaTooNew, match=f"version {LATEST + 1}, but this smallfleet knows versions up to {LATEST}"):
        await log.start()
    with pytest.raises(RuntimeError, match="not running"):
        await log.count()


def test_migrations_must_be_numbered_in_order(make_store: MakeStore) -> None:
    store = make_store([MIGRATIONS[0], Migration(3, "skips 2", ["SELECT 1"])])
    with pytest.raises(ValueError, match=r"1, 2, 3"):
        store.open()
    store.close()
