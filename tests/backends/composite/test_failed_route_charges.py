"""A route that fails still charges its inner calls that ran: in the request log (and so the
per-key budgets), in the cost and token metrics, and in the composite_* metrics under the route."""

from __future__ import annotations

import httpx
import openai
import pytest
from starlette.applications import Starlette

from backends.errors import BackendError, ContextLengthExceeded
from backends.fake import FakeBackend
from backends.types import GenerationRequest, Usage
from fleet.config import parse_fleet
from gateway.app import create_app
from gateway.request_log import RequestRecord
from tests.conftest import asgi_client

PLAN = "1. Count the apples.\n2. Add them."
QUESTION = [{"role": "user", "content": "Tom has 3 apples and gets 5 more. How many?"}]
SMALL_PRICE, HUGE_PRICE = (1.0, 2.0), (100.0, 200.0)
MODELS = [
    {"name": "small", "backend": "openai", "base_url": "http://127.0.0.1:9/v1", "price": {"input": 1, "output": 2}},
    {"name": "large", "backend": "openai", "base_url": "http://127.0.0.1:9/v1", "price": {"input": 10, "output": 20}},
    {"name": "huge", "backend": "openai", "base_url": "http://127.0.0.1:9/v1", "price": {"input": 100, "output": 200}},
]
ROUTES = [
    {"name": "ps", "type": "plan_solve", "planner": "small", "solver": "large"},
    {"name": "vote", "type": "diverse", "samples": [{"model": "large", "count": 2}, {"model": "small"}]},
]


def _app(members: dict[str, FakeBackend]) -> tuple[Starlette, list[RequestRecord]]:
    app = create_app(parse_fleet({"models": MODELS, "routes": ROUTES}), backends=members)
    records: list[RequestRecord] = []
    app.state.gateway.record_hooks.append(records.append)
    return app, records


def _members(solver: FakeBackend) -> dict[str, FakeBackend]:
    huge = FakeBackend("huge", "#### 8", context_length=8192)  # where a prompt too long for "large" goes
    return {"small": FakeBackend("small", PLAN), "large": solver, "huge": huge}


def _usage(member: FakeBackend, request: GenerationRequest) -> Usage:
    prompt = " ".join(m.content for m in request.messages or ())
    return Usage(len(prompt.split()), len(member.reply_for(request).split(" ")))


def _cost(usage: Usage, price: tuple[float, float]) -> float:
    return (usage.prompt_tokens * price[0] + usage.completion_tokens * price[1]) / 1e6


def _metric(metrics: str, prefix: str) -> float:
    return float(next(x for x in metrics.splitlines() if x.startswith(prefix)).split()[-1])


def _assert_the_plan_is_charged(records: list[RequestRecord], metrics: str, small: FakeBackend) -> None:
    plan = _usage(small, small.requests[0])
    cost = _cost(plan, SMALL_PRICE)
    [record] = records
    assert record.status == 502 and record.model == "ps" and record.route == "ps"
    assert (record.prompt_tokens, record.completion_tokens) == (plan.prompt_tokens, plan.completion_tokens)
    assert record.cost == pytest.approx(cost) and cost > 0
    assert _metric(metrics, 'smallfleet_cost_total{cluster="none",model="ps",route="ps"}') == pytest.approx(cost)
    assert _metric(metrics, 'smallfleet_composite_cost_total{model="small",route="ps"}') == pytest.approx(cost)
    assert f'smallfleet_tokens_total{{direction="output",model="ps",route="ps"}} {plan.completion_tokens}.0' in metrics
    assert 'smallfleet_composite_calls_total{model="small",outcome="ok",route="ps",step="planner"} 1.0' in metrics
    assert 'smallfleet_composite_calls_total{model="large",outcome="backend_error",route="ps",step="solver"} 1.0' in metrics


async def test_a_solver_failing_after_the_plan_still_charges_the_plan():
    members = _members(FakeBackend("large", error=BackendError("solver down")))
    app, records = _app(members)
    async with asgi_client(app) as http:
        response = await http.post("/v1/chat/completions", json={"model": "ps", "messages": QUESTION})
        metrics = (await http.get("/metrics")).text
    assert response.status_code == 502 and "solver down" in response.json()["error"]["message"]
    _assert_the_plan_is_charged(records, metrics, members["small"])


@pytest.mark.parametrize("fail_after_chunks", [None, 2], ids=["before-the-first-token", "mid-stream"])
def test_a_streamed_solver_failure_still_charges_the_plan(live_server, openai_client, fail_after_chunks):
    error = BackendError("solver down")
    members = _members(FakeBackend("large", "eight apples #### 8", error=error, fail_after_chunks=fail_after_chunks))
    app, records = _app(members)
    server = live_server(app)
    with pytest.raises(openai.APIError, match="solver down"):
        list(openai_client(server.url).chat.completions.create(model="ps", messages=QUESTION, stream=True))
    _assert_the_plan_is_charged(records, httpx.get(server.url + "/metrics").text, members["small"])


async def test_a_fallback_after_a_failed_route_charges_the_route_and_the_fallback():
    # The solver refuses the prompt, with and without the plan; a model with a longer context answers.
    members = _members(FakeBackend("large", error=ContextLengthExceeded("too long for large")))
    app, records = _app(members)
    async with asgi_client(app) as http:
        response = await http.post("/v1/chat/completions", json={"model": "ps", "messages": QUESTION})
        metrics = (await http.get("/metrics")).text
    assert response.status_code == 200 and response.headers["x-smallfleet-model"] == "huge"
    small, huge = members["small"], members["huge"]
    plan, answer = _usage(small, small.requests[0]), _usage(huge, huge.requests[0])
    cost = _cost(plan, SMALL_PRICE) + _cost(answer, HUGE_PRICE)
    [record] = records
    assert record.status == 200 and record.model == "huge" and record.route == "ps"
    assert record.prompt_tokens == plan.prompt_tokens + answer.prompt_tokens
    assert record.completion_tokens == plan.completion_tokens + answer.completion_tokens
    assert record.cost == pytest.approx(cost)
    assert _metric(metrics, 'smallfleet_cost_total{cluster="none",model="huge",route="ps"}') == pytest.approx(cost)
    assert _metric(metrics, 'smallfleet_composite_cost_total{model="small",route="ps"}') == pytest.approx(
        _cost(plan, SMALL_PRICE)
    )
    assert 'outcome="context_length_exceeded",route="ps",step="solver"} 2.0' in metrics


async def test_every_sample_failing_still_counts_the_samples_under_the_route():
    broken = {n: FakeBackend(n, error=BackendError(f"{n} down")) for n in ("small", "large", "huge")}
    app, records = _app(broken)
    async with asgi_client(app) as http:
        response = await http.post("/v1/chat/completions", json={"model": "vote", "messages": QUESTION})
        metrics = (await http.get("/metrics")).text
    assert response.status_code == 502 and records[0].status == 502
    assert 'smallfleet_composite_calls_total{model="large",outcome="backend_error",route="vote",step="sample"} 2.0' in metrics
    assert 'smallfleet_composite_calls_total{model="small",outcome="backend_error",route="vote",step="sample"} 1.0' in metrics
