"""The gateway over real HTTP on loopback, driven by the official openai client."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import AsyncIterator

import httpx
import openai
import pytest

from backends.fake import FakeBackend
from backends.types import GenerationRequest, StreamChunk
from gateway.app import create_app
from tests.conftest import fleet_of


class _Watched(FakeBackend):
    """A fake whose ``ended`` is set once its stream is over, finished or closed early."""

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.ended = threading.Event()

    async def stream_chat(self, request: GenerationRequest) -> AsyncIterator[StreamChunk]:
        try:
            async for chunk in super().stream_chat(request):
                yield chunk
        finally:
            self.ended.set()


@pytest.fixture
def served(live_server):
    fakes = {
        "alpha": FakeBackend("alpha", reply="Hello there friend"),
        "slow": _Watched("slow", reply="w " * 200, chunk_delay=0.02),  # 4 s of answer
    }
    server = live_server(create_app(fleet_of("alpha", "slow"), backends=fakes))
    return server, fakes


def test_openai_client_lists_models_and_chats(served, openai_client):
    server, _ = served
    client = openai_client(server.url)
    assert [m.id for m in client.models.list()] == ["alpha", "slow"]
    answer = client.chat.completions.create(model="alpha", messages=[{"role": "user", "content": "hi"}])
    assert answer.choices[0].message.content == "Hello there friend"
    assert answer.usage is not None and answer.usage.completion_tokens == 3
    text = client.completions.create(model="alpha", prompt="Say")
    assert text.choices[0].text == "Hello there friend"


def test_openai_client_streams(served, openai_client):
    server, _ = served
    client = openai_client(server.url)
    stream = client.chat.completions.create(
        model="alpha",
        messages=[{"role": "user", "content": "hi"}],
        stream=True,
        stream_options={"include_usage": True},
    )
    chunks = list(stream)
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == "Hello there friend"
    assert chunks[-1].usage is not None and chunks[-1].usage.completion_tokens == 3


def test_openai_client_sees_errors_as_exceptions(served, openai_client):
    server, _ = served
    client = openai_client(server.url)
    with pytest.raises(openai.NotFoundError) as caught:
        client.chat.completions.create(model="nope", messages=[{"role": "user", "content": "hi"}])
    assert caught.value.response.json()["error"]["code"] == "model_not_found"
    with pytest.raises(openai.BadRequestError):
        client.chat.completions.create(model="alpha", messages=[])


def test_client_disconnect_mid_stream_stops_the_backend(served):
    server, fakes = served
    slow = fakes["slow"]

    async def read_a_little_then_leave() -> None:
        async with httpx.AsyncClient(base_url=server.url) as client:
            payload = {"model": "slow", "messages": [{"role": "user", "content": "go"}], "stream": True}
            async with client.stream("POST", "/v1/chat/completions", json=payload) as response:
                async for _ in response.aiter_lines():
                    if slow.chunks_sent >= 3:
                        break

    asyncio.run(read_a_little_then_leave())
    assert slow.ended.wait(10), "the backend's stream was neither closed nor finished"
    assert slow.stream_closed_early  # closed, not run to its end
    assert slow.chunks_sent < 50  # nothing more generated after the client left


def test_client_disconnect_before_a_whole_answer_cancels_it(served):
    server, fakes = served
    with pytest.raises(httpx.ReadTimeout):
        httpx.post(
            server.url + "/v1/chat/completions",
            json={"model": "slow", "messages": [{"role": "user", "content": "go"}]},
            timeout=0.2,
        )
    slow = fakes["slow"]
    assert slow.ended.wait(10), "the backend's call was neither cancelled nor finished"
    assert slow.stream_closed_early and slow.chunks_sent < 200  # cancelled, not left to finish
    counted = 'smallfleet_requests_total{model="slow",route="slow",status="499"} 1.0'
    deadline = time.monotonic() + 10  # a wait for the request's accounting, not a bound on it
    while counted not in (metrics := httpx.get(server.url + "/metrics").text) and time.monotonic() < deadline:
        time.sleep(0.02)
    assert counted in metrics
