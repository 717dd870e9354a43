"""Shared fixtures: live servers on loopback, the stub upstream, real model files."""

from __future__ import annotations

import asyncio
import contextlib
import socket
import subprocess
import sys
import threading
import time
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import openai
import pytest
import uvicorn
from starlette.applications import Starlette

from backends.base import Backend
from fleet.config import FleetConfig, parse_fleet
from gateway.app import create_app

REPO = Path(__file__).resolve().parent.parent
STUB_UPSTREAM = REPO / "tests" / "stub_upstream.py"


@pytest.fixture(autouse=True)
def _isolated_state(tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch) -> None:
    """Every test gets its own state dir, so request logs never land in the user's home."""
    monkeypatch.setenv("SMALLFLEET_STATE", str(tmp_path_factory.mktemp("state")))


def fleet_of(*names: str, context_length: int = 2048) -> FleetConfig:
    """A fleet config whose models are all replaced by injected backends in tests."""
    models = [
        {
            "name": n,
            "backend": "openai",
            "base_url": "http://127.0.0.1:9/v1",
            "context_length": context_length,
            "price": {"input": 1.0, "output": 2.0},
        }
        for n in names
    ]
    return parse_fleet({"models": models})


@contextlib.asynccontextmanager
async def asgi_client(app: Starlette) -> AsyncIterator[httpx.AsyncClient]:
    """An in-process client with the app's lifespan running."""
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://gateway") as client:
            yield client


@pytest.fixture
def make_client() -> Callable[..., Any]:
    def make(config: FleetConfig, backends: dict[str, Backend], **kwargs: Any) -> Any:
        return asgi_client(create_app(config, backends=backends, **kwargs))

    return make


class LiveServer:
    """A real uvicorn server on a free loopback port, in a thread of its own."""

    def __init__(self, app: Any) -> None:
        config = uvicorn.Config(app, host="127.0.0.1", port=0, log_level="warning", lifespan="on")
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(target=self.server.run, daemon=True)

    def __enter__(self) -> LiveServer:
        self.thread.start()
        deadline = time.monotonic() + 120
        while not self.server.started:
            if not self.thread.is_alive() or time.monotonic() > deadline:
                raise RuntimeError("live server did not start")
            time.sleep(0.02)
        return self

    @property
    def url(self) -> str:
        port = self.server.servers[0].sockets[0].getsockname()[1]
        return f"http://127.0.0.1:{port}"

    def __exit__(self, *exc: object) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=30)


@pytest.fixture
def live_server() -> Iterator[Callable[[Any], LiveServer]]:
    servers: list[LiveServer] = []

    def start(app: Any) -> LiveServer:
        server = LiveServer(app).__enter__()
        servers.append(server)
        return server

    yield start
    for server in servers:
        server.__exit__()


@contextlib.contextmanager
def script_server(script: Path, *args: str) -> Iterator[str]:
    """Run a test server script on a free port; yield its base URL (it prints 'listening on URL')."""
    proc = subprocess.Popen(
        [sys.executable, str(script), "--port", "0", *args], stdout=subprocess.PIPE, text=True
    )
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline()
        if "listening on" not in line:
            raise RuntimeError(f"{script.name} failed to start: {line!r}")
        yield line.strip().rsplit(" ", 1)[-1]
    finally:
        proc.terminate()
        proc.wait(timeout=10)
        if proc.stdout is not None:
            proc.stdout.close()


@contextlib.contextmanager
def stub_upstream_process(*args: str) -> Iterator[str]:
    """tests/stub_upstream.py on a free port; yields its OpenAI base URL (…/v1)."""
    with script_server(STUB_UPSTREAM, *args) as url:
        yield url + "/v1"


@pytest.fixture
def stub_upstream() -> Iterator[str]:
    """The stub upstream's OpenAI base URL (…/v1): plain answers, or the fault a model names."""
    with stub_upstream_process() as url:
        yield url


def free_port() -> int:
    """A loopback port nothing listens on (free when asked; tests also use it as a dead address)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_until_serving(url: str, proc: subprocess.Popen[Any], timeout: float = 300) -> None:
    """Poll ``url`` until it answers 200; fail early if ``proc`` exits."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            if httpx.get(url, timeout=1).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        if proc.poll() is not None:
            detail = proc.stderr.read() if proc.stderr is not None else ""
            raise AssertionError(f"{proc.args!r} exited with {proc.returncode}: {detail}")
        assert time.monotonic() < deadline, f"{url} did not answer within {timeout} s"
        time.sleep(0.5)


@pytest.fixture
def openai_client() -> Iterator[Callable[..., openai.OpenAI]]:
    """Makes official openai clients for a server's base URL, and closes them after the test."""
    clients: list[openai.OpenAI] = []

    def make(server_url: str, **options: Any) -> openai.OpenAI:
        options.setdefault("max_retries", 0)
        client = openai.OpenAI(base_url=server_url + "/v1", api_key="unused", **options)
        clients.append(client)
        return client

    yield make
    for client in clients:
        client.close()


@pytest.fixture(scope="session")
def smollm2_gguf() -> str:
    from backends.gguf_store import resolve_packaged

    return str(resolve_packaged("smollm2-135m-instruct-q4_1"))


def run(coro: Any) -> Any:
    return asyncio.run(coro)
