"""Request log fixtures: every behavioural test runs against SQLite and a real PostgreSQL.

The PostgreSQL server is the Debian package's (``scripts/postgres_for_tests.sh``
installs it): one throwaway cluster per test session in a temp dir, on
127.0.0.1 and a free port, trust auth, run as the ``postgres`` user when the
tests run as root (PostgreSQL refuses root). Each test gets a schema of its own.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from gateway.request_log import RequestLog, open_request_log
from tests.gateway.request_log.postgres_server import PostgresServer, PostgresUnavailable, running_postgres


@pytest.fixture(scope="session")
def postgres_server() -> Iterator[PostgresServer]:
    try:
        with running_postgres() as server:
            yield server
    except PostgresUnavailable as exc:
        pytest.fail(str(exc), pytrace=False)


@pytest.fixture(params=["sqlite", "postgresql"])
def log_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "sqlite":
        return f"sqlite://{tmp_path}/requests.db"
    server: PostgresServer = request.getfixturevalue("postgres_server")
    return server.fresh_url()


@pytest.fixture
def open_log(log_url: str) -> Iterator[Callable[..., Any]]:
    """``async with open_log() as log``: a started log on this test's database, closed after."""

    @contextlib.asynccontextmanager
    async def opened(*, store_prompts: bool = False) -> AsyncIterator[RequestLog]:
        log = open_request_log(log_url, store_prompts=store_prompts)
        await log.start()
        try:
            yield log
        finally:
            await log.aclose()

    yield opened
