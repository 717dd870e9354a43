"""The OpenAI API surface, in-process, with fake backends: shapes, headers, errors."""

from __future__ import annotations

import orjson
import pytest

from backends.errors import BackendError, BackendTimeout, Overloaded
from backends.fake import FakeBackend
from tests.conftest import fleet_of

CHAT = {"model": "alpha", "messages": [{"role": "user", "content": "Say hi"}]}


def sse_events(text: str) -> list[str]:
    assert text.endswith("data: [DONE]\n\n"), text[-200:]
    return [block.removeprefix("data: ") for block in text.strip().split("\n\n")]


async def test_chat_completion_shape_and_headers(make_client):
    fake = FakeBackend("alpha", reply="one two three")
    async with make_client(fleet_of("alpha"), {"alpha": fake}) as client:
        response = await client.post("/v1/chat/completions", json={**CHAT, "max_tokens": 5, "seed": 7})
    assert response.status_code == 200
    body = response.json()
    assert body["object"] == "chat.completion"
    assert body["model"] == "alpha"
    assert body["choices"][0]["message"] == {"role": "assistant", "content": "one two three"}
    assert body["choices"][0]["finish_reason"] == "stop"
    assert body["usage"] == {"prompt_tokens": 2, "completion_tokens": 3, "total_tokens": 5}
    assert response.headers["x-smallfleet-model"] == "alpha"
    assert len(response.headers["x-request-id"]) >= 16
    params = fake.requests[0].params
    assert (params.max_tokens, params.seed) == (5, 7)


async def test_sampling_parameters_reach_the_backend(make_client):
    fake = FakeBackend("alpha")
    async with make_client(fleet_of("alpha"), {"alpha": fake}) as client:
        payload = {
            **CHAT,
            "temperature": 0.3,
            "top_p": 0.9,
            "stop": ["\n", "END"],
            "max_completion_tokens": 4,
        }
        assert (await client.post("/v1/chat/completions", json=payload)).status_code == 200
    params = fake.requests[0].params
    assert (params.temperature, params.top_p, params.stop, params.max_tokens) == (0.3, 0.9, ("\n", "END"), 4)


async def test_client_request_id_is_echoed(make_client):
    async with make_client(fleet_of("alpha"), {"alpha": FakeBackend("alpha")}) as client:
        response = await client.post("/v1/chat/completions", json=CHAT, headers={"x-request-id": "abc-123"})
    assert response.headers["x-request-id"] == "abc-123"
    assert response.json()["id"] == "chatcmpl-abc-123"


async def test_text_parts_are_joined(make_client):
    fake = FakeBackend("alpha")
    content = [{"type": "text", "text": "Hello "}, {"type": "text", "text": "there"}]
    async with make_client(fleet_of("alpha"), {"alpha": fake}) as client:
        payload = {"model": "alpha", "messages": [{"role": "user", "content": content}]}
        assert (await client.post("/v1/chat/completions", json=payload)).status_code == 200
    assert fake.requests[0].messages[0].content == "Hello there"


async def test_streaming_chat_ends_with_done_and_usage(make_client):
    async with make_client(fleet_of("alpha"), {"alpha": FakeBackend("alpha", reply="a b c")}) as client:
        payload = {**CHAT, "stream": True, "stream_options": {"include_usage": True}}
        response = await client.post("/v1/chat/completions", json=payload)
    assert response.headers["content-type"].startswith("text/event-stream")
    assert response.headers["x-smallfleet-model"] == "alpha"
    events = sse_events(response.text)
    assert events[-1] == "[DONE]"
    chunks = [orjson.loads(e) for e in events[:-1]]
    assert chunks[0]["choices"][0]["delta"]["role"] == "assistant"
    text = "".join(c["choices"][0]["delta"].get("content", "") for c in chunks if c["choices"])
    assert text == "a b c"
    assert chunks[-2]["choices"][0]["finish_reason"] == "stop"
    assert chunks[-1]["choices"] == [] and chunks[-1]["usage"]["completion_tokens"] == 3


async def test_streaming_without_include_usage_has_no_usage_chunk(make_client):
    async with make_client(fleet_of("alpha"), {"alpha": FakeBackend("alpha")}) as client:
        response = await client.post("/v1/chat/completions", json={**CHAT, "stream": True})
    chunks = [orjson.loads(e) for e in sse_events(response.text)[:-1]]
    assert all(c["choices"] for c in chunks)


async def test_text_completion(make_client):
    fake = FakeBackend("alpha", reply="x y z")
    async with make_client(fleet_of("alpha"), {"alpha": fake}) as client:
        response = await client.post("/v1/completions", json={"model": "alpha", "prompt": "Once upon"})
        streamed = await client.post(
            "/v1/completions", json={"model": "alpha", "prompt": ["Once"], "stream": True}
        )
    body = response.json()
    assert body["object"] == "text_completion" and body["choices"][0]["text"] == "x y z"
    assert fake.requests[0].prompt == "Once upon" and fake.requests[0].messages is None
    assert fake.requests[0].params.max_tokens == 16  # OpenAI's default for completions
    chunks = [orjson.loads(e) for e in sse_events(streamed.text)[:-1]]
    assert "".join(c["choices"][0]["text"] for c in chunks) == "x y z"


