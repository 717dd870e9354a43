"""Models served by another process over OpenAI's HTTP API.

Anything that speaks OpenAI's ``/v1/chat/completions`` and ``/v1/completions``
works: llama.cpp's server, ``python -m llama_cpp.server``, vLLM, a remote API.
One ``httpx.AsyncClient`` per backend, on aiohttp's connection pool (httpx's own
pool is slow under concurrency, encode/httpx#3215), lives from :meth:`start`
to :meth:`aclose`. httpx exceptions and upstream error statuses are mapped to
the smallfleet error tree in :func:`_map_transport_errors` and
:func:`_error_for_status`, and nowhere else.
"""

from __future__ import annotations

import asyncio
import contextlib
import email.utils
import logging
import time
from collections.abc import AsyncIterator, Iterator, Mapping
from dataclasses import dataclass
from typing import Any

import httpx
import orjson

from backends.errors import (
    BackendError,
    BackendTimeout,
    BackendUnavailable,
    ContentPolicyViolation,
    ContextLengthExceeded,
    Overloaded,
    RequestError,
    SmallfleetError,
)
from backends.features import Feature
from backends.types import (
    Completion,
    GenerationRequest,
    Health,
    Message,
    StreamChunk,
    TokenLogprob,
    ToolCall,
    ToolCallDelta,
    Usage,
)

DEFAULT_CONNECT_TIMEOUT = 5.0
DEFAULT_READ_TIMEOUT = 60.0
DEFAULT_TOTAL_TIMEOUT = 600.0
DEFAULT_MAX_CONNECTIONS = 512
log = logging.getLogger(__name__)
_JSON_HEADERS = {"content-type": "application/json", "accept": "application/json"}
_RETRYABLE_STATUSES = frozenset({500, 502, 503, 504})
_CONTENT_POLICY_CODES = frozenset({"content_filter", "content_policy_violation"})
REMOTE_FEATURES = frozenset(Feature)  # by default a server is sent every field the client sent


@dataclass(frozen=True, slots=True)
class Timeouts:
    """``connect``: to open a connection; ``read``: longest silence while waiting for
    bytes (so also the longest gap between stream chunks); ``total``: the whole request."""

    connect: float = DEFAULT_CONNECT_TIMEOUT
    read: float = DEFAULT_READ_TIMEOUT
    total: float = DEFAULT_TOTAL_TIMEOUT


