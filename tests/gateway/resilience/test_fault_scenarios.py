"""Every fault of the stub upstream (tests/stub_upstream.py), through a live gateway: what the client gets, how many
upstream attempts were made, and that the gateway still answers the next request.

One gateway serves the whole module; each scenario is a fleet member of its own whose
``upstream_model`` names its fault (tagged with the member's name, so each keeps its own
counters on the stub upstream). Timeouts and delays are tiny so the module runs in seconds.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from typing import Any

import httpx
import orjson
import pytest

from fleet.config import parse_fleet
from gateway.app import create_app
from tests.conftest import LiveServer
from tests.stub_upstream import ANSWER

FAST = {
    "retry": {"attempts": 3, "base_delay": 0.01, "max_delay": 0.05, "max_retry_after": 2.0},
    "circuit_breaker": {"failure_threshold": 100, "cool_down": 0.5},
    "timeouts": {"first_token": 0.5, "idle": 0.4, "total": 8.0},
}
SCENARIOS: dict[str, tuple[str, dict[str, Any]]] = {
    # member name: (fault, resilience overrides)
    "healthy": ("ok", {}),
    "f-429": ("fault:429", {}),
    "f-429-retry-after": ("fault:429-retry-after-0.2", {}),
    "f-retry-after-then-ok": ("fault:fail-first-1-429-retry-after-0.4", {}),
    "f-500": ("fault:500", {}),
    "f-503": ("fault:503", {}),
    "f-reset": ("fault:reset", {}),
    "f-hang": ("fault:hang", {}),
    "f-slow-ok": ("fault:slow-first-token-100", {}),
    "f-slow-too-slow": ("fault:slow-first-token-3000", {}),
    "f-cut": ("fault:cut-after-2", {}),
    "f-cut-whole": ("fault:cut-after-2", {}),
    "f-stall": ("fault:stall-after-2", {}),
    "f-disconnect": ("fault:stall-after-2", {"timeouts": {"first_token": 5, "idle": 20, "total": 30}}),
    "f-malformed": ("fault:malformed-chunk", {}),
    "f-no-done": ("fault:no-done", {}),
    "f-context": ("fault:context-length", {}),
    "f-context-fallback": ("fault:context-length", {}),
    "any-context": ("ok", {}),
    "f-policy": ("fault:content-policy", {}),
    "f-flap": ("fault:flap-2", {}),
    "f-fail-first-2": ("fault:fail-first-2", {}),
    "f-breaker": (
        "fault:fail-first-3",
        {"retry": {"attempts": 1}, "circuit_breaker": {"failure_threshold": 3, "cool_down": 0.5}},
    ),
    "f-breaker-stays-open": (
        "fault:500",
        {"retry": {"attempts": 1}, "circuit_breaker": {"failure_threshold": 2, "cool_down": 0.3}},
    ),
}
# member name: fleet-config fields besides resilience (contexts not configured: unknown)
MEMBER_FIELDS: dict[str, dict[str, Any]] = {
    "f-context-fallback": {"context_length": None, "fallbacks": ["f-context", "any-context"]},
    "any-context": {"context_length": None},
}
MESSAGES = [{"role": "user", "content": "hi"}]


def _member(name: str, fault: str, overrides: dict[str, Any], fault_url: str) -> dict[str, Any]:
    resilience = {key: {**FAST[key], **overrides.get(key, {})} for key in FAST}
    return {
        "name": name,
        "backend": "openai",
        "base_url": fault_url + "/v1",
        "upstream_model": f"{fault}#{name}",
        "context_length": 2048,
        "timeouts": {"connect": 1.0, "read": 0.5 if name == "f-hang" else 30.0, "total": 30.0},
        "resilience": resilience,
        **MEMBER_FIELDS.get(name, {}),
    }


@pytest.fixture(scope="module")
def gateway(fault_url: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    models = [_member(name, fault, extra, fault_url) for name, (fault, extra) in SCENARIOS.items()]
    db = tmp_path_factory.mktemp("resilience") / "requests.db"
    config = parse_fleet({"models": models, "request_log": {"url": f"sqlite:///{db}"}})
    with LiveServer(create_app(config, health_poll_seconds=3600)) as server:
        yield server.url


@pytest.fixture(scope="module")
def client(gateway: str) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=gateway, timeout=20) as client:
        yield client


# -- helpers ------------------------------------------------------------------------


def attempts(fault_url: str, member: str) -> int:
    fault = SCENARIOS[member][0]
    return int(httpx.get(fault_url + "/stats").json()["requests"].get(f"{fault}#{member}", 0))


def disconnects(fault_url: str, member: str) -> int:
    fault = SCENARIOS[member][0]
    return int(httpx.get(fault_url + "/stats").json()["disconnects"].get(f"{fault}#{member}", 0))


def chat(client: httpx.Client, model: str) -> httpx.Response:
    return client.post("/v1/chat/completions", json={"model": model, "messages": MESSAGES})


def stream(client: httpx.Client, model: str) -> tuple[httpx.Response, list[str]]:
    """The response, and its SSE events' data (``[DONE]`` included) when it streamed."""
    body = {"model": model, "messages": MESSAGES, "stream": True}
    with client.stream("POST", "/v1/chat/completions", json=body) as response:
        response.read()
    if response.headers["content-type"].startswith("application/json"):
        return response, []
    events = [line[5:].strip() for line in response.text.splitlines() if line.startswith("data:")]
    return response, events