async def test_models_list_and_retrieve(make_client):
    backends = {"alpha": FakeBackend("alpha"), "beta": FakeBackend("beta")}
    async with make_client(fleet_of("alpha", "beta"), backends) as client:
        listed = (await client.get("/v1/models")).json()
        one = await client.get("/v1/models/beta")
        missing = await client.get("/v1/models/nope")
    assert [m["id"] for m in listed["data"]] == ["alpha", "beta"]
    assert one.json()["id"] == "beta"
    assert missing.status_code == 404 and missing.json()["error"]["code"] == "model_not_found"


async def test_health_and_metrics(make_client):
    async with make_client(fleet_of("alpha"), {"alpha": FakeBackend("alpha")}) as client:
        await client.post("/v1/chat/completions", json=CHAT)
        health = (await client.get("/health")).json()
        metrics = (await client.get("/metrics")).text
    assert health["status"] == "ok" and health["models"]["alpha"]["ok"] is True
    assert 'smallfleet_requests_total{model="alpha",route="alpha",status="200"} 1.0' in metrics
    assert 'smallfleet_request_duration_seconds_count{model="alpha",route="alpha"} 1.0' in metrics
    assert 'smallfleet_tokens_total{direction="output",model="alpha",route="alpha"}' in metrics
    assert 'smallfleet_backend_up{model="alpha"} 1.0' in metrics


BAD_REQUESTS = [
    (b"{not json", 400, "not valid JSON"),
    (b"", 400, "empty"),
    (b"[1, 2]", 400, "JSON object"),
    (orjson.dumps({"model": "alpha"}), 400, "messages"),
    (orjson.dumps({"model": "alpha", "messages": []}), 400, "messages"),
    (orjson.dumps({"messages": [{"role": "user", "content": "hi"}]}), 400, "model"),
    (orjson.dumps({**CHAT, "max_tokens": "10"}), 400, "max_tokens"),
    (orjson.dumps({**CHAT, "temperature": 5}), 400, "temperature"),
    (orjson.dumps({**CHAT, "messages": [{"role": "wizard", "content": "hi"}]}), 400, "role"),
    (orjson.dumps({**CHAT, "messages": "hi"}), 400, "messages"),
    (orjson.dumps({**CHAT, "stream": "yes"}), 400, "stream"),
    (orjson.dumps({**CHAT, "n": 3}), 400, "n"),
    (orjson.dumps({**CHAT, "max_tokens": 0}), 400, "max_tokens"),
    (orjson.dumps({**CHAT, "max_tokens": 100_000}), 400, "context"),
    (orjson.dumps({**CHAT, "model": "gpt-9"}), 404, "gpt-9"),
    (
        orjson.dumps({**CHAT, "messages": [{"role": "user", "content": [{"type": "image_url"}]}]}),
        400,
        "messages",
    ),
]


@pytest.mark.parametrize(("body", "status", "needle"), BAD_REQUESTS)
async def test_bad_input_gets_a_clear_4xx_and_the_gateway_keeps_serving(make_client, body, status, needle):
    async with make_client(fleet_of("alpha"), {"alpha": FakeBackend("alpha")}) as client:
        response = await client.post(
            "/v1/chat/completions", content=body, headers={"content-type": "application/json"}
        )
        after = await client.post("/v1/chat/completions", json=CHAT)
    assert response.status_code == status, response.text
    error = response.json()["error"]
    assert set(error) == {"message", "type", "param", "code"}
    assert needle in error["message"], error
    assert after.status_code == 200


async def test_context_length_error_names_the_parameter(make_client):
    async with make_client(fleet_of("alpha"), {"alpha": FakeBackend("alpha", context_length=512)}) as client:
        response = await client.post("/v1/chat/completions", json={**CHAT, "max_tokens": 513})
    error = response.json()["error"]
    assert (error["code"], error["param"]) == ("context_length_exceeded", "max_tokens")


async def test_oversized_body_is_413(make_client):
    config = fleet_of("alpha").model_copy(
        update={"limits": fleet_of("alpha").limits.model_copy(update={"max_body_bytes": 1000})}
    )
    async with make_client(config, {"alpha": FakeBackend("alpha")}) as client:
        big = {**CHAT, "messages": [{"role": "user", "content": "x" * 5000}]}
        response = await client.post("/v1/chat/completions", json=big)
        after = await client.post("/v1/chat/completions", json=CHAT)
    assert response.status_code == 413
    assert (
        "limit of 1000 bytes" in response.json()["error"]["message"]
        or "limit is 1000" in response.json()["error"]["message"]
    )
    assert after.status_code == 200


