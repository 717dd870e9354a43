"""Who may do what without a key, and behind a proxy (gateway/access.py, docs/security.md).

The rules, in process; then a real ``smallfleet serve`` behind a real reverse proxy on loopback
(every client arrives from 127.0.0.1), where a client of the proxy is neither admin nor, without
API keys, let in, while a client on the machine talking to the gateway directly still is.
"""

from __future__ import annotations

import logging
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from backends.fake import FakeBackend
from gateway.access import AccessPolicy, Origin, admin_key_store, admin_secret, origin, parse_networks
from gateway.keys import KeyStore
from gateway.settings import Settings
from tests.conftest import REPO, LiveServer, fleet_of, free_port, wait_until_serving

CHAT = {"model": "alpha", "messages": [{"role": "user", "content": "hi"}]}
LOCAL = ("127.0.0.1", 50000)


def scope(client: tuple[str, int] | None = LOCAL, **headers: str) -> dict[str, Any]:
    raw = [(name.replace("_", "-").encode(), value.encode()) for name, value in headers.items()]
    return {"type": "http", "client": client, "headers": raw}


# -- the rules ----------------------------------------------------------------------------------
def test_a_direct_loopback_client_is_local_and_nothing_else_is() -> None:
    policy = AccessPolicy()
    assert origin(scope(), policy).local
    assert origin(scope(("::1", 1)), policy).local
    assert not origin(scope(("192.0.2.7", 1)), policy).local
    assert not origin(scope(("testclient", 50000)), policy).local  # a name is no address
    assert not origin(scope(None), policy).local  # a unix socket: no peer address


@pytest.mark.parametrize(
    "header", [{"x_forwarded_for": "203.0.113.9"}, {"forwarded": "for=203.0.113.9"}, {"x_real_ip": "203.0.113.9"}]
)
def test_a_loopback_peer_that_forwards_is_a_proxy_whose_word_is_not_taken(header: dict[str, str]) -> None:
    """An untrusted local proxy: the header proves a proxy, its value proves nothing."""
    found = origin(scope(**header), AccessPolicy())
    assert found == Origin(address=origin(scope(), AccessPolicy()).address, proxied=True)
    assert not found.local
    # A local client cannot lie its way in either: claiming 127.0.0.1 only marks it proxied.
    assert not origin(scope(x_forwarded_for="127.0.0.1"), AccessPolicy()).local


def test_a_trusted_proxy_names_the_client_and_the_nearest_untrusted_hop_wins() -> None:
    policy = AccessPolicy(trusted_proxies=parse_networks(["127.0.0.1", "10.0.0.0/8"], "test"))
    behind = origin(scope(x_forwarded_for="198.51.100.4, 203.0.113.9, 10.1.2.3"), policy)
    assert str(behind.address) == "203.0.113.9" and behind.proxied  # 198.51.100.4 could be forged
    v6 = origin(scope(forwarded='for="[2001:db8::1]:4711";proto=https, for=10.0.0.2'), policy)
    assert str(v6.address) == "2001:db8::1"
    port = origin(scope(forwarded="for=192.0.2.43:47011"), policy)
    assert str(port.address) == "192.0.2.43"
    assert origin(scope(forwarded="for=unknown"), policy).address is None
    local_via_proxy = origin(scope(x_forwarded_for="127.0.0.1"), policy)
    assert local_via_proxy.proxied and not local_via_proxy.local  # through a proxy is never local
    silent = origin(scope(), policy)  # a trusted proxy that says nothing: not a local client
    assert silent.proxied and not silent.local
    untrusted = origin(scope(("192.0.2.50", 1), x_forwarded_for="127.0.0.1"), policy)
    assert str(untrusted.address) == "192.0.2.50"


def test_parse_networks_names_a_bad_entry() -> None:
    with pytest.raises(ValueError, match="'nope' is not an IP address"):
        parse_networks(["10.0.0.0/8", "nope"], "access.trusted_proxies")


