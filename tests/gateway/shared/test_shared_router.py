"""A router reloaded on one replica is published and followed by the others (real Redis)."""

from __future__ import annotations

import asyncio
import json
import shutil
import time
from pathlib import Path

import pytest

import router
from backends.fake import FakeBackend
from fleet.config import parse_fleet
from gateway.app import create_app
from gateway.keys import KeyStore
from tests.gateway.shared.conftest import ADMIN, metric, replicas

MODELS = ["gemma-2-9b-it", "llama-3.1-8b-instruct", "qwen2.5-7b-instruct"]
AUTO = {"model": "auto", "messages": [{"role": "user", "content": "What is 2 + 3?"}], "max_tokens": 4}


@pytest.fixture
def artifacts(tmp_path: Path) -> tuple[str, str]:
    """The shipped artifact and a copy of it under another version."""
    first = str(router.DEFAULT_ARTIFACT)
    second = tmp_path / "v2"
    shutil.copytree(first, second)
    manifest = json.loads((second / "manifest.json").read_text())
    manifest["version"] = "test-v2"
    (second / "manifest.json").write_text(json.dumps(manifest))
    return first, str(second)


def _replica(url: str, artifact: str, **state):
    config = parse_fleet(
        {
            "models": [{"name": n, "backend": "openai", "base_url": "http://127.0.0.1:9/v1"} for n in MODELS],
            "router": {"artifact": artifact},
            "state": {"url": url, **state},
        }
    )
    backends = {n: FakeBackend(n) for n in MODELS}
    return create_app(config, backends=backends, api_keys=KeyStore(), admin_keys=KeyStore(["sk-admin"]))


async def _version_within(client, wanted: str, seconds: float) -> tuple[str, float]:
    start = time.monotonic()
    while True:
        answer = await client.post("/v1/chat/completions", json=AUTO)
        assert answer.status_code == 200, answer.text
        version = answer.headers["x-smallfleet-router-version"]
        waited = time.monotonic() - start
        if version == wanted or waited > seconds:
            return version, waited
        await asyncio.sleep(0.02)


async def test_a_reload_on_one_replica_is_served_by_the_other(redis_server, artifacts):
    first, second = artifacts
    async with replicas(_replica(redis_server.url, first), _replica(redis_server.url, first)) as (a, b):
        before = (await b.get("/health")).json()["router_version"]
        reloaded = await a.post("/admin/router/reload", json={"artifact": second}, headers=ADMIN)
        on_b, _ = await _version_within(b, "test-v2", 30.0)  # B's next poll, then the load
        metrics = (await b.get("/metrics")).text
    assert before != "test-v2"
    assert reloaded.status_code == 200 and reloaded.json()["version"] == "test-v2"
    assert on_b == "test-v2"
    assert 'smallfleet_router_info{version="test-v2"} 1.0' in metrics


async def test_a_replica_that_starts_later_serves_the_published_router_at_once(redis_server, artifacts):
    first, second = artifacts
    async with replicas(_replica(redis_server.url, first)) as (a,):
        await a.post("/admin/router/reload", json={"artifact": second}, headers=ADMIN)
        async with replicas(_replica(redis_server.url, first)) as (late,):
            version = (await late.get("/health")).json()["router_version"]
    assert version == "test-v2"


async def test_a_published_artifact_that_does_not_load_here_keeps_the_old_router(
    redis_server, artifacts, polls
):
    first, _ = artifacts
    async with replicas(_replica(redis_server.url, first)) as (b,):
        before = (await b.get("/health")).json()["router_version"]
        with redis_server.client() as client:  # as if another replica's path meant nothing here
            client.set("smallfleet:router", json.dumps({"artifact": "/nonexistent", "version": "elsewhere"}))
        for _ in range(3):  # the poll that sees it (its load fails at once), and two more
            await polls.after_next(0)
        kept = (await b.get("/health")).json()["router_version"]
        answer = await b.post("/v1/chat/completions", json=AUTO)
        metrics = (await b.get("/metrics")).text
    assert kept == before and answer.status_code == 200
    assert metric(metrics, "smallfleet_state_errors_total", operation="router_reload") == 1  # tried once