class OpenAIHTTPBackend:
    """A model behind an OpenAI-compatible server.

    The fields it honours are sent on unchanged, and the server is trusted to honour them (or to
    answer 400, which reaches the client as the server's error). ``features`` narrows what is
    sent for a server known to lack something (the fleet config's ``features``)."""

    max_choices = 1  # one choice per request
    available = True  # no circuit of its own (ResilientBackend adds one)

    def __init__(
        self,
        name: str,
        base_url: str,
        *,
        upstream_model: str | None = None,
        api_key: str | None = None,
        context_length: int | None = None,
        timeouts: Timeouts = Timeouts(),
        max_connections: int = DEFAULT_MAX_CONNECTIONS,
        transport: httpx.AsyncBaseTransport | None = None,
        features: frozenset[Feature] = REMOTE_FEATURES,
    ) -> None:
        self.name = name
        self.features = features
        self.context_length = context_length
        self.base_url = base_url.rstrip("/")
        self.upstream_model = upstream_model or name
        self._timeouts = timeouts
        self._headers = dict(_JSON_HEADERS)
        if api_key:
            self._headers["authorization"] = f"Bearer {api_key}"
        self._max_connections = max_connections
        self._transport = transport
        self._client: httpx.AsyncClient | None = None
        self._urls: dict[str, httpx.URL] = {}

    async def start(self) -> None:
        transport = self._transport
        if transport is None:
            from httpx_aiohttp import AiohttpTransport

            limits = httpx.Limits(max_connections=self._max_connections)
            transport = AiohttpTransport(limits=limits)
        timeout = httpx.Timeout(
            connect=self._timeouts.connect,
            read=self._timeouts.read,
            write=self._timeouts.read,
            pool=self._timeouts.connect,
        )
        self._client = httpx.AsyncClient(
            base_url=self.base_url, headers=self._headers, timeout=timeout, transport=transport
        )
        # An upstream's cookies are no client's business: nothing is sent back, so nothing is kept
        # (reading Set-Cookie through http.cookiejar cost as much as the rest of httpx's answer).
        self._client._cookies = _NoCookies()
        # Absolute URLs built once: httpx parses a relative one against base_url on every request.
        self._urls = {path: httpx.URL(self.base_url + path) for path in ("/chat/completions", "/completions")}

    async def aclose(self) -> None:
        if self._client is not None:
            await self._client.aclose()
            self._client = None

    @property
    def client(self) -> httpx.AsyncClient:
        if self._client is None:
            raise BackendError(f"backend {self.name!r} is not started")
        return self._client

    async def health(self) -> Health:
        try:
            with _map_transport_errors(self.name):
                response = await self.client.get("/models", timeout=self._timeouts.connect)
        except SmallfleetError as exc:
            return Health(ok=False, detail=exc.message)
        if response.status_code != 200:
            return Health(ok=False, detail=f"GET /models answered {response.status_code}")
        return Health(ok=True, detail="reachable")

    # -- generation --------------------------------------------------------
    async def chat(self, request: GenerationRequest) -> Completion:
        path, payload = self._payload(request, stream=False)
        try:
            async with asyncio.timeout(self._timeouts.total):
                with _map_transport_errors(self.name):
                    response = await self.client.post(self._urls[path], content=orjson.dumps(payload))
        except TimeoutError as exc:
            raise BackendTimeout(f"model {self.name!r} did not answer in time") from exc
        if response.status_code != 200:
            raise _error_for_status(self.name, response.status_code, response.content, response.headers)
        return _parse_completion(self.name, response.content, request)

    async def stream_chat(self, request: GenerationRequest) -> AsyncIterator[StreamChunk]:
        path, payload = self._payload(request, stream=True)
        with _map_transport_errors(self.name):
            body = orjson.dumps(payload)
            async with self.client.stream("POST", self._urls[path], content=body) as response:
                if response.status_code != 200:
                    error = await response.aread()
                    raise _error_for_status(self.name, response.status_code, error, response.headers)
                async for chunk in _parse_sse(self.name, _lines(response), request):
                    yield chunk

    def _payload(self, request: GenerationRequest, *, stream: bool) -> tuple[str, dict[str, Any]]:
        payload: dict[str, Any] = {"model": self.upstream_model}
        if request.messages is not None:
            path = "/chat/completions"
            payload["messages"] = [_message_json(m) for m in request.messages]
        else:
            path = "/completions"
            payload["prompt"] = request.prompt
        params = request.params
        for key in ("max_tokens", "temperature", "top_p", "seed", "frequency_penalty", "presence_penalty"):
            value = getattr(params, key)
            if value is not None:
                payload[key] = value
        if params.stop:
            payload["stop"] = list(params.stop)
        if params.logit_bias:
            payload["logit_bias"] = {str(token): bias for token, bias in params.logit_bias.items()}
        if params.logprobs:
            if request.is_chat:
                payload["logprobs"] = True
                payload["top_logprobs"] = params.top_logprobs
            else:
                payload["logprobs"] = params.top_logprobs
        if request.tools:
            payload["tools"] = [_tool_json(tool) for tool in request.tools]
            choice = request.tool_choice
            named = {"type": "function", "function": {"name": choice.name}}
            payload["tool_choice"] = named if choice.mode == "function" else choice.mode
            if not request.parallel_tool_calls:
                payload["parallel_tool_calls"] = False
        if request.response_format is not None:
            fmt = request.response_format
            if fmt.type == "json_object":
                payload["response_format"] = {"type": "json_object"}
            else:
                schema: dict[str, Any] = {"name": fmt.name or "answer", "schema": dict(fmt.schema or {})}
                if fmt.strict:
                    schema["strict"] = True
                payload["response_format"] = {"type": "json_schema", "json_schema": schema}
        for key, value in request.vendor_fields.items():
            payload.setdefault(key, value)
        if stream:
            payload["stream"] = True
            payload["stream_options"] = {"include_usage": True}
        return path, payload


class _NoCookies(httpx.Cookies):
    """A cookie jar that keeps nothing."""

    def extract_cookies(self, response: httpx.Response) -> None:
        return None


async def _lines(response: httpx.Response) -> AsyncIterator[str]:
    """The response's lines (CR, LF or CRLF ended; the last one may be unended), without their
    ends: split as bytes and decoded one line at a time (httpx's ``aiter_lines`` decodes and
    splits text piece by piece, a good share of a streamed answer's cost). A CRLF split between
    two pieces gives one extra empty line, which SSE ignores."""
    rest = b""
    async for piece in response.aiter_bytes():
        lines = (rest + piece).splitlines(keepends=True)
        rest = lines.pop() if lines and not lines[-1].endswith((b"\n", b"\r")) else b""
        for line in lines:
            yield line.rstrip(b"\r\n").decode("utf-8", "replace")
    if rest:
        yield rest.decode("utf-8", "replace")


