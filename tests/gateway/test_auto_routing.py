"""``model: "auto"``: the router picks among fleet models the artifact knows.

The fleet's models carry the routing benchmark's names and are `openai` backends in
front of the stub upstream, so the whole path runs over real loopback HTTP.
"""

from __future__ import annotations

import json
import shutil

import httpx
import pytest

import router
from fleet.config import ConfigError, parse_fleet
from gateway.access import AccessPolicy
from gateway.app import create_app
from gateway.auto import FleetRouter
from tests.conftest import free_port

ARTIFACT = str(router.DEFAULT_ARTIFACT)
BENCHMARK_MODELS = [
    "gemma-2-9b-it",
    "llama-3.1-8b-instruct",
    "llama-3.1-nemotron-51b-instruct",
    "qwen2.5-7b-instruct",
]
MATH = "Janet has 3 apples and buys 5 more. How many apples does she have now? Answer with a number."


def _fleet(stub_url: str, names: list[str], artifact: str | None = ARTIFACT):
    models = [{"name": n, "backend": "openai", "base_url": stub_url} for n in names]
    return parse_fleet({"models": models, "router": {"artifact": artifact}})


@pytest.fixture
def auto_server(stub_upstream, live_server):
    """Admin endpoints open to this machine's direct clients (no admin keys here)."""
    known = [m for m in BENCHMARK_MODELS if m in router.load_router(ARTIFACT).models]
    access = AccessPolicy(admin_loopback=True)
    return live_server(create_app(_fleet(stub_upstream, [*known, "local-extra"]), access=access)), known


def test_auto_routes_to_a_known_fleet_model_and_says_so(auto_server, openai_client):
    server, known = auto_server
    client = openai_client(server.url)
    raw = client.chat.completions.with_raw_response.create(
        model="auto", messages=[{"role": "user", "content": MATH}], max_tokens=8
    )
    answer = raw.parse()
    assert answer.model in known  # never "local-extra": the artifact does not know it
    assert raw.headers["x-smallfleet-model"] == answer.model
    assert raw.headers["x-smallfleet-route"] == "auto"
    assert raw.headers["x-smallfleet-cluster"]
    assert raw.headers["x-smallfleet-router-version"]
    # the predicted success of every candidate, as ranked: the answering model first
    success = [pair.split("=") for pair in raw.headers["x-smallfleet-success"].split(", ")]
    assert success[0][0] == answer.model and {name for name, _ in success} == set(known)
    assert all(0.0 <= float(value) <= 1.0 for _, value in success)
    ids = [m.id for m in client.models.list()]
    assert {"auto", "auto:quality", "auto:cheap"} <= set(ids)


def test_alpha_presets_and_header_steer_the_choice(auto_server):
    server, _ = auto_server
    payload = {"messages": [{"role": "user", "content": MATH}], "max_tokens": 4}
    with httpx.Client(base_url=server.url) as http:
        quality = http.post("/v1/chat/completions", json={**payload, "model": "auto:quality"})
        cheapest = http.post(
            "/v1/chat/completions", json={**payload, "model": "auto"}, headers={"x-smallfleet-alpha": "0"}
        )
        bad_alpha = http.post(
            "/v1/chat/completions", json={**payload, "model": "auto"}, headers={"x-smallfleet-alpha": "2"}
        )
        bad_mode = http.post("/v1/chat/completions", json={**payload, "model": "auto:fastest"})
        streamed = http.post("/v1/chat/completions", json={**payload, "model": "auto:cheap", "stream": True})
        metrics = http.get("/metrics").text
    assert quality.headers["x-smallfleet-alpha"] == "1"
    assert cheapest.status_code == 200
    assert cheapest.json()["model"] == "gemma-2-9b-it"  # the cheapest of this fleet on the benchmark
    assert bad_alpha.status_code == 400 and "x-smallfleet-alpha" in bad_alpha.json()["error"]["message"]
    assert bad_mode.status_code == 400 and bad_mode.json()["error"]["param"] == "model"
    assert streamed.status_code == 200 and streamed.text.endswith("data: [DONE]\n\n")
    assert "smallfleet_router_decision_seconds_count" in metrics
    assert "smallfleet_router_decisions_total{cluster=" in metrics


def test_auto_without_a_router_is_a_clear_404(stub_upstream, live_server):
    server = live_server(create_app(_fleet(stub_upstream, ["gemma-2-9b-it"], artifact=None)))
    response = httpx.post(
        server.url + "/v1/chat/completions",
        json={"model": "auto", "messages": [{"role": "user", "content": "hi"}]},
    )
    assert response.status_code == 404 and "router artifact" in response.json()["error"]["message"]


