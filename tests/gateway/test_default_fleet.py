"""`smallfleet serve` with no config: the embedded default fleet, as a user starts it."""

from __future__ import annotations

import os
import subprocess
import sys

import httpx
import pytest

from tests.conftest import free_port, wait_until_serving

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def default_gateway():
    port = free_port()
    env = {**os.environ}
    env.pop("SMALLFLEET_API_KEYS", None)
    proc = subprocess.Popen(
        [sys.executable, "-m", "gateway", "serve", "--port", str(port), "--log-level", "warning"],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        wait_until_serving(url + "/health", proc)
        yield url
    finally:
        proc.terminate()
        proc.wait(timeout=60)
        if proc.stderr is not None:
            proc.stderr.close()


def test_default_fleet_lists_both_models(default_gateway, openai_client):
    client = openai_client(default_gateway)
    assert {m.id for m in client.models.list()} >= {"smollm2-135m", "qwen2.5-coder-0.5b"}
    assert httpx.get(default_gateway + "/health").json()["status"] == "ok"


def test_qwen_coder_writes_code(default_gateway, openai_client):
    client = openai_client(default_gateway)
    response = client.chat.completions.with_raw_response.create(
        model="qwen2.5-coder-0.5b",
        messages=[{"role": "user", "content": "Write a Python function add(a, b) that returns a + b."}],
        max_tokens=60,
        temperature=0,
    )
    answer = response.parse()
    assert "def add" in (answer.choices[0].message.content or "")
    assert response.headers["x-smallfleet-model"] == "qwen2.5-coder-0.5b"
    assert response.headers["x-request-id"]


def test_smollm2_chats_and_metrics_count_it(default_gateway, openai_client):
    client = openai_client(default_gateway)
    answer = client.chat.completions.create(
        model="smollm2-135m", messages=[{"role": "user", "content": "Say hello."}], max_tokens=8
    )
    assert answer.choices[0].message.content
    metrics = httpx.get(default_gateway + "/metrics").text
    assert 'smallfleet_requests_total{model="smollm2-135m",route="smollm2-135m",status="200"}' in metrics


def test_auto_sends_kinds_of_questions_where_the_fleets_own_router_says(default_gateway, openai_client):
    """A fresh `smallfleet serve` routes `auto` with the artifact trained on the fleet's own eval."""
    from fleet.config import default_fleet
    from router.routing import load_router
    from tests.routing_examples import KINDS

    expected = load_router(default_fleet().router.artifact)
    client = openai_client(default_gateway)
    chosen = {}
    for kind, question in KINDS.items():
        response = client.chat.completions.with_raw_response.create(
            model="auto", messages=[{"role": "user", "content": question}], max_tokens=1
        )
        chosen[kind] = response.headers["x-smallfleet-model"]
        assert response.parse().model == chosen[kind]
        assert chosen[kind] == expected.route(question).model, kind
    assert len(set(chosen.values())) >= 2, chosen


def test_the_default_fleet_embeds_with_the_routers_static_embedding(default_gateway, openai_client):
    client = openai_client(default_gateway)
    answer = client.embeddings.create(model="minilm-static", input=["Hello there", "Hi!"])
    assert [len(item.embedding) for item in answer.data] == [256, 256]
    assert answer.usage.prompt_tokens > 0
    cut = client.embeddings.create(model="minilm-static", input="Hello", dimensions=64)
    assert len(cut.data[0].embedding) == 64
    metrics = httpx.get(default_gateway + "/metrics").text
    assert 'smallfleet_embedding_requests_total{model="minilm-static",status="200"} 2.0' in metrics


def test_auto_sends_tool_and_structured_requests_only_to_models_that_honour_them(default_gateway, openai_client):
    """SmolLM2's template has no tools: a tool request goes to a Qwen model, even at the cheapest
    preset, and the model list says who has what."""
    client = openai_client(default_gateway)
    features = {m.id: set(m.model_extra.get("features", [])) for m in client.models.list()}
    assert "tools" not in features["smollm2-135m"] and "tools" in features["qwen2.5-coder-0.5b"]
    assert "response_format" in features["smollm2-135m"]
    weather = {"type": "function", "function": {"name": "get_weather", "parameters": {
        "type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}}}
    answer = client.chat.completions.create(
        model="auto:cheap", messages=[{"role": "user", "content": "Hi! What is the weather in Oslo?"}],
        tools=[weather], tool_choice="required", max_tokens=48, temperature=0,
    )
    assert answer.model.startswith("qwen2.5-coder")
    assert answer.choices[0].message.tool_calls[0].function.name == "get_weather"


def test_the_default_fleets_vote_stops_once_its_first_two_samples_agree(default_gateway, openai_client):
    """vote-1.5b on the real 1.5B: a question whose greedy answer and first sample at 0.7 agree
    is answered from those two, the other three samples never drawn nor charged."""
    client = openai_client(default_gateway)
    response = client.chat.completions.with_raw_response.create(
        model="vote-1.5b", seed=0, max_tokens=16,
        messages=[{"role": "user", "content": "What is 12 + 30? Reply with the number only."}],
    )
    answer = response.parse()
    assert "42" in (answer.choices[0].message.content or "")
    assert response.headers["x-smallfleet-model"] == "vote-1.5b"
    extra = answer.model_extra["smallfleet"]
    assert extra["type"] == "diverse" and extra["stopped_early"] is True and extra["samples"] == 2, extra
    assert answer.usage is not None and 0 < answer.usage.completion_tokens <= 2 * 16


def test_auto_quality_sends_a_word_problem_to_the_vote(default_gateway, openai_client):
    """The default router was trained with vote-1.5b as a candidate on word problems."""
    client = openai_client(default_gateway)
    problem = "I buy 3 books at $12 each and pay with a $50 note. How much change do I get?"
    response = client.chat.completions.with_raw_response.create(
        model="auto:quality", messages=[{"role": "user", "content": problem}], max_tokens=1,
    )
    assert response.headers["x-smallfleet-model"] == "vote-1.5b"
    assert response.headers["x-smallfleet-success"].startswith("vote-1.5b=")