def error_of(response: httpx.Response, status: int) -> dict[str, Any]:
    assert response.status_code == status, response.text
    error = response.json()["error"]
    assert set(error) == {"message", "type", "param", "code"}
    return dict(error)


def assert_broken_stream(events: list[str], code: str) -> str:
    """Chunks, then one error event, then [DONE]; never a finish_reason. Returns the text sent."""
    assert events[-1] == "[DONE]", events
    error = orjson.loads(events[-2])["error"]
    assert error["code"] == code, error
    chunks = [orjson.loads(e) for e in events[:-2]]
    assert all(c["choices"][0]["finish_reason"] is None for c in chunks), chunks
    return "".join(c["choices"][0]["delta"].get("content") or "" for c in chunks)


def assert_still_serving(client: httpx.Client) -> None:
    response = chat(client, "healthy")
    assert response.status_code == 200, response.text
    assert response.json()["choices"][0]["message"]["content"] == ANSWER
    _, events = stream(client, "healthy")
    assert events[-1] == "[DONE]" and orjson.loads(events[-2])["choices"][0]["finish_reason"] == "stop"


# -- before anything is sent: retried, then an HTTP error ----------------------------


def test_healthy_member_answers(client: httpx.Client, fault_url: str) -> None:
    response = chat(client, "healthy")
    assert response.status_code == 200 and response.headers["x-smallfleet-model"] == "healthy"
    assert response.json()["model"] == "healthy"
    assert_still_serving(client)


def test_429_without_retry_after_is_retried_then_returned(client: httpx.Client, fault_url: str) -> None:
    error = error_of(chat(client, "f-429"), 429)
    assert error["type"] == "rate_limit_error"
    assert attempts(fault_url, "f-429") == 3
    assert_still_serving(client)


def test_429_retry_after_is_honoured(client: httpx.Client, fault_url: str) -> None:
    started = time.monotonic()
    error_of(chat(client, "f-429-retry-after"), 429)
    elapsed = time.monotonic() - started
    assert attempts(fault_url, "f-429-retry-after") == 3
    assert elapsed >= 0.4  # two waits of at least Retry-After: 0.2 (a busy machine only adds)
    started = time.monotonic()
    response = chat(client, "f-retry-after-then-ok")
    elapsed = time.monotonic() - started
    assert response.status_code == 200, response.text
    assert attempts(fault_url, "f-retry-after-then-ok") == 2
    assert elapsed >= 0.4
    assert_still_serving(client)


def test_500_is_retried_then_a_502(client: httpx.Client, fault_url: str) -> None:
    error = error_of(chat(client, "f-500"), 502)
    assert error["code"] == "backend_error" and "500" in error["message"]
    assert attempts(fault_url, "f-500") == 3
    metrics = client.get("/metrics").text
    assert 'smallfleet_retries_total{model="f-500",reason="backend_error"} 2.0' in metrics
    assert_still_serving(client)


def test_503_is_retried_then_a_503(client: httpx.Client, fault_url: str) -> None:
    response, _ = stream(client, "f-503")
    assert error_of(response, 503)["code"] == "backend_unavailable"
    assert attempts(fault_url, "f-503") == 3
    assert_still_serving(client)


def test_connection_reset_is_retried_then_a_503(client: httpx.Client, fault_url: str) -> None:
    assert error_of(chat(client, "f-reset"), 503)["code"] == "backend_unavailable"
    response, _ = stream(client, "f-reset")
    assert error_of(response, 503)["code"] == "backend_unavailable"
    assert attempts(fault_url, "f-reset") == 6
    assert_still_serving(client)


def test_a_hung_upstream_times_out_and_is_retried(client: httpx.Client, fault_url: str) -> None:
    assert error_of(chat(client, "f-hang"), 504)["code"] == "backend_timeout"
    response, _ = stream(client, "f-hang")
    assert error_of(response, 504)["code"] == "backend_timeout"
    assert attempts(fault_url, "f-hang") == 6  # the upstream never answers: only timeouts end each
    assert_still_serving(client)