@pytest.mark.parametrize(
    ("error", "status", "code"),
    [
        (BackendError("boom"), 502, "backend_error"),
        (BackendTimeout("slow"), 504, "backend_timeout"),
        (Overloaded("full"), 429, "queue_full"),
    ],
)
async def test_backend_failures_map_to_clear_status(make_client, error, status, code):
    backends = {"alpha": FakeBackend("alpha", error=error), "beta": FakeBackend("beta")}
    async with make_client(fleet_of("alpha", "beta"), backends) as client:
        whole = await client.post("/v1/chat/completions", json=CHAT)
        streamed = await client.post("/v1/chat/completions", json={**CHAT, "stream": True})
        other = await client.post("/v1/chat/completions", json={**CHAT, "model": "beta"})
        metrics = (await client.get("/metrics")).text
    for response in (whole, streamed):
        assert response.status_code == status
        assert response.json()["error"]["code"] == code
        assert response.headers["x-smallfleet-model"] == "alpha"
    assert other.status_code == 200
    assert f'smallfleet_requests_total{{model="alpha",route="alpha",status="{status}"}} 2.0' in metrics


async def test_failure_mid_stream_is_an_error_event_then_done(make_client):
    fake = FakeBackend("alpha", reply="a b c d", error=BackendError("lost the model"), fail_after_chunks=2)
    async with make_client(fleet_of("alpha"), {"alpha": fake}) as client:
        response = await client.post("/v1/chat/completions", json={**CHAT, "stream": True})
    assert response.status_code == 200
    events = sse_events(response.text)
    error = orjson.loads(events[-2])["error"]
    assert error["code"] == "backend_error" and "lost the model" in error["message"]


async def test_unknown_path_and_method_are_openai_errors(make_client):
    async with make_client(fleet_of("alpha"), {"alpha": FakeBackend("alpha")}) as client:
        missing = await client.get("/v1/nothing")
        wrong_method = await client.get("/v1/chat/completions")
    assert missing.status_code == 404 and missing.json()["error"]["code"] == "not_found"
    assert wrong_method.status_code == 405 and "GET" in wrong_method.json()["error"]["message"]


async def test_refused_requests_are_counted_and_in_flight_returns_to_zero(make_client):
    async with make_client(fleet_of("alpha"), {"alpha": FakeBackend("alpha")}) as client:
        await client.post("/v1/chat/completions", json={**CHAT, "model": "gpt-9"})
        await client.post("/v1/chat/completions", json={**CHAT, "max_tokens": 100_000})
        await client.post("/v1/chat/completions", json={**CHAT, "stream": True})
        metrics = (await client.get("/metrics")).text
    assert 'smallfleet_request_errors_total{code="model_not_found",model="unknown",route="unknown"} 1.0' in metrics
    assert 'smallfleet_request_errors_total{code="context_length_exceeded",model="alpha",route="unknown"} 1.0' in metrics
    assert 'smallfleet_backend_in_flight{model="alpha"} 0.0' in metrics


async def test_a_body_read_in_pieces_within_and_beyond_its_limit_and_a_client_gone():
    """read_body reads ``receive`` as ``Request.stream()`` does: pieces joined, a body past the
    limit refused as it arrives (with or without a content-length), a client gone mid-body."""
    from starlette.requests import ClientDisconnect, Request

    from backends.errors import PayloadTooLarge
    from gateway.endpoints import read_body

    def request(messages: list[dict], headers: list[tuple[bytes, bytes]] = ()) -> Request:
        queue = list(messages)

        async def receive() -> dict:
            return queue.pop(0)

        return Request({"type": "http", "method": "POST", "headers": list(headers)}, receive)

    def pieces(*parts: bytes) -> list[dict]:
        return [{"type": "http.request", "body": p, "more_body": i < len(parts) - 1} for i, p in enumerate(parts)]

    assert await read_body(request(pieces(b'{"a":', b" 1}")), 100) == b'{"a": 1}'
    assert await read_body(request(pieces(b"")), 100) == b""
    with pytest.raises(PayloadTooLarge, match="exceeds the limit of 5 bytes"):
        await read_body(request(pieces(b"abc", b"def")), 5)
    with pytest.raises(PayloadTooLarge, match="request body is 9 bytes; the limit is 5"):
        await read_body(request(pieces(b"abc"), [(b"content-length", b"9")]), 5)
    with pytest.raises(ClientDisconnect):
        await read_body(request([*pieces(b"abc", b"d")[:1], {"type": "http.disconnect"}]), 100)
    twice = request(pieces(b"abc"))
    assert await twice.body() == b"abc"
    assert await read_body(twice, 100) == b"abc"  # read before: as Request.stream() gives it
