"""The OpenAI-compatible HTTP backend against a real stub server on loopback, and its error mapping."""

from __future__ import annotations

import time

import httpx
import orjson
import pytest
from aiohttp import web
from aiohttp.test_utils import RawTestServer

from backends.errors import (
    BackendError,
    BackendTimeout,
    BackendUnavailable,
    ContentPolicyViolation,
    ContextLengthExceeded,
    DeadlineExceeded,
    Overloaded,
    RequestError,
)
from backends.openai_http import OpenAIHTTPBackend, Timeouts
from backends.openai_sse import EventParser
from backends.resilience import NO_RETRIES, ResilientBackend
from backends.types import (
    GenerationRequest,
    Message,
    SamplingParams,
    StreamChunk,
    TokenLogprob,
    ToolCallDelta,
    Usage,
)
from fleet.config import parse_fleet
from gateway.app import create_app
from tests.conftest import free_port, stub_upstream_process

CHAT = GenerationRequest(
    messages=(Message("user", "Say hello please"),), params=SamplingParams(max_tokens=16)
)


async def started(backend: OpenAIHTTPBackend) -> OpenAIHTTPBackend:
    await backend.start()
    return backend


async def test_chat_stream_and_completion_against_a_live_server(stub_upstream):
    backend = await started(OpenAIHTTPBackend("stub", stub_upstream))
    try:
        whole = await backend.chat(CHAT)
        chunks = [c async for c in backend.stream_chat(CHAT)]
        text = await backend.chat(GenerationRequest(prompt="Once upon a time"))
        health = await backend.health()
    finally:
        await backend.aclose()
    assert whole.text == "Hello from the stub upstream."
    assert whole.usage.prompt_tokens == 3 and whole.usage.completion_tokens == 5
    assert len(chunks) > 2  # chunk by chunk, not one block
    assert "".join(c.text for c in chunks) == whole.text
    assert chunks[-1].finish_reason == "stop" and chunks[-1].usage == whole.usage
    assert text.text == whole.text
    assert health.ok


async def test_unreachable_server_is_unavailable():
    port = free_port()
    backend = await started(OpenAIHTTPBackend("gone", f"http://127.0.0.1:{port}/v1"))
    try:
        with pytest.raises(BackendUnavailable):
            await backend.chat(CHAT)
        assert not (await backend.health()).ok
    finally:
        await backend.aclose()


async def test_a_silent_server_times_out():
    with stub_upstream_process("--delay-ms", "2000") as url:
        backend = await started(OpenAIHTTPBackend("slow", url, timeouts=Timeouts(read=0.3)))
        try:
            with pytest.raises(BackendTimeout):
                await backend.chat(CHAT)
            with pytest.raises(BackendTimeout):
                [c async for c in backend.stream_chat(CHAT)]
        finally:
            await backend.aclose()


class CannedUpstream:
    """A real HTTP server on loopback that answers every request with one canned answer (status,
    body, headers) and keeps what it was sent: upstream failures the stub has no fault for."""

    def __init__(self, status: int = 200, body: bytes = b"", headers: dict[str, str] | None = None):
        self.status, self.body, self.headers = status, body, headers or {}
        self.requests: list[tuple[str, str, dict[str, str], bytes]] = []
        self.server = RawTestServer(self._answer)

    async def _answer(self, request: web.BaseRequest) -> web.Response:
        self.requests.append((request.method, request.path, dict(request.headers), await request.read()))
        return web.Response(status=self.status, body=self.body, headers=self.headers)

    async def __aenter__(self) -> str:
        await self.server.start_server()
        return str(self.server.make_url("/v1"))

    async def __aexit__(self, *exc: object) -> None:
        await self.server.close()


