"""Models served by another process over OpenAI's HTTP API.

Anything that speaks OpenAI's ``/v1/chat/completions`` and ``/v1/completions``
works: llama.cpp's server, ``python -m llama_cpp.server``, vLLM, a remote API.
One keep-alive connection pool per backend (``backends/http1.py``, a small HTTP/1.1
client over httptools) lives from :meth:`start` to :meth:`aclose`. Its failures
(aiohttp's exception classes, as when this backend called aiohttp) and upstream
error statuses are mapped to the smallfleet error tree in :func:`_map_client_errors`
and :func:`_error_for_status`, and nowhere else; the answers' wire format is
parsed in ``backends/openai_sse.py``.

What an upstream sees is what it saw when this backend was httpx on aiohttp's
transport: the same headers (httpx's user agent included), no redirects
followed, the same timeouts. :func:`_map_transport_errors` maps httpx's
exceptions for the remote embedders (``backends/embeddings.py``), which still
use httpx.
"""

from __future__ import annotations

import collections
import contextlib
import email.utils
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any

import aiohttp
import httpx
import orjson
from yarl import URL

from backends.base import ChunkStream
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
from backends.http1 import DEFAULT_CONNECT_TIMEOUT, KEEPALIVE_SECONDS, Http1Pool, Response
from backends.openai_sse import EventParser, parse_completion
from backends.timeouts import timeout
from backends.types import (
    Completion,
    GenerationRequest,
    Health,
    Message,
    StreamChunk,
)

DEFAULT_READ_TIMEOUT = 60.0
DEFAULT_TOTAL_TIMEOUT = 600.0
DEFAULT_MAX_CONNECTIONS = 512
# The headers every request carries besides Host, Accept-Encoding (what backends/http1.py decodes) and
# Content-Length. The user agent is the one upstreams saw while this backend went through httpx,
# kept so that their logs and allow-lists see no change.
_HEADERS = {
    "accept": "application/json",
    "content-type": "application/json",
    "connection": "keep-alive",
    "user-agent": f"python-httpx/{httpx.__version__}",
}
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
        features: frozenset[Feature] = REMOTE_FEATURES,
    ) -> None:
        self.name = name
        self.features = features
        self.context_length = context_length
        self.base_url = base_url.rstrip("/")
        self.upstream_model = upstream_model or name
        self._headers = dict(_HEADERS)
        if api_key:
            self._headers["authorization"] = f"Bearer {api_key}"
        self._max_connections = max_connections
        self._pool: Http1Pool | None = None
        # Absolute URLs parsed once.
        self._urls = {path: URL(self.base_url + path) for path in ("/chat/completions", "/completions")}
        self._models_url = URL(self.base_url + "/models")
        # ``connect`` also bounds the wait for a pooled connection, as httpx's pool timeout did.
        self._connect_timeout = timeouts.connect
        self._read_timeout = timeouts.read
        self._total = timeouts.total

    async def start(self) -> None:
        base = URL(self.base_url)
        # httpx's certificate trust (certifi's bundle, or SSL_CERT_FILE / SSL_CERT_DIR).
        context = httpx.create_ssl_context() if base.scheme == "https" else None
        self._pool = Http1Pool(
            base, self._headers, ssl_context=context, limit=self._max_connections,
            keepalive=KEEPALIVE_SECONDS, connect_timeout=self._connect_timeout,
        )

    async def aclose(self) -> None:
        if self._pool is not None:
            await self._pool.close()
            self._pool = None

    @property
    def pool(self) -> Http1Pool:
        if self._pool is None:
            raise BackendError(f"backend {self.name!r} is not started")
        return self._pool

    async def post(self, url: URL, body: bytes, wake_by: float | None = None) -> Response:
        """POST ``body`` (JSON) to ``url``: the answer once its headers are in (release it); with
        ``wake_by``, waited for lazily (backends/http1.py)."""
        return await self.pool.request("POST", url, body, self._read_timeout, wake_by)

    async def health(self) -> Health:
        try:
            with _map_client_errors(self.name):
                response = await self.pool.request("GET", self._models_url, None, self._connect_timeout)
                await response.read()
        except SmallfleetError as exc:
            return Health(ok=False, detail=exc.message)
        if response.status != 200:
            return Health(ok=False, detail=f"GET /models answered {response.status}")
        return Health(ok=True, detail="reachable")

    # -- generation --------------------------------------------------------
    async def chat(self, request: GenerationRequest) -> Completion:
        path, payload = self._payload(request, stream=False)
        try:
            with timeout(self._total), _map_client_errors(self.name):
                response = await self.post(self._urls[path], orjson.dumps(payload))
                body = await response.read()
        except TimeoutError as exc:
            raise BackendTimeout(f"model {self.name!r} did not answer in time") from exc
        if response.status != 200:
            raise _error_for_status(self.name, response.status, body, response.headers)
        return parse_completion(self.name, body, request)

    def stream_chat(self, request: GenerationRequest) -> EventStream:
        return EventStream(self, request)

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


