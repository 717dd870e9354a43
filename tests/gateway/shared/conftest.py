"""Shared-state fixtures: a real Redis (Debian's ``redis-server``, scripts/redis_for_tests.sh).

One server per test session for tests that only use it (flushed before each test), and a
server of its own for a test that stops it. Gateways here are two apps (two replicas) in one
process, or two ``smallfleet serve`` processes, naming the same store.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator, Iterator
from typing import Any

import httpx
import pytest
from starlette.applications import Starlette

from fleet.config import FleetConfig, parse_fleet
from gateway.shared.sync import StateSync
from tests.conftest import asgi_client
from tests.gateway.shared.redis_server import RedisServer, RedisUnavailable, running_redis

ADMIN = {"authorization": "Bearer sk-admin"}


@pytest.fixture(scope="session")
def redis_session_server() -> Iterator[RedisServer]:
    try:
        with running_redis() as server:
            yield server
    except RedisUnavailable as exc:
        pytest.fail(str(exc), pytrace=False)


@pytest.fixture
def redis_server(redis_session_server: RedisServer) -> RedisServer:
    """The session's Redis, empty."""
    with redis_session_server.client() as client:
        client.flushall()
    return redis_session_server


@pytest.fixture
def own_redis() -> Iterator[RedisServer]:
    """A Redis for this test alone (it may stop and start it)."""
    try:
        with running_redis() as server:
            yield server
    except RedisUnavailable as exc:
        pytest.fail(str(exc), pytrace=False)


def shared_fleet(url: str | None, *names: str, **state: Any) -> FleetConfig:
    """Models to be replaced by injected backends, sharing the store at ``url``."""
    models = [
        {
            "name": n,
            "backend": "openai",
            "base_url": "http://127.0.0.1:9/v1",
            "price": {"input": 1.0, "output": 2.0},
        }
        for n in names
    ]
    raw: dict[str, Any] = {"models": models}
    if url is not None:
        # Counting must not fail open because a loaded test machine was slow to reach Redis:
        # 2 s per operation unless a test sets its own (the default, 0.25 s, is for production).
        raw["state"] = {"url": url, "timeout": 2.0, **state}
    return parse_fleet(raw)


@contextlib.asynccontextmanager
async def replicas(*apps: Starlette) -> AsyncIterator[list[httpx.AsyncClient]]:
    """In-process clients of every app, their lifespans running together."""
    async with contextlib.AsyncExitStack() as stack:
        yield [await stack.enter_async_context(asgi_client(app)) for app in apps]


def metric(text: str, name: str, **labels: str) -> float:
    """One sample's value from a /metrics page (0 when absent)."""
    wanted = name + ("{" + ",".join(f'{k}="{v}"' for k, v in sorted(labels.items())) + "}" if labels else "")
    for line in text.splitlines():
        if line.startswith(wanted + " "):
            return float(line.rsplit(" ", 1)[1])
    return 0.0


class Polls:
    """Every replica's completed polls (its ``StateSync`` rounds), in the order the replicas
    started: a test waits for "the next poll" of a replica instead of for a length of time."""

    def __init__(self) -> None:
        self.syncs: list[StateSync] = []  # one per replica, in the order they started
        self.done: dict[StateSync, int] = {}

    async def after_next(self, replica: int, seconds: float = 30.0) -> None:
        """Until the replica has completed a whole poll that began after this call."""
        sync = self.syncs[replica]
        wanted = self.done[sync] + 2  # the round under way may have read the store already
        until = time.monotonic() + seconds
        while self.done[sync] < wanted:
            assert time.monotonic() < until, f"replica {replica} did not poll within {seconds} s"
            await asyncio.sleep(0.01)


@pytest.fixture
def polls(monkeypatch: pytest.MonkeyPatch) -> Polls:
    counted = Polls()
    poll_once = StateSync._poll_once

    async def counting(self: StateSync) -> None:
        if self not in counted.done:
            counted.syncs.append(self)
            counted.done[self] = 0
        await poll_once(self)
        counted.done[self] += 1

    monkeypatch.setattr(StateSync, "_poll_once", counting)
    return counted
