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
from backends.types import Completion, GenerationRequest, Health, StreamChunk, Usage

DEFAULT_CONNECT_TIMEOUT = 5.0
DEFAULT_READ_TIMEOUT = 60.0
DEFAULT_TOTAL_TIMEOUT = 600.0
DEFAULT_MAX_CONNECTIONS = 512
_JSON_HEADERS = {"content-type": "application/json", "accept": "application/json"}
_RETRYABLE_STATUSES = frozenset({500, 502, 503, 504})
_CONTENT_POLICY_CODES = frozenset({"content_filter", "content_policy_violation"})


@dataclass(frozen=True, slots=True)
class Timeouts:
    """``connect``: to open a connection; ``read``: longest silence while waiting for
    bytes (so also the longest gap between stream chunks); ``total``: the whole request."""

    connect: float = DEFAULT_CONNECT_TIMEOUT
    read: float = DEFAULT_READ_TIMEOUT
    total: float = DEFAULT_TOTAL_TIMEOUT


class OpenAIHTTPBackend:
    """A model behind an OpenAI-compatible server."""

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
    ) -> None:
        self.name = name
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
                    response = await self.client.post(path, content=orjson.dumps(payload))
        except TimeoutError as exc:
            raise BackendTimeout(f"model {self.name!r} did not answer in time") from exc
        if response.status_code != 200:
            raise _error_for_status(self.name, response.status_code, response.content, response.headers)
        return _parse_completion(self.name, response.content, request.is_chat)

    async def stream_chat(self, request: GenerationRequest) -> AsyncIterator[StreamChunk]:
        path, payload = self._payload(request, stream=True)
        with _map_transport_errors(self.name):
            async with self.client.stream("POST", path, content=orjson.dumps(payload)) as response:
                if response.status_code != 200:
                    body = await response.aread()
                    raise _error_for_status(self.name, response.status_code, body, response.headers)
                async for chunk in _parse_sse(self.name, response.aiter_lines(), request.is_chat):
                    yield chunk

    def _payload(self, request: GenerationRequest, *, stream: bool) -> tuple[str, dict[str, Any]]:
        payload: dict[str, Any] = {"model": self.upstream_model}
        if request.messages is not None:
            path = "/chat/completions"
            payload["messages"] = [{"role": m.role, "content": m.content} for m in request.messages]
        else:
            path = "/completions"
            payload["prompt"] = request.prompt
        params = request.params
        for key in ("max_tokens", "temperature", "top_p", "seed"):
            value = getattr(params, key)
            if value is not None:
                payload[key] = value
        if params.stop:
            payload["stop"] = list(params.stop)
        if stream:
            payload["stream"] = True
            payload["stream_options"] = {"include_usage": True}
        return path, payload


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
    return "length" if reason == "length" else "stop"


def _parse_completion(name: str, body: bytes, is_chat: bool) -> Completion:
    try:
        data = orjson.loads(body)
        choice = data["choices"][0]
        text = choice["message"]["content"] if is_chat else choice["text"]
    except (orjson.JSONDecodeError, KeyError, IndexError, TypeError) as exc:
        raise BackendError(f"model {name!r} sent a malformed answer") from exc
    usage = _usage(data.get("usage")) or Usage()
    return Completion(text or "", _finish(choice.get("finish_reason")), usage)


async def _parse_sse(name: str, lines: AsyncIterator[str], is_chat: bool) -> AsyncIterator[StreamChunk]:
    """Turn an OpenAI SSE stream into chunks; the last one carries finish_reason and usage.

    A stream ends at ``data: [DONE]``, or when the server closes it cleanly after a chunk with a
    ``finish_reason`` (some servers omit [DONE]): a complete answer either way. A stream that
    ends without any finish reason was cut short, and is an error."""
    finish: Any = None
    usage: Usage | None = None
    pieces = 0
    async for line in lines:
        if not line.startswith("data:"):
            continue
        data = line[5:].strip()
        if data == "[DONE]":
            final_usage = usage or Usage(completion_tokens=pieces)
            yield StreamChunk("", finish_reason=_finish(finish), usage=final_usage)
            return
        try:
            event = orjson.loads(data)
        except orjson.JSONDecodeError as exc:
            raise BackendError(f"model {name!r} sent a malformed stream chunk") from exc
        if "error" in event:
            raise BackendError(f"model {name!r} failed mid-stream: {event['error']}")
        usage = _usage(event.get("usage")) or usage
        for choice in event.get("choices") or ():
            text = (choice.get("delta") or {}).get("content") if is_chat else choice.get("text")
            finish = choice.get("finish_reason") or finish
            if text:
                pieces += 1
                yield StreamChunk(text)
    if finish is not None:  # a complete answer whose server closed cleanly without [DONE]
        yield StreamChunk("", finish_reason=_finish(finish), usage=usage or Usage(completion_tokens=pieces))
        return
    raise BackendError(f"model {name!r} ended its stream without a finish reason")
