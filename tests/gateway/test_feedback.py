"""POST /v1/feedback: validated, idempotent, and counted in the quality series of the route that answered."""

from __future__ import annotations

from backends.fake import FakeBackend
from tests.conftest import fleet_of

CHAT = {"model": "alpha", "messages": [{"role": "user", "content": "Say hi"}]}


def _series(metrics: str, name: str) -> list[str]:
    return [line for line in metrics.splitlines() if line.startswith(name)]


async def test_feedback_updates_the_quality_series_once(make_client):
    async with make_client(fleet_of("alpha"), {"alpha": FakeBackend("alpha")}) as client:
        answered = await client.post("/v1/chat/completions", json=CHAT)
        request_id = answered.headers["x-request-id"]
        first = await client.post(
            "/v1/feedback", json={"request_id": request_id, "score": 0.75, "label": "ok"}
        )
        again = await client.post(
            "/v1/feedback", json={"request_id": request_id, "score": 0.75, "label": "ok"}
        )
        metrics = (await client.get("/metrics")).text
    assert first.status_code == 200, first.text
    assert first.json() | {"duplicate": None} == {
        "object": "feedback",
        "request_id": request_id,
        "score": 0.75,
        "route": "alpha",
        "model": "alpha",
        "duplicate": None,
    }
    assert first.json()["duplicate"] is False and again.json()["duplicate"] is True
    assert 'smallfleet_feedback_score_count{cluster="none",model="alpha",route="alpha"} 1.0' in metrics
    assert 'smallfleet_feedback_score_sum{cluster="none",model="alpha",route="alpha"} 0.75' in metrics


async def test_conflicting_unknown_and_invalid_feedback_get_clear_4xx(make_client):
    async with make_client(fleet_of("alpha"), {"alpha": FakeBackend("alpha")}) as client:
        request_id = (await client.post("/v1/chat/completions", json=CHAT)).headers["x-request-id"]
        await client.post("/v1/feedback", json={"request_id": request_id, "score": 1.0})
        conflict = await client.post("/v1/feedback", json={"request_id": request_id, "score": 0.0})
        unknown = await client.post("/v1/feedback", json={"request_id": "never-seen", "score": 1.0})
        too_high = await client.post("/v1/feedback", json={"request_id": request_id, "score": 1.5})
        as_text = await client.post("/v1/feedback", json={"request_id": request_id, "score": "good"})
        missing = await client.post("/v1/feedback", json={"score": 1.0})
        extra = await client.post("/v1/feedback", json={"request_id": request_id, "score": 1, "stars": 5})
        still_serving = await client.post("/v1/chat/completions", json=CHAT)
    assert conflict.status_code == 409 and conflict.json()["error"]["code"] == "feedback_conflict"
    assert unknown.status_code == 404 and unknown.json()["error"]["param"] == "request_id"
    for response, field in (
        (too_high, "score"),
        (as_text, "score"),
        (missing, "request_id"),
        (extra, "stars"),
    ):
        assert response.status_code == 400, response.text
        assert field in response.json()["error"]["message"]
    assert still_serving.status_code == 200


async def test_failed_requests_count_as_errors_by_code(make_client):
    from backends.errors import BackendTimeout

    backends = {"alpha": FakeBackend("alpha", error=BackendTimeout("slow"))}
    async with make_client(fleet_of("alpha"), backends) as client:
        await client.post("/v1/chat/completions", json=CHAT)
        metrics = (await client.get("/metrics")).text
    assert (
        'smallfleet_request_errors_total{code="backend_timeout",model="alpha",route="alpha"} 1.0' in metrics
    )