def test_one_admin_key_variable_the_old_one_read_with_a_warning(caplog: pytest.LogCaptureFixture) -> None:
    new = Settings.from_environ({"SMALLFLEET_ADMIN_KEYS": "ops:sk-a, sk-b"})
    assert admin_key_store(new).accepts("sk-b")
    assert admin_secret(new) == "sk-a"
    assert not caplog.records
    old = Settings.from_environ({"SMALLFLEET_ADMIN_KEY": "sk-old"})
    with caplog.at_level(logging.WARNING, logger="smallfleet"):
        assert admin_key_store(old).accepts("sk-old")
        assert admin_secret(old) == "sk-old"
    assert len(caplog.records) == 2 and "SMALLFLEET_ADMIN_KEY is deprecated" in caplog.text
    both = Settings.from_environ({"SMALLFLEET_ADMIN_KEYS": "sk-new", "SMALLFLEET_ADMIN_KEY": "sk-old"})
    assert not admin_key_store(both).accepts("sk-old") and admin_secret(both) == "sk-new"
    none = Settings.from_environ({})
    assert admin_secret(none) is None and not admin_key_store(none)


# -- in process ---------------------------------------------------------------------------------
async def test_admin_endpoints_are_closed_without_admin_keys_even_on_loopback(make_client) -> None:
    async with make_client(fleet_of("alpha"), {"alpha": FakeBackend("alpha")}) as client:  # 127.0.0.1
        listing = await client.get("/admin/keys")
        reload = await client.post("/admin/router/reload")
    for response in (listing, reload):
        assert response.status_code == 401
        assert "SMALLFLEET_ADMIN_KEYS" in response.json()["error"]["message"]


async def test_admin_loopback_opens_them_to_direct_local_clients_only(make_client) -> None:
    access = AccessPolicy(admin_loopback=True)
    async with make_client(fleet_of("alpha"), {"alpha": FakeBackend("alpha")}, access=access) as client:
        direct = await client.get("/admin/keys")
        proxied = await client.get("/admin/keys", headers={"x-forwarded-for": "203.0.113.9"})
    assert direct.status_code == 200
    assert proxied.status_code == 401 and "not through a proxy" in proxied.json()["error"]["message"]


async def test_admin_keys_beat_the_loopback_setting(make_client) -> None:
    access = AccessPolicy(admin_loopback=True)
    admin = KeyStore(["sk-admin"])
    backends = {"alpha": FakeBackend("alpha")}
    async with make_client(fleet_of("alpha"), backends, access=access, admin_keys=admin) as client:
        without = await client.get("/admin/keys")
        with_key = await client.get("/admin/keys", headers={"authorization": "Bearer sk-admin"})
    assert without.status_code == 401 and with_key.status_code == 200


async def test_without_api_keys_only_local_clients_are_answered_unless_anyone_is(make_client) -> None:
    forwarded = {"x-forwarded-for": "203.0.113.9"}
    async with make_client(fleet_of("alpha"), {"alpha": FakeBackend("alpha")}) as client:
        direct = await client.post("/v1/chat/completions", json=CHAT)
        proxied = await client.post("/v1/chat/completions", json=CHAT, headers=forwarded)
        health = await client.get("/health", headers=forwarded)
    assert direct.status_code == 200 and health.status_code == 200
    assert proxied.status_code == 401 and "SMALLFLEET_API_KEYS" in proxied.json()["error"]["message"]
    anyone = AccessPolicy(keyless="anyone")
    async with make_client(fleet_of("alpha"), {"alpha": FakeBackend("alpha")}, access=anyone) as client:
        assert (await client.post("/v1/chat/completions", json=CHAT, headers=forwarded)).status_code == 200


def test_the_config_section_is_validated_and_used() -> None:
    from fleet.config import ConfigError, parse_fleet

    base = {"models": [{"name": "a", "backend": "openai", "base_url": "http://127.0.0.1:9/v1"}]}
    config = parse_fleet({**base, "access": {"admin_loopback": True, "trusted_proxies": ["10.0.0.0/8"]}})
    assert config.access.admin_loopback and config.access.trusted_proxies == ["10.0.0.0/8"]
    with pytest.raises(ConfigError, match="access.trusted_proxies"):
        parse_fleet({**base, "access": {"trusted_proxies": ["not-an-address"]}})
    with pytest.raises(ConfigError, match="access.admin"):
        parse_fleet({**base, "access": {"admin": True}})


