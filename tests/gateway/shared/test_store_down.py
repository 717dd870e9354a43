"""The store unreachable: limits fail open or closed per state.on_error, counted and logged, and the
gateway answers every request within its timeout (stopped Redis, closed port, silent listener)."""

from __future__ import annotations

import asyncio
import logging
import re
import socket
import threading
import time
from collections.abc import Iterator

import pytest

import gateway.shared.store
from backends.fake import FakeBackend
from fleet.config import ConfigError, StateConfig
from gateway.app import create_app
from gateway.keys import KeyLimits, KeyStore
from gateway.settings import Settings
from tests.conftest import free_port
from tests.gateway.shared.conftest import ADMIN, metric, replicas, shared_fleet

CHAT = {"model": "alpha", "messages": [{"role": "user", "content": "hi"}]}
AUTH = {"authorization": "Bearer sk-a"}


def _replica(url: str, rpm: int = 3, **state):
    return create_app(
        shared_fleet(url, "alpha", **state),
        backends={"alpha": FakeBackend("alpha")},
        api_keys=KeyStore(["a:sk-a"], limits={"a": KeyLimits(rpm=rpm)}),
        admin_keys=KeyStore(["sk-admin"]),
    )


class SilentStore:
    """A TCP port that accepts connections and never answers: a hung store. Counts the
    connections made to it (:meth:`connections`)."""

    def __init__(self) -> None:
        self._sock = socket.socket()
        self._sock.bind(("127.0.0.1", 0))
        self._sock.listen(64)
        self._sock.settimeout(0.05)
        self.url = f"redis://127.0.0.1:{self._sock.getsockname()[1]}/0"
        self._accepted: list[socket.socket] = []  # held open, never answered
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._accept, daemon=True)
        self._thread.start()

    def _accept(self) -> None:
        while not self._stop.is_set():
            try:
                conn, _ = self._sock.accept()
            except TimeoutError:
                continue
            self._accepted.append(conn)

    def connections(self) -> int:
        """How many connections were made to it so far: a probe connection is made, and the
        count is read once the probe is accepted (a listener accepts in order)."""
        with socket.create_connection(self._sock.getsockname()) as probe:
            mine = probe.getsockname()
            until = time.monotonic() + 10
            while not any(c.getpeername() == mine for c in list(self._accepted)):
                assert time.monotonic() < until, "the probe was never accepted"
                time.sleep(0.005)
            accepted = list(self._accepted)
            return next(i for i, c in enumerate(accepted) if c.getpeername() == mine)

    def close(self) -> None:
        self._stop.set()
        self._thread.join()
        self._sock.close()
        for conn in self._accepted:
            conn.close()


@pytest.fixture
def silent_store() -> Iterator[SilentStore]:
    store = SilentStore()
    yield store
    store.close()


async def _timed(client, path: str = "/v1/chat/completions"):
    start = time.monotonic()
    response = await client.post(path, json=CHAT, headers=AUTH)
    return response, time.monotonic() - start


async def test_stopped_mid_traffic_limits_fail_open_to_per_replica_counts(own_redis, caplog):
    caplog.set_level(logging.WARNING, "smallfleet.state")
    apps = [_replica(own_redis.url, rpm=3) for _ in range(2)]
    async with replicas(*apps) as (a, b):
        shared = [(await c.post("/v1/chat/completions", json=CHAT, headers=AUTH)).status_code for c in (a, b)]
        own_redis.stop()
        timed = [await _timed(c) for c in (a, b, a, b)]
        metrics = (await a.get("/metrics")).text
        health = await a.get("/health")
        own_redis.start()
        await asyncio.sleep(1.1)  # past the pause after a failure
        back = [(await c.post("/v1/chat/completions", json=CHAT, headers=AUTH)).status_code for c in (a, b)]
    assert shared == [200, 200]
    # each replica goes on from the counts it last saw (A: 1 of 3, B: 2 of 3), per process
    assert [r.status_code for r, _ in timed] == [200, 200, 200, 429]
    assert metric(metrics, "smallfleet_state_errors_total", operation="admit") == 2  # A's two
    assert health.status_code == 200
    assert back == [200, 200]  # a fresh store: the minute starts again
    messages = [r.getMessage() for r in caplog.records]
    # one line per replica when its store goes away, naming the first operation that found it
    # gone: an admission, or the charge of an answer that finished just before the stop
    assert any(
        re.search(r"unreachable during (admit|charge)", m) and "state.on_error" in m for m in messages
    )
    assert any("reachable again" in m for m in messages)


