"""API keys made and revoked through /admin/keys on one replica hold on the others (real Redis)."""

from __future__ import annotations

import gateway.shared.store
from backends.fake import FakeBackend
from gateway.app import create_app
from gateway.keys import KeyStore
from gateway.request_log import StoredKey, open_request_log
from tests.gateway.shared.conftest import ADMIN, replicas, shared_fleet

CHAT = {"model": "alpha", "messages": [{"role": "user", "content": "hi"}]}


def _replica(url: str, db=None, **state):
    log = open_request_log(f"sqlite://{db}") if db is not None else None
    return create_app(
        shared_fleet(url, "alpha", **state),
        backends={"alpha": FakeBackend("alpha")},
        api_keys=KeyStore(["env-key:sk-env"]),
        admin_keys=KeyStore(["sk-admin"]),
        request_log=log,
    )


async def _chat(client, secret: str):
    return await client.post("/v1/chat/completions", json=CHAT, headers={"authorization": f"Bearer {secret}"})


async def test_a_key_made_on_one_replica_works_on_the_other_and_its_revocation_holds_from_its_next_poll(
    redis_server, polls
):
    async with replicas(_replica(redis_server.url), _replica(redis_server.url)) as (a, b):
        created = await a.post("/admin/keys", json={"name": "team-a", "rpm": 50}, headers=ADMIN)
        secret = created.json()["key"]
        await polls.after_next(1)
        on_b = await _chat(b, secret)
        listed = (await b.get("/admin/keys", headers=ADMIN)).json()["data"]
        revoked = await a.delete("/admin/keys/team-a", headers=ADMIN)
        on_a = await _chat(a, secret)
        await polls.after_next(1)
        refused_on_b = await _chat(b, secret)
    assert created.status_code == 201
    assert on_b.status_code == 200
    team_a = next(entry for entry in listed if entry["id"] == "team-a")
    assert team_a["limits"]["rpm"] == 50 and team_a["source"] == "admin"
    assert revoked.status_code == 200 and on_a.status_code == 401
    assert refused_on_b.status_code == 401


async def test_two_replicas_cannot_make_two_keys_of_one_name(redis_server):
    async with replicas(_replica(redis_server.url, poll_interval=30), _replica(redis_server.url)) as (a, b):
        first = await a.post("/admin/keys", json={"name": "team-a"}, headers=ADMIN)
        second = await b.post("/admin/keys", json={"name": "team-a"}, headers=ADMIN)  # before any poll
    assert first.status_code == 201
    assert second.status_code == 409 and second.json()["error"]["code"] == "key_conflict"


async def test_keys_a_replica_made_before_the_store_are_pushed_to_it(redis_server, tmp_path, polls):
    db = tmp_path / "a.db"
    log = open_request_log(f"sqlite://{db}")
    await log.start()
    await log.save_key(StoredKey("old", "0" * 64, 5, None, None, 1.0))  # made before the store
    await log.save_key(StoredKey("gone", "1" * 64, None, None, None, 1.0, revoked_at=2.0))
    await log.aclose()
    async with replicas(_replica(redis_server.url, db), _replica(redis_server.url)) as (_, b):
        await polls.after_next(1)  # A pushed its keys when it started; B pulls them at its next poll
        listing = (await b.get("/admin/keys", headers=ADMIN)).json()["data"]
    revoked = {entry["id"]: entry["revoked"] for entry in listing}
    assert revoked == {"env-key": False, "old": False, "gone": True}


async def test_a_revocation_made_while_the_store_was_down_reaches_the_others_when_it_returns(
    own_redis, polls, monkeypatch
):
    # a replica that found the store down tries it again at its next poll, not a second later,
    # so the polls counted below are all that the store's return waits for
    monkeypatch.setattr(gateway.shared.store, "RETRY_AFTER_S", 0.0)
    url = own_redis.url
    async with replicas(_replica(url, poll_interval=0.1), _replica(url, poll_interval=0.1)) as (a, b):
        secret = (await a.post("/admin/keys", json={"name": "team-a"}, headers=ADMIN)).json()["key"]
        await polls.after_next(1)
        on_b = await _chat(b, secret)
        own_redis.stop()
        revoked = await a.delete("/admin/keys/team-a", headers=ADMIN)
        made = await a.post("/admin/keys", json={"name": "team-b"}, headers=ADMIN)
        await polls.after_next(1)  # a poll with the store down
        still_on_b = await _chat(b, secret)
        own_redis.start()  # empty: the store lost everything
        for _ in range(10):  # polls, not seconds: A pushes what changed while it was down, B pulls it
            await polls.after_next(1)
            refused_on_b = await _chat(b, secret)
            if refused_on_b.status_code == 401:
                break
    assert on_b.status_code == 200
    assert revoked.status_code == 200 and revoked.json()["revoked"] is True
    assert made.status_code == 503 and made.json()["error"]["code"] == "state_unavailable"
    assert still_on_b.status_code == 200  # B cannot know yet
    assert refused_on_b.status_code == 401


async def test_rows_that_are_not_keys_are_ignored_and_the_rest_still_applies(redis_server, caplog, polls):
    with redis_server.client() as client:
        client.hset("smallfleet:keys", mapping={"junk": "not json", "half": '{"digest": "ab"}'})
        client.set("smallfleet:router", "not json either")
    async with replicas(_replica(redis_server.url), _replica(redis_server.url)) as (a, b):
        secret = (await a.post("/admin/keys", json={"name": "team-a"}, headers=ADMIN)).json()["key"]
        await polls.after_next(1)
        on_b = await _chat(b, secret)
    assert on_b.status_code == 200
    warnings = [r.getMessage() for r in caplog.records if r.name == "smallfleet.state"]
    assert sum("'junk'" in m for m in warnings) == 2  # once per replica, not once per poll