@pytest.mark.parametrize(
    ("status", "body", "error"),
    [
        (429, {"error": {"message": "slow down"}}, Overloaded),
        (400, {"error": {"message": "too long", "code": "context_length_exceeded"}}, ContextLengthExceeded),
        (400, {"error": {"message": "bad temperature"}}, RequestError),
        (500, {"error": {"message": "crashed"}}, BackendError),
        (503, b"not json", BackendUnavailable),
    ],
)
async def test_upstream_error_statuses_map_to_the_error_tree(status, body, error):
    content = orjson.dumps(body) if isinstance(body, dict) else body
    async with CannedUpstream(status, content) as url:
        backend = await started(OpenAIHTTPBackend("m", url))
        try:
            with pytest.raises(error):
                await backend.chat(CHAT)
            with pytest.raises(error):
                [c async for c in backend.stream_chat(CHAT)]
        finally:
            await backend.aclose()


@pytest.mark.parametrize(
    "stream_body",
    [
        b'data: {"choices":[{"delta":{"content":"hi"}}]}\n\n',  # no [DONE]
        b"data: {broken\n\n",
        b'data: {"error": {"message": "engine died"}}\n\n',
        # [DONE] but no finish reason: cut short (llama-cpp-python's server, interrupted, does this)
        b'data: {"choices":[{"delta":{"role":"assistant"}}]}\n\ndata: [DONE]\n\n',
    ],
)
async def test_broken_streams_raise_instead_of_ending_quietly(stream_body):
    async with CannedUpstream(200, stream_body, {"content-type": "text/event-stream"}) as url:
        backend = await started(OpenAIHTTPBackend("m", url))
        try:
            with pytest.raises(BackendError):
                [c async for c in backend.stream_chat(CHAT)]
            with pytest.raises(BackendError):  # a whole answer held to the first-token deadline
                await ResilientBackend(backend, retry=NO_RETRIES).chat(CHAT, first_token_by=time.monotonic() + 5)
        finally:
            await backend.aclose()


async def test_chunks_before_a_broken_event_come_first():
    """Events that arrive together are parsed together; a broken one fails the stream only after
    the chunks before it were handed out, as when they arrive one by one."""
    body = b'data: {"choices":[{"delta":{"content":"hi"}}]}\n\ndata: {broken\n\n'
    async with CannedUpstream(200, body, {"content-type": "text/event-stream"}) as url:
        backend = await started(OpenAIHTTPBackend("m", url))
        try:
            chunks = backend.stream_chat(CHAT)
            assert (await anext(chunks)).text == "hi"
            with pytest.raises(BackendError, match="malformed stream chunk"):
                await anext(chunks)
            with pytest.raises(StopAsyncIteration):
                await anext(chunks)
        finally:
            await backend.aclose()


async def test_what_the_upstream_is_sent():
    """The request an upstream sees: the path, OpenAI's JSON body, the key, and the headers it saw
    while this backend went through httpx; a redirect is not followed (it is the upstream's error)."""
    upstream = CannedUpstream(307, b"", {"location": "/elsewhere"})
    async with upstream as url:
        backend = await started(OpenAIHTTPBackend("m", url, upstream_model="up", api_key="sk-up"))
        try:
            with pytest.raises(BackendError, match="answered 307"):
                await backend.chat(CHAT)
        finally:
            await backend.aclose()
    assert len(upstream.requests) == 1  # the redirect was not followed
    method, path, headers, body = upstream.requests[0]
    assert (method, path) == ("POST", "/v1/chat/completions")
    assert orjson.loads(body) == {
        "model": "up", "messages": [{"role": "user", "content": "Say hello please"}], "max_tokens": 16
    }
    sent = {name.lower(): value for name, value in headers.items()}
    assert sent["authorization"] == "Bearer sk-up"
    assert sent["content-type"] == "application/json"
    assert sent["accept"] == "application/json"
    assert sent["connection"] == "keep-alive"
    assert sent["user-agent"] == f"python-httpx/{httpx.__version__}"
    assert "gzip" in sent["accept-encoding"] and "deflate" in sent["accept-encoding"]
    assert "cookie" not in sent


