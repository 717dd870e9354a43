"""The completion endpoints' fast path (gateway/fast_path.py) answers exactly as the Starlette stack
with its three middleware does: the same statuses, headers in the same order, and error bodies."""

from __future__ import annotations

import contextlib
import tempfile
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest

from backends.errors import RequestError
from backends.fake import FakeBackend
from backends.types import Completion, GenerationRequest, StreamChunk
from gateway.app import create_app
from gateway.fast_path import GatewayApp
from gateway.keys import KeyLimits, KeyStore
from gateway.settings import Settings
from tests.conftest import fleet_of

CHAT = {"model": "alpha", "messages": [{"role": "user", "content": "one two three"}]}
AUTH = {"authorization": "Bearer sk-a"}
VARYING = {"x-request-id", "date"}  # values that differ between two runs


class Broken(FakeBackend):
    """A backend with a bug: an exception the gateway does not expect."""

    async def chat(self, request: GenerationRequest) -> Completion:
        raise ZeroDivisionError("a bug")

    async def stream_chat(self, request: GenerationRequest) -> AsyncIterator[StreamChunk]:
        raise ZeroDivisionError("a bug")
        yield  # an async generator


@contextlib.asynccontextmanager
async def client_for(fast: bool, limits: KeyLimits, backend: FakeBackend) -> AsyncIterator[httpx.AsyncClient]:
    """A client of a fresh gateway (its own request log: a budget's spending outlives a restart)."""
    keys = KeyStore(["a:sk-a"], limits={"a": limits})
    with tempfile.TemporaryDirectory() as state:
        settings = Settings.from_environ({"SMALLFLEET_STATE": state})
        app = create_app(fleet_of("alpha"), backends={"alpha": backend}, api_keys=keys, settings=settings)
        async with _served(app, fast) as client:
            yield client


@contextlib.asynccontextmanager
async def _served(app: Any, fast: bool) -> AsyncIterator[httpx.AsyncClient]:
    assert isinstance(app, GatewayApp) and app.fast_path is not None
    if not fast:
        app.fast_path = None  # every request through Starlette and the middleware
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
        async with httpx.AsyncClient(transport=transport, base_url="http://gateway") as client:
            yield client


def seen(response: httpx.Response) -> tuple[int, list[tuple[str, str]], Any]:
    """What a client sees, less the values that differ from run to run (and a success's body, which
    carries its own id and time)."""
    headers = [(k, "*" if k in VARYING else v) for k, v in response.headers.multi_items()]
    body = response.json() if response.status_code != 200 else None
    return response.status_code, headers, body


SCENARIOS: dict[str, tuple[KeyLimits, list[tuple[dict[str, Any], dict[str, str]]]]] = {
    "keyed answers": (KeyLimits(rpm=5, tpm=1000, budget=10.0), [(CHAT, AUTH), (CHAT, AUTH)]),
    "streamed": (KeyLimits(rpm=5), [({**CHAT, "stream": True}, AUTH)]),
    "client's request id": (KeyLimits(), [(CHAT, {**AUTH, "x-request-id": "mine-1"})]),
    "missing and bad key": (KeyLimits(), [(CHAT, {}), (CHAT, {"authorization": "Bearer sk-bad"})]),
    "rpm spent": (KeyLimits(rpm=1, tpm=1000), [(CHAT, AUTH), (CHAT, AUTH)]),
    "budget spent": (KeyLimits(budget=0.0), [(CHAT, AUTH)]),
    "bad request and unknown model": (
        KeyLimits(rpm=5), [({"model": "alpha"}, AUTH), ({**CHAT, "model": "nope"}, AUTH)]
    ),
}


@pytest.mark.parametrize("scenario", list(SCENARIOS))
async def test_the_fast_path_answers_as_the_middleware_stack(scenario):
    limits, requests = SCENARIOS[scenario]
    answers = {}
    for fast in (True, False):
        async with client_for(fast, limits, FakeBackend("alpha")) as client:
            answers[fast] = [
                seen(await client.post("/v1/chat/completions", json=body, headers=headers))
                for body, headers in requests
            ]
    assert answers[True] == answers[False]
    if scenario == "client's request id":
        assert answers[True][0][1][-1] == ("x-request-id", "*")  # echoed last


async def test_a_backend_error_after_choosing_carries_the_model_header_both_ways():
    answers = []
    for fast in (True, False):
        backend = FakeBackend("alpha", error=RequestError("no", param="messages"))
        async with client_for(fast, KeyLimits(rpm=5), backend) as client:
            answers.append(seen(await client.post("/v1/chat/completions", json=CHAT, headers=AUTH)))
    assert answers[0] == answers[1]
    assert ("x-smallfleet-model", "alpha") in answers[0][1]


async def test_an_unexpected_error_is_a_500_without_the_middleware_headers_and_is_raised_on(caplog):
    answers = []
    for fast in (True, False):
        async with client_for(fast, KeyLimits(rpm=5), Broken("alpha")) as client:
            answers.append(seen(await client.post("/v1/chat/completions", json=CHAT, headers=AUTH)))
    assert answers[0] == answers[1]
    status, headers, body = answers[0]
    assert status == 500 and body["error"]["message"] == "internal error in the gateway; see its log"
    assert not any(name in ("x-request-id", "x-ratelimit-limit-requests") for name, _ in headers)
    assert sum("unexpected error on POST /v1/chat/completions" in r.message for r in caplog.records) == 2

    keys = KeyStore(["a:sk-a"])
    app = create_app(fleet_of("alpha"), backends={"alpha": Broken("alpha")}, api_keys=keys)
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)  # raises what the app raises, as a server logs it
        async with httpx.AsyncClient(transport=transport, base_url="http://gateway") as client:
            with pytest.raises(ZeroDivisionError):
                await client.post("/v1/chat/completions", json=CHAT, headers=AUTH)


async def test_other_methods_and_paths_take_the_starlette_stack():
    async with client_for(True, KeyLimits(rpm=5), FakeBackend("alpha")) as client:
        wrong_method = await client.get("/v1/chat/completions", headers=AUTH)
        models = await client.get("/v1/models", headers=AUTH)
    assert wrong_method.status_code == 405 and wrong_method.json()["error"]["code"] == "method_not_allowed"
    assert models.status_code == 200 and models.headers["x-ratelimit-limit-requests"] == "5"
    assert list(models.headers)[-1] == "x-request-id"