# -- a real gateway behind a real local reverse proxy ---------------------------------------------
class ReverseProxy:
    """A reverse proxy on loopback that forwards every request to ``upstream`` and, as nginx's usual
    ``proxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for`` does, says for whom."""

    def __init__(self, upstream: str) -> None:
        self.upstream = upstream
        self.app = Starlette(routes=[Route("/{path:path}", self.forward, methods=["GET", "POST", "DELETE"])])

    async def forward(self, request: Request) -> Response:
        headers = {k: v for k, v in request.headers.items() if k not in ("host", "content-length")}
        peer = request.client.host if request.client else "unknown"
        previous = request.headers.get("x-forwarded-for")
        headers["x-forwarded-for"] = f"{previous}, {peer}" if previous else peer
        async with httpx.AsyncClient(base_url=self.upstream, timeout=30) as client:
            answer = await client.request(
                request.method, request.url.path, content=await request.body(), headers=headers
            )
        drop = {"content-length", "transfer-encoding", "connection"}
        kept = {k: v for k, v in answer.headers.items() if k not in drop}
        return Response(answer.content, status_code=answer.status_code, headers=kept)


def _serve(tmp_path: Path, name: str, *flags: str) -> tuple[str, subprocess.Popen[bytes]]:
    config = tmp_path / f"{name}.yaml"
    config.write_text(
        "models:\n  - name: alpha\n    backend: openai\n    base_url: http://127.0.0.1:9/v1\n"
        f"request_log: {{url: 'sqlite:///{tmp_path / name}.db'}}\n"
    )
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("SMALLFLEET_") or k == "SMALLFLEET_STATE"}
    command = [sys.executable, "-m", "gateway", "serve", "--config", str(config), "--port", str(port), *flags]
    proc = subprocess.Popen(
        [*command, "--log-level", "warning"], cwd=REPO, env=env, stderr=subprocess.PIPE
    )
    url = f"http://127.0.0.1:{port}"
    wait_until_serving(url + "/health", proc, timeout=120)
    return url, proc


@pytest.fixture
def served(tmp_path: Path) -> Iterator[Any]:
    procs: list[subprocess.Popen[bytes]] = []

    def start(name: str, *flags: str) -> str:
        url, proc = _serve(tmp_path, name, *flags)
        procs.append(proc)
        return url

    yield start
    for proc in procs:
        proc.terminate()
        proc.wait(timeout=30)
        if proc.stderr is not None:
            proc.stderr.close()


def test_behind_a_local_proxy_no_client_is_admin_or_let_in_without_keys(served: Any) -> None:
    """``smallfleet serve`` on loopback with no API key and --admin-loopback: a client on the
    machine that connects directly may use /v1/ and /admin/; the same requests through a
    reverse proxy on the same machine (the gateway sees 127.0.0.1 for them too) get 401."""
    gateway = served("open", "--admin-loopback")
    with LiveServer(ReverseProxy(gateway).app) as proxy:
        direct_models = httpx.get(gateway + "/v1/models")
        direct_admin = httpx.get(gateway + "/admin/keys")
        proxied_models = httpx.get(proxy.url + "/v1/models")
        proxied_admin = httpx.get(proxy.url + "/admin/keys")
        proxied_reload = httpx.post(proxy.url + "/admin/router/reload")
        proxied_health = httpx.get(proxy.url + "/health")
    assert direct_models.status_code == 200 and direct_admin.status_code == 200
    assert proxied_health.status_code == 200  # probes stay open
    for response in (proxied_models, proxied_admin, proxied_reload):
        assert response.status_code == 401, response.text
        assert response.json()["error"]["code"] == "invalid_api_key"


def test_a_trusted_proxy_is_believed_but_what_it_forwards_is_never_local(served: Any) -> None:
    """--trusted-proxy 127.0.0.1: the proxy's X-Forwarded-For is read (a client of the proxy on
    this very machine says 127.0.0.1), yet a proxied request is not a local one."""
    gateway = served("trusted", "--admin-loopback", "--trusted-proxy", "127.0.0.1")
    with LiveServer(ReverseProxy(gateway).app) as proxy:
        proxied_admin = httpx.get(proxy.url + "/admin/keys")
        spoofed = httpx.get(proxy.url + "/admin/keys", headers={"x-forwarded-for": "127.0.0.1"})
    assert proxied_admin.status_code == 401 and spoofed.status_code == 401
    # Without --admin-loopback and without admin keys, nobody is admin, not even a direct client.
    closed = served("closed")
    assert httpx.get(closed + "/admin/keys").status_code == 401
    assert httpx.get(closed + "/v1/models").status_code == 200  # no API keys: local clients are let in
