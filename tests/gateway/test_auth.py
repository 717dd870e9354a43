"""API keys: hashed, checked on /v1/, open probes; the CLI's loopback rule."""

from __future__ import annotations

import logging

from backends.fake import FakeBackend
from gateway.access import AccessPolicy
from gateway.auth import KeyStore
from gateway.cli import main
from gateway.settings import Settings
from tests.conftest import fleet_of

CHAT = {"model": "alpha", "messages": [{"role": "user", "content": "hi"}]}


def test_keys_are_kept_as_digests_only():
    keys = KeyStore.from_settings(Settings.from_environ({"SMALLFLEET_API_KEYS": "sk-one, sk-two"}))
    assert keys.accepts("sk-two") and not keys.accepts("sk-three")
    assert "sk-one" not in repr(vars(keys))


async def test_a_missing_or_bad_key_is_401_and_a_good_one_passes(make_client):
    keys = KeyStore(["sk-good"])
    async with make_client(fleet_of("alpha"), {"alpha": FakeBackend("alpha")}, api_keys=keys) as client:
        missing = await client.post("/v1/chat/completions", json=CHAT)
        bad = await client.post("/v1/chat/completions", json=CHAT, headers={"authorization": "Bearer sk-bad"})
        good = await client.post(
            "/v1/chat/completions", json=CHAT, headers={"authorization": "Bearer sk-good"}
        )
        health = await client.get("/health")
    assert missing.status_code == 401 and "missing API key" in missing.json()["error"]["message"]
    assert bad.status_code == 401 and bad.json()["error"]["code"] == "invalid_api_key"
    assert "x-request-id" in bad.headers
    assert good.status_code == 200 and health.status_code == 200


def test_serve_refuses_a_public_address_without_keys(monkeypatch, capsys):
    monkeypatch.delenv("SMALLFLEET_API_KEYS", raising=False)
    assert main(["serve", "--host", "0.0.0.0", "--port", "1"]) == 2
    assert "--insecure-no-auth" in capsys.readouterr().err


def test_serve_refuses_a_bad_config_naming_the_field(tmp_path, capsys):
    path = tmp_path / "fleet.yaml"
    path.write_text("models:\n  - name: a\n    backend: llama_cpp\n")
    assert main(["serve", "--config", str(path)]) == 2
    assert "models[0].gguf" in capsys.readouterr().err


async def test_no_key_reaches_the_log_output(make_client, caplog):
    secret = "sk-never-log-me-0123456789"
    keys = KeyStore([f"team:{secret}"])
    caplog.set_level(logging.DEBUG)
    async with make_client(fleet_of("alpha"), {"alpha": FakeBackend("alpha")}, api_keys=keys) as client:
        good = await client.post(
            "/v1/chat/completions", json=CHAT, headers={"authorization": f"Bearer {secret}"}
        )
        bad = await client.post(
            "/v1/chat/completions", json=CHAT, headers={"authorization": f"Bearer {secret}-wrong"}
        )
        bad_body = await client.post(
            "/v1/chat/completions", content=b"{", headers={"authorization": f"Bearer {secret}"}
        )
    assert (good.status_code, bad.status_code, bad_body.status_code) == (200, 401, 400)
    assert caplog.records  # something was logged at debug level
    assert all(secret not in r.getMessage() and secret not in str(r.args) for r in caplog.records)
    assert secret not in caplog.text and secret not in repr(vars(keys))
    assert secret not in bad.text


async def test_the_key_id_rides_on_the_request_state(make_client):
    keys = KeyStore(["team:sk-t", "sk-anon"])
    app_state: dict[str, object] = {}
    backend = FakeBackend("alpha")
    access = AccessPolicy(admin_loopback=True)  # no admin keys: this machine's direct clients
    async with make_client(fleet_of("alpha"), {"alpha": backend}, api_keys=keys, access=access) as client:
        named = await client.post("/v1/chat/completions", json=CHAT, headers={"authorization": "Bearer sk-t"})
        anon = await client.post(
            "/v1/chat/completions", json=CHAT, headers={"authorization": "Bearer sk-anon"}
        )
        app_state["listing"] = (await client.get("/admin/keys")).json()
    assert named.status_code == anon.status_code == 200
    listing = app_state["listing"]
    assert isinstance(listing, dict)
    ids = [k["id"] for k in listing["data"]]
    assert "team" in ids and any(i.startswith("key-") and len(i) == 12 for i in ids)
    assert all(k["usage"]["requests"] == 1 for k in listing["data"])
