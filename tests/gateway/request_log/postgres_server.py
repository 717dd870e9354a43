"""A throwaway PostgreSQL server for tests, from the distribution's binaries."""

from __future__ import annotations

import contextlib
import glob
import itertools
import os
import shutil
import socket
import subprocess
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

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
    _schemas: Iterator[int] = field(default_factory=itertools.count)

    def admin_url(self) -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/postgres"

    def fresh_url(self) -> str:
        """A URL whose tables land in a new, empty schema."""
        import psycopg

        schema = f"t{next(self._schemas)}"
        with psycopg.connect(self.admin_url(), autocommit=True) as conn:
            conn.execute(f"CREATE SCHEMA {schema}")
        return f"{self.admin_url()}?options=-csearch_path%3D{schema}"


class PostgresUnavailable(Exception):
    pass


@contextlib.contextmanager
def running_postgres() -> Iterator[PostgresServer]:
    """initdb + pg_ctl start in a temp dir (as ``postgres`` when root); stop and remove it after."""
    bindir = find_pg_bindir()
    if bindir is None or not (bindir / "initdb").exists():
        raise PostgresUnavailable(INSTALL_HINT)
    run_as = ["runuser", "-u", "postgres", "--"] if os.geteuid() == 0 else []  # it refuses root
    base = Path(tempfile.mkdtemp(prefix="smallfleet-pg-"))
    data, log = base / "data", base / "server.log"
    if run_as:
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
        raise PostgresUnavailable(f"could not start PostgreSQL: {exc.stderr}\n{server_log}") from exc
    try:
        yield PostgresServer(port)
    finally:
        pg(str(bindir / "pg_ctl"), "-D", str(data), "-m", "fast", "-w", "stop")
        shutil.rmtree(base, ignore_errors=True)
