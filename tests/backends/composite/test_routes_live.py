"""Routes over real loopback HTTP with the official openai client (scripted members): the
client's view, disconnects cancelling every inner call, and the router choosing a route."""

from __future__ import annotations

import asyncio
import json
import time

import httpx
import pytest

from backends.fake import FakeBackend
from backends.types import StreamChunk
from fleet.config import parse_fleet
from gateway.app import create_app

PLAN = "1. Count the apples.\n2. Add them."
MODELS = [{"name": n, "backend": "openai", "base_url": "http://127.0.0.1:9/v1"} for n in ("small", "large")]
ROUTES = [
    {"name": "ps", "type": "plan_solve", "planner": "small", "solver": "large"},
    {"name": "vote", "type": "diverse", "samples": [{"model": "large", "temperature": 0.7, "count": 3}]},
]
QUESTION = [{"role": "user", "content": "Tom has 3 apples and gets 5 more. How many?"}]


def _app(members, **config):
    return create_app(parse_fleet({"models": MODELS, "routes": ROUTES, **config}), backends=members)


def test_the_openai_client_uses_routes_with_and_without_streaming(live_server, openai_client):
    members = {
        "small": FakeBackend("small", PLAN),
        "large": FakeBackend("large", lambda r: f"answer {r.params.seed} so #### 8"),
    }
    client = openai_client(live_server(_app(members)).url)
    assert {"ps", "vote"} <= {m.id for m in client.models.list()}
    raw = client.chat.completions.with_raw_response.create(
        model="ps", messages=QUESTION, extra_body={"smallfleet": {"details": True}}
    )
    answer = raw.parse()
    assert answer.choices[0].message.content == "answer None so #### 8"
    assert raw.headers["x-smallfleet-route"] == "ps"
    assert answer.model_extra is not None and answer.model_extra["smallfleet"]["details"]["plan"] == [
        "Count the apples.",
        "Add them.",
    ]
    stream = client.chat.completions.create(
        model="ps", messages=QUESTION, stream=True, stream_options={"include_usage": True}
    )
    chunks = list(stream)
    assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices) == "answer None so #### 8"
    assert chunks[-1].usage is not None and chunks[-1].usage.completion_tokens > 5
    voted = client.chat.completions.create(model="vote", messages=QUESTION, n=2, seed=40)
    assert [c.index for c in voted.choices] == [0, 1]
    assert {c.message.content for c in voted.choices} <= {f"answer {s} so #### 8" for s in (40, 41, 42)}
    streamed_vote = list(client.chat.completions.create(model="vote", messages=QUESTION, stream=True))
    assert "".join(c.choices[0].delta.content or "" for c in streamed_vote if c.choices).endswith("#### 8")


def test_a_client_leaving_cancels_every_inner_call(live_server):
    members = {"small": FakeBackend("small", PLAN), "large": FakeBackend("large", "late", first_chunk_delay=30)}
    server = live_server(_app(members))
    for model in ("vote", "ps"):
        with pytest.raises(httpx.ReadTimeout):
            httpx.post(
                server.url + "/v1/chat/completions", json={"model": model, "messages": QUESTION}, timeout=0.5
            )
    deadline = time.monotonic() + 5
    while members["large"].cancelled < 4 and time.monotonic() < deadline:
        time.sleep(0.05)
    assert members["large"].cancelled == 4  # three samples, then the solver
    metrics = httpx.get(server.url + "/metrics").text
    assert 'smallfleet_requests_total{model="vote",route="vote",status="499"} 1.0' in metrics


CODE = [f"Write a Python function number {i} that returns the sum of a list of integers" for i in range(12)]
MATH = [f"Tom has {i} apples and buys {i + 3} more. How many apples does he have now?" for i in range(12)]


def _router_trained_with_a_route(tmp_path):
    """An artifact choosing between the model "large" (right on code) and the route "ps" (right
    on maths), trained like the default fleet's: `fleet router` on fleet-eval rows."""
    from fleet.fleet_router import build_fleet_router

    rows, queries = [], []
    for task, questions in (("humaneval", CODE), ("gsm8k", MATH)):
        for question in questions:
            scores = {"large": int(task == "humaneval"), "ps": int(task == "gsm8k")}
            rows.append({"question": question, "task": task, "scores": scores})
            queries += [{"model": m, "measured_cost": 1e-4} for m in scores]
    (tmp_path / "eval").mkdir()
    (tmp_path / "eval" / "rows.json").write_text(json.dumps(rows))
    (tmp_path / "eval" / "queries.json").write_text(json.dumps(queries))
    build_fleet_router(tmp_path / "eval", tmp_path / "router", folds=0, clusters=4)
    return tmp_path / "router"


