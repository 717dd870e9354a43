"""Per-key limits (rpm, tpm, budget) with OpenAI's headers, per-key metrics, and input limits."""

from __future__ import annotations

import pytest

from backends.fake import FakeBackend
from fleet.config import parse_fleet
from gateway.app import create_app
from gateway.keys import KeyLimits, KeyStore
from gateway.limits import InputLimits, SlidingWindow
from gateway.metrics import MAX_KEY_LABELS, OTHER_KEYS, GatewayMetrics
from gateway.settings import Settings
from tests.conftest import asgi_client, fleet_of

CHAT = {"model": "alpha", "messages": [{"role": "user", "content": "one two three"}]}
AUTH = {"authorization": "Bearer sk-a"}


def keys_with(**limits: KeyLimits) -> KeyStore:
    return KeyStore(["a:sk-a", "b:sk-b"], limits=limits)


async def test_requests_per_minute_give_429_with_retry_after_and_openai_headers(make_client):
    keys = keys_with(a=KeyLimits(rpm=2))
    async with make_client(fleet_of("alpha"), {"alpha": FakeBackend("alpha")}, api_keys=keys) as client:
        first = await client.post("/v1/chat/completions", json=CHAT, headers=AUTH)
        second = await client.post("/v1/chat/completions", json=CHAT, headers=AUTH)
        third = await client.post("/v1/chat/completions", json=CHAT, headers=AUTH)
        other_key = await client.post(
            "/v1/chat/completions", json=CHAT, headers={"authorization": "Bearer sk-b"}
        )
        models = await client.get("/v1/models", headers=AUTH)  # not limited, but says what remains
    assert first.headers["x-ratelimit-limit-requests"] == "2"
    assert first.headers["x-ratelimit-remaining-requests"] == "1"
    assert second.headers["x-ratelimit-remaining-requests"] == "0"
    assert first.headers["x-ratelimit-reset-requests"].endswith("s")
    assert third.status_code == 429
    error = third.json()["error"]
    assert (error["type"], error["code"]) == ("rate_limit_error", "rate_limit_exceeded")
    assert 1 <= int(third.headers["retry-after"]) <= 60
    assert "x-request-id" in third.headers
    assert other_key.status_code == 200 and "x-ratelimit-limit-requests" not in other_key.headers
    assert models.status_code == 200 and models.headers["x-ratelimit-remaining-requests"] == "0"


async def test_tokens_are_charged_after_the_answer_and_refuse_admission_once_spent(make_client):
    keys = keys_with(a=KeyLimits(tpm=10))
    backend = FakeBackend("alpha", reply="w1 w2 w3 w4 w5 w6 w7 w8")  # 3 prompt + 8 completion tokens
    async with make_client(fleet_of("alpha"), {"alpha": backend}, api_keys=keys) as client:
        first = await client.post("/v1/chat/completions", json=CHAT, headers=AUTH)
        second = await client.post("/v1/chat/completions", json=CHAT, headers=AUTH)
    assert first.status_code == 200
    used = first.json()["usage"]["total_tokens"]
    assert used > 10
    assert first.headers["x-ratelimit-limit-tokens"] == "10"
    assert first.headers["x-ratelimit-remaining-tokens"] == "0"  # charged before the answer's headers
    assert second.status_code == 429 and "tokens per minute" in second.json()["error"]["message"]
    assert "retry-after" in second.headers


async def test_a_spent_budget_is_refused_and_the_remaining_budget_is_a_header(make_client):
    keys = keys_with(a=KeyLimits(budget=1e-5))  # fleet_of prices: 1 per 1M input, 2 per 1M output tokens
    async with make_client(fleet_of("alpha"), {"alpha": FakeBackend("alpha")}, api_keys=keys) as client:
        first = await client.post("/v1/chat/completions", json=CHAT, headers=AUTH)
        second = await client.post("/v1/chat/completions", json=CHAT, headers=AUTH)
        metrics = (await client.get("/metrics")).text
    assert first.status_code == 200
    assert float(first.headers["x-smallfleet-budget-remaining"]) < 1e-5
    assert second.status_code == 429
    assert second.json()["error"]["code"] == "budget_exceeded"
    assert second.headers["x-smallfleet-budget-remaining"] == "0"
    assert 'smallfleet_key_rejections_total{code="budget_exceeded",key="a"} 1.0' in metrics


async def test_per_key_attribution_in_the_request_log_and_metrics(make_client):
    keys = keys_with()
    app = create_app(fleet_of("alpha"), backends={"alpha": FakeBackend("alpha")}, api_keys=keys)
    async with asgi_client(app) as client:
        answer = await client.post("/v1/chat/completions", json=CHAT, headers=AUTH)
        log = app.state.gateway.request_log
        await log.flush()
        record = await log.get(answer.headers["x-request-id"])
        metrics = (await client.get("/metrics")).text
    assert record is not None and record.api_key_id == "a"
    assert 'smallfleet_key_requests_total{key="a",status="200"} 1.0' in metrics
    assert 'smallfleet_key_tokens_total{direction="input",key="a"} 3.0' in metrics
    assert 'smallfleet_key_cost_total{key="a"}' in metrics