class EventStream(ChunkStream):
    """A streamed answer's chunks, as an async iterator (``stream_chat``'s result).

    The request is made and sent at the first ``anext``; each read from the connection is parsed at once
    (:class:`~backends.openai_sse.EventParser`) and its chunks handed out one by one, a broken
    event's error after the chunks before it. The answer is released at its end, at an error, or
    by :meth:`aclose` (the connection goes back to the pool if the body was read to its end).
    :meth:`rest` hands over everything after the chunks taken so far at once: a whole answer held
    to the first-token deadline is read this way once its first token is in
    (``ResilientBackend``)."""

    def __init__(self, backend: OpenAIHTTPBackend, request: GenerationRequest) -> None:
        self._backend = backend
        self._request = request
        self._parser = EventParser(backend.name, request)
        self._response: Response | None = None
        self._ready: collections.deque[StreamChunk] = collections.deque()
        self._failure: Exception | None = None  # raised once the chunks before it are taken
        self._over = False  # ended, failed or closed: nothing more comes
        self._first_by: float | None = None  # until the first chunk is taken: see take_whole

    async def __anext__(self) -> StreamChunk:
        while not self._ready:
            await self._read()
        self._first_by = None
        return self._ready.popleft()

    async def rest(self) -> list[StreamChunk]:
        """Every chunk not taken yet, up to the end of the answer (an error raises)."""
        while not self._parser.done and self._failure is None and not self._over:
            await self._read(stop=False)
        chunks = list(self._ready)
        self._ready.clear()
        if self._failure is not None:
            await self._read()  # raises it
        self._release()
        return chunks

    def rest_in_hand(self) -> list[StreamChunk] | None:
        """What :meth:`rest` would return, when the answer's end has been read already (as it
        usually has by the first token of a short answer); None when more must be read. No wait,
        so the caller needs no timeout around it."""
        if not self._parser.done or self._failure is not None:
            return None
        chunks = list(self._ready)
        self._ready.clear()
        self._release()
        return chunks

    def take_whole(self, first_by: float) -> None:
        self._first_by = first_by
        self._parser.join_after_first = True

    async def aclose(self) -> None:
        self._over = True
        self._release()

    async def _read(self, stop: bool = True) -> None:
        """Read and parse the next piece of the body; with nothing left to read, raise the pending
        failure, else StopAsyncIteration (``stop``)."""
        if self._failure is not None or self._parser.done or self._over:
            self._over = True
            self._release()
            failure, self._failure = self._failure, None
            if failure is not None:
                raise failure
            if stop:
                raise StopAsyncIteration
            return
        name = self._backend.name
        try:
            with _map_client_errors(name):
                response = self._response or await self._open()
                piece = await response.readany(self._first_by)
        except BaseException:
            self._over = True
            self._release()
            raise
        chunks: list[StreamChunk] = []
        try:
            if piece:
                self._parser.feed(piece, chunks)
            else:
                self._parser.end(chunks)
        except Exception as exc:  # raised after the chunks parsed before it, as a generator would
            self._failure = exc
        self._ready.extend(chunks)

    async def _open(self) -> Response:
        backend = self._backend
        path, payload = backend._payload(self._request, stream=True)
        response = await backend.post(backend._urls[path], orjson.dumps(payload), self._first_by)
        self._response = response
        if response.status != 200:
            error = await response.read()
            raise _error_for_status(self._backend.name, response.status, error, response.headers)
        return response

    def _release(self) -> None:
        if self._response is not None:
            self._response.release()


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


def _client_failure(name: str, exc: aiohttp.ClientError) -> SmallfleetError | None:
    """The smallfleet error for one of aiohttp's, as it was when httpx-aiohttp turned aiohttp's
    exceptions into httpx's and :func:`_map_transport_errors` mapped those (so the same error
    classes and messages); None for one that mapping let through (raised as it is)."""
    if isinstance(exc, aiohttp.SocketTimeoutError):  # a read waited longer than ``read``
        return BackendTimeout(f"model {name!r} timed out: ReadTimeout")
    if isinstance(exc, aiohttp.ClientConnectionError):
        # refused, dropped or reset, or not opened within ``connect``
        return BackendUnavailable(f"cannot connect to model {name!r}: {exc}")
    if isinstance(exc, _FAILED_CONNECTION_ERRORS):
        return BackendUnavailable(f"connection to model {name!r} failed: {exc}")
    return None


_FAILED_CONNECTION_ERRORS = (
    aiohttp.ClientPayloadError,  # a body cut short or badly encoded
    aiohttp.ClientHttpProxyError,
    aiohttp.InvalidUrlClientError,
    aiohttp.NonHttpUrlClientError,
)


class _map_client_errors:  # noqa: N801 - used like contextlib's context managers, as a function
    """``with _map_client_errors(name):`` turns aiohttp's exceptions into the smallfleet error
    tree (:func:`_client_failure`). A class rather than ``contextlib.contextmanager``: it wraps
    every read of a stream, where a generator-based context manager costs several times more."""

    __slots__ = ("name",)

    def __init__(self, name: str) -> None:
        self.name = name

    def __enter__(self) -> None:
        return None

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None, tb: Any) -> None:
        if isinstance(exc, aiohttp.ClientError):
            failure = _client_failure(self.name, exc)
            if failure is not None:
                raise failure from exc


@contextlib.contextmanager
def _map_transport_errors(name: str) -> Iterator[None]:
    """Translate httpx's exceptions into the smallfleet error tree (the remote embedders')."""
    try:
        yield
    except (httpx.ConnectError, httpx.ConnectTimeout) as exc:
        # refused or unreachable (ConnectError), or not opened in time (ConnectTimeout)
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