def test_the_router_can_choose_a_route(live_server, tmp_path):
    artifact = _router_trained_with_a_route(tmp_path)
    members = {"small": FakeBackend("small", PLAN), "large": FakeBackend("large", "#### 45")}
    server = live_server(_app(members, router={"artifact": str(artifact)}))
    question = MATH[5]  # in distribution: a question the router was trained on
    response = httpx.post(
        server.url + "/v1/chat/completions",
        json={"model": "auto", "messages": [{"role": "user", "content": question}]},
    )
    assert response.status_code == 200, response.text
    assert response.headers["x-smallfleet-route"] == "auto"
    assert response.headers["x-smallfleet-model"] == "ps"
    assert response.json()["smallfleet"]["type"] == "plan_solve"
    assert len(members["small"].requests) == 1  # the planner was asked
    listed = httpx.get(server.url + "/v1/models").json()["data"]
    auto = next(m for m in listed if m["id"] == "auto")
    assert auto["candidates"] == ["large", "ps"]


def test_smallfleet_serve_lets_auto_choose_the_fleets_routes(tmp_path, monkeypatch, capsys):
    # `smallfleet serve` loads the router before the app (to report a bad artifact cleanly):
    # its candidates are the fleet's models and routes, as after a reload
    import uvicorn

    from gateway.cli import main

    artifact = _router_trained_with_a_route(tmp_path)
    fleet = {"models": MODELS, "routes": ROUTES, "router": {"artifact": str(artifact)}}
    (tmp_path / "fleet.yaml").write_text(json.dumps(fleet))
    served = []
    monkeypatch.setattr(uvicorn, "run", lambda app, **_: served.append(app))
    assert main(["serve", "--config", str(tmp_path / "fleet.yaml"), "--port", "1"]) == 0
    err = capsys.readouterr().err
    assert "model 'auto' routes over large, ps" in err, err
    assert "serving small, large, ps, vote on" in err, err
    assert len(served) == 1


def _wait_for(records, count):
    deadline = time.monotonic() + 5
    while len(records) < count and time.monotonic() < deadline:
        time.sleep(0.05)
    assert len(records) == count


class _StallingSolver(FakeBackend):
    """Answers nothing within 30 s; a stream sends one word first."""

    async def stream_chat(self, request):
        self.requests.append(request)
        yield StreamChunk("one ")
        await asyncio.sleep(30)


def test_a_client_leaving_still_charges_the_inner_calls_that_finished(live_server):
    # the plan is done when the client leaves; the solver's cut-short call is not charged
    price = {"input": 1, "output": 2}
    models = [{**m, "price": price} for m in MODELS]
    small = FakeBackend("small", PLAN)
    large = _StallingSolver("large", "never", first_chunk_delay=30)
    app = create_app(parse_fleet({"models": models, "routes": ROUTES}), backends={"small": small, "large": large})
    records = []
    app.state.gateway.record_hooks.append(records.append)
    server = live_server(app)
    body = {"model": "ps", "messages": QUESTION}
    with pytest.raises(httpx.ReadTimeout):
        httpx.post(server.url + "/v1/chat/completions", json=body, timeout=0.5)
    _wait_for(records, 1)
    # mid-stream: the solver has sent its first words when the client leaves
    with httpx.stream("POST", server.url + "/v1/chat/completions", json={**body, "stream": True}, timeout=5) as r:
        assert r.status_code == 200
        next(r.iter_lines())
    _wait_for(records, 2)
    plan_tokens = len(PLAN.split(" "))
    for record in records:
        assert record.status == 499 and record.model == "ps"
        assert record.completion_tokens == plan_tokens and record.prompt_tokens > 0
        assert record.cost == pytest.approx((record.prompt_tokens * 1 + plan_tokens * 2) / 1e6)
    metrics = httpx.get(server.url + "/metrics").text
    assert 'smallfleet_composite_calls_total{model="small",outcome="ok",route="ps",step="planner"} 2.0' in metrics
    assert 'step="solver"' not in metrics