def _message_json(message: Message) -> dict[str, Any]:
    turn: dict[str, Any] = {"role": message.role, "content": message.content}
    if message.tool_calls:
        turn["tool_calls"] = [
            {"id": c.id, "type": "function", "function": {"name": c.name, "arguments": c.arguments}}
            for c in message.tool_calls
        ]
        turn["content"] = message.content or None
    if message.tool_call_id is not None:
        turn["tool_call_id"] = message.tool_call_id
    if message.name is not None:
        turn["name"] = message.name
    return turn


def _tool_json(tool: Any) -> dict[str, Any]:
    function: dict[str, Any] = {"name": tool.name, "parameters": dict(tool.parameters)}
    if tool.description is not None:
        function["description"] = tool.description
    if tool.strict:
        function["strict"] = True
    return {"type": "function", "function": function}


@contextlib.contextmanager
def _map_transport_errors(name: str) -> Iterator[None]:
    """Translate httpx's exceptions into the smallfleet error tree."""
    try:
        yield
    except (httpx.ConnectError, httpx.ConnectTimeout) as exc:
        # httpx-aiohttp reports a refused connection, and a dropped one, as ConnectTimeout.
        raise BackendUnavailable(f"cannot connect to model {name!r}: {exc}") from exc
    except httpx.TimeoutException as exc:
        raise BackendTimeout(f"model {name!r} timed out: {type(exc).__name__}") from exc
    except httpx.HTTPError as exc:
        raise BackendUnavailable(f"connection to model {name!r} failed: {exc}") from exc


def _upstream_message(body: bytes) -> tuple[str, str | None]:
    try:
        error = orjson.loads(body).get("error")
    except (orjson.JSONDecodeError, AttributeError):
        return body[:200].decode(errors="replace"), None
    if isinstance(error, dict):
        return str(error.get("message", "")), error.get("code")
    return str(error), None


def retry_after_seconds(headers: Mapping[str, str]) -> float | None:
    """Seconds an upstream asked us to wait: ``retry-after-ms`` (OpenAI's), else ``Retry-After``
    as seconds or as an HTTP date; None when absent or unreadable."""
    millis = headers.get("retry-after-ms")
    if millis is not None:
        with contextlib.suppress(ValueError):
            return max(0.0, float(millis) / 1000)
    value = headers.get("retry-after")
    if value is None:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, when.timestamp() - time.time())


def _error_for_status(
    name: str, status: int, body: bytes, headers: Mapping[str, str] | None = None
) -> SmallfleetError:
    message, code = _upstream_message(body)
    detail = f"model {name!r} answered {status}: {message}"
    retry_after = retry_after_seconds(headers) if headers is not None else None
    if status == 429:
        return Overloaded(detail, retry_after=retry_after)
    if status in (400, 413, 422):
        if code in _CONTENT_POLICY_CODES:
            return ContentPolicyViolation(detail)
        if code == "context_length_exceeded" or "context" in message.lower():
            return ContextLengthExceeded(detail)
        return RequestError(detail)
    retryable = status in _RETRYABLE_STATUSES
    if status == 503:
        return BackendUnavailable(detail, retry_after=retry_after)
    if status == 504:
        return BackendTimeout(detail)
    return BackendError(detail, retryable=retryable, retry_after=retry_after)


def _usage(data: dict[str, Any] | None) -> Usage | None:
    if not data:
        return None
    return Usage(int(data.get("prompt_tokens") or 0), int(data.get("completion_tokens") or 0))


def _finish(reason: Any) -> Any:
    return reason if reason in ("length", "tool_calls") else "stop"


def _chat_logprobs(data: Any) -> tuple[TokenLogprob, ...]:
    """OpenAI's chat ``logprobs.content`` as token log-probabilities."""
    tokens = []
    for entry in (data or {}).get("content") or ():
        top = tuple((t["token"], float(t["logprob"])) for t in entry.get("top_logprobs") or ())
        tokens.append(TokenLogprob(entry["token"], float(entry["logprob"]), top))
    return tuple(tokens)


def _text_logprobs(data: Any) -> tuple[TokenLogprob, ...]:
    """The legacy completions' ``logprobs`` (parallel lists) as token log-probabilities."""
    if not data:
        return ()
    tops = data.get("top_logprobs") or [None] * len(data.get("tokens") or ())
    return tuple(
        TokenLogprob(token, float(logprob if logprob is not None else float("-inf")),
                     tuple((t, float(v)) for t, v in (top or {}).items()))
        for token, logprob, top in zip(
            data.get("tokens") or (), data.get("token_logprobs") or (), tops, strict=False
        )
    )


def _logprobs(choice: dict[str, Any], is_chat: bool) -> tuple[TokenLogprob, ...]:
    return _chat_logprobs(choice.get("logprobs")) if is_chat else _text_logprobs(choice.get("logprobs"))


