"""/admin/keys: create (secret shown once), list (no secrets), revoke; admin key required; persisted."""

from __future__ import annotations

from pathlib import Path

from backends.fake import FakeBackend
from gateway.access import AccessPolicy
from gateway.app import create_app
from gateway.keys import KeyStore
from gateway.request_log import open_request_log
from tests.conftest import asgi_client, fleet_of

CHAT = {"model": "alpha", "messages": [{"role": "user", "content": "hi"}]}
ADMIN = {"authorization": "Bearer sk-admin"}


def _app(db: Path):
    return create_app(
        fleet_of("alpha"),
        backends={"alpha": FakeBackend("alpha")},
        api_keys=KeyStore(),
        admin_keys=KeyStore(["sk-admin"]),
        request_log=open_request_log(f"sqlite://{db}"),
    )


async def test_admin_endpoints_need_the_admin_key(tmp_path):
    async with asgi_client(_app(tmp_path / "log.db")) as client:
        missing = await client.get("/admin/keys")
        wrong = await client.post("/admin/keys", json={"name": "x"}, headers={"authorization": "Bearer sk-x"})
        reload = await client.post("/admin/router/reload", headers={"authorization": "Bearer sk-x"})
        revoke = await client.delete("/admin/keys/x")
    for response in (missing, wrong, reload, revoke):
        assert response.status_code == 401, response.text
        assert response.json()["error"]["code"] == "invalid_api_key"


async def test_a_key_is_created_used_listed_revoked_and_survives_a_restart(tmp_path):
    db = tmp_path / "log.db"
    async with asgi_client(_app(db)) as client:
        open_before = await client.post("/v1/chat/completions", json=CHAT)
        created = await client.post(
            "/admin/keys", json={"name": "team-a", "rpm": 100, "budget": 5}, headers=ADMIN
        )
        secret = created.json()["key"]
        closed_now = await client.post("/v1/chat/completions", json=CHAT)
        used = await client.post(
            "/v1/chat/completions", json=CHAT, headers={"authorization": f"Bearer {secret}"}
        )
        duplicate = await client.post("/admin/keys", json={"name": "team-a"}, headers=ADMIN)
        bad_name = await client.post("/admin/keys", json={"name": "no spaces"}, headers=ADMIN)
        listing = await client.get("/admin/keys", headers=ADMIN)
    assert open_before.status_code == 200  # no keys yet: open (loopback rule)
    assert created.status_code == 201 and secret.startswith("sk-sf-")
    assert created.json()["limits"] == {"rpm": 100, "tpm": None, "budget": 5.0}
    assert closed_now.status_code == 401  # a key exists: /v1 needs one
    assert used.status_code == 200 and used.headers["x-ratelimit-remaining-requests"] == "99"
    assert duplicate.status_code == 409 and bad_name.status_code == 400
    assert bad_name.json()["error"]["param"] == "name"
    [entry] = listing.json()["data"]
    assert entry["id"] == "team-a" and entry["usage"]["requests"] == 1 and entry["usage"]["spent"] > 0
    assert secret not in listing.text and "digest" not in listing.text

    async with asgi_client(_app(db)) as client:  # a restart: the key and its spending are kept
        again = await client.post(
            "/v1/chat/completions", json=CHAT, headers={"authorization": f"Bearer {secret}"}
        )
        listing = await client.get("/admin/keys", headers=ADMIN)
        revoked = await client.delete("/admin/keys/team-a", headers=ADMIN)
        after = await client.post(
            "/v1/chat/completions", json=CHAT, headers={"authorization": f"Bearer {secret}"}
        )
        unknown = await client.delete("/admin/keys/nobody", headers=ADMIN)
    assert again.status_code == 200
    assert listing.json()["data"][0]["usage"]["tokens"] > 0  # seeded from the request log
    assert revoked.status_code == 200 and revoked.json()["revoked"] is True
    assert after.status_code == 401  # revoking the last key does not open the gateway
    assert unknown.status_code == 404

    async with asgi_client(_app(db)) as client:
        listing = await client.get("/admin/keys", headers=ADMIN)
    assert listing.json()["data"][0]["revoked"] is True


async def test_environment_keys_are_listed_but_revoked_only_by_removing_them(tmp_path):
    app = create_app(
        fleet_of("alpha"),
        backends={"alpha": FakeBackend("alpha")},
        api_keys=KeyStore(["ops:sk-ops"]),
        request_log=open_request_log(f"sqlite://{tmp_path / 'log.db'}"),
        access=AccessPolicy(admin_loopback=True),
    )
    async with asgi_client(app) as client:  # no admin keys: this machine's direct clients (127.0.0.1)
        listing = await client.get("/admin/keys")
        revoke = await client.delete("/admin/keys/ops")
    assert [k["id"] for k in listing.json()["data"]] == ["ops"]
    assert listing.json()["data"][0]["source"] == "env"
    assert revoke.status_code == 409 and "SMALLFLEET_API_KEYS" in revoke.json()["error"]["message"]
