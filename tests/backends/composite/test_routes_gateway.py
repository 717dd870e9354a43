"""Routes through the gateway, in-process, with scripted members: answers, metadata, n, metrics."""

from __future__ import annotations

import orjson
import pytest

from backends.errors import BackendError
from backends.fake import FakeBackend
from fleet.config import parse_fleet

PLAN = "1. Count the apples.\n2. Add them."
SOLVED = "three plus five is eight #### 8"
MODELS = [
    {"name": "small", "backend": "openai", "base_url": "http://127.0.0.1:9/v1", "price": {"input": 1, "output": 2}},
    {"name": "large", "backend": "openai", "base_url": "http://127.0.0.1:9/v1", "price": {"input": 10, "output": 20}},
]
ROUTES = [
    {"name": "ps", "type": "plan_solve", "planner": "small", "solver": "large"},
    {
        "name": "vote",
        "type": "diverse",
        "samples": [{"model": "large", "temperature": 0.7, "count": 3}, {"model": "small", "count": 1}],
    },
]
QUESTION = [{"role": "user", "content": "Tom has 3 apples and gets 5 more. How many?"}]


def by_seed(answers: dict[int | None, str]):
    return lambda request: answers.get(request.params.seed, "#### 0")


@pytest.fixture
def members():
    return {
        "small": FakeBackend("small", lambda r: PLAN if r.params.max_tokens == 128 else "#### 9"),
        "large": FakeBackend("large", by_seed({None: SOLVED, 0: SOLVED, 1: "so #### 8", 2: "#### 7"})),
    }


@pytest.fixture
def client(make_client, members):
    return make_client(parse_fleet({"models": MODELS, "routes": ROUTES}), members)


def sse_events(text: str) -> list[dict]:
    assert text.endswith("data: [DONE]\n\n"), text[-200:]
    return [orjson.loads(block.removeprefix("data: ")) for block in text.strip().split("\n\n")[:-1]]


async def test_routes_are_listed_as_models(client):
    async with client as http:
        listed = (await http.get("/v1/models")).json()["data"]
        one = (await http.get("/v1/models/vote")).json()
    assert [m["id"] for m in listed] == ["small", "large", "ps", "vote"]
    ps = listed[2]
    assert ps["backend"] == "plan_solve" and ps["route"] is True and ps["members"] == ["small", "large"]
    assert one["backend"] == "diverse" and one["max_choices"] == 4 and one["members"] == ["large", "small"]


async def test_plan_solve_answers_with_the_solver_and_sums_usage(client, members):
    async with client as http:
        response = await http.post("/v1/chat/completions", json={"model": "ps", "messages": QUESTION})
        metrics = (await http.get("/metrics")).text
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["choices"][0]["message"]["content"] == SOLVED and body["model"] == "ps"
    assert response.headers["x-smallfleet-route"] == "ps" and response.headers["x-smallfleet-model"] == "ps"
    assert "x-smallfleet-plan-fallback" not in response.headers
    assert body["smallfleet"] == {
        "route": "ps", "type": "plan_solve", "planner": "small", "solver": "large", "plan_fallback": None,
    }  # nothing of the plan unless asked
    planner_req, solver_req = members["small"].requests[0], members["large"].requests[0]
    planner_usage = (len(" ".join(m.content for m in planner_req.messages).split()), len(PLAN.split(" ")))
    solver_usage = (len(" ".join(m.content for m in solver_req.messages).split()), len(SOLVED.split()))
    usage = body["usage"]
    assert usage["prompt_tokens"] == planner_usage[0] + solver_usage[0]
    assert usage["completion_tokens"] == planner_usage[1] + solver_usage[1]
    cost = (1 * planner_usage[0] + 2 * planner_usage[1] + 10 * solver_usage[0] + 20 * solver_usage[1]) / 1e6
    line = next(x for x in metrics.splitlines() if x.startswith('smallfleet_cost_total{cluster="none",model="ps"'))
    assert float(line.split()[-1]) == pytest.approx(cost)
    assert f'smallfleet_tokens_total{{direction="output",model="ps",route="ps"}} {usage["completion_tokens"]}.0' in metrics
    assert 'smallfleet_composite_calls_total{model="small",outcome="ok",route="ps",step="planner"} 1.0' in metrics
    assert 'smallfleet_composite_calls_total{model="large",outcome="ok",route="ps",step="solver"} 1.0' in metrics
    assert f'smallfleet_composite_tokens_total{{direction="output",model="small",route="ps"}} {planner_usage[1]}.0' in metrics


async def test_the_plan_comes_back_only_when_asked_and_a_fallback_is_always_said(make_client, members):
    payload = {"model": "ps", "messages": QUESTION, "smallfleet": {"details": True}}
    async with make_client(parse_fleet({"models": MODELS, "routes": ROUTES}), members) as http:
        detailed = (await http.post("/v1/chat/completions", json=payload)).json()
        bad_option = await http.post("/v1/chat/completions", json={**payload, "smallfleet": {"detail": True}})
    details = detailed["smallfleet"]["details"]
    assert details["plan"] == ["Count the apples.", "Add them."]
    assert [c["step"] for c in details["calls"]] == ["planner", "solver"]
    assert all(set(c["usage"]) == {"prompt_tokens", "completion_tokens", "total_tokens"} for c in details["calls"])
    assert "Count the apples" not in detailed["choices"][0]["message"]["content"]
    assert bad_option.status_code == 400 and bad_option.json()["error"]["param"].startswith("smallfleet")

    broken = {"small": FakeBackend("small", error=BackendError("planner down")), "large": members["large"]}
    async with make_client(parse_fleet({"models": MODELS, "routes": ROUTES}), broken) as http:
        response = await http.post("/v1/chat/completions", json={"model": "ps", "messages": QUESTION})
        metrics = (await http.get("/metrics")).text
    assert response.status_code == 200
    assert response.headers["x-smallfleet-plan-fallback"] == "planner_error"
    assert response.json()["smallfleet"]["plan_fallback"] == "planner_error"
    assert 'smallfleet_composite_plan_fallbacks_total{reason="planner_error",route="ps"} 1.0' in metrics
    assert 'outcome="backend_error",route="ps",step="planner"' in metrics