def _tool_calls(message: dict[str, Any]) -> tuple[ToolCall, ...]:
    return tuple(
        ToolCall(call.get("id") or "", call["function"]["name"], call["function"].get("arguments") or "")
        for call in message.get("tool_calls") or ()
    )


def _parse_completion(name: str, body: bytes, request: GenerationRequest) -> Completion:
    is_chat = request.is_chat
    try:
        data = orjson.loads(body)
        choice = data["choices"][0]
        text = choice["message"]["content"] if is_chat else choice["text"]
        calls = _tool_calls(choice["message"]) if is_chat else ()
        logprobs = _logprobs(choice, is_chat) if request.params.logprobs else None
    except (orjson.JSONDecodeError, KeyError, IndexError, TypeError, ValueError) as exc:
        raise BackendError(f"model {name!r} sent a malformed answer") from exc
    usage = _usage(data.get("usage")) or Usage()
    finish = _finish(choice.get("finish_reason"))
    return Completion(text or "", finish, usage, logprobs=logprobs, tool_calls=calls)


def _tool_call_deltas(delta: dict[str, Any]) -> tuple[ToolCallDelta, ...]:
    deltas = []
    for call in delta.get("tool_calls") or ():
        function = call.get("function") or {}
        deltas.append(
            ToolCallDelta(int(call.get("index", 0)), call.get("id"), function.get("name"),
                          function.get("arguments") or "")
        )
    return tuple(deltas)


_WARNED_NO_STREAM_USAGE: set[str] = set()


def _stream_usage(name: str, usage: Usage | None, pieces: int) -> Usage:
    """The stream's usage; a server that reports none (llama-cpp-python's ignores
    ``stream_options.include_usage``) is counted by its pieces, with no prompt tokens, and said
    once in the log."""
    if usage is not None:
        return usage
    if name not in _WARNED_NO_STREAM_USAGE:
        _WARNED_NO_STREAM_USAGE.add(name)
        log.warning(
            "model %r reports no usage in streams: its streamed answers (and whole answers held to the "
            "first-token deadline, which are read as streams) are counted without prompt tokens; set "
            "resilience.deadline: false on it to count its whole answers exactly",
            name,
        )
    return Usage(completion_tokens=pieces)


async def _parse_sse(
    name: str, lines: AsyncIterator[str], request: GenerationRequest
) -> AsyncIterator[StreamChunk]:
    """Turn an OpenAI SSE stream into chunks; the last one carries finish_reason and usage.

    A stream ends at ``data: [DONE]``, or when the server closes it cleanly after a chunk with a
    ``finish_reason`` (some servers omit [DONE]): a complete answer either way. A stream that
    ends without any finish reason, [DONE] or not, was cut short, and is an error (before the
    first token the gateway retries it or falls back)."""
    is_chat = request.is_chat
    finish: Any = None
    usage: Usage | None = None
    pieces = 0
    async for line in lines:
        if not line.startswith("data:"):
            continue
        data = line[5:].strip()
        if data == "[DONE]":
            if finish is None:
                # llama-cpp-python's server, for one, ends an interrupted generation this way
                message = f"model {name!r} ended its stream without a finish reason"
                raise BackendError(message, retryable=pieces == 0)  # nothing sent yet: try again
            yield StreamChunk("", finish_reason=_finish(finish), usage=_stream_usage(name, usage, pieces))
            return
        try:
            event = orjson.loads(data)
        except orjson.JSONDecodeError as exc:
            raise BackendError(f"model {name!r} sent a malformed stream chunk") from exc
        if "error" in event:
            raise BackendError(f"model {name!r} failed mid-stream: {event['error']}")
        usage = _usage(event.get("usage")) or usage
        for choice in event.get("choices") or ():
            if choice.get("index", 0) != 0:
                continue  # one choice is asked for (n > 1 goes to diverse routes only)
            delta = choice.get("delta") or {}
            text = delta.get("content") if is_chat else choice.get("text")
            finish = choice.get("finish_reason") or finish
            try:
                calls = _tool_call_deltas(delta) if is_chat else ()
                logprobs = _logprobs(choice, is_chat) if request.params.logprobs else ()
            except (KeyError, TypeError, ValueError) as exc:
                raise BackendError(f"model {name!r} sent a malformed stream chunk") from exc
            if text or calls or logprobs:
                pieces += 1
                yield StreamChunk(text or "", logprobs=logprobs, tool_calls=calls)
    if finish is not None:  # a complete answer whose server closed cleanly without [DONE]
        yield StreamChunk("", finish_reason=_finish(finish), usage=_stream_usage(name, usage, pieces))
        return
    raise BackendError(f"model {name!r} ended its stream without a finish reason", retryable=pieces == 0)
