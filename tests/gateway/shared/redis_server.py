"""A throwaway Redis server for tests, from the distribution's binary (scripts/redis_for_tests.sh)."""

from __future__ import annotations

import contextlib
import os
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import redis

INSTALL_HINT = (
    "redis-server not found: run scripts/redis_for_tests.sh (apt-get install -y redis-server), "
    "or set SMALLFLEET_REDIS_SERVER to the binary"
)


def find_redis_server() -> str | None:
    return os.environ.get("SMALLFLEET_REDIS_SERVER") or shutil.which("redis-server")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class RedisUnavailable(Exception):
    pass


class RedisServer:
    """``redis-server`` on 127.0.0.1 and a free port, without persistence; can stop and start again."""

    def __init__(self, binary: str, directory: Path) -> None:
        self.binary = binary
        self.directory = directory
        self.port = free_port()
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def client(self) -> redis.Redis:
        return redis.Redis(port=self.port, decode_responses=True, socket_timeout=5)

    def start(self) -> None:
        args = ["--port", str(self.port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"]
        args += ["--dir", str(self.directory), "--logfile", str(self.directory / "redis.log")]
        self.proc = subprocess.Popen(
            [self.binary, *args], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
        )
        deadline = time.monotonic() + 20
        while True:
            try:
                with self.client() as client:
                    client.ping()
                return
            except redis.ConnectionError:
                if self.proc.poll() is not None or time.monotonic() > deadline:
                    log = (self.directory / "redis.log").read_text(errors="replace")[-2000:]
                    raise RedisUnavailable(
                        f"redis-server did not start on port {self.port}:\n{log}"
                    ) from None
                time.sleep(0.02)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(timeout=10)
        self.proc = None


@contextlib.contextmanager
def running_redis() -> Iterator[RedisServer]:
    binary = find_redis_server()
    if binary is None:
        raise RedisUnavailable(INSTALL_HINT)
    directory = Path(tempfile.mkdtemp(prefix="smallfleet-redis-"))
    server = RedisServer(binary, directory)
    try:
        server.start()
        yield server
    finally:
        server.stop()
        shutil.rmtree(directory, ignore_errors=True)