async def test_plan_solve_streams_the_solvers_answer_only(client):
    payload = {"model": "ps", "messages": QUESTION, "stream": True, "stream_options": {"include_usage": True}}
    async with client as http:
        response = await http.post("/v1/chat/completions", json=payload)
    events = sse_events(response.text)
    text = "".join(e["choices"][0]["delta"].get("content", "") for e in events if e["choices"])
    assert text == SOLVED
    final = next(e for e in events if e["choices"] and e["choices"][0]["finish_reason"])
    assert final["smallfleet"]["type"] == "plan_solve" and "details" not in final["smallfleet"]
    assert all("smallfleet" not in e for e in events if e is not final)
    assert events[-1]["usage"]["completion_tokens"] == len(PLAN.split(" ")) + len(SOLVED.split())


async def test_diverse_votes_and_reports_the_distinct_ratio(client):
    async with client as http:
        response = await http.post(
            "/v1/completions", json={"model": "vote", "prompt": "3 + 5 =", "smallfleet": {"details": True}}
        )
        metrics = (await http.get("/metrics")).text
    body = response.json()
    assert response.status_code == 200, body
    assert body["choices"][0]["text"] == SOLVED and len(body["choices"]) == 1
    meta = body["smallfleet"]
    assert meta["samples"] == 4 and meta["succeeded"] == 4 and meta["distinct_ratio"] == 1.0
    assert meta["details"]["votes"] == {"8": 2, "7": 1, "9": 1}
    assert len(meta["details"]["calls"]) == 4
    assert 'smallfleet_composite_distinct_ratio_count{route="vote"} 1.0' in metrics
    assert 'smallfleet_composite_vote_agreement_sum{route="vote"} 0.5' in metrics


async def test_n_choices_from_a_diverse_route_whole_and_streamed(client):
    async with client as http:
        whole = (await http.post("/v1/chat/completions", json={"model": "vote", "messages": QUESTION, "n": 3})).json()
        streamed = await http.post(
            "/v1/chat/completions", json={"model": "vote", "messages": QUESTION, "n": 3, "stream": True}
        )
    assert [c["index"] for c in whole["choices"]] == [0, 1, 2]
    assert [c["message"]["content"] for c in whole["choices"]] == [SOLVED, "so #### 8", "#### 7"]
    events = sse_events(streamed.text)
    texts: dict[int, str] = {}
    for event in events:
        for choice in event["choices"]:
            texts[choice["index"]] = texts.get(choice["index"], "") + choice["delta"].get("content", "")
    assert texts == {0: SOLVED, 1: "so #### 8", 2: "#### 7"}
    finishes = [c["index"] for e in events for c in e["choices"] if c["finish_reason"] == "stop"]
    assert finishes == [0, 1, 2] and "smallfleet" in events[-1]


@pytest.mark.parametrize(
    ("model", "n", "needle"),
    [("small", 2, "'small' gives one choice per request"), ("ps", 2, "one choice"), ("vote", 5, "draws 4 samples")],
)
async def test_n_beyond_what_a_member_gives_is_a_clear_400(client, model, n, needle):
    async with client as http:
        response = await http.post("/v1/chat/completions", json={"model": model, "messages": QUESTION, "n": n})
        too_many = await http.post("/v1/chat/completions", json={"model": "vote", "messages": QUESTION, "n": 33})
    assert response.status_code == 400 and response.json()["error"]["param"] == "n"
    assert needle in response.json()["error"]["message"]
    assert too_many.status_code == 400


async def test_all_samples_failing_is_an_openai_error_not_a_500(make_client):
    broken = {name: FakeBackend(name, error=BackendError(f"{name} down")) for name in ("small", "large")}
    async with make_client(parse_fleet({"models": MODELS, "routes": ROUTES}), broken) as http:
        response = await http.post("/v1/chat/completions", json={"model": "vote", "messages": QUESTION})
        solver_down = await http.post("/v1/chat/completions", json={"model": "ps", "messages": QUESTION})
    assert response.status_code == 502
    assert "all 4 samples failed" in response.json()["error"]["message"]
    assert solver_down.status_code == 502 and "large down" in solver_down.json()["error"]["message"]


async def test_a_vote_whose_first_samples_agree_stops_there_and_charges_only_them(make_client, members):
    early = {**ROUTES[1], "name": "vote-early", "stop_when_agreed": 2}
    client = make_client(parse_fleet({"models": MODELS, "routes": [early]}), members)
    async with client as http:
        response = await http.post("/v1/completions", json={"model": "vote-early", "prompt": "3 + 5 ="})
    body = response.json()
    assert response.status_code == 200, body
    assert body["choices"][0]["text"] == SOLVED  # seeds 0 and 1 of the large model both say 8
    assert body["smallfleet"]["samples"] == 2 and body["smallfleet"]["stopped_early"] is True
    assert len(members["large"].requests) == 2 and members["small"].requests == []
    one = members["large"].requests[0]
    assert body["usage"]["completion_tokens"] > 0 and one.params.seed == 0