async def test_limits_fail_closed_with_a_503_when_so_configured(own_redis):
    async with replicas(_replica(own_redis.url, on_error="closed")) as (a,):
        before = await a.post("/v1/chat/completions", json=CHAT, headers=AUTH)
        own_redis.stop()
        refused, _ = await _timed(a)
        models = await a.get("/v1/models", headers=AUTH)
        metrics = (await a.get("/metrics")).text
    assert before.status_code == 200
    assert refused.status_code == 503
    error = refused.json()["error"]
    assert (error["type"], error["code"]) == ("server_error", "state_unavailable")
    assert refused.headers["retry-after"] == "1"
    assert models.status_code == 200  # only admissions need the store
    assert metric(metrics, "smallfleet_key_rejections_total", code="state_unavailable", key="a") == 1


async def test_a_store_that_never_answers_costs_at_most_its_timeout(silent_store, monkeypatch):
    # the sync at start-up finds the store silent too: no skip after it, so the first request
    # tries the store; from that request's failure on, a skip that cannot lapse mid-test
    monkeypatch.setattr(gateway.shared.store, "RETRY_AFTER_S", 0.0)
    async with replicas(_replica(silent_store.url, timeout=0.2, poll_interval=30)) as (a,):
        monkeypatch.setattr(gateway.shared.store, "RETRY_AFTER_S", 60.0)
        first = await _timed(a)
        tried = silent_store.connections()
        timed = [first] + [await _timed(a) for _ in range(4)]
        created = await a.post("/admin/keys", json={"name": "x"}, headers=ADMIN)
        metrics = (await a.get("/metrics")).text
    assert [r.status_code for r, _ in timed] == [200, 200, 200, 429, 429]  # open: per-process rpm 3
    # the first request waited for the store and paid its 0.2 s timeout (a store that never
    # answers would hold it for good: the upper bound is generous, ~10x); the rest skip the store
    # while it is down (RETRY_AFTER_S), so they never reach it
    assert 0.15 <= timed[0][1] < 2.0
    assert tried >= 1 and silent_store.connections() == tried + 1  # + 1: the first probe's own
    assert created.status_code == 503
    assert metric(metrics, "smallfleet_state_errors_total", operation="admit") == 5


async def test_a_gateway_starts_and_serves_with_no_store_listening():
    async with replicas(_replica(f"redis://127.0.0.1:{free_port()}/0", rpm=100)) as (a,):
        answer = await a.post("/v1/chat/completions", json=CHAT, headers=AUTH)
        listing = await a.get("/admin/keys", headers=ADMIN)
    assert answer.status_code == 200 and answer.headers["x-ratelimit-remaining-requests"] == "99"
    assert listing.status_code == 200 and listing.json()["data"][0]["usage"]["requests"] == 1


def test_the_store_url_comes_from_the_config_or_the_environment():
    assert Settings.from_environ({}).state_store_url(StateConfig()) is None
    settings = Settings.from_environ({"SMALLFLEET_STATE_URL": "redis://cache:6379/2"})
    assert settings.state_store_url(StateConfig()) == "redis://cache:6379/2"
    assert settings.state_store_url(StateConfig(url="unix:///run/redis.sock")) == "unix:///run/redis.sock"
    bad = Settings.from_environ({"SMALLFLEET_STATE_URL": "http://user:secret@cache"})
    assert "secret" not in repr(bad)
    with pytest.raises(ConfigError, match="SMALLFLEET_STATE_URL: expected a redis://") as error:
        bad.state_store_url(StateConfig())
    assert "secret" not in str(error.value)
    assert "secret" not in repr(StateConfig(url="redis://:secret@cache:6379"))


def test_serve_refuses_a_bad_store_url_from_the_environment(monkeypatch, capsys):
    from gateway.cli import main

    monkeypatch.setenv("SMALLFLEET_STATE_URL", "localhost:6379")
    assert main(["serve", "--port", "1"]) == 2
    assert "SMALLFLEET_STATE_URL: expected a redis://, rediss:// or unix:// URL" in capsys.readouterr().err
