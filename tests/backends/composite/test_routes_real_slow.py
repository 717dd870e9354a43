"""Routes of real GGUF models through llama.cpp, over loopback HTTP with the official openai client."""

from __future__ import annotations

import json
from pathlib import Path

import httpx
import pytest

from fleet.config import parse_fleet
from gateway.app import create_app

pytestmark = pytest.mark.slow

QUESTION = [
    {"role": "system", "content": "Answer with a number. End with '#### N'."},
    {"role": "user", "content": "Tom has 3 apples and buys 5 more. How many apples does he have?"},
]


@pytest.fixture(scope="module")
def smollm2_routes(smollm2_gguf: str):
    return parse_fleet(
        {
            "models": [
                {"name": "smollm2-135m", "backend": "llama_cpp", "gguf": smollm2_gguf, "context_length": 2048,
                 "price": {"input": 0.01, "output": 0.02}},
            ],
            "routes": [
                {"name": "plan-solve", "type": "plan_solve", "planner": "smollm2-135m", "solver": "smollm2-135m",
                 "plan_max_tokens": 64, "timeouts": {"planner": 300, "solver": 300}},
                {"name": "vote", "type": "diverse", "timeout": 300,
                 "samples": [{"model": "smollm2-135m", "temperature": 0.0},
                             {"model": "smollm2-135m", "temperature": 0.9, "count": 2}]},
            ],
        }
    )


def _text(chunks) -> str:
    return "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)


def test_both_routes_on_smollm2_with_and_without_streaming(smollm2_routes, live_server, openai_client):
    server = live_server(create_app(smollm2_routes))
    client = openai_client(server.url, timeout=300)
    ids = {m.id for m in client.models.list()}
    assert {"smollm2-135m", "plan-solve", "vote"} <= ids

    raw = client.chat.completions.with_raw_response.create(
        model="plan-solve", messages=QUESTION, max_tokens=48, temperature=0, seed=1,
        extra_body={"smallfleet": {"details": True}},
    )
    answer = raw.parse()
    assert raw.headers["x-smallfleet-model"] == "plan-solve" and answer.choices[0].message.content
    meta = answer.model_extra["smallfleet"]  # type: ignore[index]
    calls = meta["details"]["calls"]
    assert [c["step"] for c in calls] == ["planner", "solver"] and all(c["error"] is None for c in calls)
    assert answer.usage is not None
    assert answer.usage.completion_tokens == sum(c["usage"]["completion_tokens"] for c in calls)
    assert (meta["plan_fallback"] is None) == (meta["details"]["plan"] is not None)

    streamed = list(client.chat.completions.create(
        model="plan-solve", messages=QUESTION, max_tokens=48, temperature=0, seed=1, stream=True,
        stream_options={"include_usage": True},
    ))
    assert _text(streamed) == answer.choices[0].message.content  # same seed, same plan, same answer
    assert streamed[-1].usage is not None and streamed[-1].usage.total_tokens == answer.usage.total_tokens

    voted = client.chat.completions.create(
        model="vote", messages=QUESTION, max_tokens=32, extra_body={"smallfleet": {"details": True}}
    )
    vote_meta = voted.model_extra["smallfleet"]  # type: ignore[index]
    assert vote_meta["succeeded"] == 3 and 0 < vote_meta["distinct_ratio"] <= 1
    assert voted.choices[0].message.content in {s["text"] for s in vote_meta["details"]["samples"]}
    choices = client.chat.completions.create(model="vote", messages=QUESTION, max_tokens=32, n=3)
    assert 1 <= len(choices.choices) <= 3
    assert len({c.message.content for c in choices.choices}) == len(choices.choices)
    streamed_vote = list(client.chat.completions.create(model="vote", messages=QUESTION, max_tokens=32, stream=True))
    assert _text(streamed_vote)

    metrics = httpx.get(server.url + "/metrics").text
    assert 'smallfleet_composite_calls_total{model="smollm2-135m",outcome="ok",route="vote",step="sample"}' in metrics
    assert 'smallfleet_cost_total{cluster="none",model="plan-solve",route="plan-solve"}' in metrics