def test_first_token_delay_within_and_beyond_the_limit(client: httpx.Client, fault_url: str) -> None:
    response, events = stream(client, "f-slow-ok")
    assert response.status_code == 200 and events[-1] == "[DONE]"
    started = time.monotonic()
    response, _ = stream(client, "f-slow-too-slow")
    assert error_of(response, 504)["message"].endswith("sent no first token within 0.5 s")
    assert time.monotonic() - started >= 1.5  # three attempts, each given its 0.5 s
    assert attempts(fault_url, "f-slow-too-slow") == 3  # a 504, not the first token that comes at 3 s
    deadline = time.monotonic() + 3
    while disconnects(fault_url, "f-slow-too-slow") < 3 and time.monotonic() < deadline:
        time.sleep(0.05)
    assert disconnects(fault_url, "f-slow-too-slow") == 3  # each abandoned attempt was closed upstream
    assert_still_serving(client)


def test_context_length_is_a_400_not_retried(client: httpx.Client, fault_url: str) -> None:
    assert error_of(chat(client, "f-context"), 400)["code"] == "context_length_exceeded"
    assert attempts(fault_url, "f-context") == 1
    assert_still_serving(client)


def test_context_length_goes_to_a_declared_fallback_whose_context_may_be_longer(
    client: httpx.Client, fault_url: str
) -> None:
    """Neither context is known: the declared fallback that might hold the prompt answers."""
    before = attempts(fault_url, "f-context")
    response = chat(client, "f-context-fallback")
    assert response.status_code == 200 and response.headers["x-smallfleet-model"] == "any-context"
    assert attempts(fault_url, "f-context-fallback") == 1
    assert attempts(fault_url, "f-context") == before + 1  # known 2048 tokens: maybe longer, tried
    assert_still_serving(client)


def test_content_policy_refusal_passes_through_not_retried(client: httpx.Client, fault_url: str) -> None:
    error = error_of(chat(client, "f-policy"), 400)
    assert error["code"] == "content_policy_violation" and error["type"] == "invalid_request_error"
    response, _ = stream(client, "f-policy")
    assert error_of(response, 400)["code"] == "content_policy_violation"
    assert attempts(fault_url, "f-policy") == 2
    assert_still_serving(client)


def test_retry_then_success(client: httpx.Client, fault_url: str) -> None:
    response = chat(client, "f-fail-first-2")
    assert response.status_code == 200 and response.json()["model"] == "f-fail-first-2"
    assert attempts(fault_url, "f-fail-first-2") == 3
    assert_still_serving(client)


def test_flapping_upstream_is_smoothed_by_retries(client: httpx.Client, fault_url: str) -> None:
    for _ in range(4):
        response = chat(client, "f-flap")
        assert response.status_code == 200, response.text
    # fails the first 2 of every 4: 3 attempts, 1, 3, 1
    assert attempts(fault_url, "f-flap") == 8
    assert_still_serving(client)


# -- after the first chunk: an error event and [DONE], never a truncated success ------


def test_stream_cut_mid_answer(client: httpx.Client, fault_url: str) -> None:
    response, events = stream(client, "f-cut")
    assert response.status_code == 200
    assert assert_broken_stream(events, "backend_unavailable") == "Hello from "
    assert attempts(fault_url, "f-cut") == 1  # never retried once the answer has started
    assert_still_serving(client)


def test_whole_answer_cut_mid_body_is_an_error(client: httpx.Client, fault_url: str) -> None:
    error = error_of(chat(client, "f-cut-whole"), 503)
    assert error["code"] == "backend_unavailable"
    assert_still_serving(client)


def test_stream_stalled_mid_answer(client: httpx.Client, fault_url: str) -> None:
    started = time.monotonic()
    response, events = stream(client, "f-stall")
    assert response.status_code == 200
    assert assert_broken_stream(events, "backend_timeout") == "Hello from "  # it stalls for good
    assert time.monotonic() - started >= 0.4  # the idle timeout, not sooner
    assert attempts(fault_url, "f-stall") == 1
    assert_still_serving(client)


def test_malformed_chunk(client: httpx.Client, fault_url: str) -> None:
    response, events = stream(client, "f-malformed")
    assert response.status_code == 200
    assert assert_broken_stream(events, "backend_error") == "Hello "
    assert attempts(fault_url, "f-malformed") == 1
    error_of(chat(client, "f-malformed"), 502)
    assert_still_serving(client)


def test_missing_done_after_a_finish_reason_is_a_complete_answer(client: httpx.Client, fault_url: str) -> None:
    """The server sent every chunk, finish_reason stop, and closed cleanly without [DONE]."""
    response, events = stream(client, "f-no-done")
    assert response.status_code == 200
    assert events[-1] == "[DONE]"  # the gateway's own
    chunks = [orjson.loads(event) for event in events[:-1]]
    assert not any("error" in chunk for chunk in chunks)
    assert "".join(c["choices"][0]["delta"].get("content") or "" for c in chunks if c["choices"]) == ANSWER
    assert [c["choices"][0]["finish_reason"] for c in chunks if c["choices"]][-1] == "stop"
    assert attempts(fault_url, "f-no-done") == 1
    assert chat(client, "f-no-done").status_code == 200
    assert_still_serving(client)


