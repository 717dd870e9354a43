"""Per-key limits counted in a real Redis hold across replicas (two apps naming one store)."""

from __future__ import annotations

import asyncio
import time

import pytest

from backends.fake import FakeBackend
from gateway.app import create_app
from gateway.keys import KeyLimits, KeyStore
from gateway.metrics import GatewayMetrics
from gateway.shared import SharedLimiter, SharedStore
from gateway.shared.limits import usage_from_reply
from tests.gateway.shared.conftest import ADMIN, replicas, shared_fleet

CHAT = {"model": "alpha", "messages": [{"role": "user", "content": "one two three"}]}
AUTH = {"authorization": "Bearer sk-a"}


def _replica(url: str, **limits: KeyLimits):
    keys = KeyStore(["a:sk-a", "b:sk-b"], limits=limits)
    backend = FakeBackend("alpha", reply="w1 w2 w3 w4 w5 w6 w7 w8")  # 3 prompt + 8 completion tokens
    return create_app(
        shared_fleet(url, "alpha"),
        backends={"alpha": backend},
        api_keys=keys,
        admin_keys=KeyStore(["sk-admin"]),
    )


async def test_an_rpm_limit_holds_across_two_replicas(redis_server):
    apps = [_replica(redis_server.url, a=KeyLimits(rpm=4)) for _ in range(2)]  # replicas share a config
    async with replicas(*apps) as (a, b):
        answers = [
            await (a, b)[i % 2].post("/v1/chat/completions", json=CHAT, headers=AUTH) for i in range(6)
        ]
        other_key = await b.post("/v1/chat/completions", json=CHAT, headers={"authorization": "Bearer sk-b"})
    statuses = [r.status_code for r in answers]
    assert statuses == [200, 200, 200, 200, 429, 429]  # 4 in all, then refused by either replica
    assert [r.headers["x-ratelimit-remaining-requests"] for r in answers[:4]] == ["3", "2", "1", "0"]
    assert answers[4].json()["error"]["code"] == "rate_limit_exceeded"
    assert 1 <= int(answers[5].headers["retry-after"]) <= 61
    assert other_key.status_code == 200


async def test_concurrent_requests_on_both_replicas_never_pass_the_limit(redis_server):
    apps = [_replica(redis_server.url, a=KeyLimits(rpm=10)) for _ in range(2)]
    async with replicas(*apps) as clients:
        answers = await asyncio.gather(
            *(clients[i % 2].post("/v1/chat/completions", json=CHAT, headers=AUTH) for i in range(30))
        )
    assert sorted(r.status_code for r in answers) == [200] * 10 + [429] * 20


async def _until_refused(client, deadline_s: float = 1.0):
    start = time.monotonic()
    while True:
        response = await client.post("/v1/chat/completions", json=CHAT, headers=AUTH)
        if response.status_code == 429 or time.monotonic() - start > deadline_s:
            return response
        await asyncio.sleep(0.02)


async def test_tokens_charged_on_one_replica_refuse_on_the_other(redis_server):
    url = redis_server.url
    async with replicas(_replica(url, a=KeyLimits(tpm=10)), _replica(url, a=KeyLimits(tpm=10))) as (a, b):
        first = await a.post("/v1/chat/completions", json=CHAT, headers=AUTH)
        refused = await _until_refused(b)  # the charge lands in the store just after A's answer
    assert first.status_code == 200 and first.json()["usage"]["total_tokens"] == 11
    assert refused.status_code == 429 and "tokens per minute" in refused.json()["error"]["message"]


async def test_a_budget_spent_on_one_replica_is_spent_on_the_other(redis_server):
    url = redis_server.url
    async with replicas(_replica(url, a=KeyLimits(budget=1e-5)), _replica(url, a=KeyLimits(budget=1e-5))) as (a, b):
        first = await a.post("/v1/chat/completions", json=CHAT, headers=AUTH)  # costs 1.9e-5
        spent = await _until_refused(b)
    assert first.status_code == 200
    assert spent.status_code == 429 and spent.json()["error"]["code"] == "budget_exceeded"
    assert spent.headers["x-smallfleet-budget-remaining"] == "0" and "retry-after" not in spent.headers


async def test_the_admin_listing_reports_usage_from_every_replica(redis_server):
    async with replicas(_replica(redis_server.url), _replica(redis_server.url)) as (a, b):
        for _ in range(3):
            assert (await a.post("/v1/chat/completions", json=CHAT, headers=AUTH)).status_code == 200
        await _until_totals(b, tokens=33)
        listing = await b.get("/admin/keys", headers=ADMIN)
    usage = {entry["id"]: entry["usage"] for entry in listing.json()["data"]}["a"]
    assert usage["requests"] == 3 and usage["requests_last_minute"] == 3
    assert usage["tokens"] == 33 and usage["tokens_last_minute"] == 33
    assert usage["spent"] == pytest.approx(3 * (3 * 1.0 + 8 * 2.0) / 1e6)


async def _until_totals(client, tokens: int) -> None:
    deadline = time.monotonic() + 1.0
    while time.monotonic() < deadline:
        listing = (await client.get("/admin/keys", headers=ADMIN)).json()
        if {e["id"]: e["usage"]["tokens"] for e in listing["data"]}["a"] >= tokens:
            return
        await asyncio.sleep(0.02)


async def test_budgets_are_seeded_from_the_request_log_without_double_counting(redis_server):
    """At start a replica raises the store's totals to its log's (max, not sum)."""
    store = SharedStore.connect(
        redis_server.url, shared_fleet(redis_server.url, "alpha").state, GatewayMetrics()
    )
    keys = KeyStore(["a:sk-a"], limits={"a": KeyLimits(budget=1.0)})
    limiters = [SharedLimiter(keys, GatewayMetrics(), store) for _ in range(2)]
    try:
        for limiter in limiters:  # two replicas whose logs (one shared database) say 0.6 spent
            limiter.seed({"a": (600, 0.6)})
            await limiter.start()
        key = keys.get("a")
        assert key is not None
        assert await limiters[0].admit(key) is None
        assert limiters[0].report(key)["spent"] == pytest.approx(0.6)
        limiters[1].seed({"a": (1200, 1.2)})  # a log that knows more raises it
        await limiters[1].start()
        refusal = await limiters[0].admit(key)
        assert refusal is not None and refusal.code == "budget_exceeded"
    finally:
        await store.aclose()


def test_the_window_forgets_after_a_minute_by_the_stores_clock():
    """The script's buckets in Python's sliding window: a second's bucket leaves at its end + 60 s."""
    reply = [
        "",
        "1000.5",
        "7",
        "30",
        "0.25",
        ["r940", "1", "t940", "10", "r999", "2", "r1000", "3", "r1000", "4"],
    ]
    refusal, now, usage = usage_from_reply(reply)
    assert (refusal, now) == ("", 1000.5)
    assert (usage.total_requests, usage.total_tokens, usage.spent) == (7, 30, 0.25)
    assert usage.requests.used(1000.5) == 1 + 2 + 4  # a later value of a field wins
    assert usage.requests.free_after(1000.5, 7) == pytest.approx(0.5)  # r940 leaves at 1001
    assert usage.tokens.used(1001.0) == 0
