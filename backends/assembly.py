"""A whole answer put together from a stream's chunks.

A backend that generates as a stream gives its whole answer (``chat``) by assembling the stream
(backends/llama_cpp.py); so does the resilience layer for a whole answer held to a first-token
deadline (backends/resilience.py), taking the rest of the stream at once where it is a
:class:`~backends.base.ChunkStream`.
"""

from __future__ import annotations

from collections.abc import AsyncIterator

from backends.base import ChunkStream
from backends.types import Completion, GenerationRequest, StreamChunk, TokenLogprob, ToolCall, Usage

NOT_IN_HAND = StreamChunk("")  # add_rest_in_hand's answer when the rest must still be read


class Assembly:
    """The text, log-probabilities and tool calls of a stream's chunks, in order; the final chunk
    (the one with a finish reason) gives the finish reason, usage and trace."""

    def __init__(self, request: GenerationRequest) -> None:
        self._request = request
        self._text: list[str] = []
        self._logprobs: list[TokenLogprob] = []
        self._calls: dict[int, list[str]] = {}  # index -> [id, name, arguments]
        self._last: StreamChunk | None = None

    def add(self, chunk: StreamChunk) -> None:
        self._text.append(chunk.text)
        self._logprobs.extend(chunk.logprobs)
        for delta in chunk.tool_calls:
            call = self._calls.setdefault(delta.index, ["", "", ""])
            call[0] = call[0] or delta.id or ""
            call[1] = call[1] or delta.name or ""
            call[2] += delta.arguments
        self._last = chunk

    def add_all(self, chunks: list[StreamChunk]) -> StreamChunk | None:
        """Add ``chunks`` up to the final one, and return that; None without one."""
        for chunk in chunks:
            self.add(chunk)
            if chunk.finish_reason is not None:
                return chunk
        return None

    async def add_rest(self, chunks: AsyncIterator[StreamChunk]) -> StreamChunk | None:
        """Add what is left of ``chunks`` up to the final one, and return that; None when the
        stream ends without one. A :class:`ChunkStream` hands over all its remaining chunks at
        once (:meth:`ChunkStream.rest`), in one wait instead of one per chunk."""
        if isinstance(chunks, ChunkStream):
            return self.add_all(await chunks.rest())
        async for chunk in chunks:
            self.add(chunk)
            if chunk.finish_reason is not None:
                return chunk
        return None

    def add_rest_in_hand(self, chunks: AsyncIterator[StreamChunk]) -> StreamChunk | None:
        """As :meth:`add_rest`, without waiting, when the stream has read its answer's end already
        (:meth:`ChunkStream.rest_in_hand`; a short answer usually has by its first token);
        :data:`NOT_IN_HAND` otherwise."""
        ready = chunks.rest_in_hand() if isinstance(chunks, ChunkStream) else None
        if ready is None:
            return NOT_IN_HAND
        return self.add_all(ready)

    def completion(self) -> Completion:
        """The whole answer; only once the final chunk is added."""
        last = self._last
        assert last is not None and last.finish_reason is not None
        calls = tuple(ToolCall(*self._calls[index]) for index in sorted(self._calls))
        logprobs = tuple(self._logprobs) if self._request.params.logprobs else None
        usage = last.usage if last.usage is not None else Usage()
        return Completion("".join(self._text), last.finish_reason, usage, trace=last.trace,
                          logprobs=logprobs, tool_calls=calls)
