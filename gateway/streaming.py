"""Writing an answer to the client: the whole answer as JSON, or its chunks as server-sent
events, in the shape the endpoint asked for (gateway/shapes.py), and accounting for it when it
is over (gateway/accounting.py).

A stream's first chunk is awaited before the response starts, so a member that fails at once is
an HTTP error (and can be handed to a fallback); a failure after that is an error event.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator

import orjson
from starlette.responses import Response
from starlette.types import Receive

from backends.errors import BackendError, SmallfleetError
from backends.types import Completion, GenerationRequest, StreamChunk
from gateway.accounting import Accounting
from gateway.answer import Answer
from gateway.metrics import GatewayMetrics
from gateway.protocol import ChunkWriter
from gateway.shapes import AnswerShape, AnswerStream, CompletionShape
from gateway.sse import DONE_EVENT, EventStreamResponse, sse_event, until_disconnect

JSON_MEDIA_TYPE = "application/json"
CLIENT_CLOSED_REQUEST = 499  # nginx's status for "the client went away"


class Responder:
    """Asks ``answer.member`` for one attempt at the answer and writes it out."""

    def __init__(self, metrics: GatewayMetrics, accounting: Accounting) -> None:
        self.metrics = metrics
        self.accounting = accounting

    async def whole(
        self,
        answer: Answer,
        request: GenerationRequest,
        receive: Receive,
        shape: AnswerShape,
        first_token_by: float | None = None,
    ) -> Response:
        completion = await self._completion(answer, request, receive, first_token_by)
        trace = completion.trace
        smallfleet = answer.smallfleet_json(trace)
        payload = shape.whole(answer.request_id, answer.member.name, completion, smallfleet)
        self.accounting.record(answer, 200, completion.usage, trace=trace)
        return Response(orjson.dumps(payload), media_type=JSON_MEDIA_TYPE, headers=answer.headers_with(trace))

    async def stream(
        self,
        answer: Answer,
        request: GenerationRequest,
        receive: Receive,
        shape: AnswerShape,
        first_token_by: float | None = None,
    ) -> EventStreamResponse:
        if answer.n > 1:
            assert isinstance(shape, CompletionShape)  # only completions ask for n
            return await self._choices_stream(answer, request, receive, shape.include_usage)
        ledger = self.accounting.open_attempt(answer)
        chunks = answer.member.stream_chat(request.with_ledger(ledger), first_token_by)
        in_flight = self.metrics.in_flight(answer.member.name)
        in_flight.inc()  # the stream's end (in _events) takes it back
        # Peek at the first chunk so an early failure is an HTTP error, not a broken stream.
        try:
            first = await until_disconnect(anext(chunks), receive)
        except BaseException:
            in_flight.dec()
            await chunks.aclose()  # type: ignore[attr-defined]
            raise
        self._first_token(answer)
        events = self._events(answer, first, chunks, shape.stream(answer.request_id, answer.member.name))
        return EventStreamResponse(events, answer.headers_with(first.trace))

    async def _completion(
        self,
        answer: Answer,
        request: GenerationRequest,
        receive: Receive,
        first_token_by: float | None = None,
    ) -> Completion:
        in_flight = self.metrics.in_flight(answer.member.name)
        in_flight.inc()
        ledger = self.accounting.open_attempt(answer)
        try:
            work = answer.member.chat(request.with_ledger(ledger), first_token_by)
            return await until_disconnect(work, receive)
        finally:
            in_flight.dec()

    def _first_token(self, answer: Answer) -> None:
        answer.first_token_at = time.perf_counter()
        self.metrics.observe(
            self.metrics.time_to_first_token, (answer.route.name, answer.member.name),
            answer.first_token_at - answer.started,
        )

    async def _choices_stream(
        self, answer: Answer, request: GenerationRequest, receive: Receive, include_usage: bool
    ) -> EventStreamResponse:
        """n > 1 (a diverse route): the choices exist only once the samples are voted on, so the
        whole answer is made first and then sent as a stream, one choice after another."""
        completion = await self._completion(answer, request, receive)
        self._first_token(answer)
        events = self._choice_events(answer, completion, request.is_chat, include_usage)
        return EventStreamResponse(events, answer.headers_with(completion.trace))

    async def _choice_events(
        self, answer: Answer, completion: Completion, chat: bool, include_usage: bool
    ) -> AsyncIterator[bytes]:
        writer = ChunkWriter(answer.request_id, answer.member.name, chat=chat)
        choices = [(completion.text, completion.finish_reason)]
        choices += [(c.text, c.finish_reason) for c in completion.extra_choices]
        status: int = CLIENT_CLOSED_REQUEST
        try:
            for index, (text, finish) in enumerate(choices):
                if chat:
                    yield sse_event(writer.role(index))
                if text:
                    yield sse_event(writer.chunk(StreamChunk(text), index))
                last = index == len(choices) - 1
                metadata = answer.smallfleet_json(completion.trace) if last else None
                yield sse_event(writer.chunk(StreamChunk("", finish), index, metadata))
            if include_usage:
                yield sse_event(writer.usage(completion.usage))
            status = 200
            yield DONE_EVENT
        finally:
            code = None if status == 200 else "client_closed_request"
            self.accounting.record(answer, status, completion.usage, code, completion.trace)

    async def _events(
        self,
        answer: Answer,
        first: StreamChunk,
        chunks: AsyncIterator[StreamChunk],
        stream: AnswerStream,
    ) -> AsyncIterator[bytes]:
        status, usage, trace = CLIENT_CLOSED_REQUEST, None, None
        code: str | None = "client_closed_request"
        try:
            for event in stream.opening():
                yield event
            chunk = first
            while True:
                if chunk.finish_reason is not None:
                    usage, trace = chunk.usage, chunk.trace
                    for event in stream.chunk(chunk, smallfleet=answer.smallfleet_json(trace)):
                        yield event
                    break
                for event in stream.chunk(chunk):
                    yield event
                next_chunk = await anext(chunks, None)
                chunk = next_chunk if next_chunk is not None else _missing_final_chunk(answer)
            closing = stream.closing(usage)
            status, code = 200, None
            for event in closing:
                yield event
        except SmallfleetError as exc:
            status, code = exc.status_code, exc.code or exc.error_type
            self.accounting.charge_unanswered(answer)
            for event in stream.failure(exc):
                yield event
        finally:
            self.metrics.in_flight(answer.member.name).dec()
            await chunks.aclose()  # type: ignore[attr-defined]
            if status == CLIENT_CLOSED_REQUEST and trace is None:
                self.accounting.charge_unanswered(answer)
            self.accounting.record(answer, status, usage, code, trace)


def _missing_final_chunk(answer: Answer) -> StreamChunk:
    raise BackendError(f"model {answer.member.name!r} ended its stream without finishing")
