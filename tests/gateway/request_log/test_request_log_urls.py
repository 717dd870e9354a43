"""Which database a request log URL opens, and the errors a bad URL or server gives."""

from __future__ import annotations

from pathlib import Path

import pytest

from gateway.request_log import DEFAULT_SQLITE_PATH, Feedback, RequestLogUnavailable, open_request_log
from gateway.request_log.postgres import POSTGRESQL
from gateway.request_log.sqlite import SQLITE
from tests.gateway.request_log.factories import make_record
from tests.gateway.request_log.postgres_server import PostgresServer, free_port


@pytest.mark.parametrize("url", ["mysql://u@h/db", "file:///tmp/x.db", "requests.db"])
def test_an_unknown_scheme_is_a_value_error_naming_it(url: str) -> None:
    scheme = url.split("://")[0] if "://" in url else url
    with pytest.raises(ValueError, match=f"unsupported request log URL scheme '{scheme}'"):
        open_request_log(url)


def test_a_sqlite_url_needs_a_path() -> None:
    with pytest.raises(ValueError, match="needs a path"):
        open_request_log("sqlite://")


def test_the_default_is_sqlite_in_the_working_directory() -> None:
    log = open_request_log(None)  # nothing is opened until start()
    assert log.store.dialect == SQLITE  # type: ignore[attr-defined]
    assert not Path(DEFAULT_SQLITE_PATH).exists()


@pytest.mark.parametrize("scheme", ["postgresql", "postgres"])
def test_postgres_urls_open_postgres_lazily(scheme: str) -> None:
    log = open_request_log(f"{scheme}://u@127.0.0.1:1/db")  # no connection before start()
    assert log.store.dialect == POSTGRESQL  # type: ignore[attr-defined]


async def test_an_in_memory_sqlite_log_works_for_tests() -> None:
    log = open_request_log("sqlite://:memory:")
    await log.start()
    try:
        log.record(make_record(1))
        assert (await log.add_feedback(Feedback("req-1", 0.5))).duplicate is False
    finally:
        await log.aclose()


async def test_an_unreachable_postgres_fails_start_clearly() -> None:
    log = open_request_log(f"postgresql://postgres@127.0.0.1:{free_port()}/none?connect_timeout=2")
    with pytest.raises(RequestLogUnavailable, match="database failed"):
        await log.start()


async def test_a_dropped_postgres_connection_is_replaced(postgres_server: PostgresServer) -> None:
    import psycopg

    log = open_request_log(postgres_server.fresh_url())
    await log.start()
    try:
        log.record(make_record(1))
        await log.flush()
        with psycopg.connect(postgres_server.admin_url(), autocommit=True) as admin:
            admin.execute(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                "WHERE pid <> pg_backend_pid() AND backend_type = 'client backend'"
            )
        log.record(make_record(2))  # the first attempt fails, the retry reconnects
        await log.flush()
        assert await log.count() == 2
        assert log.failed == 0
    finally:
        await log.aclose()