def test_gateway_passes_a_stream_through_chunk_by_chunk(stub_upstream, live_server, openai_client):

    config = parse_fleet({"models": [{"name": "stub", "backend": "openai", "base_url": stub_upstream}]})
    server = live_server(create_app(config))
    client = openai_client(server.url)
    stream = client.chat.completions.create(
        model="stub", messages=[{"role": "user", "content": "hi"}], stream=True
    )
    pieces = [c.choices[0].delta.content for c in stream if c.choices and c.choices[0].delta.content]
    assert len(pieces) == 5 and "".join(pieces) == "Hello from the stub upstream."


# -- resilience: what each upstream failure maps to ---------------------------------


@pytest.mark.parametrize(
    ("status", "body", "headers", "kind", "retryable", "retry_after"),
    [
        (429, b'{"error": {"message": "slow down"}}', {}, Overloaded, True, None),
        (429, b"{}", {"retry-after": "2"}, Overloaded, True, 2.0),
        (429, b"{}", {"retry-after-ms": "250", "retry-after": "9"}, Overloaded, True, 0.25),
        (500, b"oops", {}, BackendError, True, None),
        (502, b"oops", {}, BackendError, True, None),
        (503, b"{}", {"retry-after": "1.5"}, BackendUnavailable, True, 1.5),
        (501, b"oops", {}, BackendError, False, None),
        (
            400,
            b'{"error": {"message": "rejected by the safety system", "code": "content_filter"}}',
            {},
            ContentPolicyViolation,
            False,
            None,
        ),
        (
            400,
            b'{"error": {"message": "no", "code": "content_policy_violation"}}',
            {},
            ContentPolicyViolation,
            False,
            None,
        ),
        (400, b'{"error": {"message": "maximum context length"}}', {}, ContextLengthExceeded, False, None),
    ],
)
def test_upstream_statuses_map_to_errors_with_retryability(
    status: int, body: bytes, headers: dict[str, str], kind: type, retryable: bool, retry_after: float | None
) -> None:
    from backends.openai_http import _error_for_status

    error = _error_for_status("m", status, body, httpx.Headers(headers))
    assert type(error) is kind
    assert error.retryable is retryable
    assert error.retry_after == retry_after


def test_retry_after_as_an_http_date() -> None:
    import email.utils
    import time

    from backends.openai_http import retry_after_seconds

    when = email.utils.formatdate(time.time() + 30, usegmt=True)
    assert 25 < (retry_after_seconds({"retry-after": when}) or 0) <= 30
    assert retry_after_seconds({"retry-after": "soon"}) is None
    assert retry_after_seconds({}) is None


async def test_a_held_answer_whose_end_is_in_hand_is_taken_without_waiting(stub_upstream):
    """A short answer's stream is usually read to its end by its first token: ``rest_in_hand`` hands
    the rest over at once (None while more must be read), and the held answer is the whole one."""
    backend = await started(OpenAIHTTPBackend("stub", stub_upstream))
    try:
        whole = await backend.chat(CHAT)
        held = await ResilientBackend(backend, retry=NO_RETRIES).chat(CHAT, first_token_by=time.monotonic() + 5)
        stream = backend.stream_chat(CHAT)
        assert stream.rest_in_hand() is None  # nothing read yet
        first = await anext(stream)
        rest = stream.rest_in_hand()
        if rest is None:  # the end had not arrived with the first token
            rest = await stream.rest()
    finally:
        await backend.aclose()
    assert (held.text, held.finish_reason, held.usage) == (whole.text, whole.finish_reason, whole.usage)
    assert first.text + "".join(c.text for c in rest) == whole.text
    assert rest[-1].finish_reason == "stop" and rest[-1].usage == whole.usage