def test_the_key_label_is_bounded():
    metrics = GatewayMetrics()
    labels = {metrics.key_label(f"k{i}") for i in range(MAX_KEY_LABELS + 50)}
    assert len(labels) == MAX_KEY_LABELS + 1 and OTHER_KEYS in labels
    assert metrics.key_label("k0") == "k0"


def test_the_sliding_window_forgets_after_a_minute():
    window = SlidingWindow()
    window.add(0.0, 5)
    window.add(30.0, 5)
    assert window.used(59.0) == 10
    assert window.free_after(59.0, 10) == pytest.approx(1.0)  # the first 5 leave at t=60
    assert window.used(60.0) == 5 and window.used(90.0) == 0


def test_key_limits_come_from_the_environment_with_a_default():
    env = {
        "SMALLFLEET_API_KEYS": "team-a:sk-a, sk-anon",
        "SMALLFLEET_KEY_LIMITS": '{"*": {"rpm": 60}, "team-a": {"tpm": 1000, "budget": 2.5}}',
    }
    keys = KeyStore.from_settings(Settings.from_environ(env))
    team_a = keys.authenticate("sk-a")
    anon = keys.authenticate("sk-anon")
    assert team_a is not None and anon is not None
    assert keys.limits_of(team_a) == KeyLimits(rpm=60, tpm=1000, budget=2.5)
    assert anon.id.startswith("key-") and len(anon.id) == 12 and keys.limits_of(anon) == KeyLimits(rpm=60)
    with pytest.raises(ValueError, match=r"SMALLFLEET_KEY_LIMITS\['x'\].rpm"):
        bad = {"SMALLFLEET_API_KEYS": "x:k", "SMALLFLEET_KEY_LIMITS": '{"x": {"rpm": 0}}'}
        KeyStore.from_settings(Settings.from_environ(bad))


# -- input limits -------------------------------------------------------------
def _limited_fleet():
    return parse_fleet(
        {
            "models": [
                {
                    "name": "alpha",
                    "backend": "openai",
                    "base_url": "http://127.0.0.1:9/v1",
                    "context_length": 512,
                }
            ],
            "limits": {"max_body_bytes": 2000, "max_messages": 2},
        }
    )


@pytest.mark.parametrize(
    ("body", "status", "param"),
    [
        ({**CHAT, "n": 2}, 400, "n"),
        ({**CHAT, "max_tokens": 100_000}, 400, "max_tokens"),  # beyond the model's context
        ({**CHAT, "max_tokens": 300}, 400, "max_tokens"),  # beyond SMALLFLEET_MAX_TOKENS
        ({**CHAT, "max_completion_tokens": 300}, 400, "max_completion_tokens"),
        ({**CHAT, "max_tokens": 0}, 400, "max_tokens"),
        ({**CHAT, "messages": CHAT["messages"] * 3}, 400, "messages"),
        ({**CHAT, "messages": [{"role": "user", "content": "x" * 3000}]}, 413, None),
        ({"model": "alpha", "prompt": "hi", "max_tokens": 300}, 400, "max_tokens"),
    ],
)
async def test_input_limits_are_clear_4xx_naming_the_field(make_client, body, status, param):
    path = "/v1/completions" if "prompt" in body else "/v1/chat/completions"
    limits = InputLimits(max_tokens=256)
    async with make_client(
        _limited_fleet(), {"alpha": FakeBackend("alpha", context_length=512)}, input_limits=limits
    ) as client:
        response = await client.post(path, json=body)
    assert response.status_code == status, response.text
    assert response.json()["error"]["param"] == param


def test_the_max_tokens_ceiling_comes_from_the_environment():
    assert Settings.from_environ({"SMALLFLEET_MAX_TOKENS": "4096"}).max_tokens == 4096
    assert Settings.from_environ({}).max_tokens is None
    with pytest.raises(ValueError, match="SMALLFLEET_MAX_TOKENS"):
        Settings.from_environ({"SMALLFLEET_MAX_TOKENS": "-1"})


async def test_an_openai_upstreams_context_length_400_maps_through(make_client, stub_upstream):
    fleet = parse_fleet(
        {
            "models": [
                {
                    "name": "up",
                    "backend": "openai",
                    "base_url": stub_upstream,
                    "upstream_model": "fault:context-length",
                }
            ]
        }
    )
    async with make_client(fleet, {}) as client:
        response = await client.post("/v1/chat/completions", json={**CHAT, "model": "up"})
    assert response.status_code == 400, response.text
    assert response.json()["error"]["code"] == "context_length_exceeded"