@pytest.fixture(scope="module")
def smollm2_cascades(smollm2_gguf: str):
    """Two names for SmolLM2 and two cascades between them: one that keeps every first answer
    (threshold -50: no answer is that unsure), one that escalates every one (threshold 0)."""
    model = {"backend": "llama_cpp", "gguf": smollm2_gguf, "context_length": 2048}
    return parse_fleet({
        "models": [{"name": "small", **model}, {"name": "large", **model}],
        "routes": [
            {"name": "keeps", "type": "cascade", "first": "small", "then": "large", "threshold": -50},
            {"name": "escalates", "type": "cascade", "first": "small", "then": "large", "threshold": 0,
             "signal": "min"},
        ],
    })


def test_a_cascade_judges_real_token_logprobs(smollm2_cascades, live_server, openai_client):
    server = live_server(create_app(smollm2_cascades))
    client = openai_client(server.url, timeout=300)
    details = {"smallfleet": {"details": True}}
    kept = client.chat.completions.create(model="keeps", messages=QUESTION, max_tokens=16, temperature=0,
                                          extra_body=details)
    meta = kept.model_extra["smallfleet"]  # type: ignore[index]
    assert meta["escalated"] is None and meta["first"] == "small"
    assert -50 < meta["confidence"] < 0  # the mean log-probability llama.cpp gave the answer's tokens
    assert [c["model"] for c in meta["details"]["calls"]] == ["small"]
    raised = client.chat.completions.create(model="escalates", messages=QUESTION, max_tokens=16,
                                            temperature=0, extra_body=details)
    meta = raised.model_extra["smallfleet"]  # type: ignore[index]
    assert meta["escalated"] == "low_confidence"
    assert [c["model"] for c in meta["details"]["calls"]] == ["small", "large"]
    assert raised.usage is not None
    calls = meta["details"]["calls"]
    assert raised.usage.completion_tokens == sum(c["usage"]["completion_tokens"] for c in calls)
    streamed = list(client.chat.completions.create(
        model="escalates", messages=QUESTION, max_tokens=16, temperature=0, stream=True
    ))
    assert _text(streamed) == raised.choices[0].message.content  # greedy both times


def test_fleet_eval_measures_routes_like_models(smollm2_gguf: str, tmp_path: Path) -> None:
    from gateway.cli import main

    config = tmp_path / "fleet.yaml"
    config.write_text(
        "models:\n"
        "  - name: smollm2-135m\n"
        "    backend: llama_cpp\n"
        f"    gguf: {smollm2_gguf}\n"
        "    context_length: 2048\n"
        "    price: {input: 0.01, output: 0.02}\n"
        "routes:\n"
        "  - {name: plan-solve, type: plan_solve, planner: smollm2-135m, solver: smollm2-135m,\n"
        "     plan_max_tokens: 32, timeouts: {planner: 600, solver: 600}}\n"
        "  - name: vote\n"
        "    type: diverse\n"
        "    samples: [{model: smollm2-135m, temperature: 0.8, count: 2}]\n"
        "    timeout: 600\n"
    )
    out = tmp_path / "out"
    argv = ["fleet", "eval", "--config", str(config), "--models", "smollm2-135m,plan-solve,vote",
            "--benchmarks", "gsm8k", "--limit", "1", "--max-tokens", "48", "--out", str(out), "--no-progress"]
    assert main(argv) == 0
    rows = json.loads((out / "rows.json").read_text())
    assert len(rows) == 1 and set(rows[0]["scores"]) == {"smollm2-135m", "plan-solve", "vote"}
    queries = {q["model"]: q for q in json.loads((out / "queries.json").read_text())}
    assert all(q["finish_reason"] != "error" for q in queries.values())
    plain, planned = queries["smollm2-135m"], queries["plan-solve"]
    # a route's usage and configured cost are its inner calls' (planner and solver), at the member's price
    assert planned["prompt_tokens"] > plain["prompt_tokens"]
    expected = (0.01 * planned["prompt_tokens"] + 0.02 * planned["completion_tokens"]) / 1e6
    assert planned["config_cost"] == pytest.approx(expected)
    table = {e["model"]: e for e in json.loads((out / "table.json").read_text())["table"]}
    assert table["vote"]["peak_memory_bytes"] > 0 and table["vote"]["measured_cost_per_query"] > 0