async def test_a_held_answer_is_read_lazily_yet_its_first_token_counts_when_it_came():
    """A whole answer held to a deadline wakes its reader at its end, or just before its share of
    the deadline ends (``ChunkStream.take_whole``), not at its first piece. Its first token still
    counts when it came: one that came in time keeps the answer, even when the rest comes after
    the share's end; a role chunk alone is no first token."""
    with stub_upstream_process("--chunk-delay-ms", "100") as url:  # an event every 0.1 s: ~0.9 s
        backend = await started(OpenAIHTTPBackend("stub", url))
        try:
            whole = await backend.chat(CHAT)
            started_at = time.monotonic()
            held = await ResilientBackend(backend, retry=NO_RETRIES).chat(CHAT, first_token_by=started_at + 0.5)
            took = time.monotonic() - started_at
        finally:
            await backend.aclose()
    assert (held.text, held.usage) == (whole.text, whole.usage)
    assert took > 0.6  # the answer went on past the share's end, and was kept
    with stub_upstream_process() as url:
        backend = await started(OpenAIHTTPBackend("fault:slow-first-token-3000", url))
        try:
            started_at = time.monotonic()
            with pytest.raises(DeadlineExceeded):  # its role chunk came at once; no token by 0.3 s
                await ResilientBackend(backend, retry=NO_RETRIES).chat(CHAT, first_token_by=started_at + 0.3)
            assert time.monotonic() - started_at < 2
        finally:
            await backend.aclose()


def test_stream_events_with_tool_calls_logprobs_and_other_choices():
    """What each kind of event becomes: text, a tool call's pieces, log-probabilities (when asked
    for), another choice's event (skipped), usage and the finish reason on the final chunk."""
    request = GenerationRequest(
        messages=(Message("user", "hi"),), params=SamplingParams(logprobs=True, top_logprobs=1)
    )
    events = [
        {"choices": [{"index": 0, "delta": {"role": "assistant"}}]},
        {"choices": [{"index": 0, "delta": {"content": "Hi"},
                      "logprobs": {"content": [{"token": "Hi", "logprob": -0.5, "top_logprobs": []}]}}]},
        {"choices": [{"index": 1, "delta": {"content": "other"}}]},
        {"choices": [{"index": 0, "delta": {"tool_calls": [
            {"index": 0, "id": "call_1", "function": {"name": "f", "arguments": "{\"a\""}}]}}]},
        {"choices": [{"index": 0, "delta": {"tool_calls": [{"index": 0, "function": {"arguments": ":1}"}}]},
                      "finish_reason": "tool_calls"}]},
        {"choices": [], "usage": {"prompt_tokens": 2, "completion_tokens": 3}},
    ]
    body = b"".join(b"data: " + orjson.dumps(e) + b"\n\n" for e in events) + b"data: [DONE]\n\n"
    parser = EventParser("m", request)
    chunks: list[StreamChunk] = []
    parser.feed(body, chunks)
    assert parser.done
    assert [c.text for c in chunks] == ["Hi", "", "", ""]
    assert chunks[0].logprobs == (TokenLogprob("Hi", -0.5, ()),)
    assert chunks[1].tool_calls == (ToolCallDelta(0, "call_1", "f", '{"a"'),)
    assert chunks[2].tool_calls == (ToolCallDelta(0, None, None, ":1}"),)
    assert chunks[3].finish_reason == "tool_calls" and chunks[3].usage == Usage(2, 3)

    plain = EventParser("m", CHAT)  # no log-probabilities asked for: none are read
    plain_chunks: list[StreamChunk] = []
    plain.feed(body, plain_chunks)
    assert plain_chunks[0] == StreamChunk("Hi")


@pytest.mark.parametrize(
    ("line", "text"),
    [
        (b'data: {"choices":[{"delta":{"content":"hi"}}]}\n', "hi"),  # the common event, from bytes
        (b'data:{"choices":[{"delta":{"content":"hi"}}]}\r\n', "hi"),  # no space, CRLF
        (b'data: \x0c{"choices":[{"delta":{"content":"hi"}}]}\n', "hi"),  # whitespace JSON has not
        (b'data: {"choices":[{"delta":{"content":"h\xffi"}}]}\n', "h\ufffdi"),  # not UTF-8: replaced
        (b'data: {"choices":[{"delta":{"content":"caf\xc3\xa9"}}]}\xc2\xa0\n', "caf\u00e9"),  # NBSP
    ],
)
def test_an_event_line_reads_as_its_decoded_stripped_text_would(line, text):
    """Events are parsed from the bytes as they are when they are JSON objects in UTF-8, and
    through the text (decoded with replacement, stripped) otherwise: the same chunks either way."""
    parser = EventParser("m", CHAT)
    chunks: list[StreamChunk] = []
    parser.feed(line + b'data: {"choices":[{"delta":{},"finish_reason":"stop"}]}\n\ndata: [DONE]\n\n', chunks)
    assert [c.text for c in chunks] == [text, ""]
    assert chunks[-1].finish_reason == "stop" and parser.done