def test_client_disconnect_cancels_upstream_work(client: httpx.Client, fault_url: str) -> None:
    body = {"model": "f-disconnect", "messages": MESSAGES, "stream": True}
    with client.stream("POST", "/v1/chat/completions", json=body) as response:
        assert response.status_code == 200
        for line in response.iter_lines():
            if '"from "' in line:
                break  # the second chunk; the upstream now stalls, and the client hangs up
        else:
            pytest.fail("the stream ended before its second chunk")
    deadline = time.monotonic() + 5
    while disconnects(fault_url, "f-disconnect") < 1 and time.monotonic() < deadline:
        time.sleep(0.05)
    assert disconnects(fault_url, "f-disconnect") == 1
    assert_still_serving(client)


# -- the circuit breaker ---------------------------------------------------------


def test_breaker_opens_fails_fast_then_probes_and_recovers(client: httpx.Client, fault_url: str) -> None:
    for _ in range(3):
        assert error_of(chat(client, "f-breaker"), 503)["code"] == "backend_unavailable"
    assert attempts(fault_url, "f-breaker") == 3
    refused = chat(client, "f-breaker")
    error = error_of(refused, 503)
    assert error["code"] == "circuit_open"
    assert attempts(fault_url, "f-breaker") == 3  # failed fast: the upstream was not asked
    assert refused.headers["retry-after"] == "1"  # the rest of the 0.5 s cool-down, rounded up
    metrics = client.get("/metrics").text
    assert 'smallfleet_circuit_state{model="f-breaker",state="open"} 1.0' in metrics
    assert 'smallfleet_circuit_state{model="f-breaker",state="closed"} 0.0' in metrics
    response, _ = stream(client, "f-breaker")
    assert error_of(response, 503)["code"] == "circuit_open"
    assert attempts(fault_url, "f-breaker") == 3  # nothing sent while open
    assert_still_serving(client)
    time.sleep(0.6)
    assert 'smallfleet_circuit_state{model="f-breaker",state="half_open"} 1.0' in client.get("/metrics").text
    assert chat(client, "f-breaker").status_code == 200  # the probe: the upstream has healed
    assert 'smallfleet_circuit_state{model="f-breaker",state="closed"} 1.0' in client.get("/metrics").text
    assert stream(client, "f-breaker")[0].status_code == 200
    assert attempts(fault_url, "f-breaker") == 5


def test_breaker_reopens_when_the_probe_fails(client: httpx.Client, fault_url: str) -> None:
    for _ in range(2):
        error_of(chat(client, "f-breaker-stays-open"), 502)
    assert error_of(chat(client, "f-breaker-stays-open"), 503)["code"] == "circuit_open"
    time.sleep(0.35)
    error_of(chat(client, "f-breaker-stays-open"), 502)  # the probe fails
    assert error_of(chat(client, "f-breaker-stays-open"), 503)["code"] == "circuit_open"
    assert attempts(fault_url, "f-breaker-stays-open") == 3
    assert_still_serving(client)


def test_graceful_shutdown_drains_in_flight_requests(
    fault_url: str, tmp_path_factory: pytest.TempPathFactory
) -> None:
    member = _member("drain", "fault:slow-first-token-600", {"timeouts": {"first_token": 5}}, fault_url)
    db = tmp_path_factory.mktemp("drain") / "requests.db"
    config = parse_fleet({"models": [member], "request_log": {"url": f"sqlite:///{db}"}})
    server = LiveServer(create_app(config, health_poll_seconds=3600)).__enter__()
    results: list[httpx.Response] = []
    body = {"model": "drain", "messages": MESSAGES, "stream": True}
    worker = threading.Thread(
        target=lambda: results.append(httpx.post(server.url + "/v1/chat/completions", json=body, timeout=10))
    )
    worker.start()
    stats = fault_url + "/stats"
    until = time.monotonic() + 10
    while not httpx.get(stats).json()["requests"].get("fault:slow-first-token-600#drain"):
        assert time.monotonic() < until, "the request never reached the upstream"
        time.sleep(0.01)
    assert not results  # in flight: the upstream has it, its first token is 0.6 s away
    server.__exit__()  # asks uvicorn to shut down, and waits for it
    worker.join(timeout=10)
    assert results and results[0].status_code == 200
    assert results[0].text.rstrip().endswith("data: [DONE]") and "upstream." in results[0].text
