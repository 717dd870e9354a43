"""Fallbacks through a live gateway and the stub upstream's faults: a model's declared chain, a longer
context for a prompt that is too long, and the router skipping a model whose circuit is open."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from fleet.config import parse_fleet
from gateway.app import create_app
from tests.conftest import LiveServer

ONE_TRY = {"retry": {"attempts": 1}, "circuit_breaker": {"failure_threshold": 1, "cool_down": 60}}
MESSAGES = [{"role": "user", "content": "Janet has 3 apples and buys 5 more. How many apples now?"}]


def _member(name: str, fault: str, url: str, **extra: Any) -> dict[str, Any]:
    return {
        "name": name,
        "backend": "openai",
        "base_url": url + "/v1",
        "upstream_model": f"{fault}#{name}",
        "context_length": 2048,
        "resilience": ONE_TRY,
        **extra,
    }


def _attempts(url: str, fault: str, name: str) -> int:
    return int(httpx.get(url + "/stats").json()["requests"].get(f"{fault}#{name}", 0))


@pytest.fixture(scope="module")
def gateway(fault_url: str) -> Iterator[str]:
    import router

    models = [
        _member("primary", "fault:500", fault_url, fallbacks=["broken-too", "secondary"]),
        _member("broken-too", "fault:503", fault_url),
        _member("secondary", "ok", fault_url),
        _member("short", "fault:context-length", fault_url, fallbacks=["secondary"]),
        _member("long", "ok", fault_url, context_length=32768),
        # Named like the routing benchmark's models, for `auto`:
        _member("gemma-2-9b-it", "fault:500", fault_url),
        _member("llama-3.1-8b-instruct", "ok", fault_url),
        _member("qwen2.5-7b-instruct", "ok", fault_url),
    ]
    config = parse_fleet({"models": models, "router": {"artifact": str(router.DEFAULT_ARTIFACT)}})
    with LiveServer(create_app(config, health_poll_seconds=3600)) as server:
        yield server.url


def test_a_failing_model_hands_over_to_its_declared_chain(gateway: str, fault_url: str) -> None:
    payload = {"model": "primary", "messages": MESSAGES, "max_tokens": 8}
    whole = httpx.post(gateway + "/v1/chat/completions", json=payload)
    streamed = httpx.post(gateway + "/v1/chat/completions", json={**payload, "stream": True})
    for response in (whole, streamed):
        assert response.status_code == 200, response.text
        assert response.headers["x-smallfleet-model"] == "secondary"
    assert whole.json()["model"] == "secondary"
    assert streamed.text.endswith("data: [DONE]\n\n") and '"error"' not in streamed.text
    metrics = httpx.get(gateway + "/metrics").text
    assert (
        'smallfleet_fallbacks_total{fallback="broken-too",model="primary",reason="backend_error",route="primary"}'
        in metrics
    )
    assert (
        'smallfleet_fallbacks_total{fallback="secondary",model="broken-too",reason="backend_unavailable",'
        'route="primary"}' in metrics
    )


def test_a_prompt_too_long_goes_to_a_model_with_a_longer_context(gateway: str, fault_url: str) -> None:
    response = httpx.post(
        gateway + "/v1/chat/completions", json={"model": "short", "messages": MESSAGES, "max_tokens": 8}
    )
    assert response.status_code == 200, response.text
    # "secondary" is in the chain but no longer than "short"; "long" is.
    assert response.headers["x-smallfleet-model"] == "long"


def test_the_router_skips_a_model_whose_circuit_is_open(gateway: str, fault_url: str) -> None:
    cheapest_first = {"x-smallfleet-alpha": "0"}  # gemma-2-9b-it, the cheapest, ranks first
    payload = {"model": "auto", "messages": MESSAGES, "max_tokens": 8}
    first = httpx.post(gateway + "/v1/chat/completions", json=payload, headers=cheapest_first)
    assert first.status_code == 200 and first.headers["x-smallfleet-model"] != "gemma-2-9b-it"
    tried = _attempts(fault_url, "fault:500", "gemma-2-9b-it")
    assert tried == 1  # one failure opens its circuit (threshold 1)
    for _ in range(3):
        again = httpx.post(gateway + "/v1/chat/completions", json=payload, headers=cheapest_first)
        assert again.status_code == 200 and again.headers["x-smallfleet-model"] != "gemma-2-9b-it"
    assert _attempts(fault_url, "fault:500", "gemma-2-9b-it") == tried  # never asked again while open