def _text_events(*texts: str) -> bytes:
    return b"".join(b"data: " + orjson.dumps({"choices": [{"index": 0, "delta": {"content": t}}]}) + b"\n\n"
                    for t in texts)


def test_a_whole_answer_gets_the_texts_after_its_first_joined_in_order():
    """``join_after_first`` (a whole answer read as a stream): the first text alone, then the texts
    of each piece fed joined into one chunk, given before any other chunk (a tool call's piece),
    in order; usage counted by pieces is what it would be chunk by chunk."""
    tool = {"choices": [{"index": 0, "delta": {"tool_calls": [
        {"index": 0, "id": "c", "function": {"name": "f", "arguments": "{}"}}]}}]}
    finish = {"choices": [{"index": 0, "delta": {"content": "!"}, "finish_reason": "stop"}]}
    first_piece = _text_events("Hello", " big", " wide") + b"data: " + orjson.dumps(tool) + b"\n\n"
    second_piece = (_text_events(" wor", "ld") + b"data: " + orjson.dumps(finish) + b"\n\ndata: [DO")
    parts = (first_piece, second_piece, b"NE]\n\n")

    def parse(join: bool) -> list[StreamChunk]:
        parser = EventParser("no-usage", CHAT)  # reports no usage: counted by its pieces
        parser.join_after_first = join
        chunks: list[StreamChunk] = []
        for part in parts:
            parser.feed(part, chunks)
        assert parser.done
        return chunks

    joined, one_by_one = parse(True), parse(False)
    assert [c.text for c in joined] == ["Hello", " big wide", "", " world!", ""]
    assert joined[2].tool_calls == one_by_one[3].tool_calls != ()
    assert "".join(c.text for c in joined) == "".join(c.text for c in one_by_one) == "Hello big wide world!"
    assert joined[-1].usage == one_by_one[-1].usage == Usage(completion_tokens=7)
    assert joined[-1].finish_reason == one_by_one[-1].finish_reason == "stop"


def test_joined_texts_before_a_broken_event_come_first():
    """A broken event after joined texts: the texts before it are given, then the error."""
    parser = EventParser("m", CHAT)
    parser.join_after_first = True
    chunks: list[StreamChunk] = []
    with pytest.raises(BackendError, match="malformed"):
        parser.feed(_text_events("a", "b", "c") + b"data: {broken\n\n", chunks)
    assert [c.text for c in chunks] == ["a", "bc"]


@pytest.mark.parametrize("line_end", [b"\n", b"\r\n", b"\r"])
def test_a_stream_cut_anywhere_parses_as_it_does_whole(line_end):
    """Lines may end in LF, CRLF or CR and pieces may end anywhere (a CRLF cut in two gives one
    extra empty line, which SSE ignores): every cut, and a body fed byte by byte, give the chunks
    the whole body gives."""
    events = [{"choices": [{"index": 0, "delta": {"content": word}}]} for word in ("Hi ", "there", "!")]
    events.append({"choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}],
                   "usage": {"prompt_tokens": 2, "completion_tokens": 3}})
    body = b"".join(b": comment" + line_end + b"data: " + orjson.dumps(e) + line_end * 2 for e in events)
    body += b"data: [DONE]" + line_end * 2

    def parse(pieces: list[bytes]) -> list[StreamChunk]:
        parser = EventParser("m", CHAT)
        chunks: list[StreamChunk] = []
        for piece in pieces:
            parser.feed(piece, chunks)
        if not parser.done:
            parser.end(chunks)
        return chunks

    whole = parse([body])
    assert [c.text for c in whole] == ["Hi ", "there", "!", ""] and whole[-1].usage == Usage(2, 3)
    for cut in range(1, len(body)):
        assert parse([body[:cut], body[cut:]]) == whole, cut
    assert parse([body[i:i + 1] for i in range(len(body))]) == whole


