"""Answering one completion request: pick the backend, call it, account for it.

:class:`Gateway` is the request path shared by ``/v1/chat/completions`` and
``/v1/completions``: it turns a validated OpenAI request into a backend call,
the result into JSON or SSE, and records metrics. It holds no per-request
state and does no I/O of its own beyond the backend call.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from dataclasses import dataclass

import orjson
from starlette.responses import Response
from starlette.types import Receive

from backends.errors import BackendError, ContextLengthExceeded, SmallfleetError
from backends.types import GenerationRequest, StreamChunk, Usage
from gateway.errors import error_payload
from gateway.fleet import Fleet, FleetMember
from gateway.metrics import GatewayMetrics
from gateway.protocol import ChunkWriter, completion_json
from gateway.sse import DONE_EVENT, ClientDisconnected, EventStreamResponse, sse_event, until_disconnect

JSON_MEDIA_TYPE = "application/json"
CLIENT_CLOSED_REQUEST = 499  # nginx's status for "the client went away"; only in metrics


@dataclass(frozen=True, slots=True)
class Answer:
    """Where an answer goes: which route chose which fleet member, for which request."""

    request_id: str
    route: str
    member: FleetMember
    started: float
    route_headers: tuple[tuple[str, str], ...] = ()

    @property
    def headers(self) -> dict[str, str]:
        headers = {"x-smallfleet-model": self.member.name, "x-smallfleet-route": self.route}
        headers.update(self.route_headers)
        return headers


class Gateway:
    def __init__(self, fleet: Fleet, metrics: GatewayMetrics) -> None:
        self.fleet = fleet
        self.metrics = metrics

    def check_token_limit(self, member: FleetMember, max_tokens: int | None) -> None:
        limit = member.context_length
        if max_tokens is not None and limit is not None and max_tokens > limit:
            raise ContextLengthExceeded(
                f"max_tokens is {max_tokens}, but model {member.name!r} has a context of {limit} tokens",
                param="max_tokens",
            )

    def _record(self, answer: Answer, status: int, usage: Usage | None = None) -> None:
        usage = usage or Usage()
        self.metrics.observe_answer(
            route=answer.route,
            model=answer.member.name,
            status=status,
            seconds=time.perf_counter() - answer.started,
            prompt_tokens=usage.prompt_tokens,
            completion_tokens=usage.completion_tokens,
            cost=answer.member.price.cost(usage.prompt_tokens, usage.completion_tokens),
        )

    async def respond(
        self,
        answer: Answer,
        request: GenerationRequest,
        receive: Receive,
        *,
        stream: bool,
        include_usage: bool = False,
    ) -> Response | EventStreamResponse:
        try:
            if stream:
                return await self._respond_stream(answer, request, receive, include_usage)
            return await self._respond_whole(answer, request, receive)
        except ClientDisconnected:
            self._record(answer, CLIENT_CLOSED_REQUEST)
            return Response(status_code=CLIENT_CLOSED_REQUEST)
        except SmallfleetError as exc:
            self._record(answer, exc.status_code)
            raise

    async def _respond_whole(self, answer: Answer, request: GenerationRequest, receive: Receive) -> Response:
        completion = await until_disconnect(answer.member.backend.chat(request), receive)
        payload = completion_json(answer.request_id, answer.member.name, completion, chat=request.is_chat)
        body = orjson.dumps(payload)
        self._record(answer, 200, completion.usage)
        return Response(body, media_type=JSON_MEDIA_TYPE, headers=answer.headers)

    async def _respond_stream(
        self, answer: Answer, request: GenerationRequest, receive: Receive, include_usage: bool
    ) -> EventStreamResponse:
        chunks = answer.member.backend.stream_chat(request)
        # Peek at the first chunk so an early failure is an HTTP error, not a broken stream.
        try:
            first = await until_disconnect(anext(chunks), receive)
        except BaseException:
            await chunks.aclose()  # type: ignore[attr-defined]
            raise
        first_token_at = time.perf_counter()
        self.metrics.time_to_first_token.labels(answer.route, answer.member.name).observe(
            first_token_at - answer.started
        )
        events = self._events(answer, first, chunks, request.is_chat, include_usage)
        return EventStreamResponse(events, answer.headers)

    async def _events(
        self,
        answer: Answer,
        first: StreamChunk,
        chunks: AsyncIterator[StreamChunk],
        chat: bool,
        include_usage: bool,
    ) -> AsyncIterator[bytes]:
        writer = ChunkWriter(answer.request_id, answer.member.name, chat=chat)
        status, usage = CLIENT_CLOSED_REQUEST, None
        try:
            if chat:
                yield sse_event(writer.role())
            chunk = first
            while True:
                yield sse_event(writer.chunk(chunk))
                if chunk.finish_reason is not None:
                    usage = chunk.usage
                    break
                next_chunk = await anext(chunks, None)
                chunk = next_chunk if next_chunk is not None else _missing_final_chunk(answer)
            if include_usage and usage is not None:
                yield sse_event(writer.usage(usage))
            status = 200
            yield DONE_EVENT
        except SmallfleetError as exc:
            # Headers are sent: the failure becomes an error event, and the stream still ends.
            status = exc.status_code
            yield sse_event(error_payload(exc)[1])
            yield DONE_EVENT
        finally:
            await chunks.aclose()  # type: ignore[attr-defined]
            self._record(answer, status, usage)


def _missing_final_chunk(answer: Answer) -> StreamChunk:
    raise BackendError(f"model {answer.member.name!r} ended its stream without finishing")