def test_an_artifact_that_knows_none_of_the_fleet_is_refused():
    with pytest.raises(ConfigError, match="knows none of the fleet's models"):
        FleetRouter.load(ARTIFACT, ["smollm2-135m", "qwen2.5-coder-0.5b"])
    with pytest.raises(ConfigError, match="router.artifact"):
        FleetRouter.load("/nonexistent/artifact", ["gemma-2-9b-it"])


def test_reload_swaps_the_router_without_dropping_requests(auto_server, tmp_path):
    import concurrent.futures

    server, _ = auto_server
    payload = {"model": "auto", "messages": [{"role": "user", "content": MATH}], "max_tokens": 4}
    before = httpx.get(server.url + "/health").json()["router_version"]
    other = tmp_path / "v2"  # the shipped artifact under another version
    shutil.copytree(ARTIFACT, other)
    manifest = json.loads((other / "manifest.json").read_text())
    manifest["version"] = "test-v2"
    (other / "manifest.json").write_text(json.dumps(manifest))
    artifacts = [str(other), ARTIFACT, str(other)]

    def ask(_: int) -> int:
        return httpx.post(server.url + "/v1/chat/completions", json=payload, timeout=30).status_code

    with concurrent.futures.ThreadPoolExecutor(4) as pool:
        traffic = [pool.submit(ask, i) for i in range(60)]
        reloads = [
            httpx.post(server.url + "/admin/router/reload", json={"artifact": a}, timeout=30) for a in artifacts
        ]
        statuses = [f.result() for f in traffic]
    assert all(r.status_code == 200 for r in reloads), [r.text for r in reloads]
    assert statuses == [200] * 60
    assert [r.json()["version"] for r in reloads] == ["test-v2", before, "test-v2"] and before != "test-v2"
    version = reloads[-1].json()["version"]
    assert httpx.get(server.url + "/health").json()["router_version"] == version
    after = httpx.post(server.url + "/v1/chat/completions", json=payload)
    assert after.headers["x-smallfleet-router-version"] == version
    assert f'smallfleet_router_info{{version="{version}"}} 1.0' in httpx.get(server.url + "/metrics").text


def test_reload_refuses_a_bad_artifact_and_keeps_the_old_one(auto_server):
    server, _ = auto_server
    bad = httpx.post(server.url + "/admin/router/reload", json={"artifact": "/nonexistent"})
    assert bad.status_code == 400 and bad.json()["error"]["param"] == "artifact"
    payload = {"model": "auto", "messages": [{"role": "user", "content": MATH}], "max_tokens": 4}
    assert httpx.post(server.url + "/v1/chat/completions", json=payload).status_code == 200


async def test_reload_needs_the_admin_key_when_admin_keys_are_set(stub_upstream, make_client):
    from gateway.auth import KeyStore

    config = _fleet(stub_upstream, ["gemma-2-9b-it"])
    async with make_client(config, {}, admin_keys=KeyStore(["admin-secret"])) as client:
        denied = await client.post("/admin/router/reload")
        allowed = await client.post("/admin/router/reload", headers={"authorization": "Bearer admin-secret"})
    assert denied.status_code == 401
    assert allowed.status_code == 200 and allowed.json()["version"]


def test_a_failing_routed_model_falls_back_to_the_runner_up(stub_upstream, live_server):
    dead = f"http://127.0.0.1:{free_port()}/v1"
    models = [{"name": "gemma-2-9b-it", "backend": "openai", "base_url": dead}] + [
        {"name": n, "backend": "openai", "base_url": stub_upstream} for n in BENCHMARK_MODELS[1:]
    ]
    server = live_server(create_app(parse_fleet({"models": models, "router": {"artifact": ARTIFACT}})))
    payload = {"model": "auto", "messages": [{"role": "user", "content": MATH}], "max_tokens": 4}
    cheapest_first = {
        "x-smallfleet-alpha": "0"
    }  # gemma-2-9b-it, the cheapest, is ranked first: and it is down
    whole = httpx.post(server.url + "/v1/chat/completions", json=payload, headers=cheapest_first)
    streamed = httpx.post(
        server.url + "/v1/chat/completions", json={**payload, "stream": True}, headers=cheapest_first
    )
    direct = httpx.post(server.url + "/v1/chat/completions", json={**payload, "model": "gemma-2-9b-it"})
    metrics = httpx.get(server.url + "/metrics").text
    for response in (whole, streamed):
        assert response.status_code == 200, response.text
        assert response.headers["x-smallfleet-model"] != "gemma-2-9b-it"
    assert whole.json()["model"] == whole.headers["x-smallfleet-model"]
    assert direct.status_code == 503  # a model asked for by name has no runner-up
    assert 'smallfleet_fallbacks_total{fallback="' in metrics and 'model="gemma-2-9b-it"' in metrics