# Events the typed decoding takes and events it leaves to the dict parse (_DICT_PARSED: other
# types, an error, tool calls, nesting too deep). Each parses to the same chunks, or fails the
# same way; usage too large for 64 bits reads as the dict parse reads it.
_EVENT_SHAPES = [
    {"choices": [{"index": 0, "delta": {"role": "assistant", "content": ""}, "finish_reason": None}]},
    {"choices": [{"index": 0, "delta": {"content": "Hi"}, "logprobs": None}], "id": "x", "extra": [1]},
    {"choices": [{"delta": {"content": " there"}}]},  # no index: the first choice
    {"choices": [{"index": 1, "delta": {"content": "other"}}]},
    {"choices": [{"index": 0, "delta": None, "finish_reason": "length"}]},
    {"choices": [], "usage": {"prompt_tokens": 2, "completion_tokens": 3}},
    {"choices": None},
    {"choices": [{"index": 0, "delta": {"content": 5}}]},
    {"choices": [{"index": "0", "delta": {"content": "s"}}]},
    {"choices": [{"index": 0, "delta": {"content": "x"}, "finish_reason": 7}]},
    {"choices": [{"index": 0, "delta": {"tool_calls": [
        {"index": 0, "id": "c1", "function": {"name": "f", "arguments": "{}"}}]}}]},
    {"error": None},
    {"error": {"message": "overloaded"}},
    {"usage": "lots"},
    b'{"choices": [], "usage": {"prompt_tokens": 12345678901234567890123, "completion_tokens": 1}}',
    b'{"choices": [{"index": 0, "delta": {"content": "deep"}}], "x": ' + b"[" * 2000 + b"]" * 2000 + b"}",
]
_DICT_PARSED = {7, 8, 9, 10, 11, 12, 15}  # the shapes above that the typed decoding leaves


@pytest.mark.parametrize("shape", range(len(_EVENT_SHAPES)))
@pytest.mark.parametrize("join", [False, True])
def test_typed_and_dict_parses_of_an_event_agree(monkeypatch, shape, join):
    """Plain events are decoded straight into typed structs (``_decode_event``), others parsed as
    dicts: both give the same chunks, or the same error, for every shape, whole or joined."""
    import msgspec

    import backends.openai_sse as sse

    event = _EVENT_SHAPES[shape]
    body = b"".join(b"data: " + (e if isinstance(e, bytes) else orjson.dumps(e)) + b"\n\n"
                    for e in (_EVENT_SHAPES[1], event, _EVENT_SHAPES[2]))

    def parse() -> tuple[list[StreamChunk], str | None]:
        parser = EventParser("m", CHAT)
        parser.join_after_first = join
        chunks: list[StreamChunk] = []
        try:
            parser.feed(body + b"data: [DONE]\n\n", chunks)
        except Exception as exc:  # noqa: BLE001 - compared, not swallowed
            return chunks, f"{type(exc).__name__}: {exc}"
        return chunks, None

    dict_parses: list[bytes] = []
    loads = sse._loads
    monkeypatch.setattr(sse, "_loads", lambda payload: dict_parses.append(payload) or loads(payload))
    typed = parse()
    assert bool(dict_parses) == (shape in _DICT_PARSED)  # the typed decoding took the rest

    def no_typed_decoding(payload: bytes) -> None:
        raise msgspec.DecodeError("off")

    monkeypatch.setattr(sse, "_decode_event", no_typed_decoding)
    assert typed == parse()
