"""The gateway over real HTTP on loopback, driven by the official openai client."""

from __future__ import annotations

import asyncio
import time

import httpx
import openai
import pytest

from backends.fake import FakeBackend
from gateway.app import create_app
from tests.conftest import fleet_of


@pytest.fixture
def served(live_server):
    fakes = {
        "alpha": FakeBackend("alpha", reply="Hello there friend"),
        "slow": FakeBackend("slow", reply="w " * 200, chunk_delay=0.02),
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
    time.sleep(0.3)
    sent = slow.chunks_sent
    time.sleep(0.3)
    assert slow.stream_closed_early
    assert sent == slow.chunks_sent < 50  # nothing more generated after the client left


def test_client_disconnect_before_a_whole_answer_cancels_it(served):
    server, fakes = served
    with pytest.raises(httpx.ReadTimeout):
        httpx.post(
            server.url + "/v1/chat/completions",
            json={"model": "slow", "messages": [{"role": "user", "content": "go"}]},
            timeout=0.2,
        )
    time.sleep(0.5)
    metrics = httpx.get(server.url + "/metrics").text
    assert 'smallfleet_requests_total{model="slow",route="slow",status="499"} 1.0' in metrics
