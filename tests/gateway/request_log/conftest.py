"""Request log fixtures: every behavioural test runs against SQLite and a real PostgreSQL.

The PostgreSQL server is the Debian package's (``scripts/postgres_for_tests.sh``
installs it): one throwaway cluster per test session in a temp dir, on
127.0.0.1 and a free port, trust auth, run as the ``postgres`` user when the
tests run as root (PostgreSQL refuses root). Each test gets a schema of its own.
"""

from __future__ import annotations

import contextlib
import glob
import itertools
import os
import shutil
import socket
import subprocess
import tempfile
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from gateway.request_log import RequestLog, open_request_log

INSTALL_HINT = (
    "PostgreSQL server binaries (initdb, pg_ctl) not found: run scripts/postgres_for_tests.sh "
    "(apt-get install -y postgresql), or set SMALLFLEET_PG_BINDIR to their directory"
)


def find_pg_bindir() -> Path | None:
    if env := os.environ.get("SMALLFLEET_PG_BINDIR"):
        return Path(env)
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/pg_ctl"), key=lambda p: int(p.split("/")[4]))
    if found:
        return Path(found[-1]).parent
    pg_ctl = shutil.which("pg_ctl")
    return Path(pg_ctl).resolve().parent if pg_ctl else None


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class PostgresServer:
    port: int
    _schemas: Iterator[int] = itertools.count()

    def admin_url(self) -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/postgres"

    def fresh_url(self) -> str:
        """A URL whose tables land in a new, empty schema."""
        import psycopg

        schema = f"t{next(self._schemas)}"
        with psycopg.connect(self.admin_url(), autocommit=True) as conn:
            conn.execute(f"CREATE SCHEMA {schema}")
        return f"{self.admin_url()}?options=-csearch_path%3D{schema}"


@pytest.fixture(scope="session")
def postgres_server() -> Iterator[PostgresServer]:
    bindir = find_pg_bindir()
    if bindir is None or not (bindir / "initdb").exists():
        pytest.fail(INSTALL_HINT, pytrace=False)
    as_root = os.geteuid() == 0
    run_as = ["runuser", "-u", "postgres", "--"] if as_root else []
    base = Path(tempfile.mkdtemp(prefix="smallfleet-pg-"))
    data, log = base / "data", base / "server.log"
    if as_root:
        shutil.chown(base, "postgres", "postgres")
    port = free_port()

    def pg(*args: str) -> None:
        subprocess.run([*run_as, *args], check=True, capture_output=True, text=True, timeout=60)

    try:
        pg(
            str(bindir / "initdb"),
            "-D",
            str(data),
            "-U",
            "postgres",
            "-A",
            "trust",
            "--no-sync",
            "-E",
            "UTF8",
        )
        options = f"-c listen_addresses=127.0.0.1 -p {port} -c unix_socket_directories={base}"
        pg(str(bindir / "pg_ctl"), "-D", str(data), "-l", str(log), "-o", options, "-w", "-t", "30", "start")
    except subprocess.CalledProcessError as exc:
        server_log = log.read_text() if log.exists() else ""
        shutil.rmtree(base, ignore_errors=True)
        pytest.fail(f"could not start PostgreSQL: {exc.stderr}\n{server_log}", pytrace=False)
    try:
        yield PostgresServer(port)
    finally:
        pg(str(bindir / "pg_ctl"), "-D", str(data), "-m", "fast", "-w", "stop")
        shutil.rmtree(base, ignore_errors=True)


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
