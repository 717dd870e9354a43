"""How an answer is written on the wire: one JSON body, or a stream of server-sent events.

:class:`~gateway.service.Gateway` chooses a member, calls it, falls back and accounts; an
:class:`AnswerShape` writes what came back in one API's format. :class:`CompletionShape` is
OpenAI's chat and text completions (chunks, an optional usage chunk, ``data: [DONE]``);
``gateway/responses_api.py`` has the Responses API's (semantic events).
"""

from __future__ import annotations

from typing import Any, Protocol

from backends.errors import SmallfleetError
from backends.types import Completion, StreamChunk, Usage
from gateway.errors import error_payload
from gateway.protocol import ChunkWriter, completion_json
from gateway.sse import DONE_EVENT, sse_event


class AnswerStream(Protocol):
    """The events of one streamed answer, in order: ``opening``, a ``chunk`` per piece (the last
    carries the finish reason), ``closing``; or ``failure`` once events have been sent."""

    def opening(self) -> list[bytes]: ...

    def chunk(self, chunk: StreamChunk, smallfleet: dict[str, Any] | None = None) -> list[bytes]: ...

    def closing(self, usage: Usage | None) -> list[bytes]: ...

    def failure(self, error: SmallfleetError) -> list[bytes]: ...


class AnswerShape(Protocol):
    def whole(
        self, request_id: str, model: str, completion: Completion, smallfleet: dict[str, Any] | None
    ) -> dict[str, Any]: ...

    def stream(self, request_id: str, model: str) -> AnswerStream: ...


class CompletionShape:
    """``chat.completion`` (chat) or ``text_completion`` JSON, and their chunk streams."""

    def __init__(self, *, chat: bool, include_usage: bool = False) -> None:
        self.chat = chat
        self.include_usage = include_usage

    def whole(
        self, request_id: str, model: str, completion: Completion, smallfleet: dict[str, Any] | None
    ) -> dict[str, Any]:
        return completion_json(request_id, model, completion, chat=self.chat, smallfleet=smallfleet)

    def stream(self, request_id: str, model: str) -> CompletionStream:
        return CompletionStream(ChunkWriter(request_id, model, chat=self.chat), self.include_usage)


class CompletionStream:
    def __init__(self, writer: ChunkWriter, include_usage: bool) -> None:
        self.writer = writer
        self.include_usage = include_usage

    def opening(self) -> list[bytes]:
        return [sse_event(self.writer.role())] if self.writer.chat else []

    def chunk(self, chunk: StreamChunk, smallfleet: dict[str, Any] | None = None) -> list[bytes]:
        return [sse_event(self.writer.chunk(chunk, smallfleet=smallfleet))]

    def closing(self, usage: Usage | None) -> list[bytes]:
        events = [sse_event(self.writer.usage(usage))] if self.include_usage and usage is not None else []
        return [*events, DONE_EVENT]

    def failure(self, error: SmallfleetError) -> list[bytes]:
        # Headers are sent: the failure becomes an error event, and the stream still ends.
        return [sse_event(error_payload(error)[1]), DONE_EVENT]
